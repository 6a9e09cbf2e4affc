"""Benchmark tables in the two papers' layouts, with the published numbers beside ours.

- **Vilouras et al. 2024, Table I** (Vilouras protocol configs): rows = method x metric
  (|CNR| = ``cnr_abs``, CNR = ``cnr``, mIoU % = ``miou_thr``, AUC-ROC % = ``auroc_binned5``), columns =
  the 8 categories in the paper's order + Avg (= macro mean over categories, ``± std`` of the category
  means); our rows, the paper's "Vilouras2024 (MONAI LDM zero-shot)" rows, their difference, then the
  paper's other methods.
- **Nuetzel et al. 2025, Table 1** (Nützel protocol configs): rows = categories in the paper's order +
  "Weighted Avg. (squared counts)" (their published average, class means weighted by n_c^2), plus our
  "Per-sample mean" and "Macro mean"; columns = mIoU (``miou_fgbg``) and CNR (signed ``cnr``), ours /
  published / difference. The published column is picked from the recipe (bbm=None -> CXR-BERT_LDM,
  bbm=mixture -> CXR-BERT_LDM+BBM); **Table 3** likewise (tokens=disease / lexical -> *_filter,
  bbm=linear / quadratic / mixture -> bbm_*). A recipe that differs from the published one is flagged
  with the differing fields, and a column that is only the nearest published one says so.
- "All metrics": every protocol metric per category for every config.

Published numbers come from :mod:`groundkit.bench.references` (shipped CSVs; GROUNDKIT_REFERENCE_DIR or
``reference_dir`` for another copy). Errored rows are left out
of every mean (and counted in the notes).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from groundkit.bench.confidence import confidence_table
from groundkit.bench.configs import Config
from groundkit.bench.coverage import risk_coverage_table
from groundkit.bench.references import load_references, nuetzel_reference_columns, recipe_differences
from groundkit.bench.rows import metric_value
from groundkit.bench.sidebyside import side_by_side
from groundkit.bench.table_files import write_tables
from groundkit.core.categories import CATEGORIES, NUETZEL_ORDER, VILOURAS_ORDER
from groundkit.evaluation.protocols import Aggregate, aggregate, get_protocol

__all__ = ["Section", "Tables", "build_tables", "write_tables", "VILOURAS_ORDER", "NUETZEL_ORDER"]

# (metric, label in the paper, scale to the paper's unit, format)
VILOURAS_METRICS = (("cnr_abs", "|CNR|", 1.0, "{:.2f}"), ("cnr", "CNR", 1.0, "{:.2f}"),
                    ("miou_thr", "mIoU (%)", 100.0, "{:.1f}"), ("auroc_binned5", "AUC-ROC (%)", 100.0, "{:.1f}"))
NUETZEL_METRICS = (("miou_fgbg", "miou", "mIoU", "{:.3f}"), ("cnr", "cnr", "CNR", "{:.2f}"))
VILOURAS_PAPER_METHOD = "Vilouras2024 (MONAI LDM zero-shot)"
WEIGHTED = "Weighted Avg. (squared counts)"
PER_SAMPLE = "Per-sample mean"
MACRO = "Macro mean"
DASH = "—"


# --------------------------------------------------------------------------------------------
# table containers
# --------------------------------------------------------------------------------------------
@dataclass
class Section:
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    level: int = 3

    text_cols: int = 1  # left-aligned leading columns

    def markdown(self) -> str:
        out = [f"{'#' * self.level} {self.title}", ""]
        out += [f"{n}  " for n in self.notes]
        if self.notes:
            out.append("")
        if self.header:
            out.append("| " + " | ".join(self.header) + " |")
            out.append("|" + "|".join("---" if i < self.text_cols else "---:" for i in range(len(self.header))) + "|")
            for r in self.rows:
                out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
            out.append("")
        return "\n".join(out)

    def html(self) -> str:
        h = min(6, self.level)
        out = [f"<h{h}>{html.escape(self.title)}</h{h}>"]
        out += [f"<p class='note'>{html.escape(n)}</p>" for n in self.notes]
        if self.header:
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in self.header) + "</tr></thead><tbody>")
            for r in self.rows:
                first = str(r[0]) if r else ""
                cls = " class='diff'" if first.startswith("Δ") else (" class='ref'" if "(published)" in first else "")
                out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
            out.append("</tbody></table>")
        return "\n".join(out)


@dataclass
class Tables:
    sections: list[Section]
    csvs: dict[str, list[dict[str, Any]]]
    aggregates: dict[str, Aggregate]  # by config label
    bars: list[dict[str, Any]]  # for the benchmark page: {protocol, metric, label, table, reference}
    summary: dict[str, Any]

    def markdown(self, published: bool = True) -> str:
        """All sections; ``published=False`` leaves out the verbatim published tables (level 4)."""
        return "\n".join(s.markdown() for s in self.sections if published or s.level < 4)


def _fmt(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return DASH
    return fmt.format(v)


def _fmt_diff(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return DASH
    s = fmt.format(v)
    if float(s) == 0:
        s = s.lstrip("-")
    return s if s.startswith("-") else "+" + s


def _diff(a: Any, b: Any) -> float:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return math.nan
    return a - b if math.isfinite(a) and math.isfinite(b) else math.nan


def _config_rows(rows: Sequence[Mapping], cfg: Config) -> tuple[list[dict], int]:
    own = [r for r in rows if cfg.owns(r)]
    ok = [dict(r, **{m: metric_value(r, m) for m in cfg.metrics}) for r in own if not r.get("error") and not r.get("dropped")]
    return ok, sum(1 for r in own if r.get("error"))


def dropped_rows(rows: Sequence[Mapping], cfg: Config) -> int:
    """Samples left out by the recipe's published rule (``drop_empty``), not failures."""
    return sum(1 for r in rows if cfg.owns(r) and r.get("dropped"))


