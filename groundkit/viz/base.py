"""Shared helpers of the figure modules: colour constants, array coercion (tensors, images, maps, boxes),
NaN-aware resizing, display scaling and colour conversion."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from matplotlib import colors as mcolors
from PIL import Image

__all__ = [
    "DEFAULT_CMAP",
    "DPI",
    "GT_COLOR",
    "MASK_COLOR",
    "as_boxes",
    "as_numpy",
    "display_scale",
    "image01",
    "map2d",
    "resize",
    "resize_image",
    "rgb255",
    "value_range",
]

DEFAULT_CMAP = "inferno"
GT_COLOR = "#00ff00"
MASK_COLOR = "#00bfff"
DPI = 100


def as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def image01(image: Any) -> np.ndarray:
    """(H, W) or (H, W, 3) float32 in [0, 1]; RGBA drops alpha, (H, W, 1) is squeezed."""
    a = as_numpy(image)
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
    if np.issubdtype(as_numpy(image).dtype, np.integer) or lo < 0.0 or hi > 1.0:
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.where(finite, np.clip(a, 0.0, 1.0), 0.0).astype(np.float32)


def map2d(m: Any, name: str = "heatmap") -> np.ndarray:
    a = as_numpy(m).astype(np.float32)
    a = np.squeeze(a) if a.ndim > 2 else a
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W); got shape {as_numpy(m).shape}")
    return a


def as_boxes(boxes: Any) -> list[tuple[float, float, float, float]]:
    if boxes is None:
        return []
    arr = as_numpy(boxes).astype(float)
    if arr.size == 0:
        return []
    arr = arr.reshape(-1, 4) if arr.ndim == 1 else arr
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be [x, y, w, h] or a list of them; got shape {arr.shape}")
    return [tuple(map(float, b)) for b in arr]


def resize(a: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
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


def resize_image(img: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
    if img.shape[:2] == hw:
        return img
    if img.ndim == 2:
        return resize(img, hw, nearest)
    return np.stack([resize(img[..., c], hw, nearest) for c in range(3)], axis=-1)


def display_scale(h: int, w: int, max_side: int | None, min_side: int | None) -> float:
    side = max(h, w)
    if max_side and side > max_side:
        return max_side / side
    if min_side and side < min_side:
        return float(math.ceil(min_side / side))  # integer enlargement: pixels replicate exactly
    return 1.0


def rgb255(color: Any) -> np.ndarray:
    return np.array([round(c * 255) for c in mcolors.to_rgb(color)], dtype=np.uint8)


def value_range(heatmaps: Sequence[np.ndarray], vmin, vmax) -> tuple[float, float]:
    if vmin is not None and vmax is not None:
        return float(vmin), float(vmax)
    finite = [h[np.isfinite(h)] for h in heatmaps if h is not None]
    finite = [f for f in finite if f.size]
    lo = float(min(f.min() for f in finite)) if finite else 0.0
    hi = float(max(f.max() for f in finite)) if finite else 1.0
    return (lo if vmin is None else float(vmin)), (hi if vmax is None else float(vmax))
