"""The two published evaluation protocols and their aggregation (docs/protocols.md §6); more are registered
by name (groundkit.choices.PROTOCOLS, docs/registries.md).

A protocol turns one heatmap (crop space, as the model sees the image) plus the sample's boxes
(original pixels) into a dict of named metrics. The two papers differ in where they evaluate and
in every metric variant, so each variant has its own name and the protocols are never mixed:

- ``VilourasProtocol``: map -> original pixels (nearest, NaN padding); ``miou_thr``, ``cnr_abs``,
  ``cnr`` (population variance, per-box cumulative), ``auroc_binned5``.
- ``NuetzelProtocol``: boxes -> crop space; ``miou_fgbg`` (GMM mask), ``cnr`` (signed, unbiased,
  union), ``top1``, ``auroc`` (exact); an empty predicted mask scores 0 on every metric.

Both drop (and count, in ``n_boxes_dropped``) boxes that the center crop removes entirely, as both
published evaluations do; a sample left without boxes gets NaN metrics, which ``aggregate`` skips.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from groundkit.choices import PROTOCOLS, get_protocol_class
from groundkit.core.categories import CATEGORIES, ordered
from groundkit.core.geometry import Geometry, to_original
from groundkit.evaluation import metrics as M

__all__ = [
    "CATEGORIES",
    "MetricProtocol",
    "VilourasProtocol",
    "NuetzelProtocol",
    "PROTOCOLS",
    "get_protocol",
    "split_boxes_by_crop",
    "Aggregate",
    "aggregate",
]



def split_boxes_by_crop(boxes, geometry: Geometry) -> tuple[list[tuple], list[tuple]]:
    """Split original-pixel boxes into (kept, crop_boxes) and count the dropped ones.

    Returns (kept_original_boxes, kept_crop_boxes); a box is dropped when ``geometry.box_to_crop``
    says the center crop removes it entirely. The two lists are aligned.
    """
    if not isinstance(geometry, Geometry):
        raise ValueError(f"geometry: expected a groundkit.core.geometry.Geometry, got {type(geometry).__name__}")
    kept, crop = [], []
    for b in M._box_list(boxes):
        c = geometry.box_to_crop(b)
        if c is not None:
            kept.append(b)
            crop.append(tuple(float(v) for v in c))
    return kept, crop


def _check_crop_inputs(heatmap_crop, mask_crop, geometry: Geometry, need_mask: bool):
    if not isinstance(geometry, Geometry):
        raise ValueError(f"geometry: expected a groundkit.core.geometry.Geometry, got {type(geometry).__name__}")
    h = M._heatmap(heatmap_crop, "heatmap_crop")
    if h.shape != (geometry.size, geometry.size):
        raise ValueError(f"heatmap_crop: shape {h.shape} does not match the crop size "
                         f"{geometry.size}x{geometry.size}")
    m = None
    if need_mask or mask_crop is not None:
        if mask_crop is None:
            raise ValueError("mask_crop: this protocol needs the predicted bool mask")
        m = M._mask(mask_crop, "mask_crop")
        if m.shape != h.shape:
            raise ValueError(f"mask_crop: shape {m.shape} differs from heatmap_crop {h.shape}")
    return h, m


@dataclass(frozen=True)
class MetricProtocol:
    """What the benchmark reads of a protocol (a registered protocol subclasses this): its metrics, the one
    its report ranks samples by, whether its summary has the published n_c²-weighted average, and which
    published table layouts its numbers can be set beside (``bench.tables``; a new protocol has none)."""

    name: str = "custom"
    metrics: tuple[str, ...] = ()
    weighted_average: bool = False
    paper_tables: tuple[str, ...] = ()

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    def evaluate(self, heatmap_crop, mask_crop, geometry: Geometry, boxes) -> dict[str, float]:
        """{metric: value} plus ``n_boxes`` and ``n_boxes_dropped`` for one sample (NaN without boxes)."""
        raise NotImplementedError(f"protocol {self.name!r}: evaluate() is not written")


@dataclass(frozen=True)
class VilourasProtocol(MetricProtocol):
    """Vilouras et al. 2024: evaluate in original pixels on the continuous (Otsu-cut) map."""

    name: str = "vilouras"
    metrics: tuple[str, ...] = ("miou_thr", "cnr_abs", "cnr", "auroc_binned5")
    paper_tables: tuple[str, ...] = ("vilouras2024_table1", "vilouras2024_table2")
    thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)

    def evaluate(self, heatmap_crop, mask_crop, geometry: Geometry, boxes) -> dict[str, float]:
        """heatmap_crop: size x size in [0, 1]; mask_crop: unused (may be None); boxes: original px."""
        h, _ = _check_crop_inputs(heatmap_crop, mask_crop, geometry, need_mask=False)
        boxes = M._box_list(boxes)
        kept, _ = split_boxes_by_crop(boxes, geometry)
        out: dict[str, float] = {"n_boxes": float(len(kept)), "n_boxes_dropped": float(len(boxes) - len(kept))}
        if not kept:
            out.update({k: math.nan for k in self.metrics})
            return out
        ho = to_original(h, geometry)
        out["miou_thr"] = M.miou_thresholds(ho, kept, self.thresholds)
        per_box = M.cnr_values(ho, kept, variance="population", per_box=True)
        out["cnr_abs"] = float(np.mean(np.abs(per_box)))
        out["cnr"] = float(np.mean(per_box))
        out["auroc_binned5"] = M.auroc_binned(ho, kept, n_thresholds=5)
        return out


@dataclass(frozen=True)
class NuetzelProtocol(MetricProtocol):
    """Nuetzel et al. 2025: evaluate in crop space with the GMM mask and the min-max map."""

    name: str = "nuetzel"
    metrics: tuple[str, ...] = ("miou_fgbg", "cnr", "top1", "auroc")
    weighted_average: bool = True  # the published "Weighted Avg." (class means weighted by n_c²)
    paper_tables: tuple[str, ...] = ("nuetzel2025_table1", "nuetzel2025_table3")

    def evaluate(self, heatmap_crop, mask_crop, geometry: Geometry, boxes) -> dict[str, float]:
        """heatmap_crop: size x size min-max map; mask_crop: bool GMM mask; boxes: original px."""
        h, m = _check_crop_inputs(heatmap_crop, mask_crop, geometry, need_mask=True)
        boxes = M._box_list(boxes)
        _, crop_boxes = split_boxes_by_crop(boxes, geometry)
        out: dict[str, float] = {"n_boxes": float(len(crop_boxes)),
                                 "n_boxes_dropped": float(len(boxes) - len(crop_boxes))}
        if not crop_boxes:
            out.update({k: math.nan for k in self.metrics})
            return out
        if not m.any():
            # published: "No bounding box could be extracted" -> every metric 0
            out.update({k: 0.0 for k in self.metrics})
            return out
        out["miou_fgbg"] = M.miou_fgbg(m, crop_boxes)
        out["cnr"] = M.cnr(h, crop_boxes, absolute=False, variance="unbiased", per_box=False)
        out["top1"] = M.top1(h, crop_boxes)
        out["auroc"] = M.auroc(h, crop_boxes)
        return out


def get_protocol(name: str) -> MetricProtocol:
    """Protocol instance by name (``groundkit.list_protocols()``; "vilouras2024"/"nuetzel2025" also work)."""
    return get_protocol_class(name)()


# --------------------------------------------------------------------------------------------
# aggregation
# --------------------------------------------------------------------------------------------
@dataclass
class Aggregate:
    """Per-category and overall summaries of per-sample metric rows.

    per_category[c][m]: mean of metric m over category c; counts[c][m]: how many values it used.
    macro[m]: mean of the category means (Vilouras' "Avg"); macro_std[m]: population std (ddof=0,
    numpy's default, as ``np.std`` in the published code) of those category means.
    per_sample[m]: plain mean over all samples.
    weighted_avg_sq[m]: sum_c n_c^2 m_c / sum_c n_c^2 -- Nuetzel's published "Weighted Avg."
    (their per-row weight is the row's class count, which squares the class weight).
    NaN values (samples without boxes) are skipped, per metric.
    """

    metrics: tuple[str, ...]
    categories: tuple[str, ...]
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    macro: dict[str, float] = field(default_factory=dict)
    macro_std: dict[str, float] = field(default_factory=dict)
    per_sample: dict[str, float] = field(default_factory=dict)
    weighted_avg_sq: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "metrics": list(self.metrics),
            "categories": list(self.categories),
            "per_category": {c: dict(v) for c, v in self.per_category.items()},
            "counts": {c: dict(v) for c, v in self.counts.items()},
            "macro": dict(self.macro),
            "macro_std": dict(self.macro_std),
            "per_sample": dict(self.per_sample),
            "weighted_avg_sq": dict(self.weighted_avg_sq),
        }


def aggregate(rows: Iterable[Mapping], metrics: Sequence[str]) -> Aggregate:
    """Summarise rows (dicts with "category" and metric values) -- see ``Aggregate``.

    Categories are ordered as ``CATEGORIES``, then any others alphabetically; only categories that
    occur in the rows take part (macro = mean over the categories present).
    """
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError("aggregate: no metrics given")
    values: dict[str, dict[str, list[float]]] = {}
    for i, row in enumerate(rows):
        if "category" not in row:
            raise ValueError(f"aggregate: row {i} has no 'category'")
        cat = str(row["category"])
        bucket = values.setdefault(cat, {m: [] for m in metrics})
        for m in metrics:
            if m not in row:
                raise ValueError(f"aggregate: row {i} ({cat}) has no metric {m!r}")
            try:
                v = float(row[m])
            except (TypeError, ValueError):
                raise ValueError(f"aggregate: row {i} ({cat}) metric {m!r} is not a number: {row[m]!r}") from None
            if math.isinf(v):
                raise ValueError(f"aggregate: row {i} ({cat}) metric {m!r} is infinite")
            if not math.isnan(v):
                bucket[m].append(v)
    cats = tuple(ordered(values))
    agg = Aggregate(metrics=metrics, categories=cats)
    for c in cats:
        agg.per_category[c] = {m: (float(np.mean(values[c][m])) if values[c][m] else math.nan) for m in metrics}
        agg.counts[c] = {m: len(values[c][m]) for m in metrics}
    for m in metrics:
        present = [c for c in cats if agg.counts[c][m] > 0]
        means = np.array([agg.per_category[c][m] for c in present], dtype=np.float64)
        n = np.array([agg.counts[c][m] for c in present], dtype=np.float64)
        allv = [v for c in present for v in values[c][m]]
        if present:
            agg.macro[m] = float(means.mean())
            agg.macro_std[m] = float(means.std())
            agg.per_sample[m] = float(np.mean(allv))
            agg.weighted_avg_sq[m] = float(np.sum(n**2 * means) / np.sum(n**2))
        else:
            agg.macro[m] = agg.macro_std[m] = agg.per_sample[m] = agg.weighted_avg_sq[m] = math.nan
    return agg
