"""Grounding quality of the demo checkpoint on a held-out synthetic split, under both protocols,
against two baselines that use no model: a uniform map and a centre-prior Gaussian.

    python benchmarks/demo/quality.py --n 240 --seed 2026 --out runs/demo-quality

The held-out split uses a seed the training never saw (training: 1000; validation for choosing the
demo's recipe overrides: 77). Prints per-category and macro tables and writes them as Markdown.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import groundkit as gk
from groundkit.core.categories import CATEGORIES
from groundkit.data import synthetic
from groundkit.evaluation.baselines import baseline_row
from groundkit.evaluation.protocols import aggregate

RECIPES = {"vilouras": "vilouras2024", "nuetzel": "nuetzel2025"}
METRICS = {"vilouras": ["miou_thr", "cnr", "cnr_abs", "auroc_binned5"], "nuetzel": ["miou_fgbg", "cnr", "top1", "auroc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default="demo")
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--size", type=int, default=256, help="short side of the generated images")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "demo-quality")
    ap.add_argument("--set-v", action="append", default=[], help="override for the Vilouras recipe, field=value")
    ap.add_argument("--set-n", action="append", default=[], help="override for the Nuetzel recipe, field=value")
    ap.add_argument("--protocols", default="vilouras,nuetzel")
    args = ap.parse_args()
    protocols = {p: RECIPES[p] for p in args.protocols.split(",")}
    model = gk.load(args.checkpoint, device="cpu")
    overrides = {"vilouras": dict(s.split("=", 1) for s in args.set_v), "nuetzel": dict(s.split("=", 1) for s in args.set_n)}
    samples = list(synthetic.iter_samples(args.n, args.seed, args.size))
    rows = {(p, m): [] for p in protocols for m in ("demo", "uniform", "centre")}
    t0, calls = time.time(), 0
    for i, (img, phrase, cat, boxes) in enumerate(samples):
        for proto, rname in protocols.items():
            g = model.ground(img, phrase, rname, category=cat, **overrides[proto])
            calls += g.info["unet_calls"]
            rows[(proto, "demo")].append({"category": cat, **g.evaluate(boxes)})
            for kind, name in (("uniform", "uniform"), ("centre", "centre")):
                rows[(proto, name)].append({"category": cat, **baseline_row(kind, g.recipe, g.geometry, boxes)})
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{len(samples)} samples, {time.time() - t0:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [f"# demo checkpoint quality: held-out synthetic split (seed {args.seed}, n={len(samples)}, {args.size} px)", ""]
    summary = {}
    for proto, rname in protocols.items():
        recipe = model.recipe(rname, **overrides[proto])
        shown = {k: v for k, v in recipe.to_dict().items() if k in ("mode", "grid", "steps", "layers", "tokens", "threshold")}
        lines += [f"## {proto} protocol (recipe {rname}: {json.dumps(shown)})", ""]
        cats = [c for c in CATEGORIES if any(r["category"] == c for r in rows[(proto, "demo")])]
        lines.append("| model | metric | " + " | ".join(cats) + " | macro | per-sample |")
        lines.append("|---" * (len(cats) + 4) + "|")
        for name in ("demo", "uniform", "centre"):
            agg = aggregate(rows[(proto, name)], METRICS[proto])
            for metric in METRICS[proto]:
                vals = [agg.per_category[c][metric] for c in cats]
                lines.append(f"| {name} | {metric} | " + " | ".join(f"{v:.3f}" for v in vals)
                             + f" | **{agg.macro[metric]:.3f}** | {agg.per_sample[metric]:.3f} |")
                summary[f"{proto}/{name}/{metric}"] = agg.macro[metric]
        lines.append("")
    lines.append(f"U-Net calls: {calls} in {time.time() - t0:.0f} s on CPU.")
    text = "\n".join(lines)
    (args.out / "quality.md").write_text(text + "\n")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(text)


if __name__ == "__main__":
    main()
