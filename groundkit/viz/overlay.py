"""Pixel-exact overlays of a heatmap on a grayscale image with the predicted mask contour and ground-truth
boxes (:func:`compose`), and the single-finding figure around it (:func:`overlay`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image

from groundkit.viz.base import (
    DEFAULT_CMAP,
    GT_COLOR,
    MASK_COLOR,
    as_boxes,
    as_numpy,
    display_scale,
    image01,
    map2d,
    resize,
    resize_image,
    rgb255,
    value_range,
)
from groundkit.viz.canvas import add_colorbar, legend_handles, new_figure, render, wrap_text

__all__ = ["compose", "overlay", "report_overlay", "outline_rgba", "report_display_size"]


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
    img = image01(image)
    h0, w0 = img.shape[:2]
    hw = (max(1, round(h0 * scale)), max(1, round(w0 * scale)))
    nearest_img = scale >= 1.0 and float(scale).is_integer()
    img = resize_image(img, hw, nearest=nearest_img)
    gray = np.rint(img * 255.0).astype(np.uint8)
    out = np.repeat(gray[..., None], 3, axis=-1) if gray.ndim == 2 else gray.copy()

    if heatmap is not None:
        out = _blend_heatmap(out, heatmap, (h0, w0), hw, cmap, alpha, vmin, vmax)
    lw = line_width or _line_width(*hw)
    if mask is not None:
        _paint_mask(out, mask, (h0, w0), hw, lw, mask_color)
    _paint_boxes(out, boxes, hw, scale, lw, gt_color)
    return out


def _blend_heatmap(out: np.ndarray, heatmap: Any, grid: tuple[int, int], hw: tuple[int, int], cmap: str, alpha: float,
                   vmin: float | None, vmax: float | None) -> np.ndarray:
    """``out`` with the heatmap (on the image's pixel grid ``grid``) blended in where it is finite."""
    hm = map2d(heatmap)
    if hm.shape != grid:
        raise ValueError(f"heatmap {hm.shape} and image {grid} must share one pixel grid (resample first)")
    hm = resize(hm, hw, nearest=True)
    valid = np.isfinite(hm)
    if valid.any():
        lo = float(np.nanmin(hm)) if vmin is None else float(vmin)
        hi = float(np.nanmax(hm)) if vmax is None else float(vmax)
        norm = np.clip((np.where(valid, hm, lo) - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
        rgb = colormaps[cmap](norm)[..., :3] * 255.0
        blended = (1.0 - alpha) * out.astype(np.float32) + alpha * rgb
        out = np.where(valid[..., None], np.rint(blended).clip(0, 255).astype(np.uint8), out)
    return out


def _paint_mask(out: np.ndarray, mask: Any, grid: tuple[int, int], hw: tuple[int, int], lw: int, color: Any) -> None:
    """The mask's contour, ``lw`` pixels wide inside the mask, painted into ``out`` in place."""
    m = as_numpy(mask)
    m = np.squeeze(m) if m.ndim > 2 else m
    m = np.nan_to_num(m.astype(np.float32)) > 0.5 if m.dtype != bool else m
    if m.shape != grid:
        raise ValueError(f"mask {m.shape} and image {grid} must share one pixel grid")
    m = resize(m, hw, nearest=True)
    inner = m
    for _ in range(lw):
        inner = _erode(inner)
    out[m & ~inner] = rgb255(color)


def _paint_boxes(out: np.ndarray, boxes: Any, hw: tuple[int, int], scale: float, lw: int, color: Any) -> None:
    """Each box's outline (inside the box, clipped to the image), scaled for display, painted into ``out`` in place."""
    col = rgb255(color)
    H, W = hw
    for x, y, bw, bh in as_boxes(boxes):
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
    sides: bool = False,
) -> Image.Image:
    """Heatmap on a grayscale image with the predicted mask contour, ground-truth boxes, colorbar and
    the phrase as title; returns the figure as a PIL image and writes a PNG to ``path`` if given.
    ``image`` (H, W) and ``heatmap`` (H, W) share one pixel grid; ``boxes`` are [x, y, w, h] in it.
    ``sides`` marks the patient's right (image left) and left (image right), as on a frontal chest film."""
    img = image01(image)
    h0, w0 = img.shape[:2]
    s = display_scale(h0, w0, max_side, min_side)
    hm = None if heatmap is None else map2d(heatmap)
    lo, hi = value_range([hm], vmin, vmax)
    comp = compose(img, hm, mask, boxes, cmap=cmap, alpha=alpha, vmin=lo, vmax=hi,
                   gt_color=gt_color, mask_color=mask_color, scale=s)
    h, w = comp.shape[:2]

    has_boxes, has_mask = bool(as_boxes(boxes)), mask is not None
    pad = 12
    cb_w = 70 if (colorbar and hm is not None) else 0
    title_txt = wrap_text(title, w + cb_w, 12)
    n_title = title_txt.count("\n") + 1 if title_txt else 0
    top = pad + (n_title * 19 + 6 if n_title else 0)
    bottom = pad + (24 if (has_boxes or has_mask) else 0)
    FW, FH = max(pad + w + cb_w + pad, 360 if (has_boxes or has_mask) else 0), top + h + bottom
    left = max(pad, (FW - w - cb_w) // 2)
    fig = new_figure(FW, FH)
    ax = fig.add_axes((left / FW, bottom / FH, w / FW, h / FH))
    ax.imshow(comp, interpolation="none", aspect="auto")
    ax.set_axis_off()
    if title_txt:
        fig.text((left + (w + cb_w) / 2) / FW, 1 - pad / FH, title_txt, ha="center", va="top", fontsize=12)
    if sides:
        mark_sides(ax)
    if cb_w:
        cax = fig.add_axes(((left + w + 10) / FW, bottom / FH, 14 / FW, h / FH))
        add_colorbar(fig, cax, cmap, lo, hi, colorbar_label)
    _add_legend(fig, FH, has_mask, has_boxes, gt_color, mask_color)
    out = render(fig, path)
    out.info["groundkit_image_box"] = (left, top, w, h)
    out.info["groundkit_scale"] = s
    return out


def _add_legend(fig: Any, fig_h: int, has_mask: bool, has_boxes: bool, gt_color: Any, mask_color: Any) -> None:
    """The mask/box legend centred under the image (nothing when the figure shows neither)."""
    handles = legend_handles(has_mask, has_boxes, gt_color, mask_color)
    if handles:
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 2 / fig_h),
                   ncols=len(handles), fontsize=9, frameon=False, handlelength=1.2, borderaxespad=0)


def mark_sides(ax) -> None:
    """'R' and 'L' in the upper corners: the patient's right is on the image's left in a frontal view."""
    style = dict(transform=ax.transAxes, color="white", fontsize=13, fontweight="bold", va="top",
                 bbox=dict(boxstyle="round,pad=0.15", facecolor="black", alpha=0.55, linewidth=0))
    ax.text(0.02, 0.98, "R", ha="left", **style)
    ax.text(0.98, 0.98, "L", ha="right", **style)


def plot_grounding(g: Any, ax: Any = None, *, mask: bool = True, boxes: bool = True, cmap: str = DEFAULT_CMAP, alpha: float = 0.5):
    """A Grounding drawn into a matplotlib axis: image, heatmap (labelled colour bar), mask contour,
    ground-truth boxes (from ``g.evaluate``), patient R/L; for notebooks (``g.plot()`` / ``g.show()``)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5 * g.geometry.orig_h / g.geometry.orig_w + 0.3))
    img = image01(g.image) if g.image is not None else np.zeros((g.geometry.orig_h, g.geometry.orig_w))
    ax.imshow(img, cmap="gray", interpolation="nearest")
    im = ax.imshow(np.ma.masked_invalid(g.heatmap), cmap=cmap, alpha=alpha, vmin=0, vmax=1, interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label=f"cross-attention ({g.recipe.name}, min-max)")
    if mask and g.mask.any():
        ax.contour(g.mask.astype(float), levels=[0.5], colors=[MASK_COLOR], linewidths=1.2)
    if boxes and g.boxes:
        from matplotlib.patches import Rectangle

        for x, y, w, h in g.boxes:
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=GT_COLOR, linewidth=1.5))
    ax.set_title(g.phrase + (f"\n{g.metrics_summary()}" if g.metrics else ""), fontsize=10)
    ax.set_axis_off()
    mark_sides(ax)
    return ax


# ---------------------------------------------------------------------------------------------------
# several findings of one report on one image
REPORT_MIN_SIDE = 512  # px: the long side of the report flow's overlay (and of the page's outline layers)


def report_display_size(h: int, w: int, min_side: int = REPORT_MIN_SIDE) -> tuple[int, int]:
    """(height, width) of the report overlay: the image enlarged so that its long side is at least
    ``min_side`` (never shrunk); the aspect ratio kept."""
    s = max(1.0, min_side / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def _hex_rgb(color: str) -> np.ndarray:
    from matplotlib import colors as mcolors

    return np.array([round(c * 255) for c in mcolors.to_rgb(color)], dtype=np.uint8)


def outline_rgba(mask: Any, color: str, size: tuple[int, int] | None = None, width: int | None = None) -> np.ndarray:
    """uint8 RGBA (H', W', 4): the outline of ``mask`` in ``color`` with a thin dark halo outside it, transparent
    elsewhere. ``size``: the (height, width) to draw at (the mask is resized there, linearly then thresholded
    at 0.5, so the outline stays smooth when the mask is enlarged); ``width``: the line width in pixels (by
    default 2 px per 512 px of the long side). Nothing is filled: outlines of several findings never hide
    one another's regions."""
    m = np.asarray(mask, dtype=np.float64)
    hw = tuple(size) if size is not None else m.shape
    if m.shape != hw:
        m = resize(m, hw, False)
    m = m >= 0.5
    lw = width if width is not None else max(2, round(2 * max(hw) / 512))
    inner = m.copy()
    for _ in range(lw):
        inner = _erode(inner)
    edge = m & ~inner
    grown = edge.copy()
    p = np.pad(grown, 1, constant_values=False)
    halo = (p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]) & ~edge & ~inner
    out = np.zeros((*hw, 4), np.uint8)
    out[halo, 3] = 150  # dark halo: the line reads on bright and dark film alike
    out[edge, :3] = _hex_rgb(color)
    out[edge, 3] = 255
    return out


