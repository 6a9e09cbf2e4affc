"""Image I/O for groundkit: every input becomes a float32 (H, W) array in [0, 1].

Orientation is preserved exactly: row 0 is the top row of the image as stored, column 0 its left
column (no transposes, no EXIF rotation, no flips).  (MONAI's PIL reader transposes 2-D images and
is deliberately not used.)

Intensity rules (kept simple on purpose):

* integer data (PNG/JPEG/TIFF, integer numpy arrays / tensors) is divided by the maximum of its
  storage type: 8-bit / 255, 16-bit / 65535 (signed types: negative values clip to 0).  Pillow
  opens some 16-bit grayscale PNGs in its 32-bit ``I`` mode; those are treated as 16-bit.
* boolean data maps to {0, 1}.
* float data is returned unchanged if it already lies in [0, 1], otherwise it is min-max scaled
  (a constant image becomes all zeros).  Non-finite values are an error.
* DICOM: RescaleSlope / RescaleIntercept are applied, then the image is min-max scaled to [0, 1]
  and MONOCHROME1 (white = low values) is inverted so that dense structures are bright.
* colour: RGB / RGBA (and 3- or 4-channel arrays) are reduced to the ITU-R BT.601 luma
  ``0.299 R + 0.587 G + 0.114 B`` (what Pillow's ``convert("L")`` uses), alpha is ignored;
  two-channel gray+alpha (``LA``) keeps the gray channel; palette images are expanded first.

Accepted array layouts: numpy 2-D (H, W) or 3-D channel-last (H, W, C) with C in {1, 3, 4};
torch tensors 2-D, 3-D channel-first (C, H, W) (or channel-last when the first axis is not a
channel count), or 4-D with a leading batch of 1.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ImageTooLargeError", "MAX_IMAGE_PIXELS", "load_image", "max_image_pixels", "save_png", "to_gray01"]

# The most pixels (width x height x frames x samples) an image file may declare; checked from its header before
# anything is decoded (PNG, JPEG, TIFF, BMP ... and DICOM), so a small "decompression bomb" cannot fill memory.
# The largest chest radiographs are ~4300 x 4300 (18.5 M); GROUNDKIT_MAX_IMAGE_PIXELS changes the limit.
MAX_IMAGE_PIXELS = 40_000_000


def max_image_pixels() -> int:
    raw = os.environ.get("GROUNDKIT_MAX_IMAGE_PIXELS", "").strip()
    if raw:
        try:
            value = int(raw)
            if value > 0:
                return value
        except ValueError:
            pass
        raise ValueError(f"GROUNDKIT_MAX_IMAGE_PIXELS={raw[:40]!r}: expected a positive integer (pixels)")
    return MAX_IMAGE_PIXELS


class ImageTooLargeError(ValueError):
    """An image file's header declares more pixels than :func:`max_image_pixels`."""


def _check_pixels(path: Path, dims: str, n: int) -> None:
    limit = max_image_pixels()
    if n > limit:
        raise ImageTooLargeError(f"cannot read image file {path}: its header declares {dims} = {n} pixels, more than the limit of "
                         f"{limit} pixels (a decompression bomb or a damaged header; set GROUNDKIT_MAX_IMAGE_PIXELS to "
                         "raise the limit for a genuine image)")

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)
_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}


def _scale_to_unit(a: np.ndarray, what: str) -> np.ndarray:
    """Apply the module's intensity rules to a 2-D array."""
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        out = np.clip(a.astype(np.float64), 0, None) / float(info.max)
        return out.astype(np.float32)
    if np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what}: image contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:
            return a.astype(np.float32)
        if hi - lo <= 0:
            return np.zeros(a.shape, np.float32)
        return ((a - lo) / (hi - lo)).astype(np.float32)
    raise ValueError(f"{what}: unsupported data type {a.dtype}")


