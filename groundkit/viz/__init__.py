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

The package is split by concern: :mod:`groundkit.viz.base` (constants and array/colour/resize helpers),
:mod:`groundkit.viz.canvas` (headless figure plumbing), :mod:`groundkit.viz.overlay` (:func:`compose`,
:func:`overlay`), :mod:`groundkit.viz.grids` (:func:`token_grid`, :func:`gallery`) and
:mod:`groundkit.viz.plots` (:func:`ablation_heatmap`, :func:`category_bars`, :func:`curve`).
"""
from __future__ import annotations

from groundkit.viz.base import DEFAULT_CMAP, GT_COLOR, MASK_COLOR
from groundkit.viz.grids import gallery, token_grid
from groundkit.viz.overlay import compose, mark_sides, overlay, plot_grounding
from groundkit.viz.plots import ablation_heatmap, category_bars, curve

__all__ = [
    "DEFAULT_CMAP",
    "GT_COLOR",
    "MASK_COLOR",
    "ablation_heatmap",
    "category_bars",
    "compose",
    "curve",
    "gallery",
    "mark_sides",
    "overlay",
    "plot_grounding",
    "token_grid",
]
