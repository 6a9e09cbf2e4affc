"""How the report-level contrast was chosen: candidates replayed on ONE capture per validation report.

    python benchmarks/report_contrast_sweep.py                 # validation seeds 7 and 8, 120 reports each
    python benchmarks/report_contrast_sweep.py --seeds 11,12   # the check seeds

Each report of the synthetic report set (groundkit.data.synthetic_reports) is parsed and its positive findings
captured once, with the recipe's layers plus the refining layers (groundkit.engine.contrast.refine_layers); every
candidate below is then only post-processing of that capture (contrast_scores with other settings), scored per
positive finding under the Nuetzel protocol (fg/bg mIoU, CNR, Top-1), in all and per number of findings drawn in
the image. The side prior (the report's side and zone words) is on in every row but the first. Use validation
seeds only: the report benchmark's test seeds (benchmarks/report_grounding.py) must not choose anything.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import groundkit as gk
from groundkit.core.categories import CATEGORIES
from groundkit.data.synthetic_reports import iter_report_samples
from groundkit.engine.contrast import capture_recipe, contrast_scores, refine_layers
from groundkit.engine.heatmap import make_heatmap
from groundkit.engine.side_prior import zone_of
from groundkit.grounding import Grounding
from groundkit.reports import parse_report

sys.path.insert(0, str(ROOT / "benchmarks"))
from report_grounding import _overlap  # the report benchmark's span match, shared

METRICS = ("miou_fgbg", "cnr", "top1")
BEFORE, CHOSEN = "contrast, no refinement (before)", "contrast, refined: weight 1.0, sigma 0.7"


def capture(model, seeds, n: int, size: int) -> list[dict]:
    """One record per report: the positive findings' maps (recipe + refining layers), sides, zones, truth."""
    rc = capture_recipe(model.recipe(), model.layers, 2, "findings")  # what the report flow captures
    recs, t0 = [], time.time()
    for seed in seeds:
        for img, findings, report in iter_report_samples(n, seed, size):
            parsed = parse_report(report["text"], use_spacy=False)
            idx = [i for i, f in enumerate(parsed.findings) if not f.negated]
            if not idx:
                continue
            cats = [parsed.findings[i].category if parsed.findings[i].category in CATEGORIES else None for i in idx]
            prep = model.prepare(img)
            cap = model.capture(prep, [parsed.findings[i].phrase for i in idx], rc, categories=cats)
            truth = []
            for k, t in enumerate(findings):
                ms = [m for m in report["mentions"] if m["finding_index"] == k]
                j = next((j for j, i in enumerate(idx) if any(_overlap((x.start, x.end), (m["start"], m["end"]))
                                                             for x in parsed.findings[i].mentions for m in ms)), None)
                truth.append((j, t["boxes"], len(findings), t["category"]))
            recs.append({"maps": cap.maps, "geometry": prep.geometry, "truth": truth,
                         "sides": [parsed.findings[i].side for i in idx],
                         "zones": [zone_of(parsed.findings[i].location) for i in idx]})
        print(f"seed {seed}: {len(recs)} reports captured, {time.time() - t0:.0f} s", flush=True)
    return recs


def candidates(fine: tuple[int, ...]) -> dict[str, dict]:
    """name -> contrast_scores keyword arguments (side=False: no side prior)."""
    c: dict[str, dict] = {"none, no side prior": {"contrast": False, "side": False},
                          "side prior only": {"contrast": False},
                          "contrast, no refinement (before)": {}}
    for w in (0.5, 1.0, 2.0):
        for s in (0.0, 0.5, 0.7, 1.0):
            c[f"contrast, refined: weight {w}, sigma {s}"] = {"fine": fine, "fine_weight": w, "refine_sigma": s}
    c["the fine layers alone, contrast, no refinement"] = {"layers": fine}
    c["contrast, refined, T 0.3 b 0.4"] = {"fine": fine, "temperature": 0.3, "background": 0.4}
    c["contrast, refined, mix 0.5"] = {"fine": fine, "mix": 0.5}
    return c


def score(recs, recipe, size: int, kwargs: dict) -> dict[object, list[dict]]:
    rows: dict[object, list[dict]] = defaultdict(list)
    kw = dict(kwargs)
    side, contrast = kw.pop("side", True), kw.pop("contrast", True)
    recipe = recipe.override(layers=kw.pop("layers")) if "layers" in kw else recipe
    for rec in recs:
        scores = contrast_scores(rec["maps"], recipe, size, contrast=contrast, sides=rec["sides"] if side else None,
                                 zones=rec["zones"] if side else None, **kw)
        for j, boxes, nf, category in rec["truth"]:
            if j is None:
                continue
            hm = make_heatmap(rec["maps"][j], recipe, size, None, score=scores[j] if scores else None)
            m = Grounding("", hm.heatmap_crop, hm.mask_crop, rec["geometry"], recipe, {}).evaluate(boxes)
            rows["all"].append(m)
            rows[nf].append(m)
            rows[category].append(m)
    return rows


def _fmt(rows: list[dict]) -> str:
    return " / ".join(f"{np.nanmean([r[m] for r in rows]):.3f}" for m in METRICS) if rows else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="demo")
    ap.add_argument("--seeds", default="7,8")
    ap.add_argument("--n", type=int, default=120, help="reports per seed")
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    model = gk.load(args.checkpoint, device="cpu")
    recipe = model.recipe()
    fine = refine_layers(model.layers, recipe.layers)
    recs = capture(model, [int(s) for s in args.seeds.split(",")], args.n, args.size)
    print(f"\nrefining layers: {[i.name for i in model.layers if i.index in fine] or 'none'}")
    print(f"per positive finding, miou_fgbg / cnr / top1 (seeds {args.seeds}):")
    print(f"{'candidate':<48} {'all findings':<22} {'one finding drawn':<22} {'two':<22} {'three':<22} n")
    by_category = {}
    for name, kw in candidates(fine).items():
        rows = score(recs, recipe, model.adapter.image_size, kw)
        print(f"{name:<48} " + " ".join(f"{_fmt(rows.get(k, [])):<22}" for k in ("all", 1, 2, 3)) + f" {len(rows['all'])}",
              flush=True)
        if name in (BEFORE, CHOSEN):
            by_category[name] = rows
    print(f"\nper category, all images: {BEFORE} | {CHOSEN}")
    for cat in sorted(k for k in by_category[CHOSEN] if isinstance(k, str) and k != "all"):
        print(f"{cat:<20} " + " | ".join(f"{_fmt(by_category[k][cat]):<22}" for k in (BEFORE, CHOSEN)) +
              f" {len(by_category[CHOSEN][cat])}")


if __name__ == "__main__":
    main()
