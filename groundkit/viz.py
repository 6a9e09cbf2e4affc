"""Figures: heatmap overlays, per-token grids, galleries, ablation tables, per-category bars, curves.

Headless by construction: figures are ``matplotlib.figure.Figure`` objects rendered by the Agg canvas
(pyplot and GUI backends are never touched, so importing this module changes no global state), and
images are saved as PNG with PIL. Every function returns the rendered ``PIL.Image`` (RGB) and writes it
to ``path`` when one is given (parent folders are created).

Overlay conventions
-------------------
* ``image`` and ``heatmap`` share one pixel grid (H, W) -- the ORIGINAL image grid for the Vilouras
  protocol or the crop grid for Nuetzel's; non-square is fine. The image is shown in grayscale
  (floats outside [0, 1] and non-uint8 integers are min-max scaled).
* The heatmap is alpha-blended (``alpha``, default 0.5) with colormap ``inferno`` (perceptually
  uniform, monotone in lightness, legible in grayscale print and for colour-blind readers, and its
  hues are far from the annotation colours); ``vmin``/``vmax`` default to 0 and 1 (heatmaps are in
  [0, 1]). NaN pixels are transparent: the image is left exactly as it was.
* Ground-truth boxes ``[x, y, w, h]`` (region rows y:y+h, cols x:x+w, as in the metrics) are drawn as
  rectangle outlines INSIDE that region in ``gt_color`` (lime); the predicted mask's contour is drawn
  inside the mask in ``mask_color`` (sky blue). Both are drawn in pixel space, after the blend, so they
  land exactly where the metrics look.
* Large images are shown at most ``max_side`` pixels on their long side, tiny ones are enlarged by an
  integer factor (nearest neighbour) to at least ``min_side``.

:func:`compose` is the pixel-exact core (uint8 RGB at the display grid); the returned overlay image has
``info["groundkit_image_box"] = (left, top, width, height)`` (where the composed image sits in the
figure) and ``info["groundkit_scale"]`` (display pixels per input pixel).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib import colormaps, colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from PIL import Image

__all__ = [
    "DEFAULT_CMAP",
    "GT_COLOR",
    "MASK_COLOR",
    "ablation_heatmap",
    "category_bars",
    "compose",
    "curve",
    "gallery",
    "overlay",
    "token_grid",
]

DEFAULT_CMAP = "inferno"
GT_COLOR = "#00ff00"
MASK_COLOR = "#00bfff"
_DPI = 100


# ------------------------------------------------------------------------------------------------
# array helpers
# ------------------------------------------------------------------------------------------------
def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _image01(image: Any) -> np.ndarray:
    """(H, W) or (H, W, 3) float32 in [0, 1]; RGBA drops alpha, (H, W, 1) is squeezed."""
    a = _np(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channels-first
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(f"image must be (H, W), (H, W, 1|3|4) or (1|3, H, W); got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == bool:
        return a.astype(np.float32)
    a = a.astype(np.float32)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros_like(a)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    if np.issubdtype(_np(image).dtype, np.integer) or lo < 0.0 or hi > 1.0:
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.where(finite, np.clip(a, 0.0, 1.0), 0.0).astype(np.float32)


def _map2d(m: Any, name: str = "heatmap") -> np.ndarray:
    a = _np(m).astype(np.float32)
    a = np.squeeze(a) if a.ndim > 2 else a
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W); got shape {_np(m).shape}")
    return a


def _boxes(boxes: Any) -> list[tuple[float, float, float, float]]:
    if boxes is None:
        return []
    arr = _np(boxes).astype(float)
    if arr.size == 0:
        return []
    arr = arr.reshape(-1, 4) if arr.ndim == 1 else arr
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be [x, y, w, h] or a list of them; got shape {arr.shape}")
    return [tuple(map(float, b)) for b in arr]


def _resize(a: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
    """Resize a 2-D float (or bool) array to (h, w); NaN survive as NaN (nearest for the NaN mask)."""
    h, w = hw
    if a.shape == (h, w):
        return a
    if a.dtype == bool:
        return np.asarray(Image.fromarray(a.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127
    nan = ~np.isfinite(a)
    filled = np.where(nan, 0.0, a).astype(np.float32)
    out = np.asarray(Image.fromarray(filled, mode="F").resize((w, h), Image.NEAREST if nearest else Image.BILINEAR))
    out = out.astype(np.float32)
    if nan.any():
        nan_r = np.asarray(Image.fromarray(nan.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127
        out = np.where(nan_r, np.nan, out)
    return out


def _resize_image(img: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
    if img.shape[:2] == hw:
        return img
    if img.ndim == 2:
        return _resize(img, hw, nearest)
    return np.stack([_resize(img[..., c], hw, nearest) for c in range(3)], axis=-1)


def _display_scale(h: int, w: int, max_side: int | None, min_side: int | None) -> float:
    side = max(h, w)
    if max_side and side > max_side:
        return max_side / side
    if min_side and side < min_side:
        return float(math.ceil(min_side / side))  # integer enlargement: pixels replicate exactly
    return 1.0


def _rgb255(color: Any) -> np.ndarray:
    return np.array([round(c * 255) for c in mcolors.to_rgb(color)], dtype=np.uint8)


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion; outside the image counts as background."""
    p = np.pad(mask, 1, constant_values=False)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _line_width(h: int, w: int) -> int:
    return max(2, round(max(h, w) / 256))


