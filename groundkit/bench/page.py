"""The benchmark page: one self-contained HTML file of a benchmark folder (tables, a bar chart per metric,
confidence charts, an overlay gallery), written as ``benchmark.html``.

Not the report page: that one shows a grounded radiology report (``groundkit report``, groundkit.viz.report_page,
``report.html``); the two file names differ so a reader never mistakes one for the other.
Every image is embedded as a base64 PNG, so ``benchmark.html`` can be mailed or attached as one file
(the PNGs are also kept under ``figures/`` and ``gallery/``).

Gallery: for each config and category, the best, median and worst sample by the protocol's main
metric (Vilouras: ``miou_thr``; Nützel: ``miou_fgbg``; ties broken by sample_id) is **re-grounded at
the end of the run** with the same checkpoint and resolved recipe (deterministic, seeded), and its
overlay drawn in original pixels (heatmap, predicted mask contour, ground-truth boxes). That costs at
most 3 x 8 groundings per config, instead of storing a heatmap for every sample while running.
``gallery/<config>/index.json`` remembers what was drawn: a resumed run whose selection did not
change reuses the PNGs.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from groundkit.bench import svg
from groundkit.bench.configs import Config
from groundkit.bench.coverage import curve, reliability_bins, scored_rows
from groundkit.bench.rows import metric_value
from groundkit.core.categories import ordered
from groundkit.core.outdir import make_dirs, write_text
from groundkit.evaluation import calibration as cal

__all__ = ["PAGE_FILE", "GalleryItem", "select_gallery", "build_gallery", "write_page"]

PAGE_FILE = "benchmark.html"  # the benchmark page's file name in the output folder

TAGS = ("best", "median", "worst")


@dataclass
class GalleryItem:
    label: str
    category: str
    tag: str  # best | median | worst
    sample_id: str
    phrase: str
    metric: str
    value: float
    path: Path | None
    error: str | None = None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "config"


def select_gallery(rows: Sequence[Mapping], cfg: Config, metric: str | None = None) -> list[tuple[str, str, dict]]:
    """[(category, tag, row)]: best, median and worst successful row per category (distinct samples)."""
    metric = metric or cfg.main_metric
    by_cat: dict[str, list[dict]] = {}
    for r in rows:
        if cfg.owns(r) and not r.get("error") and math.isfinite(metric_value(r, metric)):
            by_cat.setdefault(r["category"], []).append(dict(r))
    out = []
    for cat in ordered(by_cat):
        ranked = sorted(by_cat[cat], key=lambda r: (metric_value(r, metric), r["sample_id"]))
        picks = {"best": ranked[-1], "worst": ranked[0], "median": ranked[(len(ranked) - 1) // 2]}
        seen, chosen = set(), {}
        for tag, r in picks.items():  # with 2 samples: best and worst; with 1: best
            if r["sample_id"] not in seen:
                seen.add(r["sample_id"])
                chosen[tag] = r
        out += [(cat, tag, chosen[tag]) for tag in TAGS if tag in chosen]
    return out


def build_gallery(out_dir: str | Path, rows: Sequence[Mapping], plans: Sequence[Any], load_model: Callable[[Any], Any],
                  max_side: int = 320) -> list[GalleryItem]:
    """Re-ground the selected samples of every plan (groundkit.bench.schedule.Plan) and draw their overlays."""
    from groundkit import viz
    from groundkit.bench.distributed import group_by_image

    items: list[GalleryItem] = []
    for plan in plans:
        cfg = plan.config
        metric = cfg.main_metric
        picks = select_gallery(rows, cfg, metric)
        if not picks:
            continue
        folder = make_dirs(Path(out_dir) / "gallery" / _safe(cfg.label), out_dir)
        wanted = [{"category": c, "tag": t, "sample_id": r["sample_id"], "value": metric_value(r, metric),
                   "file": f"{_safe(c)}_{t}_{_safe(r['sample_id'])}.png"} for c, t, r in picks]
        index_file = folder / "index.json"
        cached = None
        if index_file.is_file():
            try:
                cached = json.loads(index_file.read_text())
            except json.JSONDecodeError:
                cached = None
        reuse = (cached is not None and cached.get("recipe_digest") == cfg.recipe_digest and cached.get("items") == wanted
                 and all((folder / w["file"]).is_file() and not (folder / w["file"]).is_symlink() for w in wanted))
        errors: dict[str, str] = {}
        if not reuse:
            for old in folder.glob("*.png"):
                old.unlink()
            model = load_model(plan)

            class _S:  # what group_by_image needs
                def __init__(self, row):
                    self.image_path, self.row = row["image"], row

            for group in group_by_image([_S(r) for _, _, r in picks]).values():
                rs = list({s.row["sample_id"]: s.row for s in group}.values())
                try:
                    gs = model.ground_many(rs[0]["image"], [r["phrase"] for r in rs], plan.recipe,
                                           categories=[r["category"] for r in rs])
                except Exception as e:
                    errors.update({r["sample_id"]: f"{type(e).__name__}: {e}" for r in rs})
                    continue
                for r, g in zip(rs, gs):
                    for w in wanted:
                        if w["sample_id"] != r["sample_id"]:
                            continue
                        title = f"{w['category']} · {w['tag']} · {metric} {w['value']:.3f}: {r['phrase']}"
                        viz.overlay(g.image, g.heatmap, mask=g.mask, boxes=r.get("boxes"), title=title,
                                    path=folder / w["file"], max_side=max_side, min_side=min(192, max_side))
            write_text(index_file, json.dumps({"recipe_digest": cfg.recipe_digest, "items": wanted}, indent=2), out_dir)
        by_id = {r["sample_id"]: r for _, _, r in picks}
        for w in wanted:
            p = folder / w["file"]
            err = errors.get(w["sample_id"])
            items.append(GalleryItem(cfg.label, w["category"], w["tag"], w["sample_id"], by_id[w["sample_id"]]["phrase"],
                                     metric, w["value"], p if p.is_file() else None,
                                     err or (None if p.is_file() else "overlay not drawn")))
    return items


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td:nth-child(2){text-align:left}
tr.ref td{background:#f4f4f4;color:#555}tr.diff td{background:#fff8e6}
p.note{font-size:.85em;color:#555;margin:.2em 0;overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}pre{overflow-x:auto;max-width:100%}
.charts img{max-width:100%;margin:.4em 0}
.gallery td{text-align:center;vertical-align:top;white-space:normal;max-width:340px}
.gallery img{width:320px;max-width:100%;height:auto}.cap{font-size:.8em;color:#444}
.err{color:#b00020}
.conf{display:flex;flex-wrap:wrap;gap:1em}.conf figure{margin:.4em 0;max-width:100%}
.conf figcaption{font-size:.8em;color:#444;max-width:360px;overflow-wrap:anywhere}
"""


