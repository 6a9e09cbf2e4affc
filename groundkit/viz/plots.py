"""Tables and charts of results: ablation tables as annotated heatmaps, per-category grouped bars with
published references, and line curves."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from groundkit.viz.base import as_numpy
from groundkit.viz.canvas import new_figure, render

__all__ = ["ablation_heatmap", "category_bars", "curve"]


def ablation_heatmap(
    values: Any,
    row_labels: Sequence[Any],
    col_labels: Sequence[Any],
    title: str | None = None,
    path: str | Path | None = None,
    *,
    fmt: str = "{:.3f}",
    cmap: str = "viridis",
    xlabel: str | None = None,
    ylabel: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    highlight: str | None = "max",
) -> Image.Image:
    """2-D table as a heatmap with each value printed in its cell (NaN cells grey with "–");
    ``highlight`` = "max" | "min" | None outlines the best cell."""
    v = as_numpy(values).astype(float)
    if v.ndim != 2:
        raise ValueError(f"values must be 2-D; got shape {v.shape}")
    if v.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"values {v.shape} vs {len(row_labels)} row labels x {len(col_labels)} column labels")
    nr, nc = v.shape
    cell = 56 if nc <= 12 else 44
    fig = new_figure(int(180 + nc * cell + 110), int(110 + nr * 30 + 40 + (20 if xlabel else 0)), layout="constrained")
    ax = fig.add_subplot()
    finite = np.isfinite(v)
    lo = vmin if vmin is not None else (float(v[finite].min()) if finite.any() else 0.0)
    hi = vmax if vmax is not None else (float(v[finite].max()) if finite.any() else 1.0)
    cm = colormaps[cmap].with_extremes(bad="#d9d9d9")
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cm, vmin=lo, vmax=hi, aspect="auto", interpolation="nearest")
    slanted = max(map(len, map(str, col_labels)), default=0) > 4
    ax.set_xticks(range(nc), [str(c) for c in col_labels], fontsize=9, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticks(range(nr), [str(r) for r in row_labels], fontsize=9)
    fontsize = 8 if nc > 8 else 9
    for i in range(nr):
        for j in range(nc):
            if not finite[i, j]:
                ax.text(j, i, "–", ha="center", va="center", fontsize=fontsize, color="black")
                continue
            rgba = cm(im.norm(v[i, j]))
            lum = 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2]
            ax.text(j, i, fmt.format(v[i, j]), ha="center", va="center", fontsize=fontsize,
                    color="black" if lum > 0.5 else "white")
    if highlight and finite.any():
        pick = np.nanargmax if highlight == "max" else np.nanargmin
        i, j = np.unravel_index(pick(np.where(finite, v, np.nan)), v.shape)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=12)
    fig.colorbar(im, ax=ax, shrink=0.9)
    return render(fig, path)


def _mean_err(x: Any) -> tuple[float, float | None]:
    if x is None:
        return float("nan"), None
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return float(x[0]), float(x[1])
    if isinstance(x, Mapping):
        return float(x.get("mean", float("nan"))), (float(x["std"]) if "std" in x else None)
    return float(x), None


def _reference_markers(ax: Any, reference: Mapping[str, Any], cats: list[str], names: list[str], x: np.ndarray,
                       width: float, palette: Any) -> str | bool:
    """Hollow markers for the published values: a circle over the bar of a name, a diamond at the group centre
    for a category-wide value. Returns the marker drawn (for the legend), False when none was."""
    ref_handle: str | bool = False  # the marker drawn, for the legend
    for ci, c in enumerate(cats):
        ref = reference.get(c)
        if ref is None:
            continue
        items = ref.items() if isinstance(ref, Mapping) else [(None, ref)]
        for n, val in items:
            val = _mean_err(val)[0]
            if not np.isfinite(val):
                continue
            if n in names:
                k = names.index(n)
                xx, marker, edge = x[ci] - 0.4 + width * (k + 0.5), "o", palette(k % palette.N)
            else:
                xx, marker, edge = x[ci], "D", "black"
            ax.scatter([xx], [val], marker=marker, s=70, facecolors="none", edgecolors="black",
                       linewidths=2.2, zorder=5)
            ax.scatter([xx], [val], marker=marker, s=70, facecolors="none", edgecolors=[edge],
                       linewidths=1.2, zorder=6)
            ref_handle = marker
    return ref_handle


def category_bars(
    table: Mapping[str, Mapping[str, Any]],
    metric: str,
    path: str | Path | None = None,
    reference: Mapping[str, Any] | None = None,
    *,
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
    reference_label: str = "published",
) -> Image.Image:
    """Grouped bars: one group per category (table order), one bar per name (checkpoint/recipe) inside.
    Values are numbers, (mean, std) pairs or {"mean", "std"} dicts (std -> error bar).
    ``reference[category]`` is a number (hollow diamond at the group centre) or {name: value} (hollow
    circle over that name's bar; names not among the bars get a diamond at the group centre)."""
    cats = list(table)
    if not cats:
        raise ValueError("category_bars needs at least one category")
    names: list[str] = []
    for c in cats:
        for n in table[c]:
            if n not in names:
                names.append(n)
    ng = len(names)
    width = 0.8 / max(ng, 1)
    fig = new_figure(int(max(640, 120 + len(cats) * (40 + 22 * ng))), 460, layout="constrained")
    ax = fig.add_subplot()
    palette = colormaps["tab10"] if ng <= 10 else colormaps["tab20"]
    x = np.arange(len(cats), dtype=float)
    for k, n in enumerate(names):
        means, errs = zip(*[_mean_err(table[c].get(n)) for c in cats])
        errs_arr = None if all(e is None for e in errs) else [0.0 if e is None else e for e in errs]
        ax.bar(x - 0.4 + width * (k + 0.5), means, width * 0.92, yerr=errs_arr, capsize=2, label=n,
               color=palette(k % palette.N), edgecolor="black", linewidth=0.4)
    ref_handle = _reference_markers(ax, reference, cats, names, x, width, palette) if reference else False
    handles, labels = ax.get_legend_handles_labels()
    if ref_handle:
        handles.append(Line2D([], [], marker=ref_handle, linestyle="none", markerfacecolor="none",
                              markeredgecolor="black", markersize=8, markeredgewidth=1.8))
        labels.append(f"{reference_label} (hollow)")
    longest = max((len(str(lab)) for lab in labels), default=1)
    fits = max(1, int(fig.get_figwidth() * fig.dpi / (6.5 * longest + 40)))  # legend columns that fit the width
    ax.legend(handles, labels, fontsize=8, ncols=min(4, len(labels), fits), loc="upper left",
              bbox_to_anchor=(0, -0.16), frameon=False)
    ax.set_xticks(x, cats, rotation=20, ha="right", fontsize=9)
    ax.set_ylabel(metric)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_title(title or f"{metric} per category", fontsize=12)
    return render(fig, path)


def curve(
    xs: Any,
    ys_by_name: Mapping[str, Any],
    xlabel: str,
    ylabel: str,
    path: str | Path | None = None,
    *,
    title: str | None = None,
    logy: bool = False,
    markers: bool | None = None,
    hlines: Mapping[str, float] | None = None,
) -> Image.Image:
    """Line plot, one line per name (last-n-steps sweeps, loss curves). ``xs`` is one sequence shared by
    all lines or {name: xs}. NaN values leave gaps. ``hlines`` {label: y} draws dashed reference lines."""
    if not ys_by_name:
        raise ValueError("curve needs at least one series")
    fig = new_figure(720, 440, layout="constrained")
    ax = fig.add_subplot()
    palette = colormaps["tab10"]
    for k, (name, ys) in enumerate(ys_by_name.items()):
        xx = as_numpy(xs[name] if isinstance(xs, Mapping) else xs).astype(float)
        yy = as_numpy(ys).astype(float)
        if xx.shape != yy.shape:
            raise ValueError(f"series {name!r}: {xx.shape[0] if xx.ndim else 0} x values for {yy.shape} y values")
        mk = ("o" if len(yy) <= 60 else None) if markers is None else ("o" if markers else None)
        ax.plot(xx, yy, marker=mk, markersize=3.5, linewidth=1.6, label=str(name), color=palette(k % 10))
    for k, (label, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, linestyle="--", linewidth=1.2, color="0.35", label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=12)
    ax.legend(fontsize=8)
    return render(fig, path)
