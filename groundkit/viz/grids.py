"""Panel grids: per-token/word maps over one image (:func:`token_grid`) and galleries of overlays
(:func:`gallery`), laid out on one figure with shared captions, colorbar and legend."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from groundkit.viz.base import DEFAULT_CMAP, GT_COLOR, MASK_COLOR, as_boxes, display_scale, image01, map2d, resize, value_range
from groundkit.viz.canvas import add_colorbar, legend_handles, new_figure, render, wrap_text
from groundkit.viz.overlay import compose

__all__ = ["gallery", "token_grid"]


def _grid_shape(n: int, ncols: int | None) -> tuple[int, int]:
    ncols = max(1, min(n, ncols or math.ceil(math.sqrt(n))))
    return math.ceil(n / ncols), ncols


def _panel_figure(panels: list[tuple[np.ndarray, str]], ncols: int | None, title: str | None,
                  cmap: str | None, lo: float, hi: float, legend: list | None, path, caption_size: float = 10,
                  colorbar_label: str | None = None) -> Image.Image:
    nrows, ncols = _grid_shape(len(panels), ncols)
    ph = max(p.shape[0] for p, _ in panels)
    pw = max(p.shape[1] for p, _ in panels)
    max_lines = max((wrap_text(c, pw, caption_size).count("\n") + 1) for _, c in panels)
    cell_w, cell_h = pw + 16, ph + 16 + max_lines * caption_size * 1.6
    top = 50 if title else 10
    right = 80 if cmap else 10
    bottom = 34 if legend else 10
    FW, FH = int(ncols * cell_w + right + 10), int(nrows * cell_h + top + bottom)
    fig = new_figure(FW, FH)
    for k, (panel, cap) in enumerate(panels):
        r, c = divmod(k, ncols)
        x0 = 10 + c * cell_w + (cell_w - 16 - panel.shape[1]) / 2 + 8
        y_top = top + r * cell_h + max_lines * caption_size * 1.6 + 8
        y_bottom = FH - (y_top + panel.shape[0])
        ax = fig.add_axes((x0 / FW, y_bottom / FH, panel.shape[1] / FW, panel.shape[0] / FH))
        ax.imshow(panel, interpolation="none", aspect="auto")
        ax.set_axis_off()
        fig.text((x0 + panel.shape[1] / 2) / FW, 1 - (y_top - 4) / FH, wrap_text(cap, pw, caption_size),
                 ha="center", va="bottom", fontsize=caption_size)
    if title:
        fig.text(0.5, 1 - 10 / FH, title, ha="center", va="top", fontsize=13)
    if cmap:
        grid_h = nrows * cell_h - 16
        cb_h = min(grid_h, 400)
        cax = fig.add_axes(((FW - right + 12) / FW, (bottom + 8 + (grid_h - cb_h) / 2) / FH, 14 / FW, cb_h / FH))
        add_colorbar(fig, cax, cmap, lo, hi, colorbar_label)
    if legend:
        fig.legend(handles=legend, loc="lower center", ncols=len(legend), fontsize=9, frameon=False,
                   bbox_to_anchor=(0.5, 4 / FH), borderaxespad=0)
    return render(fig, path)


def _normalize_maps(maps: list[np.ndarray], mode: str | None) -> tuple[list[np.ndarray], float, float]:
    if mode in (None, "none"):
        lo, hi = value_range(maps, None, None)
        return maps, lo, hi
    if mode == "shared":
        lo, hi = value_range(maps, None, None)
        return [(m - lo) / (hi - lo) if hi > lo else np.zeros_like(m) for m in maps], 0.0, 1.0
    if mode == "panel":
        out = []
        for m in maps:
            lo, hi = value_range([m], None, None)
            out.append((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m))
        return out, 0.0, 1.0
    raise ValueError(f"normalize must be 'panel', 'shared' or 'none'; got {mode!r}")


def token_grid(
    image: Any,
    maps: Mapping[str, Any],
    path: str | Path | None = None,
    *,
    ncols: int | None = None,
    boxes: Any = None,
    title: str | None = None,
    normalize: str | None = "panel",
    show_image: bool = True,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.5,
    panel_side: int = 256,
) -> Image.Image:
    """One panel per token/word map (DAAM style), each over the image; the first panel is the image with
    its boxes (``show_image``). Maps of another size than the image (e.g. 16x16 or 64x64 attention) are
    bilinearly resized to the image grid. ``normalize``: "panel" (min-max per map, default), "shared"
    (one min-max over all maps: compares tokens) or "none"."""
    if not maps:
        raise ValueError("token_grid needs at least one map")
    img = image01(image)
    h0, w0 = img.shape[:2]
    resized = []
    for name, m in maps.items():
        a = map2d(m, f"map {name!r}")
        resized.append(resize(a, (h0, w0), nearest=False) if a.shape != (h0, w0) else a)
    normed, lo, hi = _normalize_maps(resized, normalize)
    s = display_scale(h0, w0, panel_side, panel_side)
    panels = []
    if show_image:
        panels.append((compose(img, None, None, boxes, scale=s), "image"))
    for (name, _), m in zip(maps.items(), normed):
        panels.append((compose(img, m, None, boxes, cmap=cmap, alpha=alpha, vmin=lo, vmax=hi, scale=s), str(name)))
    legend = legend_handles(False, bool(as_boxes(boxes)), GT_COLOR, MASK_COLOR)
    label = {"panel": "per-map min-max", "shared": "shared min-max"}.get(normalize or "none")
    return _panel_figure(panels, ncols, title, cmap, lo, hi, legend, path, colorbar_label=label)


def gallery(
    items: Sequence[Sequence[Any]],
    path: str | Path | None = None,
    ncols: int = 4,
    *,
    title: str | None = None,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.5,
    vmin: float = 0.0,
    vmax: float = 1.0,
    panel_side: int = 320,
) -> Image.Image:
    """Grid of overlays: items are (image, heatmap, boxes, caption) or (image, heatmap, boxes, caption, mask);
    heatmap/boxes/mask may be None. Heatmaps share the colour range [vmin, vmax]."""
    if not items:
        raise ValueError("gallery needs at least one item")
    panels, any_mask, any_box = [], False, False
    for k, item in enumerate(items):
        if len(item) not in (4, 5):
            raise ValueError(f"gallery item {k}: expected (image, heatmap, boxes, caption[, mask]); got {len(item)} fields")
        image, heatmap, boxes, caption = item[:4]
        mask = item[4] if len(item) == 5 else None
        img = image01(image)
        s = display_scale(img.shape[0], img.shape[1], panel_side, panel_side)
        panels.append((compose(img, heatmap, mask, boxes, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, scale=s),
                       "" if caption is None else str(caption)))
        any_mask |= mask is not None
        any_box |= bool(as_boxes(boxes))
    legend = legend_handles(any_mask, any_box, GT_COLOR, MASK_COLOR)
    return _panel_figure(panels, ncols, title, cmap, vmin, vmax, legend, path, caption_size=9)