def _png_data(path_or_image) -> str:
    if isinstance(path_or_image, (str, Path)):
        data = Path(path_or_image).read_bytes()
    else:
        import io

        buf = io.BytesIO()
        path_or_image.save(buf, format="PNG")
        data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _charts(out: Path, tables) -> list[str]:
    from groundkit import viz

    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for b in tables.bars:
        g = grouped.setdefault((b["protocol"], b["metric"]), {"table": {}, "reference": {}})
        for cat, val in b["table"].items():
            g["table"].setdefault(cat, {})[b["label"]] = val
        for cat, val in b["reference"].items():
            g["reference"].setdefault(cat, {})[b["label"]] = val
    parts = []
    make_dirs(out / "figures", out)
    for (protocol, metric), g in grouped.items():
        if not g["table"]:
            continue
        img = viz.category_bars(g["table"], metric, path=out / "figures" / f"{protocol}_{metric}.png",
                                reference=g["reference"] or None,
                                title=f"{metric} per category ({protocol} protocol; error bars: standard error)",
                                reference_label="published",
                                ylim=(0.0, 1.0) if metric.startswith(("auroc", "miou", "top1")) else None)
        parts.append(f"<img alt='{html.escape(metric)}' src='{_png_data(img)}'>")
    return parts


def _confidence(rows: Sequence[Mapping], configs: Sequence[Config]) -> list[str]:
    """Per config a reliability diagram and a risk-coverage curve (inline SVG), or why there are none."""
    esc = html.escape
    parts = ["<h2>Confidence</h2><p class='note'>Calibrated confidence = predicted P(IoU of the returned mask with the "
             "true boxes ≥ 0.3). Reliability: 10 equal-width confidence bins, bar height = observed rate of IoU ≥ 0.3, "
             "number = samples in the bin, dot = mean confidence of the bin; on the diagonal when calibrated. "
             "Risk-coverage: risk = 1 − mean IoU of the most confident share kept (lower is better).</p>"]
    for cfg in configs:
        ok = [r for r in rows if cfg.owns(r) and not r.get("error") and not r.get("dropped")]
        s = scored_rows(ok, cfg.main_metric)
        if len(s.iou) < 2:
            parts.append(f"<p class='note uncalibrated'>{esc(cfg.label)}: uncalibrated (no calibration for this checkpoint "
                         "and recipe, or fewer than 2 scored samples): no reliability diagram or risk-coverage curve is "
                         "drawn; the raw signals are in rows.jsonl.</p>")
            continue
        hit = s.iou >= cal.IOU_THRESHOLD
        err, n = cal.ece(s.confidence, hit), len(s.iou)
        auc, rnd, orc = cal.aurc(s.confidence, s.iou), cal.aurc_random(s.iou), cal.aurc_oracle(s.iou)
        parts.append(f"<h3>{esc(cfg.label)}</h3><div class='conf' data-config='{esc(cfg.label)}'>"
                     f"<figure>{svg.reliability_svg(reliability_bins(s), f'Reliability diagram: {cfg.label}')}"
                     f"<figcaption>Reliability, {n} samples: ECE {err:.3f} (10 bins).</figcaption></figure>"
                     f"<figure>{svg.risk_coverage_svg(curve(s), f'Risk-coverage curve: {cfg.label}')}"
                     f"<figcaption>Risk-coverage, {n} samples: AURC {auc:.3f} (random order {rnd:.3f}, oracle order "
                     f"{orc:.3f}).</figcaption></figure></div>")
    return parts