def _minmax(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi - lo <= 0:
        return np.zeros(a.shape, np.float32)
    return ((a - lo) / (hi - lo)).astype(np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of the first three channels, keeping the integer scale of the input dtype."""
    y = rgb[..., :3].astype(np.float64) @ _LUMA
    if np.issubdtype(rgb.dtype, np.integer):
        info = np.iinfo(rgb.dtype)
        return np.clip(np.rint(y), max(info.min, 0), info.max).astype(rgb.dtype)
    return y


def to_gray01(array: Any, what: str = "array") -> np.ndarray:
    """Convert a numpy array or torch tensor to float32 (H, W) in [0, 1] (see module doc)."""
    is_torch = False
    try:  # torch is optional here
        import torch

        if isinstance(array, torch.Tensor):
            is_torch = True
            array = array.detach().cpu()
            if array.dtype == torch.bfloat16 or array.dtype == torch.float16:
                array = array.float()
            array = array.numpy()
    except ImportError:  # pragma: no cover
        pass
    a = np.asarray(array)
    if a.dtype == object:
        raise ValueError(f"{what}: expected a numeric 2-D image, got an object array")
    if is_torch:
        if a.ndim == 4 and a.shape[0] == 1:
            a = a[0]
        if a.ndim == 3 and a.shape[0] in (1, 2, 3, 4) and a.shape[-1] not in (1, 2, 3, 4):
            a = np.moveaxis(a, 0, -1)  # (C, H, W) -> (H, W, C)
    if a.ndim == 3:
        c = a.shape[-1]
        if c == 1:
            a = a[..., 0]
        elif c == 2:
            a = a[..., 0]
        elif c in (3, 4):
            a = _luma(a)
        else:
            raise ValueError(f"{what}: expected (H, W) or channel-last (H, W, C) with C in "
                             f"{{1, 3, 4}}, got shape {a.shape}")
    if a.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D (H, W) image or a 3-D channel-last image, "
                         f"got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{what}: empty image of shape {a.shape}")
    return np.ascontiguousarray(_scale_to_unit(a, what))


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in _DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def _dicom_header(path: Path) -> None:
    """Rows x Columns x frames x samples from the header alone (no pixel data read), against the pixel limit."""
    try:
        import pydicom

        head = pydicom.dcmread(str(path), stop_before_pixels=True)
        dims = [int(getattr(head, key, default) or default)
                for key, default in (("Rows", 0), ("Columns", 0), ("NumberOfFrames", 1), ("SamplesPerPixel", 1))]
    except ImageTooLargeError:
        raise
    except Exception as exc:
        raise ValueError(f"cannot read DICOM file {path}: {exc}") from exc
    rows, cols, frames, samples = dims
    if min(dims) < 0:
        raise ValueError(f"cannot read DICOM file {path}: negative size in its header ({rows} x {cols})")
    _check_pixels(path, f"{rows} x {cols}" + (f" x {frames} frames" if frames > 1 else "")
                  + (f" x {samples} samples" if samples > 1 else ""), rows * cols * frames * samples)


def _load_dicom(path: Path) -> np.ndarray:
    _dicom_header(path)
    try:
        import pydicom

        ds = pydicom.dcmread(str(path))
        px = ds.pixel_array
    except Exception as exc:
        raise ValueError(f"cannot read DICOM file {path}: {exc}") from exc
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames > 1:
        if px.shape[0] != 1:
            raise ValueError(f"{path}: multi-frame DICOM ({frames} frames) is not supported; "
                             "expected a single 2-D image")
        px = px[0]
    if samples > 1:
        if px.ndim != 3:
            raise ValueError(f"{path}: unexpected DICOM pixel array shape {px.shape}")
        px = _luma(px) if px.shape[-1] >= 3 else px[..., 0]
    if px.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D DICOM image, got pixel array shape {px.shape}")
    a = px.astype(np.float64)
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    a = a * slope + intercept
    out = _minmax(a)
    if photometric == "MONOCHROME1":
        out = (1.0 - out).astype(np.float32)
    return out


def _load_raster(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size  # from the header: nothing is decoded before this check
            _check_pixels(path, f"{w} x {h}", int(w) * int(h))
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                mode = im.mode
            elif mode == "PA":
                im = im.convert("RGBA")
                mode = "RGBA"
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
                mode = "RGB"
            arr = np.array(im)
    except ImageTooLargeError:
        raise
    except Image.DecompressionBombError:  # Pillow's own check in open(): more than 2 x Image.MAX_IMAGE_PIXELS
        raise ImageTooLargeError(f"cannot read image file {path}: its header declares more than {2 * Image.MAX_IMAGE_PIXELS} "
                                 f"pixels, more than the limit of {max_image_pixels()} pixels (a decompression bomb or a "
                                 "damaged header)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read image file {path}: {exc}") from exc
    if mode == "I" or arr.dtype == np.int32:
        # 32-bit integer mode: Pillow uses it for some 16-bit grayscale PNG/TIFF files.
        if arr.size and arr.min() >= 0 and arr.max() <= 65535:
            arr = arr.astype(np.uint16)
        else:
            return _minmax(arr)
    if mode == "1":
        arr = arr.astype(bool)
    if mode.startswith("I;16"):
        arr = arr.astype(np.uint16)
    return to_gray01(arr, what=str(path))


def load_image(path_or_array: Any) -> np.ndarray:
    """Load an image as float32 (H, W) in [0, 1], orientation exactly as stored.

    ``path_or_array``: a path (PNG, JPEG, TIFF, BMP, ... via Pillow; DICOM via pydicom, detected by
    suffix .dcm/.dicom or the ``DICM`` preamble), a numpy array or a torch tensor.
    Raises FileNotFoundError for a missing file and ValueError for unreadable files or
    unsupported shapes (the message names the file and what was expected).
    """
    if isinstance(path_or_array, (str, Path)):
        path = Path(path_or_array)
        if not path.exists():
            raise FileNotFoundError(f"image file not found: {path}")
        if path.is_dir():
            raise ValueError(f"expected an image file, got a directory: {path}")
        if _is_dicom(path):
            return _load_dicom(path)
        return _load_raster(path)
    return to_gray01(path_or_array, what=f"{type(path_or_array).__name__} input")


def save_png(path: str | Path, array01: Any, bits: int = 8, root: str | Path | None = None) -> Path:
    """Write a 2-D image with values in [0, 1] as an 8- or 16-bit grayscale PNG.

    Values are clipped to [0, 1] and rounded (x * 255 or x * 65535).  Parent directories are
    created.  Non-finite values and non-2-D inputs raise ValueError.  Written through the output-folder
    writer (``groundkit.core.outdir``: never through a symbolic link, never outside ``root``, the
    output folder; default: the file's own folder).  Returns the path.
    """
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    path = Path(path)
    try:
        import torch

        if isinstance(array01, torch.Tensor):
            array01 = array01.detach().cpu().float().numpy()
    except ImportError:  # pragma: no cover
        pass
    a = np.asarray(array01)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"save_png({path}): expected a 2-D (H, W) array, got shape {a.shape}")
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        a = _scale_to_unit(a, str(path))
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"save_png({path}): array contains NaN or infinite values")
    a = np.clip(a, 0.0, 1.0)
    from groundkit.core.outdir import make_dirs, write_png

    if root is not None:
        make_dirs(path.parent, root)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    return write_png(path, np.rint(a * 255.0).astype(np.uint8) if bits == 8 else np.rint(a * 65535.0).astype(np.uint16), root)
