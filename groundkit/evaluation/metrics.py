"""Phrase-grounding metrics on one heatmap (docs/protocols.md §6).

Conventions, shared by every function here:

- ``boxes`` is a non-empty sequence of (x, y, w, h) in the heatmap's own pixel grid; the target is
  the union of the boxes. A box covers rows ``y:y+h`` and columns ``x:x+w`` after each edge is
  rounded by ``box_bounds`` (Python ``round``: nearest integer, halves to even), so integer boxes
  are used exactly as published and float boxes (e.g. boxes moved into crop space) are rasterised
  the same way everywhere. A box that leaves the image after rounding is an error.
- NaN pixels lie outside the field of view (the part the center crop cut). They are never
  predicted positive, they are left out of every statistic (CNR means/variances, exact AUROC,
  argmax), but target pixels inside the NaN area still count in the IoU target, as published.
- IoU of two empty sets is 0 (sklearn ``jaccard_score``'s default, used by Nuetzel).
- Every metric returns a finite Python float; undefined cases get a documented value (CNR 0,
  AUROC 0.5, top-1 0) so that means over samples never turn NaN.
- Bad input (not 2-D, wrong dtype, shape mismatch, box outside the image) raises ValueError.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "box_bounds",
    "box_mask",
    "iou",
    "miou_thresholds",
    "miou_fgbg",
    "cnr",
    "cnr_values",
    "auroc",
    "auroc_binned",
    "top1",
]


# --------------------------------------------------------------------------------------------
# input checks and box rasterisation
# --------------------------------------------------------------------------------------------
def _heatmap(h, name: str = "heatmap") -> np.ndarray:
    a = np.asarray(h)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name}: expected a real-valued (float or int) array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    if np.isinf(a).any():
        raise ValueError(f"{name}: contains +-inf (only NaN is allowed, for pixels outside the view)")
    return a


def _mask(m, name: str = "mask") -> np.ndarray:
    a = np.asarray(m)
    if a.dtype != bool:
        raise ValueError(f"{name}: expected a bool array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {a.shape}")
    return a


def _box_list(boxes) -> list[tuple[float, float, float, float]]:
    if isinstance(boxes, np.ndarray):
        boxes = boxes.tolist()
    if not isinstance(boxes, Sequence) or isinstance(boxes, (str, bytes)):
        raise ValueError(f"boxes: expected a sequence of (x, y, w, h), got {type(boxes).__name__}")
    if len(boxes) == 0:
        raise ValueError("boxes: at least one box is needed to define a target")
    out = []
    for i, b in enumerate(boxes):
        try:
            vals = tuple(float(v) for v in b)
        except (TypeError, ValueError):
            raise ValueError(f"boxes[{i}]: expected 4 numbers (x, y, w, h), got {b!r}") from None
        if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
            raise ValueError(f"boxes[{i}]: expected 4 finite numbers (x, y, w, h), got {b!r}")
        if vals[2] < 0 or vals[3] < 0:
            raise ValueError(f"boxes[{i}]: negative width or height in {b!r}")
        out.append(vals)
    return out


def box_bounds(box, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer (row0, row1, col0, col1) of an (x, y, w, h) box: round(y), round(y+h), round(x),
    round(x+w). The one place where boxes are rasterised; raises if it leaves the image."""
    (x, y, w, h), = _box_list([box])
    H, W = int(shape[0]), int(shape[1])
    r0, r1, c0, c1 = int(round(y)), int(round(y + h)), int(round(x)), int(round(x + w))
    if r0 < 0 or c0 < 0 or r1 > H or c1 > W:
        raise ValueError(
            f"box (x={x:g}, y={y:g}, w={w:g}, h={h:g}) -> rows {r0}:{r1}, cols {c0}:{c1} "
            f"lies outside the {H}x{W} image")
    return r0, r1, c0, c1


def _bounds_all(boxes, shape) -> list[tuple[int, int, int, int]]:
    out = []
    for i, b in enumerate(_box_list(boxes)):
        try:
            out.append(box_bounds(b, shape))
        except ValueError as e:
            raise ValueError(f"boxes[{i}]: {e}") from None
    return out


