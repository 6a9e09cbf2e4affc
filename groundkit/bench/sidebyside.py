"""Side-by-side tables: every checkpoint (config) of one protocol in one table per metric, each one after the
first with its difference to the first and a paired-bootstrap confidence interval.

For each protocol with at least two configs in a benchmark folder (e.g. ``groundkit benchmark -c monai-cxr-ldm
-c sd15-cxrbert -c radedit -c roentgen -r nuetzel2025``): rows = categories, then "Macro mean", "Per-sample mean"
and (Nützel protocol) "Weighted Avg. (squared counts)"; columns = each config's value (n samples), then
"Δ config − first" with its interval. The values are each config's own means over its successful samples (as in
the other tables); Δ is over the samples both succeeded on, paired by sample_id, with the percentile bootstrap of
:func:`groundkit.bench.compare.paired_rows` (seeded: rebuilding the tables gives the same intervals). A '*' marks
an interval that excludes 0 (not on a single pair). Protocols are never mixed: their metrics are different variants.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from groundkit.bench.compare import MACRO, PER_SAMPLE, WEIGHTED, paired_rows
from groundkit.bench.configs import Config
from groundkit.core.categories import ordered
from groundkit.evaluation.protocols import get_protocol

__all__ = ["SideBySide", "side_by_side"]

DASH = "—"
SideBySide = tuple[str, list[str], list[list[str]], list[str]]  # (title, header, rows, notes)


def _own(rows: Sequence[Mapping[str, Any]], cfg: Config) -> dict[str, Mapping[str, Any]]:
    return {r["sample_id"]: r for r in rows if cfg.owns(r) and not r.get("error") and not r.get("dropped")}


def _value(agg, cat: str, m: str) -> tuple[float, int]:
    total = sum(agg.counts[c][m] for c in agg.categories)
    if cat == MACRO:
        return agg.macro.get(m, math.nan), total
    if cat == PER_SAMPLE:
        return agg.per_sample.get(m, math.nan), total
    if cat == WEIGHTED:
        return agg.weighted_avg_sq.get(m, math.nan), total
    if cat not in agg.per_category:
        return math.nan, 0
    return agg.per_category[cat][m], agg.counts[cat][m]


def _cell(v: float) -> str:
    return DASH if v is None or not math.isfinite(v) else f"{v:.4f}"


def _diff_cell(d: Mapping[str, Any] | None) -> str:
    if d is None:
        return DASH
    star = "*" if d["n"] >= 2 and (d["lo"] > 0 or d["hi"] < 0) else ""  # one pair: no interval to speak of
    return f"{d['diff']:+.4f}{star} [{d['lo']:+.4f}, {d['hi']:+.4f}]"


def side_by_side(rows: Sequence[Mapping[str, Any]], configs: Sequence[Config], aggregates: Mapping[str, Any], *,
                 n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[list[SideBySide], dict[str, list[dict]]]:
    """One table per (protocol, metric) for protocols with two or more configs that have results, and the
    matching CSV rows (``side_by_side_<protocol>``: metric, category, config, value, n, diff, lo, hi, n_pairs)."""
    tables: list[SideBySide] = []
    csvs: dict[str, list[dict]] = {}
    for protocol in dict.fromkeys(c.protocol for c in configs):
        cfgs = [c for c in configs if c.protocol == protocol and c.label in aggregates]
        if len(cfgs) < 2:
            continue
        base, others = cfgs[0], cfgs[1:]
        metrics = tuple(m for m in base.metrics if all(m in c.metrics for c in others))
        own = {c.label: _own(rows, c) for c in cfgs}
        diffs = {c.label: {(d["metric"], d["category"]): d for d in paired_rows(
            own[base.label], own[c.label], metrics, protocol, n_boot, np.random.default_rng(seed), level)} for c in others}
        cats = ordered({cat for c in cfgs for cat in aggregates[c.label].categories})
        cats += [MACRO, PER_SAMPLE] + ([WEIGHTED] if get_protocol(protocol).weighted_average else [])
        csv_rows: list[dict] = []
        for m in metrics:
            header = ["Category", *[f"{c.label} (n)" for c in cfgs], *[f"Δ {c.label} − {base.label} [{level * 100:g}% CI]"
                                                                     for c in others]]
            out = []
            for cat in cats:
                vals = [_value(aggregates[c.label], cat, m) for c in cfgs]
                found = [diffs[c.label].get((m, cat)) for c in others]
                out.append([cat, *[f"{_cell(v)} ({n})" for v, n in vals], *[_diff_cell(d) for d in found]])
                for c, (v, n) in zip(cfgs, vals):
                    d = diffs.get(c.label, {}).get((m, cat))
                    csv_rows.append({"metric": m, "category": cat, "config": c.label, "value": v, "n": n,
                                     "diff_vs_first": d["diff"] if d else math.nan, "lo": d["lo"] if d else math.nan,
                                     "hi": d["hi"] if d else math.nan, "n_pairs": d["n"] if d else 0, "first": base.label})
            pairs = ", ".join(f"{c.label}: {len(set(own[base.label]) & set(own[c.label]))}" for c in others)
            notes = [f"{protocol} protocol, {m}: each config's mean over its own successful samples (n); Δ = paired "
                     f"difference to {base.label} over the samples both succeeded on ({pairs} pairs), {level * 100:g}% "
                     f"CI from a paired bootstrap ({n_boot} resamples, seed {seed}; macro: categories resampled "
                     "independently); * = CI excludes 0 (never marked on a single pair)."]
            few = sorted({cat for d in diffs.values() for (mm, cat), x in d.items() if mm == m and x["n"] < 10})
            if few:
                notes.append(f"Fewer than 10 pairs (interval unreliable): {', '.join(few)}.")
            tables.append((f"Side by side ({protocol} protocol): {m}", header, out, notes))
        csvs[f"side_by_side_{protocol}"] = csv_rows
    return tables, csvs
