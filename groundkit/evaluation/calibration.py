"""Fitting a confidence calibration, and how to judge a confidence (docs/confidence.md).

The model: logistic regression (scikit-learn, L2, C=1) on the standardised signals, predicting whether the
returned mask's IoU with the true boxes is >= 0.3. What is stored is plain numbers (means, scales,
coefficients), applied by groundkit.engine.confidence without scikit-learn. The judges: Spearman correlation
with IoU, the area under the risk-coverage curve (risk = 1 - IoU), and the 10-bin expected calibration error.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from groundkit.evaluation import metrics as M
from groundkit.evaluation.protocols import split_boxes_by_crop

IOU_THRESHOLD = 0.3


def mask_iou(grounding, boxes) -> float:
    """IoU of a grounding's returned mask (crop space, before any abstention) with the union of the boxes that
    survive the crop; NaN when the crop removed every box."""
    _, crop = split_boxes_by_crop(boxes, grounding.geometry)
    return M.iou(grounding.mask_crop, crop) if crop else float("nan")


def feature_names(rows: Sequence[Mapping[str, float]]) -> list[str]:
    """Signals present in every row and not constant (a constant one carries nothing)."""
    names = sorted(set.intersection(*(set(r) for r in rows))) if rows else []
    return [n for n in names if np.ptp([float(r[n]) for r in rows]) > 1e-12]


def fit_logistic(signals: Sequence[Mapping[str, float]], ious: Sequence[float], threshold: float = IOU_THRESHOLD,
                 C: float = 1.0) -> dict:
    """The stored model: {"kind", "features", "mean", "scale", "coef", "intercept", "threshold"}."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(ious, float) >= threshold
    if y.all() or not y.any():
        raise ValueError(f"calibration needs groundings on both sides of IoU {threshold} (got {int(y.sum())} of {len(y)} above)")
    feats = feature_names(signals)
    x = np.array([[float(r[f]) for f in feats] for r in signals])
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=C, max_iter=2000).fit((x - mean) / scale, y)
    return {"kind": "logistic", "features": feats, "mean": mean.tolist(), "scale": scale.tolist(),
            "coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0]), "threshold": threshold, "C": C}


# ------------------------------------------------------------------ judging a confidence
def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def risk_coverage(confidence: Sequence[float], iou: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk): keeping the k most confident, risk = mean(1 - IoU) of those, for k = 1..n."""
    c, i = np.asarray(confidence, float), np.asarray(iou, float)
    order = np.argsort(-c, kind="stable")
    risk = np.cumsum(1.0 - i[order]) / np.arange(1, len(i) + 1)
    return np.arange(1, len(i) + 1) / len(i), risk


def aurc(confidence: Sequence[float], iou: Sequence[float]) -> float:
    """Area under the risk-coverage curve (mean risk over coverages; lower is better)."""
    return float(risk_coverage(confidence, iou)[1].mean())


def aurc_random(iou: Sequence[float]) -> float:
    """Expected AURC of a random confidence: the risk at every coverage is the overall mean risk."""
    return float(np.mean(1.0 - np.asarray(iou, float)))


def aurc_oracle(iou: Sequence[float]) -> float:
    """AURC of the ideal ordering (by IoU itself)."""
    return aurc(iou, iou)


def top_fraction_mean(confidence: Sequence[float], iou: Sequence[float], fraction: float = 0.5) -> float:
    c, i = np.asarray(confidence, float), np.asarray(iou, float)
    k = max(1, int(round(fraction * len(i))))
    return float(i[np.argsort(-c, kind="stable")[:k]].mean())


def ece(confidence: Sequence[float], hit: Sequence[bool], bins: int = 10) -> float:
    """Expected calibration error over equal-width bins: sum of |mean confidence - hit rate| weighted by bin size."""
    c, h = np.asarray(confidence, float), np.asarray(hit, float)
    idx = np.minimum((c * bins).astype(int), bins - 1)
    return float(sum(abs(c[idx == b].mean() - h[idx == b].mean()) * np.mean(idx == b) for b in range(bins) if (idx == b).any()))


def reliability(confidence: Sequence[float], hit: Sequence[bool], bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean confidence, hit rate, count) per non-empty bin: the reliability diagram's points."""
    c, h = np.asarray(confidence, float), np.asarray(hit, float)
    idx = np.minimum((c * bins).astype(int), bins - 1)
    return [(float(c[idx == b].mean()), float(h[idx == b].mean()), int((idx == b).sum())) for b in range(bins) if (idx == b).any()]


def summary(confidence: Sequence[float], iou: Sequence[float], threshold: float = IOU_THRESHOLD) -> dict[str, float]:
    """Every judge of one confidence on one labelled set."""
    i = np.asarray(iou, float)
    return {"n": len(i), "spearman": spearman(confidence, i), "mean_iou": float(i.mean()),
            "mean_iou_top50": top_fraction_mean(confidence, i), "aurc": aurc(confidence, i),
            "aurc_random": aurc_random(i), "aurc_oracle": aurc_oracle(i), "ece": ece(confidence, i >= threshold),
            "hit_rate": float((i >= threshold).mean())}