def compose(
    image: Any,
    heatmap: Any = None,
    mask: Any = None,
    boxes: Any = None,
    *,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.5,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    gt_color: Any = GT_COLOR,
    mask_color: Any = MASK_COLOR,
    line_width: int | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """Pixel-exact overlay: uint8 RGB (round(H*scale), round(W*scale), 3).

    Where the heatmap is NaN the output equals the grayscale image (``round(255*image)``) exactly;
    elsewhere ``(1-alpha)*image + alpha*cmap(norm(heatmap))``. Then the mask contour (inside the mask)
    and the box outlines (inside each box region) are painted, ``line_width`` pixels wide.
    ``scale`` resizes everything for display (image bilinear, heatmap/mask nearest, boxes scaled).
    """
    img = _image01(image)
    h0, w0 = img.shape[:2]
    hw = (max(1, round(h0 * scale)), max(1, round(w0 * scale)))
    nearest_img = scale >= 1.0 and float(scale).is_integer()
    img = _resize_image(img, hw, nearest=nearest_img)
    gray = np.rint(img * 255.0).astype(np.uint8)
    out = np.repeat(gray[..., None], 3, axis=-1) if gray.ndim == 2 else gray.copy()

    if heatmap is not None:
        hm = _map2d(heatmap)
        if hm.shape != (h0, w0):
            raise ValueError(f"heatmap {hm.shape} and image {(h0, w0)} must share one pixel grid (resample first)")
        hm = _resize(hm, hw, nearest=True)
        valid = np.isfinite(hm)
        if valid.any():
            lo = float(np.nanmin(hm)) if vmin is None else float(vmin)
            hi = float(np.nanmax(hm)) if vmax is None else float(vmax)
            norm = np.clip((np.where(valid, hm, lo) - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
            rgb = colormaps[cmap](norm)[..., :3] * 255.0
            blended = (1.0 - alpha) * out.astype(np.float32) + alpha * rgb
            out = np.where(valid[..., None], np.rint(blended).clip(0, 255).astype(np.uint8), out)

    lw = line_width or _line_width(*hw)
    if mask is not None:
        m = _np(mask)
        m = np.squeeze(m) if m.ndim > 2 else m
        m = np.nan_to_num(m.astype(np.float32)) > 0.5 if m.dtype != bool else m
        if m.shape != (h0, w0):
            raise ValueError(f"mask {m.shape} and image {(h0, w0)} must share one pixel grid")
        m = _resize(m, hw, nearest=True)
        inner = m
        for _ in range(lw):
            inner = _erode(inner)
        out[m & ~inner] = _rgb255(mask_color)

    col = _rgb255(gt_color)
    H, W = hw
    for x, y, bw, bh in _boxes(boxes):
        x0, y0 = round(x * scale), round(y * scale)
        x1, y1 = round((x + bw) * scale), round((y + bh) * scale)  # exclusive
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
        if x1 <= x0 or y1 <= y0:
            continue
        t = min(lw, (x1 - x0 + 1) // 2, (y1 - y0 + 1) // 2) or 1
        out[y0:y0 + t, x0:x1] = col
        out[y1 - t:y1, x0:x1] = col
        out[y0:y1, x0:x0 + t] = col
        out[y0:y1, x1 - t:x1] = col
    return out


# ------------------------------------------------------------------------------------------------
# figure helpers
# ------------------------------------------------------------------------------------------------
def _figure(w_px: int, h_px: int, layout: str | None = None) -> Figure:
    fig = Figure(figsize=(w_px / _DPI, h_px / _DPI), dpi=_DPI, facecolor="white", layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _render(fig: Figure, path: str | Path | None) -> Image.Image:
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    img = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy(), mode="RGB")
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p, format="PNG")
    return img


def _wrap(text: str | None, width_px: float, fontsize: float) -> str:
    if not text:
        return ""
    chars = max(12, int(width_px / (0.6 * fontsize * _DPI / 72)))
    return "\n".join(textwrap.wrap(str(text), chars)) or str(text)


def _colorbar(fig: Figure, cax, cmap: str, vmin: float, vmax: float, label: str | None):
    sm = ScalarMappable(norm=mcolors.Normalize(vmin=vmin, vmax=vmax), cmap=cmap)
    cb = fig.colorbar(sm, cax=cax)
    cb.ax.tick_params(labelsize=8)
    if label:
        cb.set_label(label, fontsize=9)
    return cb


def _legend_handles(has_mask: bool, has_boxes: bool, gt_color, mask_color):
    handles = []
    if has_boxes:
        handles.append(Patch(facecolor="none", edgecolor=gt_color, linewidth=2, label="ground truth"))
    if has_mask:
        handles.append(Patch(facecolor="none", edgecolor=mask_color, linewidth=2, label="predicted mask"))
    return handles


def _range(heatmaps: Sequence[np.ndarray], vmin, vmax) -> tuple[float, float]:
    if vmin is not None and vmax is not None:
        return float(vmin), float(vmax)
    finite = [h[np.isfinite(h)] for h in heatmaps if h is not None]
    finite = [f for f in finite if f.size]
    lo = float(min(f.min() for f in finite)) if finite else 0.0
    hi = float(max(f.max() for f in finite)) if finite else 1.0
    return (lo if vmin is None else float(vmin)), (hi if vmax is None else float(vmax))


# ------------------------------------------------------------------------------------------------
# overlay
# ------------------------------------------------------------------------------------------------
def overlay(
    image: Any,
    heatmap: Any,
    mask: Any = None,
    boxes: Any = None,
    title: str | None = None,
    path: str | Path | None = None,
    *,
    gt_color: Any = GT_COLOR,
    mask_color: Any = MASK_COLOR,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.5,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    colorbar: bool = True,
    colorbar_label: str | None = None,
    max_side: int = 1024,
    min_side: int = 256,
) -> Image.Image:
    """Heatmap on a grayscale image with the predicted mask contour, ground-truth boxes, colorbar and
    the phrase as title; returns the figure as a PIL image and writes a PNG to ``path`` if given.
    ``image`` (H, W) and ``heatmap`` (H, W) share one pixel grid; ``boxes`` are [x, y, w, h] in it."""
    img = _image01(image)
    h0, w0 = img.shape[:2]
    s = _display_scale(h0, w0, max_side, min_side)
    hm = None if heatmap is None else _map2d(heatmap)
    lo, hi = _range([hm], vmin, vmax)
    comp = compose(img, hm, mask, boxes, cmap=cmap, alpha=alpha, vmin=lo, vmax=hi,
                   gt_color=gt_color, mask_color=mask_color, scale=s)
    h, w = comp.shape[:2]

    has_boxes, has_mask = bool(_boxes(boxes)), mask is not None
    pad = 12
    cb_w = 70 if (colorbar and hm is not None) else 0
    title_txt = _wrap(title, w + cb_w, 12)
    n_title = title_txt.count("\n") + 1 if title_txt else 0
    top = pad + (n_title * 19 + 6 if n_title else 0)
    bottom = pad + (24 if (has_boxes or has_mask) else 0)
    FW, FH = max(pad + w + cb_w + pad, 360 if (has_boxes or has_mask) else 0), top + h + bottom
    left = max(pad, (FW - w - cb_w) // 2)
    fig = _figure(FW, FH)
    ax = fig.add_axes((left / FW, bottom / FH, w / FW, h / FH))
    ax.imshow(comp, interpolation="none", aspect="auto")
    ax.set_axis_off()
    if title_txt:
        fig.text((left + (w + cb_w) / 2) / FW, 1 - pad / FH, title_txt, ha="center", va="top", fontsize=12)
    if cb_w:
        cax = fig.add_axes(((left + w + 10) / FW, bottom / FH, 14 / FW, h / FH))
        _colorbar(fig, cax, cmap, lo, hi, colorbar_label)
    handles = _legend_handles(has_mask, has_boxes, gt_color, mask_color)
    if handles:
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 2 / FH),
                   ncols=len(handles), fontsize=9, frameon=False, handlelength=1.2, borderaxespad=0)
    out = _render(fig, path)
    out.info["groundkit_image_box"] = (left, top, w, h)
    out.info["groundkit_scale"] = s
    return out


# ------------------------------------------------------------------------------------------------
# grids
# ------------------------------------------------------------------------------------------------
def _grid_shape(n: int, ncols: int | None) -> tuple[int, int]:
    ncols = max(1, min(n, ncols or math.ceil(math.sqrt(n))))
    return math.ceil(n / ncols), ncols


def _panel_figure(panels: list[tuple[np.ndarray, str]], ncols: int | None, title: str | None,
                  cmap: str | None, lo: float, hi: float, legend: list | None, path, caption_size: float = 10,
                  colorbar_label: str | None = None) -> Image.Image:
    nrows, ncols = _grid_shape(len(panels), ncols)
    ph = max(p.shape[0] for p, _ in panels)
    pw = max(p.shape[1] for p, _ in panels)
    max_lines = max((_wrap(c, pw, caption_size).count("\n") + 1) for _, c in panels)
    cell_w, cell_h = pw + 16, ph + 16 + max_lines * caption_size * 1.6
    top = 50 if title else 10
    right = 80 if cmap else 10
    bottom = 34 if legend else 10
    FW, FH = int(ncols * cell_w + right + 10), int(nrows * cell_h + top + bottom)
    fig = _figure(FW, FH)
    for k, (panel, cap) in enumerate(panels):
        r, c = divmod(k, ncols)
        x0 = 10 + c * cell_w + (cell_w - 16 - panel.shape[1]) / 2 + 8
        y_top = top + r * cell_h + max_lines * caption_size * 1.6 + 8
        y_bottom = FH - (y_top + panel.shape[0])
        ax = fig.add_axes((x0 / FW, y_bottom / FH, panel.shape[1] / FW, panel.shape[0] / FH))
        ax.imshow(panel, interpolation="none", aspect="auto")
        ax.set_axis_off()
        fig.text((x0 + panel.shape[1] / 2) / FW, 1 - (y_top - 4) / FH, _wrap(cap, pw, caption_size),
                 ha="center", va="bottom", fontsize=caption_size)
    if title:
        fig.text(0.5, 1 - 10 / FH, title, ha="center", va="top", fontsize=13)
    if cmap:
        grid_h = nrows * cell_h - 16
        cb_h = min(grid_h, 400)
        cax = fig.add_axes(((FW - right + 12) / FW, (bottom + 8 + (grid_h - cb_h) / 2) / FH, 14 / FW, cb_h / FH))
        _colorbar(fig, cax, cmap, lo, hi, colorbar_label)
    if legend:
        fig.legend(handles=legend, loc="lower center", ncols=len(legend), fontsize=9, frameon=False,
                   bbox_to_anchor=(0.5, 4 / FH), borderaxespad=0)
    return _render(fig, path)


def _normalize_maps(maps: list[np.ndarray], mode: str | None) -> tuple[list[np.ndarray], float, float]:
    if mode in (None, "none"):
        lo, hi = _range(maps, None, None)
        return maps, lo, hi
    if mode == "shared":
        lo, hi = _range(maps, None, None)
        return [(m - lo) / (hi - lo) if hi > lo else np.zeros_like(m) for m in maps], 0.0, 1.0
    if mode == "panel":
        out = []
        for m in maps:
            lo, hi = _range([m], None, None)
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
    img = _image01(image)
    h0, w0 = img.shape[:2]
    resized = []
    for name, m in maps.items():
        a = _map2d(m, f"map {name!r}")
        resized.append(_resize(a, (h0, w0), nearest=False) if a.shape != (h0, w0) else a)
    normed, lo, hi = _normalize_maps(resized, normalize)
    s = _display_scale(h0, w0, panel_side, panel_side)
    panels = []
    if show_image:
        panels.append((compose(img, None, None, boxes, scale=s), "image"))
    for (name, _), m in zip(maps.items(), normed):
        panels.append((compose(img, m, None, boxes, cmap=cmap, alpha=alpha, vmin=lo, vmax=hi, scale=s), str(name)))
    legend = _legend_handles(False, bool(_boxes(boxes)), GT_COLOR, MASK_COLOR)
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
        img = _image01(image)
        s = _display_scale(img.shape[0], img.shape[1], panel_side, panel_side)
        panels.append((compose(img, heatmap, mask, boxes, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, scale=s),
                       "" if caption is None else str(caption)))
        any_mask |= mask is not None
        any_box |= bool(_boxes(boxes))
    legend = _legend_handles(any_mask, any_box, GT_COLOR, MASK_COLOR)
    return _panel_figure(panels, ncols, title, cmap, vmin, vmax, legend, path, caption_size=9)


# ------------------------------------------------------------------------------------------------
# tables and curves
# ------------------------------------------------------------------------------------------------
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
    v = _np(values).astype(float)
    if v.ndim != 2:
        raise ValueError(f"values must be 2-D; got shape {v.shape}")
    if v.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"values {v.shape} vs {len(row_labels)} row labels x {len(col_labels)} column labels")
    nr, nc = v.shape
    cell = 56 if nc <= 12 else 44
    fig = _figure(int(180 + nc * cell + 110), int(110 + nr * 30 + 40 + (20 if xlabel else 0)), layout="constrained")
    ax = fig.add_subplot()
    finite = np.isfinite(v)
    lo = vmin if vmin is not None else (float(v[finite].min()) if finite.any() else 0.0)
    hi = vmax if vmax is not None else (float(v[finite].max()) if finite.any() else 1.0)
    cm = colormaps[cmap].with_extremes(bad="#d9d9d9")
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cm, vmin=lo, vmax=hi, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(nc), [str(c) for c in col_labels], fontsize=9, rotation=45 if max(map(len, map(str, col_labels)), default=0) > 4 else 0, ha="right" if max(map(len, map(str, col_labels)), default=0) > 4 else "center")
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
    return _render(fig, path)


