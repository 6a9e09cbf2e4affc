"""Model-free baseline maps: what a grounding score means only next to what no model gets.

A uniform map (predicts everything, CNR 0, AUROC 0.5) and a centre-prior Gaussian (findings in
chest X-rays cluster around the middle of the frame: a map that ignores image and phrase but knows
that already scores well on large central findings such as cardiomegaly). Scoring one like a model's
heatmap (the recipe's threshold, then its protocol) is the benchmark's job:
:func:`groundkit.bench.baselines.baseline_row`.
"""
from __future__ import annotations

import numpy as np

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
