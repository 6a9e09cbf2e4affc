"""Compare two benchmark results with a paired bootstrap: "B beats A" with an error bar.

Rows of A and B are paired by ``sample_id`` (only samples that succeeded in both and have a finite
value of the metric). For each metric and category the difference B - A of the means is reported with
a percentile bootstrap confidence interval (resampling pairs with replacement, ``n_boot`` times,
seeded). Overall rows: "Macro mean" (mean of the category differences; categories resampled
independently, i.e. a stratified bootstrap), "Per-sample mean" (all pairs resampled together) and, for
the Nützel protocol, "Weighted Avg. (squared counts)" (category weights n_c², as published).
A '*' marks intervals that exclude 0. Both sides must use the same protocol.

Ranking at equal coverage: the paired samples' mean of the protocol's main metric over all of them, then over
each side's own most confident 80 % and 50 % (by its calibrated confidence, groundkit.bench.coverage), ranked.
A checkpoint whose confidence orders its groundings well can rank higher once both abstain on their doubtful
half; an uncalibrated side is ranked only on all samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from groundkit.bench.configs import Config, merge_configs
from groundkit.bench.coverage import rank_at_coverage
from groundkit.bench.rows import load_run, metric_value, read_dir_rows
from groundkit.core.categories import ordered
from groundkit.core.outdir import write_csv
from groundkit.evaluation.protocols import get_protocol

__all__ = ["Comparison", "compare", "select_config", "paired_bootstrap", "paired_rows"]

MACRO, PER_SAMPLE, WEIGHTED = "Macro mean", "Per-sample mean", "Weighted Avg. (squared counts)"


@dataclass
class Comparison:
    a: str  # "DIR:label"
    b: str
    protocol: str
    metrics: tuple[str, ...]
    n_boot: int
    seed: int
    level: float
    rows: list[dict[str, Any]] = field(default_factory=list)  # metric, category, n, mean_a, mean_b, diff, lo, hi
    unpaired_a: int = 0
    unpaired_b: int = 0
    main_metric: str = ""
    coverage: list[dict[str, Any]] = field(default_factory=list)  # rank_at_coverage over the pairs, sides "A"/"B"

    def markdown(self) -> str:
        pct = f"{self.level * 100:g}%"
        out = [f"## Paired comparison ({self.protocol} protocol): B - A",
               f"A = {self.a}", f"B = {self.b}",
               f"Paired by sample_id; {pct} CI from a paired bootstrap ({self.n_boot} resamples, seed {self.seed}); "
               f"* = CI excludes 0. Unpaired samples left out: {self.unpaired_a} in A, {self.unpaired_b} in B.", ""]
        for m in self.metrics:
            out += [f"### {m}", "", f"| Category | n pairs | A | B | B − A | {pct} CI |", "|---|---:|---:|---:|---:|---:|"]
            for r in (r for r in self.rows if r["metric"] == m):
                star = " *" if r["lo"] > 0 or r["hi"] < 0 else ""
                out.append(f"| {r['category']} | {r['n']} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | "
                           f"{r['diff']:+.4f}{star} | [{r['lo']:+.4f}, {r['hi']:+.4f}] |")
            out.append("")
        small = sorted({r["category"] for r in self.rows if r["n"] < 10})
        if small:
            out.append(f"Fewer than 10 pairs (interval unreliable): {', '.join(small)}.")
        return "\n".join(out + self._coverage_markdown())

    def _coverage_markdown(self) -> list[str]:
        if not self.coverage:
            return []
        out = ["", f"### Ranking at equal coverage ({self.main_metric})", "",
               "Mean over the paired samples each side keeps: all of them, then its own most confident share "
               "(by its calibrated confidence); best first.", "",
               "| Coverage | Rank 1 | Rank 2 | A: n, mean | B: n, mean |", "|---|---|---|---:|---:|"]
        for c in self.coverage:
            by = {name: (n, m) for name, n, m in c["ranking"]}
            cells = [f"{by[s][0]}, {by[s][1]:.4f}" if s in by else "uncalibrated" for s in ("A", "B")]
            names = [name for name, _, _ in c["ranking"]] + ["—", "—"]
            out.append(f"| {round(c['coverage'] * 100)}% | {names[0]} | {names[1]} | {cells[0]} | {cells[1]} |")
        uncal = self.coverage[0]["uncalibrated"]
        if uncal:
            out.append(f"Uncalibrated (no confidence in its rows, ranked on all samples only): {', '.join(uncal)}.")
        return out

    def write_csv(self, path: str | Path) -> Path:
        """compare.csv (cells neutralised against spreadsheet formulas; never through a symbolic link)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        return write_csv(p, ["metric", "category", "n", "mean_a", "mean_b", "diff", "lo", "hi"],
                         [{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in self.rows])


def paired_bootstrap(diffs: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot,) bootstrap means of paired differences (resampling with replacement)."""
    d = np.asarray(diffs, dtype=np.float64)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    return d[idx].mean(axis=1)


def _configs(out_dir: Path) -> list[Config]:
    run = load_run(out_dir)
    return merge_configs(run.get("configs", []), [])


def select_config(out_dir: str | Path, name: str | None = None, exclude: Config | None = None) -> Config:
    """The config of a benchmark folder: by label / checkpoint name, or the only one (the first one
    other than ``exclude`` when the folder holds two and both sides are that folder)."""
    cfgs = _configs(Path(out_dir))
    if not cfgs:
        raise ValueError(f"{out_dir}: run.json lists no configs")
    if name is not None:
        hits = [c for c in cfgs if name in (c.label, c.checkpoint)]
        if len(hits) != 1:
            what = "no config" if not hits else "several configs"
            raise ValueError(f"{out_dir}: {what} named {name!r}; available: {', '.join(c.label for c in cfgs)}")
        return hits[0]
    rest = [c for c in cfgs if exclude is None or c.label != exclude.label]
    if len(rest) == 1 or (exclude is not None and rest):
        return rest[0]
    raise ValueError(f"{out_dir} holds several configs ({', '.join(c.label for c in cfgs)}): pick one with --checkpoint")


def compare(dir_a: str | Path, dir_b: str | Path, checkpoint_a: str | None = None, checkpoint_b: str | None = None,
            *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Comparison:
    """Per-category difference B - A of every metric with a paired bootstrap CI (see module docstring)."""
    if n_boot < 100:
        raise ValueError(f"n_boot: expected at least 100 resamples, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level: expected a value in (0, 1), got {level}")
    da, db = Path(dir_a), Path(dir_b)
    same_dir = da.resolve() == db.resolve()
    ca = select_config(da, checkpoint_a)
    cb = select_config(db, checkpoint_b, exclude=ca if same_dir and checkpoint_b is None else None)
    if same_dir and ca.label == cb.label:
        raise ValueError(f"{da}: comparing {ca.label!r} with itself; name two configs with --checkpoint A --checkpoint B")
    if ca.protocol != cb.protocol:
        raise ValueError(f"cannot compare across protocols: A uses {ca.protocol}, B uses {cb.protocol} "
                         "(the metrics are different variants)")
    rows_a = {r["sample_id"]: r for r in read_dir_rows(da) if ca.owns(r) and not r.get("error")}
    rows_b = {r["sample_id"]: r for r in read_dir_rows(db) if cb.owns(r) and not r.get("error")}
    common = sorted(set(rows_a) & set(rows_b))
    if not common:
        raise ValueError(f"no sample_id succeeded in both {da} ({ca.label}) and {db} ({cb.label}): nothing to pair")
    metrics = tuple(m for m in ca.metrics if m in cb.metrics)
    cmp = Comparison(f"{da}:{ca.label} (recipe {ca.recipe_digest})", f"{db}:{cb.label} (recipe {cb.recipe_digest})",
                     ca.protocol, metrics, n_boot, seed, level,
                     unpaired_a=len(set(rows_a) - set(common)), unpaired_b=len(set(rows_b) - set(common)))
    cmp.rows = paired_rows(rows_a, rows_b, metrics, ca.protocol, n_boot, np.random.default_rng(seed), level)
    cmp.main_metric = ca.main_metric
    cmp.coverage = rank_at_coverage({"A": [rows_a[s] for s in common], "B": [rows_b[s] for s in common]}, ca.main_metric)
    return cmp


def paired_rows(rows_a: Mapping[str, Mapping[str, Any]], rows_b: Mapping[str, Mapping[str, Any]], metrics: Sequence[str],
                protocol: str, n_boot: int, rng: np.random.Generator, level: float = 0.95) -> list[dict[str, Any]]:
    """B - A per metric and category (+ overall rows) with percentile bootstrap intervals, over the sample ids
    both sides hold (rows by sample_id; a pair counts for a metric when both values are finite)."""
    out: list[dict[str, Any]] = []
    common = sorted(set(rows_a) & set(rows_b))
    q = ((1 - level) / 2 * 100, (1 + level) / 2 * 100)
    for m in metrics:
        by_cat: dict[str, tuple[list[float], list[float]]] = {}
        for sid in common:
            a, b = metric_value(rows_a[sid], m), metric_value(rows_b[sid], m)
            if math.isfinite(a) and math.isfinite(b):
                va, vb = by_cat.setdefault(rows_a[sid]["category"], ([], []))
                va.append(a)
                vb.append(b)
        out += _metric_rows(m, by_cat, protocol, n_boot, rng, q)
    return out


def _metric_rows(m, by_cat, protocol, n_boot, rng, q) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cats = ordered(by_cat)
    boots, means_a, means_b, counts = [], [], [], []
    for c in cats:
        a, b = np.array(by_cat[c][0]), np.array(by_cat[c][1])
        bt = paired_bootstrap(b - a, n_boot, rng)
        boots.append(bt)
        means_a.append(a.mean())
        means_b.append(b.mean())
        counts.append(len(a))
        lo, hi = np.percentile(bt, q)
        out.append({"metric": m, "category": c, "n": len(a), "mean_a": float(a.mean()), "mean_b": float(b.mean()),
                    "diff": float(b.mean() - a.mean()), "lo": float(lo), "hi": float(hi)})
    if not cats:
        return out
    B = np.stack(boots)
    n = np.array(counts, dtype=np.float64)
    ma, mb = np.array(means_a), np.array(means_b)
    overall = [(MACRO, np.ones_like(n), B.mean(axis=0))]
    if get_protocol(protocol).weighted_average:  # the published n_c²-weighted average
        w = n**2
        overall.append((WEIGHTED, w, (w[:, None] * B).sum(axis=0) / w.sum()))
    for name, w, bt in overall:
        ea, eb = float((w * ma).sum() / w.sum()), float((w * mb).sum() / w.sum())
        lo, hi = np.percentile(bt, q)
        out.append({"metric": m, "category": name, "n": int(n.sum()), "mean_a": ea, "mean_b": eb,
                    "diff": eb - ea, "lo": float(lo), "hi": float(hi)})
    all_a = np.concatenate([by_cat[c][0] for c in cats])
    all_b = np.concatenate([by_cat[c][1] for c in cats])
    lo, hi = np.percentile(paired_bootstrap(all_b - all_a, n_boot, rng), q)
    out.append({"metric": m, "category": PER_SAMPLE, "n": len(all_a), "mean_a": float(all_a.mean()),
                "mean_b": float(all_b.mean()), "diff": float(all_b.mean() - all_a.mean()), "lo": float(lo), "hi": float(hi)})
    return out
