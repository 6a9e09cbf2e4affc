"""Headless figure plumbing: Agg-backed ``Figure`` creation, rendering to a PIL image (and PNG), caption
wrapping, colorbars and legend handles; pyplot and GUI backends are never touched."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from groundkit.core.outdir import write_png
from groundkit.viz.base import DPI

__all__ = ["add_colorbar", "legend_handles", "new_figure", "render", "wrap_text"]


def new_figure(w_px: int, h_px: int, layout: str | None = None) -> Figure:
    fig = Figure(figsize=(w_px / DPI, h_px / DPI), dpi=DPI, facecolor="white", layout=layout)
    FigureCanvasAgg(fig)
    return fig


def render(fig: Figure, path: str | Path | None) -> Image.Image:
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    img = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy(), mode="RGB")
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_png(p, img)  # temporary file + replace; never through a symbolic link
    return img


def wrap_text(text: str | None, width_px: float, fontsize: float) -> str:
    if not text:
        return ""
    chars = max(12, int(width_px / (0.6 * fontsize * DPI / 72)))
    return "\n".join(textwrap.wrap(str(text), chars)) or str(text)


def add_colorbar(fig: Figure, cax, cmap: str, vmin: float, vmax: float, label: str | None):
    sm = ScalarMappable(norm=mcolors.Normalize(vmin=vmin, vmax=vmax), cmap=cmap)
    cb = fig.colorbar(sm, cax=cax)
    cb.ax.tick_params(labelsize=8)
    if label:
        cb.set_label(label, fontsize=9)
    return cb


def legend_handles(has_mask: bool, has_boxes: bool, gt_color, mask_color):
    handles = []
    if has_boxes:
        handles.append(Patch(facecolor="none", edgecolor=gt_color, linewidth=2, label="ground truth"))
    if has_mask:
        handles.append(Patch(facecolor="none", edgecolor=mask_color, linewidth=2, label="predicted mask"))
    return handles