def _mean_err(x: Any) -> tuple[float, float | None]:
    if x is None:
        return float("nan"), None
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return float(x[0]), float(x[1])
    if isinstance(x, Mapping):
        return float(x.get("mean", float("nan"))), (float(x["std"]) if "std" in x else None)
    return float(x), None


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
    fig = _figure(int(max(640, 120 + len(cats) * (40 + 22 * ng))), 460, layout="constrained")
    ax = fig.add_subplot()
    palette = colormaps["tab10"] if ng <= 10 else colormaps["tab20"]
    x = np.arange(len(cats), dtype=float)
    for k, n in enumerate(names):
        means, errs = zip(*[_mean_err(table[c].get(n)) for c in cats])
        errs_arr = None if all(e is None for e in errs) else [0.0 if e is None else e for e in errs]
        ax.bar(x - 0.4 + width * (k + 0.5), means, width * 0.92, yerr=errs_arr, capsize=2, label=n,
               color=palette(k % palette.N), edgecolor="black", linewidth=0.4)
    ref_handle: str | bool = False  # the marker drawn, for the legend
    if reference:
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
    return _render(fig, path)


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
    fig = _figure(720, 440, layout="constrained")
    ax = fig.add_subplot()
    palette = colormaps["tab10"]
    for k, (name, ys) in enumerate(ys_by_name.items()):
        xx = _np(xs[name] if isinstance(xs, Mapping) else xs).astype(float)
        yy = _np(ys).astype(float)
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
    return _render(fig, path)
