"""Model-free baselines: what a grounding score means only next to what no model gets.

A uniform map (predicts everything, CNR 0, AUROC 0.5) and a centre-prior Gaussian (findings in
chest X-rays cluster around the middle of the frame: a map that ignores image and phrase but knows
that already scores well on large central findings such as cardiomegaly). Both are evaluated through
the same threshold and protocol as a model's heatmap, in the same crop geometry.
"""
from __future__ import annotations

import numpy as np

from groundkit.core.geometry import Geometry
from groundkit.engine import heatmap as hm
from groundkit.evaluation.protocols import get_protocol
from groundkit.recipes import Recipe

KINDS = ("uniform", "centre")


def baseline_map(kind: str, size: int) -> np.ndarray:
    """A size x size map: constant ('uniform') or an isotropic Gaussian of std size/4 ('centre')."""
    if kind == "uniform":
        return np.ones((size, size))
    if kind != "centre":
        raise ValueError(f"baseline: expected one of {KINDS}, got {kind!r}")
    yy, xx = np.mgrid[:size, :size]
    c, s = (size - 1) / 2, size / 4
    return np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (2 * s * s))


def baseline_row(kind: str, recipe: Recipe, geometry: Geometry, boxes) -> dict[str, float]:
    """The protocol's metric row for a baseline map, thresholded like the recipe's heatmaps."""
    h = baseline_map(kind, geometry.size)
    out, mask = hm.threshold(h, recipe)
    if kind == "uniform" and recipe.threshold == "gmm":
        mask = np.ones_like(mask)  # a constant map has no second mode: it predicts everything
    return get_protocol(recipe.protocol).evaluate(out, mask, geometry, boxes)
