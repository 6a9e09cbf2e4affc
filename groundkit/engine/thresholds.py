"""The built-in thresholds (declared in :data:`groundkit.choices.THRESHOLDS`): a recipe's ``threshold`` field
names one. Each takes the min-maxed map ``h`` (crop space, [0, 1]) and the recipe, and returns the output map
and its bool mask; ``raw`` is the map before that min-max when BBM made one (values up to 1.5)."""
from __future__ import annotations

import numpy as np

from groundkit.engine import postprocess as pp
from groundkit.recipes import Recipe

__all__ = ["gmm", "multiotsu", "none", "otsu"]


def otsu(h: np.ndarray, recipe: Recipe, raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vilouras: the map kept where it exceeds skimage's ``threshold_otsu`` (continuous output)."""
    return pp.otsu(h, method="otsu")


def multiotsu(h: np.ndarray, recipe: Recipe, raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Otsu as the published Vilouras code computes it (``threshold_multiotsu(classes=2)``, which can land one
    histogram bin above ``threshold_otsu``)."""
    return pp.otsu(h, method="multiotsu")


def gmm(h: np.ndarray, recipe: Recipe, raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nuetzel: a 2-component GMM mask (+ 3x3 majority filter); the map itself is the output. As published,
    after BBM the mixture is fitted to the un-normalised merged map."""
    return h, pp.gmm(h if raw is None else raw, seed=recipe.seed, fp16=recipe.map_fp16)


def none(h: np.ndarray, recipe: Recipe, raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """No threshold: the map itself, and a documented mid-range mask (h >= 0.5)."""
    return h, h >= 0.5
