"""Shared input validators: every public function of groundkit's numerics checks its arrays the same way
and names the argument and what was expected (as MONAI's metrics share their validators)."""
from __future__ import annotations

import numpy as np


def as_float(h, name: str = "h", ndim: int | None = 2, allow_nan: bool = True) -> np.ndarray:
    """Validate a real-valued map and return it as float64 (a copy is made only when needed)."""
    a = np.asarray(h)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name}: expected a real-valued (float or int) array, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    if np.isinf(a).any():
        raise ValueError(f"{name}: contains +-inf (only NaN is allowed, for pixels outside the view)")
    if not allow_nan and np.isnan(a).any():
        raise ValueError(f"{name}: contains NaN, which this operation cannot handle")
    return a


def finite_values(a: np.ndarray, name: str) -> np.ndarray:
    v = a[np.isfinite(a)]
    if v.size == 0:
        raise ValueError(f"{name}: no finite pixels (map is NaN everywhere)")
    return v