def box_mask(shape: tuple[int, int], boxes) -> np.ndarray:
    """Bool target mask of the given (H, W) shape: the union of the boxes (see ``box_bounds``)."""
    if len(shape) != 2:
        raise ValueError(f"box_mask: shape must be (H, W), got {shape!r}")
    t = np.zeros((int(shape[0]), int(shape[1])), dtype=bool)
    for r0, r1, c0, c1 in _bounds_all(boxes, shape):
        t[r0:r1, c0:c1] = True
    return t


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    if union == 0:
        return 0.0
    return np.count_nonzero(a & b) / union


# --------------------------------------------------------------------------------------------
# overlap metrics
# --------------------------------------------------------------------------------------------
def iou(mask, boxes) -> float:
    """IoU of a predicted bool mask with the union of the boxes (0 when both are empty)."""
    m = _mask(mask)
    return float(_iou(m, box_mask(m.shape, boxes)))


def miou_thresholds(h, boxes, thresholds: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5)) -> float:
    """Vilouras' mIoU: mean over t of IoU(h > t, target); NaN pixels are predicted negative."""
    a = _heatmap(h)
    if len(thresholds) == 0:
        raise ValueError("miou_thresholds: thresholds must not be empty")
    t = box_mask(a.shape, boxes)
    with np.errstate(invalid="ignore"):
        return float(np.mean([_iou(a > thr, t) for thr in thresholds]))


def miou_fgbg(mask, boxes) -> float:
    """Nuetzel's mIoU: mean of the foreground IoU(mask, target) and background IoU(~mask, ~target)."""
    m = _mask(mask)
    t = box_mask(m.shape, boxes)
    return float((_iou(m, t) + _iou(~m, ~t)) / 2.0)


# --------------------------------------------------------------------------------------------
# contrast-to-noise ratio
# --------------------------------------------------------------------------------------------
class _Moments:
    """Count, sum and sum of squares of values shifted by a common centre ``c``.

    Outside-the-box statistics are the whole map's moments minus the box's, so each box costs its
    own area instead of a pass over the (often ~8 Mpixel) original-size map. Shifting by the map's
    mean keeps the one-pass variance free of cancellation.
    """

    __slots__ = ("n", "s1", "s2")

    def __init__(self, n=0, s1=0.0, s2=0.0):
        self.n, self.s1, self.s2 = n, s1, s2

    @classmethod
    def of(cls, values: np.ndarray, c: float) -> _Moments:
        d = values - c
        return cls(int(d.size), float(d.sum()), float(np.dot(d, d)))

    def __sub__(self, o: _Moments) -> _Moments:
        return _Moments(self.n - o.n, self.s1 - o.s1, self.s2 - o.s2)

    def mean_var(self, ddof: int) -> tuple[float, float]:
        mean = self.s1 / self.n
        return mean, max(0.0, self.s2 - self.s1 * mean) / (self.n - ddof)


def _cnr_value(inside: _Moments, outside: _Moments, ddof: int, scale: float) -> float:
    """(mean_in - mean_out) / sqrt(var_in + var_out) on finite values; undefined -> 0.

    Undefined = an empty side, too few values for the variance, or zero total variance. Vilouras
    map NaN to 0; zero variance with a non-zero contrast (+-inf) is also mapped to 0 here, where
    their ``nan_to_num`` would give float32's maximum. "Zero" means below 1e-12 of the map's
    largest |value| (``scale``): rounding leaves a constant map a variance of a few ulp, and the
    ratio would otherwise be an arbitrary O(1) number.
    """
    if inside.n <= ddof or outside.n <= ddof:
        return 0.0
    m_in, v_in = inside.mean_var(ddof)
    m_out, v_out = outside.mean_var(ddof)
    noise = math.sqrt(v_in + v_out)
    if noise <= 1e-12 * scale:
        return 0.0
    return float((m_in - m_out) / noise)


def cnr(h, boxes, absolute: bool = False, variance: str = "population", per_box: bool = True) -> float:
    """Contrast-to-noise ratio of the map inside vs outside the target (NaN pixels excluded).

    per_box=True (Vilouras): for each box in order, inside = its non-NaN pixels, outside = every
    other non-NaN pixel still left; the box's pixels are then set to NaN before the next box
    (cumulative masking), and the mean over boxes is returned. per_box=False (Nuetzel): one CNR of
    the union of the boxes vs the rest. ``variance``: "population" (ddof 0, Vilouras) or
    "unbiased" (ddof 1, Nuetzel / torch ``var()``). ``absolute`` takes |CNR| per box.
    """
    vals = cnr_values(h, boxes, variance=variance, per_box=per_box)
    return float(np.mean(np.abs(vals) if absolute else vals))


