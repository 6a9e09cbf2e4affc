"""Selective prediction over a benchmark's rows: risk-coverage curves, reliability bins and rankings at equal
coverage, from the confidence and mask IoU each row records (groundkit.bench.confidence.row_fields).

Kept consistent with groundkit.evaluation.calibration, whose AURC the tables print: the rows are ordered by
confidence (most confident first, ties in row order), the k most confident are kept with k = round(coverage x n)
(at least 1), and the risk of a kept set is mean(1 - IoU of the returned mask). The random-order risk is the
overall mean risk at every coverage (the expectation of a random confidence), the oracle-order risk keeps the
k best IoUs. Uncalibrated configs (no confidence in their rows) have no ordering: they get no curve.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from groundkit.bench.configs import Config
from groundkit.bench.rows import metric_value
from groundkit.evaluation import calibration as cal

__all__ = ["COVERAGES", "RANK_COVERAGES", "Scored", "scored_rows", "kept", "curve", "curve_rows", "risk_coverage_table",
           "reliability_bins", "coverage_means", "rank_at_coverage"]

COVERAGES = tuple(round(0.1 * k, 1) for k in range(1, 11))  # 10 % .. 100 %
RANK_COVERAGES = (1.0, 0.8, 0.5)  # compare: all samples, then each side's most confident 80 % and 50 %


@dataclass
class Scored:
    """A config's successful rows that carry a confidence and a mask IoU, as arrays in row order."""
    confidence: np.ndarray
    iou: np.ndarray
    metric: np.ndarray  # the protocol's main metric (NaN where the row has none)
    sample_ids: list[str]


def scored_rows(rows: Sequence[Mapping[str, Any]], metric: str) -> Scored:
    rs = [r for r in rows if not r.get("error") and r.get("confidence") is not None and r.get("mask_iou") is not None]
    return Scored(np.array([float(r["confidence"]) for r in rs]), np.array([float(r["mask_iou"]) for r in rs]),
                  np.array([metric_value(r, metric) for r in rs]), [str(r.get("sample_id", "")) for r in rs])


def kept(n: int, coverage: float) -> int:
    """How many of n samples a coverage keeps (as calibration.top_fraction_mean)."""
    return max(1, int(round(coverage * n)))


def curve(s: Scored, coverages: Sequence[float] = COVERAGES) -> list[dict[str, float]]:
    """One point per coverage: n kept, mean main metric and mean IoU of the kept, risk by confidence, random and
    oracle order."""
    n = len(s.iou)
    if n == 0:
        return []
    _, risk = cal.risk_coverage(s.confidence, s.iou)
    _, oracle = cal.risk_coverage(s.iou, s.iou)
    order = np.argsort(-s.confidence, kind="stable")
    out = []
    for c in coverages:
        k = kept(n, c)
        m = s.metric[order[:k]]
        m = m[np.isfinite(m)]
        out.append({"coverage": float(c), "n_kept": k, "mean_metric": float(m.mean()) if len(m) else math.nan,
                    "mean_iou": float(s.iou[order[:k]].mean()), "risk": float(risk[k - 1]),
                    "risk_random": cal.aurc_random(s.iou), "risk_oracle": float(oracle[k - 1])})
    return out


def curve_rows(configs: Sequence[Config], data: Mapping[str, tuple[list[dict], int]]) -> list[dict[str, Any]]:
    """tables/risk_coverage.csv: one row per calibrated config and coverage (``data``: {label: (ok rows, errors)})."""
    out: list[dict[str, Any]] = []
    for cfg in configs:
        s = scored_rows(data.get(cfg.label, ([], 0))[0], cfg.main_metric)
        for p in curve(s):
            out.append({"config": cfg.label, "checkpoint": cfg.checkpoint, "recipe": cfg.recipe.get("name", ""),
                        "recipe_digest": cfg.recipe_digest, "metric": cfg.main_metric, **p})
    return out