def report_overlay(image: Any, masks: list, colors: list[str], labels: list[str] | None = None, *,
                   min_side: int = REPORT_MIN_SIDE, legend: bool = True) -> np.ndarray:
    """The report flow's overlay (uint8 RGB): the grayscale image enlarged to at least ``min_side`` px on its long
    side, every finding's mask OUTLINED in its own colour (never filled, so no finding hides another), and,
    with ``labels``, a legend strip under the image (colour swatch and label per finding). The masks keep the
    model's geometry: they are only resized for drawing."""
    img = image01(as_numpy(image))
    if img.ndim == 3:
        img = img.mean(axis=-1)
    h, w = img.shape[:2]
    H, W = report_display_size(h, w, min_side)
    big = resize(np.nan_to_num(img, nan=0.0), (H, W), False) if (H, W) != (h, w) else np.nan_to_num(img, nan=0.0)
    rgb = np.repeat((np.clip(big, 0, 1) * 255).round()[..., None], 3, axis=2).astype(np.float32)
    for mask, color in zip(masks, colors):
        c = outline_rgba(mask, color, (H, W))
        a = c[..., 3:4] / 255.0
        rgb = rgb * (1 - a) + c[..., :3].astype(np.float32) * a
    out = rgb.clip(0, 255).astype(np.uint8)
    if legend and labels:
        out = np.concatenate([out, _legend_strip(W, labels, colors)], axis=0)
    return out


def _legend_strip(width: int, labels: list[str], colors: list[str]) -> np.ndarray:
    from PIL import ImageDraw, ImageFont

    fs = max(12, round(width / 40))
    try:
        font = ImageFont.load_default(size=fs)
    except TypeError:  # Pillow < 10.1: the bitmap font
        font = ImageFont.load_default()
    line = fs + 8
    strip = Image.new("RGB", (width, line * len(labels) + 8), (24, 24, 24))
    d = ImageDraw.Draw(strip)
    for i, (text, color) in enumerate(zip(labels, colors)):
        y = 4 + i * line
        d.rectangle([8, y + 2, 8 + fs, y + 2 + fs], outline=tuple(int(v) for v in _hex_rgb(color)), width=max(2, fs // 6))
        t = str(text)
        while t and d.textlength(t, font=font) > width - fs - 24:
            t = t[:-2]
        d.text((16 + fs, y), t if t == str(text) else t + "…", fill=(235, 235, 235), font=font)
    return np.asarray(strip, dtype=np.uint8)
