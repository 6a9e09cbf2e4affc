"""Baselines scored like a model: a model-free map (:mod:`groundkit.evaluation.baselines`) through the recipe's
threshold (the engine's post-processing) and its protocol (evaluation), in the same crop geometry. It sits
here, above both, so that neither the engine nor evaluation imports the other."""
from __future__ import annotations

import numpy as np

from groundkit.core.geometry import Geometry
from groundkit.engine.heatmap import threshold
from groundkit.evaluation.baselines import KINDS, baseline_map
from groundkit.evaluation.protocols import get_protocol
from groundkit.recipes import Recipe

__all__ = ["KINDS", "baseline_map", "baseline_row"]


def baseline_row(kind: str, recipe: Recipe, geometry: Geometry, boxes) -> dict[str, float]:
    """The protocol's metric row for a baseline map, thresholded like the recipe's heatmaps. The uniform map
    predicts everything whatever the threshold (a constant map has no second mode to cut at)."""
    h = baseline_map(kind, geometry.size)
    out, mask = threshold(h, recipe)
    if kind == "uniform":
        mask = np.ones_like(mask)
    return get_protocol(recipe.protocol).evaluate(out, mask, geometry, boxes)