def risk_coverage_table(configs: Sequence[Config], data: Mapping[str, tuple[list[dict], int]]
                        ) -> tuple[tuple[str, list[str], list[list[str]], list[str]] | None, list[dict[str, Any]]]:
    """(the tables' risk-coverage section or None, the CSV rows): per calibrated config, the main metric and the
    risk of the most confident 10 % .. 100 %."""
    rows = curve_rows(configs, data)
    if not rows:
        return None, rows
    body = []
    for label in dict.fromkeys(r["config"] for r in rows):
        pts = [r for r in rows if r["config"] == label]
        body.append([label, pts[0]["metric"], *[_f(p["mean_metric"]) for p in pts]])
        body.append([label, "risk", *[_f(p["risk"]) for p in pts]])
        body.append([label, "risk, oracle order", *[_f(p["risk_oracle"]) for p in pts]])
    uncal = [c.label for c in configs if c.label in data and c.label not in {r["config"] for r in rows}]
    notes = ["Keeping the most confident share of samples (coverage); risk = 1 - IoU of the returned mask, as the AURC "
             "above; the random-order risk is the 100 % value at every coverage. Lower risk and a higher metric at "
             "low coverage mean the confidence orders the samples well. Also in tables/risk_coverage.csv."]
    if uncal:
        notes.append("Uncalibrated (no confidence, no curve): " + ", ".join(uncal) + ".")
    header = ["Config", "Value", *[f"{round(c * 100)}%" for c in COVERAGES]]
    return ("Risk-coverage (most confident first)", header, body, notes), rows


def _f(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{v:.3f}"


def reliability_bins(s: Scored, bins: int = 10) -> list[dict[str, float]]:
    """Non-empty equal-width bins of the confidence: {bin, lo, hi, confidence (mean), hit_rate (IoU >= 0.3), n}."""
    hit = s.iou >= cal.IOU_THRESHOLD
    out = []
    for c, h, n in cal.reliability(s.confidence, hit, bins):
        b = min(int(c * bins), bins - 1)  # a bin's mean lies in the bin
        out.append({"bin": b, "lo": b / bins, "hi": (b + 1) / bins, "confidence": c, "hit_rate": h, "n": n})
    return out


def coverage_means(rows: Sequence[Mapping[str, Any]], metric: str, coverages: Sequence[float] = RANK_COVERAGES
                   ) -> dict[float, tuple[int, float]] | None:
    """{coverage: (n kept, mean metric)} over the rows' most confident share (only rows with a finite metric);
    None when the rows carry no confidence (uncalibrated)."""
    rs = [r for r in rows if math.isfinite(metric_value(r, metric))]
    if not rs or any(r.get("confidence") is None for r in rs):
        return None
    c = np.array([float(r["confidence"]) for r in rs])
    v = np.array([metric_value(r, metric) for r in rs])
    order = np.argsort(-c, kind="stable")
    return {cov: (kept(len(v), cov), float(v[order[:kept(len(v), cov)]].mean())) for cov in coverages}


def rank_at_coverage(sides: Mapping[str, Sequence[Mapping[str, Any]]], metric: str,
                     coverages: Sequence[float] = RANK_COVERAGES) -> list[dict[str, Any]]:
    """Per coverage, the sides ranked by the mean metric of their own most confident share (best first; ties keep
    the given order): [{"coverage", "ranking": [(name, n kept, mean)], "uncalibrated": [names]}]. At 100 % every
    side is ranked; below it, only the sides with a confidence."""
    means = {name: coverage_means(rows, metric, coverages) for name, rows in sides.items()}
    out = []
    for cov in coverages:
        ranked = []
        for name, rows in sides.items():
            if means[name] is not None:
                ranked.append((name, *means[name][cov]))
            elif cov == 1.0:
                v = [metric_value(r, metric) for r in rows]
                v = [x for x in v if math.isfinite(x)]
                ranked.append((name, len(v), float(np.mean(v)) if v else math.nan))
        ranked.sort(key=lambda t: -t[2] if math.isfinite(t[2]) else math.inf)
        out.append({"coverage": cov, "ranking": ranked, "uncalibrated": [n for n in sides if means[n] is None]})
    return out
