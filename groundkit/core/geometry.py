"""Where the model's square input came from in the original image.

Both papers resize the short side to the model size and center-crop the long side. Maps live in
that square "crop space"; the Vilouras protocol maps them back to original pixels (NaN where the
crop cut), the Nuetzel protocol moves the boxes into crop space instead. One record serves both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from groundkit.core.checks import as_float


@dataclass(frozen=True)
class Geometry:
    orig_h: int
    orig_w: int
    size: int  # side of the square model input (crop space), e.g. 512

    @property
    def short(self) -> int:
        return min(self.orig_h, self.orig_w)

    @property
    def scale(self) -> float:
        """Crop-space pixels per original pixel."""
        return self.size / self.short

    @property
    def resized_hw(self) -> tuple[int, int]:
        """Image size after the short-side resize, before the crop: the long side is truncated,
        int(size * long / short), as torchvision's Resize(size) in both papers' pipelines."""
        if self.orig_h <= self.orig_w:
            return (self.size, int(self.size * self.orig_w / self.orig_h))
        return (int(self.size * self.orig_h / self.orig_w), self.size)

    @property
    def crop_offset(self) -> tuple[int, int]:
        """(top, left) of the center crop in resized pixels, rounded down (MONAI's center crop;
        torchvision's CenterCrop rounds half to even and can differ by one pixel)."""
        rh, rw = self.resized_hw
        return ((rh - self.size) // 2, (rw - self.size) // 2)

    @property
    def pad(self) -> tuple[int, int, int, int]:
        """NaN padding (top, bottom, left, right) in ORIGINAL pixels that inverts the crop."""
        dh, dw = self.orig_h - self.short, self.orig_w - self.short
        return (dh // 2, dh - dh // 2, dw // 2, dw - dw // 2)

    def box_to_crop(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float] | None:
        """Map an [x, y, w, h] box from original pixels into crop space; None if the crop removes it."""
        x, y, w, h = box
        top, left = self.crop_offset
        x0, y0 = x * self.scale - left, y * self.scale - top
        x1, y1 = x0 + w * self.scale, y0 + h * self.scale
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(self.size), x1), min(float(self.size), y1)
        if x1 <= x0 or y1 <= y0:
            return None
        return (x0, y0, x1 - x0, y1 - y0)


# --------------------------------------------------------------------------------------------
# forward: short-side resize + center crop
def square_crop(image: torch.Tensor, size: int) -> tuple[torch.Tensor, Geometry]:
    """(H, W) float image -> (1, 1, size, size): short side resized (bilinear, no antialias, as both
    papers' transforms do), then center-cropped. The Geometry inverts it."""
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {tuple(image.shape)}")
    geo = Geometry(int(image.shape[0]), int(image.shape[1]), size)
    x = image[None, None].float()
    rh, rw = geo.resized_hw
    if (rh, rw) != tuple(image.shape):
        x = torch.nn.functional.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False)
    top, left = geo.crop_offset
    return x[:, :, top : top + size, left : left + size].contiguous(), geo


# --------------------------------------------------------------------------------------------
# resizing and the inverse of resize + center crop
# --------------------------------------------------------------------------------------------
def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output index for torch ``interpolate(mode="nearest")`` (CPU).

    src = min(floor(dst * scale), in - 1) with scale = in / out, all in float32 as torch computes
    it for float32 tensors (the published maps are float32), including the rare rounding cases
    (e.g. 6 -> 3056, dst 1528: float32 gives 2 where exact arithmetic gives 3). torch's float64
    kernel computes in double and can differ there by one pixel.
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"nearest_indices: sizes must be >= 1, got {in_size}, {out_size}")
    if in_size == out_size:
        return np.arange(out_size)
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def resize(h, out_size, mode: str = "bilinear") -> np.ndarray:
    """Resize a 2-D map like ``torch.nn.functional.interpolate`` (bilinear: align_corners=False,
    no antialias; nearest: legacy "nearest"). out_size: int (square) or (height, width).
    """
    if isinstance(out_size, (int, np.integer)):
        out_hw = (int(out_size), int(out_size))
    else:
        out_hw = tuple(int(s) for s in out_size)
        if len(out_hw) != 2:
            raise ValueError(f"resize: out_size must be an int or (height, width), got {out_size!r}")
    if min(out_hw) < 1:
        raise ValueError(f"resize: out_size must be positive, got {out_hw}")
    if mode == "nearest":
        m = np.asarray(h)
        if m.ndim != 2:
            raise ValueError(f"resize: expected a 2-D array, got shape {m.shape}")
        rows = nearest_indices(m.shape[0], out_hw[0])
        cols = nearest_indices(m.shape[1], out_hw[1])
        return m[rows[:, None], cols[None, :]]
    if mode != "bilinear":
        raise ValueError(f"resize: mode must be 'bilinear' or 'nearest', got {mode!r}")
    import torch
    import torch.nn.functional as F

    a = as_float(h)
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    out = F.interpolate(t, size=out_hw, mode="bilinear", align_corners=False, antialias=False)
    return out[0, 0].numpy().copy()


def _check_crop_map(h: np.ndarray, geometry: Geometry) -> None:
    if not isinstance(geometry, Geometry):
        raise ValueError(f"geometry: expected a groundkit.core.geometry.Geometry, got {type(geometry).__name__}")
    if h.shape != (geometry.size, geometry.size):
        raise ValueError(f"map shape {h.shape} does not match the crop size {geometry.size}x{geometry.size}")


def to_original(h, geometry: Geometry) -> np.ndarray:
    """Map a crop-space map back to original pixels, NaN where the center crop cut the image.

    Nearest-resize (torch semantics) the size x size map to short x short, then pad with NaN by
    ``geometry.pad`` to (orig_h, orig_w) -- the Vilouras evaluation. Bool masks go through
    ``mask_to_original`` (False in the padding) and come back bool.
    """
    m = np.asarray(h)
    if m.dtype == bool:
        return mask_to_original(m, geometry)
    a = as_float(m)
    _check_crop_map(a, geometry)
    short = geometry.short
    top, bottom, left, right = geometry.pad
    out = np.full((geometry.orig_h, geometry.orig_w), np.nan)
    out[top:top + short, left:left + short] = resize(a, short, mode="nearest")
    return out


def mask_to_original(mask, geometry: Geometry) -> np.ndarray:
    """``to_original`` for a bool mask: nearest resize, False where the crop cut the image."""
    m = np.asarray(mask)
    if m.dtype != bool or m.ndim != 2:
        raise ValueError(f"mask: expected a 2-D bool array, got dtype {m.dtype} shape {m.shape}")
    _check_crop_map(m, geometry)
    short = geometry.short
    top, bottom, left, right = geometry.pad
    out = np.zeros((geometry.orig_h, geometry.orig_w), dtype=bool)
    out[top:top + short, left:left + short] = resize(m, short, mode="nearest")
    return out
