"""Where the model's square input came from in the original image.

Both papers resize the short side to the model size and center-crop the long side. Maps live in
that square "crop space"; the Vilouras protocol maps them back to original pixels (NaN where the
crop cut), the Nuetzel protocol moves the boxes into crop space instead. One record serves both.
"""
from __future__ import annotations

from dataclasses import dataclass


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