def _sem(values: list[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


# --------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------
def build_tables(rows: Sequence[Mapping], configs: Sequence[Config], reference_dir: str | Path | None = None,
                 dataset: str = "mscxr") -> Tables:
    """Tables for the rows; published numbers (MS-CXR) sit beside ours with differences only when ``dataset`` is
    "mscxr": on any other data they are shown apart, in a reference section, and nothing is subtracted."""
    refs = load_references(reference_dir)
    compare = dataset == "mscxr"
    sections: list[Section] = [Section("groundkit benchmark", [], [], [
        "Every number below is labelled by protocol; the Vilouras and Nützel protocols compute different metric "
        "variants (docs/protocols.md) and are never mixed. Failed samples are left out of every mean.",
        "Published numbers: " + (", ".join(f"{k}.csv" for k in refs) if refs else
                                 "not found (groundkit/assets/reference/ or GROUNDKIT_REFERENCE_DIR)") + "."], level=2)]
    csvs: dict[str, list[dict[str, Any]]] = {}
    aggs: dict[str, Aggregate] = {}
    bars: list[dict[str, Any]] = []
    data: dict[str, tuple[list[dict], int]] = {}
    for cfg in configs:
        ok, n_err = _config_rows(rows, cfg)
        data[cfg.label] = (ok, n_err)
        if ok:
            aggs[cfg.label] = aggregate(ok, cfg.metrics)
    # the published table layouts each protocol declares (MetricProtocol.paper_tables); a protocol that
    # declares none gets the side-by-side and all-metrics tables only
    by_layout = {layout: [c for c in configs if c.label in aggs and layout in get_protocol(c.protocol).paper_tables]
                 for layout in PAPER_LAYOUTS}
    for cfg in configs:
        n_drop = dropped_rows(rows, cfg)
        if n_drop:
            sections[0].notes.append(f"{cfg.label}: {n_drop} sample(s) dropped because the token filter selected no "
                                     "token (as the published code, whose map is NaN there); they are in no mean.")
    if not compare:
        sections[0].notes.append(f"Dataset: {dataset}, not MS-CXR: the papers' published numbers are not comparable with "
                                 "these and are not subtracted from them; they are listed apart, under 'Reference: published "
                                 "numbers on MS-CXR'.")
    missing = [c.label for c in configs if c.label not in aggs]
    if missing:
        sections[0].notes.append("No successful rows yet for: " + ", ".join(missing) + ".")
    shown = refs if compare else {}
    for layout, write in PAPER_LAYOUTS.items():
        if by_layout[layout]:
            write(by_layout[layout], aggs, data, shown, sections, csvs, bars)
    if not compare and refs:
        _reference_section(refs, sections)
    side, side_csvs = side_by_side(rows, configs, aggs)  # >= 2 configs of a protocol: paired bootstrap vs the first
    sections += [Section(title, header, body, notes) for title, header, body, notes in side]
    csvs.update(side_csvs)
    _all_metrics(configs, aggs, data, sections, csvs)
    sections += [Section(*t) for t in [confidence_table(data)] if t]  # groundkit.bench.confidence
    rc_section, rc_rows = risk_coverage_table(configs, data)  # groundkit.bench.coverage; calibrated configs only
    if rc_section:
        sections.append(Section(*rc_section, text_cols=2))
        csvs["risk_coverage"] = rc_rows
    summary = {c.label: {**aggs[c.label].to_dict(), "protocol": c.protocol, "recipe_digest": c.recipe_digest,
                         "checkpoint": c.checkpoint, "errors": data[c.label][1], "dropped": dropped_rows(rows, c)}
               for c in configs if c.label in aggs}
    return Tables(sections, csvs, aggs, bars, summary)


def _vilouras_table(cfgs, aggs, data, refs, sections, csvs, bars) -> None:
    ref_rows = refs.get("vilouras2024_table1", [])
    published: dict[str, dict[str, dict[str, float]]] = {}
    for r in ref_rows:
        published.setdefault(str(r["method"]), {})[str(r["metric"])] = r
    paper = published.get(VILOURAS_PAPER_METHOD, {})
    header = ["Method", "Metric", *VILOURAS_ORDER, "Avg"]
    notes = ["Vilouras protocol: heatmap in original pixels (NaN outside the field of view); mIoU = miou_thr "
             "(mean IoU over thresholds .1-.5), |CNR| = cnr_abs, CNR = cnr (population variances, per box), "
             "AUC-ROC = auroc_binned5; Avg = macro mean over the categories (± std of the category means)."]
    out_rows: list[list[str]] = []
    csv_rows: list[dict[str, Any]] = []
    for cfg in cfgs:
        agg, (ok, n_err) = aggs[cfg.label], data[cfg.label]
        diffs = recipe_differences(cfg.recipe, "vilouras2024")
        notes.append(f"{cfg.label}: recipe {cfg.recipe.get('name')} (digest {cfg.recipe_digest}); {len(ok)} samples"
                     + (f", {n_err} failed (left out)" if n_err else "")
                     + ("; differs from the published recipe: " + ", ".join(diffs) if diffs else "; published recipe")
                     + ("" if len(agg.categories) == 8 else f"; only {len(agg.categories)} of the 8 categories have samples: "
                        "our Avg is over those, the published one over all 8"))
        counts = [agg.counts.get(c, {}).get(cfg.metrics[0], 0) for c in VILOURAS_ORDER]
        out_rows.append([f"{cfg.label} (groundkit)", "n", *map(str, counts), str(sum(counts))])
        for metric, name, scale, fmt in VILOURAS_METRICS:
            ours = [agg.per_category.get(c, {}).get(metric, math.nan) * scale for c in VILOURAS_ORDER]
            avg, std = agg.macro[metric] * scale, agg.macro_std[metric] * scale
            out_rows.append([f"{cfg.label} (groundkit)", name, *[_fmt(v, fmt) for v in ours],
                             f"{_fmt(avg, fmt)} ± {_fmt(std, fmt)}"])
            csv_rows.append({"source": "groundkit", "method": cfg.label, "recipe_digest": cfg.recipe_digest,
                             "metric": metric, **dict(zip(VILOURAS_ORDER, ours)), "Avg": avg, "Avg_std": std})
            pub = paper.get(metric)
            if pub:
                vals = [pub.get(c) for c in VILOURAS_ORDER]
                d = [_diff(a, b) for a, b in zip(ours, vals)]
                out_rows.append([f"{VILOURAS_PAPER_METHOD} (published)", name, *[_fmt(v, fmt) for v in vals], _fmt(pub.get("Avg"), fmt)])
                out_rows.append([f"Δ {cfg.label} − published", name, *[_fmt_diff(v, fmt) for v in d],
                                 _fmt_diff(_diff(avg, pub.get("Avg")), fmt)])
                csv_rows.append({"source": "difference", "method": f"{cfg.label} - {VILOURAS_PAPER_METHOD}",
                                 "recipe_digest": cfg.recipe_digest, "metric": metric, **dict(zip(VILOURAS_ORDER, d)),
                                 "Avg": _diff(avg, pub.get("Avg")), "Avg_std": math.nan})
            _bar(bars, cfg.protocol, metric, cfg, agg, ok, {c: (pub.get(c) / scale if pub and isinstance(pub.get(c), float) else None)
                                                        for c in agg.categories})
    for method, by_metric in published.items():
        for metric, name, scale, fmt in VILOURAS_METRICS:
            pub = by_metric.get(metric)
            if pub is None:
                continue
            if method != VILOURAS_PAPER_METHOD:
                out_rows.append([f"{method} (published)", name, *[_fmt(pub.get(c), fmt) for c in VILOURAS_ORDER], _fmt(pub.get("Avg"), fmt)])
            csv_rows.append({"source": "published", "method": method, "recipe_digest": "", "metric": metric,
                             **{c: pub.get(c) for c in VILOURAS_ORDER}, "Avg": pub.get("Avg"), "Avg_std": math.nan})
    if not ref_rows:
        notes.append("Published Table I not found: no reference rows.")
    sections.append(Section("Vilouras et al. 2024, Table I layout (Vilouras protocol)", header, out_rows, notes, text_cols=2))
    csvs["vilouras_table1"] = csv_rows


def _nuetzel_notes(cfg, agg, n_ok: int, n_err: int, table: str, column: tuple | None) -> list[str]:
    """The notes under one config's Nützel-layout table: protocol, recipe, published column, caveats."""
    base = "nuetzel2025-bbm" if cfg.recipe.get("bbm") else "nuetzel2025"
    diffs = recipe_differences(cfg.recipe, base, ignore=("bbm", "tokens"))
    notes = ["Nützel protocol: evaluated in the model's center-crop space (512x512 for the published checkpoints); "
             "mIoU = miou_fgbg (mean of foreground and background "
             "IoU, GMM mask), CNR = signed cnr (unbiased variances, min-max map). "
             f"'{WEIGHTED}' = class means weighted by n_c² as published; '{PER_SAMPLE}' and '{MACRO}' are ours only.",
             f"{cfg.label}: recipe {cfg.recipe.get('name')} (digest {cfg.recipe_digest}, tokens={cfg.recipe.get('tokens')}, "
             f"bbm={cfg.recipe.get('bbm') or 'off'}); {n_ok} samples" + (f", {n_err} failed (left out)" if n_err else "")]
    if column is not None:
        col, exact, why = column
        notes.append(f"Published column: {col}" + ("" if exact else f" (nearest published; {why})"))
    else:
        notes.append(f"Published {table} not found: no reference column.")
    if diffs:
        notes.append("Recipe differs from the published one: " + ", ".join(diffs) + ".")
    if len(agg.categories) < 8:
        notes.append(f"Only {len(agg.categories)} of the 8 categories have samples: our averages are over those, "
                     "the published ones over all 8.")
    return notes


def _nuetzel_tables(cfgs, aggs, data, refs, sections, csvs, bars) -> None:
    for table, title in (("nuetzel2025_table1", "Nuetzel et al. 2025, Table 1 layout (Nützel protocol)"),
                         ("nuetzel2025_table3", "Nuetzel et al. 2025, Table 3 layout (Nützel protocol, processing methods)")):
        ref = {str(r["category"]): r for r in refs.get(table, [])}
        if table.endswith("table3") and not ref:
            continue
        csv_rows: list[dict[str, Any]] = []
        for cfg in cfgs:
            agg, (ok, n_err) = aggs[cfg.label], data[cfg.label]
            col, exact, why = nuetzel_reference_columns(cfg.recipe)[table]
            notes = _nuetzel_notes(cfg, agg, len(ok), n_err, table, (col, exact, why) if ref else None)
            header = ["Category", "n"]
            for metric, short, name, fmt in NUETZEL_METRICS:
                header += [name, f"{name} published", f"Δ {name}"] if ref else [name]
            out_rows = []
            n_tot = 0
            lines = [(c, agg.per_category.get(c)) for c in NUETZEL_ORDER] + [
                (WEIGHTED, agg.weighted_avg_sq), (PER_SAMPLE, agg.per_sample), (MACRO, agg.macro)]
            for cat, ours in lines:
                pub_key = "Weighted Avg." if cat == WEIGHTED else cat
                pub = ref.get(pub_key) if cat not in (PER_SAMPLE, MACRO) else None
                if cat in CATEGORIES:
                    n = agg.counts.get(cat, {}).get(NUETZEL_METRICS[0][0], 0)
                    n_tot += n
                else:
                    n = n_tot
                line = [cat, str(n)]
                rec = {"config": cfg.label, "recipe_digest": cfg.recipe_digest, "category": cat, "n": n,
                       "published_table": table, "published_column": col if ref else ""}
                for metric, short, name, fmt in NUETZEL_METRICS:
                    v = (ours or {}).get(metric, math.nan)
                    p = pub.get(f"{col}_{short}") if pub else None
                    d = _diff(v, p)
                    line += [_fmt(v, fmt), _fmt(p, fmt), _fmt_diff(d, fmt)] if ref else [_fmt(v, fmt)]
                    rec.update({metric: v, f"{metric}_published": p if p is not None else math.nan, f"{metric}_diff": d})
                out_rows.append(line)
                csv_rows.append(rec)
            sections.append(Section(f"{title}: {cfg.label}", header, out_rows, notes))
            if table.endswith("table1"):
                for metric, short, _, _ in NUETZEL_METRICS:
                    _bar(bars, cfg.protocol, metric, cfg, agg, ok,
                         {c: (ref[c].get(f"{col}_{short}") if c in ref else None) for c in agg.categories})
                for metric in cfg.metrics:
                    if metric not in dict((m[0], 1) for m in NUETZEL_METRICS):
                        _bar(bars, cfg.protocol, metric, cfg, agg, ok, {})
        csvs[table.replace("nuetzel2025_", "nuetzel_")] = csv_rows
        if ref:
            cols = [k for k in next(iter(ref.values())) if k != "category"]
            sections.append(Section(f"Published {table.replace('nuetzel2025_', 'Nuetzel et al. 2025 ').replace('table', 'Table ')} (all columns)",
                                    ["category", *cols],
                                    [[c, *[_fmt(r.get(k), "{:g}") for k in cols]] for c, r in ref.items()],
                                    ["As published (miou = miou_fgbg, cnr = signed CNR)."], level=4))


def _reference_section(refs: Mapping[str, list[dict[str, Any]]], sections: list[Section]) -> None:
    """The published tables verbatim, clearly apart: for reading, never for subtracting from non-MS-CXR results."""
    sections.append(Section("Reference: published numbers on MS-CXR (not comparable with this dataset)", [], [],
                            ["As published by the papers, on MS-CXR; nothing above is compared with them."], level=2))
    for name, rows in refs.items():
        if not rows:
            continue
        cols = list(rows[0])
        sections.append(Section(f"Published {name}", cols, [[_fmt(r.get(k), "{:g}") if isinstance(r.get(k), float) else str(r.get(k, ""))
                                                             for k in cols] for r in rows], [], level=4))


# published table layout (named by the protocols that declare it) -> the writer of its sections
PAPER_LAYOUTS = {"vilouras2024_table1": _vilouras_table, "nuetzel2025_table1": _nuetzel_tables}


def _bar(bars, protocol, metric, cfg, agg, ok, reference) -> None:
    values: dict[str, list[float]] = {}
    for r in ok:
        values.setdefault(r["category"], []).append(r[metric])
    bars.append({"protocol": protocol, "metric": metric, "label": cfg.label,
                 "table": {c: (agg.per_category[c][metric], _sem(values.get(c, []))) for c in agg.categories},
                 "reference": {c: v for c, v in reference.items() if v is not None}})


def _all_metrics(configs, aggs, data, sections, csvs) -> None:
    csv_rows = []
    for cfg in configs:
        if cfg.label not in aggs:
            continue
        agg, (ok, n_err) = aggs[cfg.label], data[cfg.label]
        header = ["Category", "n", *cfg.metrics]
        out_rows = []
        for c in agg.categories:
            n = agg.counts[c][cfg.metrics[0]]
            out_rows.append([c, str(n), *[_fmt(agg.per_category[c][m], "{:.4f}") for m in cfg.metrics]])
            csv_rows.append({"config": cfg.label, "protocol": cfg.protocol, "recipe_digest": cfg.recipe_digest,
                             "category": c, "n": n, **{m: agg.per_category[c][m] for m in cfg.metrics}})
        total = sum(agg.counts[c][cfg.metrics[0]] for c in agg.categories)
        for name, d in ((f"{MACRO} (± std)", None), (PER_SAMPLE, agg.per_sample), (WEIGHTED, agg.weighted_avg_sq)):
            if d is None:
                cells = [f"{_fmt(agg.macro[m], '{:.4f}')} ± {_fmt(agg.macro_std[m], '{:.4f}')}" for m in cfg.metrics]
                vals = agg.macro
            else:
                cells, vals = [_fmt(d[m], "{:.4f}") for m in cfg.metrics], d
            out_rows.append([name, str(total), *cells])
            csv_rows.append({"config": cfg.label, "protocol": cfg.protocol, "recipe_digest": cfg.recipe_digest,
                             "category": name.replace(" (± std)", ""), "n": total, **{m: vals[m] for m in cfg.metrics}})
        sections.append(Section(f"All metrics ({cfg.protocol} protocol): {cfg.label}", header, out_rows,
                                [f"recipe {cfg.recipe.get('name')}, digest {cfg.recipe_digest}; {len(ok)} samples"
                                 + (f", {n_err} failed" if n_err else "")], level=3))
    csvs["summary"] = csv_rows