def cnr_values(h, boxes, variance: str = "population", per_box: bool = True) -> list[float]:
    """The signed CNR of each box (per_box=True, cumulative masking) or of the union (a 1-list).

    ``cnr`` averages these; exposed so that a protocol reporting both |CNR| and CNR makes one pass.
    """
    a = _heatmap(h)
    if variance not in ("population", "unbiased"):
        raise ValueError(f"cnr: variance must be 'population' or 'unbiased', got {variance!r}")
    ddof = 0 if variance == "population" else 1
    bounds = _bounds_all(boxes, a.shape)
    fin = ~np.isnan(a)
    if not fin.any():
        return [0.0] * (len(bounds) if per_box else 1)
    vals = a[fin]
    c = float(vals.mean())
    scale = float(np.abs(vals).max())
    total = _Moments.of(vals, c)
    if not per_box:
        t = box_mask(a.shape, boxes)
        inside = _Moments.of(a[t & fin], c)
        return [_cnr_value(inside, total - inside, ddof, scale)]
    work = a.copy()
    out = []
    for r0, r1, c0, c1 in bounds:
        region = work[r0:r1, c0:c1]
        inside = _Moments.of(region[~np.isnan(region)], c)
        out.append(_cnr_value(inside, total - inside, ddof, scale))
        total = total - inside
        region[...] = np.nan  # cumulative masking: a view into ``work``
    return out


# --------------------------------------------------------------------------------------------
# ROC AUC
# --------------------------------------------------------------------------------------------
def auroc(h, boxes) -> float:
    """Exact pixel ROC AUC (sklearn ``roc_auc_score`` semantics: ties count one half).

    Computed as the Mann-Whitney statistic with average ranks. NaN pixels are excluded. When the
    remaining pixels hold only one class the AUC is undefined (sklearn raises): 0.5 is returned.
    """
    a = _heatmap(h)
    t = box_mask(a.shape, boxes)
    fin = ~np.isnan(a)
    scores, labels = a[fin], t[fin]
    n_pos = int(np.count_nonzero(labels))
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = rankdata(scores, method="average")
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auroc_binned(h, boxes, n_thresholds: int = 5) -> float:
    """Binned ROC AUC with torcheval ``binary_binned_auroc(threshold=n)`` semantics (Vilouras).

    Thresholds linspace(0, 1, n); a pixel is predicted positive at t when h >= t (NaN never is).
    TP/FP counts per threshold, from the highest threshold down, with (0, 0) prepended, are
    integrated with the trapezoid rule and divided by TP * FP at the lowest threshold (0). So
    the curve is normalised by the pixels with h >= 0: for maps in [0, 1] that is every non-NaN
    pixel, i.e. NaN pixels drop out exactly as in the published evaluation. 0.5 when that
    normaliser is 0 (a class is empty).
    """
    a = _heatmap(h)
    n = int(n_thresholds)
    if n < 2:
        raise ValueError(f"auroc_binned: n_thresholds must be >= 2, got {n_thresholds!r}")
    t = box_mask(a.shape, boxes)
    thr = np.linspace(0.0, 1.0, n)[::-1]
    with np.errstate(invalid="ignore"):
        pred = a[None, :, :] >= thr[:, None, None]
    tp = np.concatenate([[0], np.count_nonzero(pred & t, axis=(1, 2))]).astype(np.float64)
    fp = np.concatenate([[0], np.count_nonzero(pred & ~t, axis=(1, 2))]).astype(np.float64)
    factor = tp[-1] * fp[-1]
    if factor == 0:
        return 0.5
    area = float(np.sum((fp[1:] - fp[:-1]) * (tp[1:] + tp[:-1]) / 2.0))
    return float(area / factor)


# --------------------------------------------------------------------------------------------
# pointing game
# --------------------------------------------------------------------------------------------
def top1(h, boxes) -> float:
    """1.0 if the map's maximum (first in row-major order on ties; NaN ignored) is in the target,
    else 0.0 (also 0.0 for a map that is NaN everywhere)."""
    a = _heatmap(h)
    t = box_mask(a.shape, boxes)
    if np.isnan(a).all():
        return 0.0
    r, c = np.unravel_index(int(np.nanargmax(a)), a.shape)
    return 1.0 if t[r, c] else 0.0