def _gallery_html(gallery: Sequence[GalleryItem]) -> list[str]:
    """The gallery section: best, median and worst sample per category, per config (empty without a gallery)."""
    esc = html.escape
    if not gallery:
        return []
    body = []
    body.append("<h2>Gallery</h2><p class='note'>Best, median and worst sample per category by the protocol's "
                "main metric, re-grounded with the same checkpoint and recipe. Green: ground-truth boxes; blue: "
                "predicted mask contour.</p>")
    for label in dict.fromkeys(g.label for g in gallery):
        items = [g for g in gallery if g.label == label]
        body.append(f"<h3>{esc(label)}</h3><div class='scroll'><table class='gallery'><thead><tr><th>category</th>"
                    + "".join(f"<th>{t}</th>" for t in TAGS) + "</tr></thead><tbody>")
        for cat in ordered(g.category for g in items):
            cells = []
            for tag in TAGS:
                g = next((x for x in items if x.category == cat and x.tag == tag), None)
                if g is None:
                    cells.append("<td class='cap'>(same sample as another column)</td>")
                elif g.path is None:
                    cells.append(f"<td class='err'>{esc(g.sample_id)}: {esc(g.error or '')}</td>")
                else:
                    cells.append(f"<td><img src='{_png_data(g.path)}' alt='{esc(g.sample_id)}'><div class='cap'>"
                                 f"{esc(g.sample_id)} · {esc(g.metric)} = {g.value:.3f}</div></td>")
            body.append(f"<tr><td>{esc(cat)}</td>{''.join(cells)}</tr>")
        body.append("</tbody></table></div>")
    return body


def write_page(out_dir: str | Path, tables, rows: Sequence[Mapping], configs: Sequence[Config],
              gallery: Sequence[GalleryItem] = (), run_info: Mapping[str, Any] | None = None) -> Path:
    """Write ``benchmark.html`` into ``out_dir`` (after the tables, which it embeds) and return its path."""
    out = Path(out_dir)
    run_info = run_info or {}
    esc = html.escape
    body = [f"<h1>groundkit benchmark: {esc(out.name)}</h1>",
            f"<p class='note'>Generated {_dt.datetime.now().astimezone().isoformat(timespec='seconds')} from "
            f"{esc(str(out.resolve()))}; {len(rows)} rows.</p>"]
    body.append("<h2>Configurations</h2><div class='scroll'><table><thead><tr><th>label</th><th>checkpoint</th><th>adapter</th>"
                "<th>recipe</th><th>digest</th><th>protocol</th><th>rows ok</th><th>failed</th><th>path</th></tr></thead><tbody>")
    for c in configs:
        own = [r for r in rows if c.owns(r)]
        bad = sum(1 for r in own if r.get("error"))
        body.append("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in (
            c.label, c.checkpoint, c.adapter, c.recipe.get("name"), c.recipe_digest, c.protocol, len(own) - bad, bad, c.path)) + "</tr>")
    body.append("</tbody></table></div>")
    ds = run_info.get("dataset") or {}
    if ds:
        body.append("<p class='note'>Dataset: " + esc(", ".join(f"{k}={v}" for k, v in ds.items() if k != "categories"))
                    + "</p>")
    body.append("<details><summary>resolved recipes</summary><pre>"
                + esc(json.dumps({c.label: c.recipe for c in configs}, indent=1)) + "</pre></details>")

    body.append("<h2>Tables</h2>")
    body += [f"<div class='scroll'>{s.html()}</div>" for s in tables.sections if s.header]  # wide tables scroll, the page doesn't
    body.append("<h2>Per-category charts</h2><p class='note'>Bars: groundkit means (error bar: standard error); "
                "hollow markers: the published value matched to that config, in the same units (fractions).</p>"
                "<div class='charts'>")
    body += _charts(out, tables)
    body.append("</div>")
    body += _confidence(rows, configs)

    body += _gallery_html(gallery)

    errors = [r for r in rows if r.get("error")]
    body.append(f"<h2>Failed samples ({len(errors)})</h2>")
    if errors:
        body.append("<div class='scroll'><table><thead><tr><th>checkpoint</th><th>sample_id</th><th>image</th><th>error</th></tr></thead><tbody>")
        body += ["<tr>" + "".join(f"<td>{esc(str(r.get(k)))}</td>" for k in ("checkpoint", "sample_id", "image", "error")) + "</tr>"
                 for r in errors]
        body.append("</tbody></table></div>")
    else:
        body.append("<p>None.</p>")
    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>groundkit benchmark</title>"
           f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>")
    return write_text(out / PAGE_FILE, doc, out)
