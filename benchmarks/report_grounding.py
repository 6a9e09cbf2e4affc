"""The whole report pipeline measured on synthetic reports with ground truth (groundkit demo-data --reports).

    python benchmarks/report_grounding.py --n 120 --seed 2026            # held-out seed
    python benchmarks/report_grounding.py --checkpoint demo --spacy       # spaCy sentence boundaries

Prints mention extraction precision / recall (a predicted mention matches a true one when their spans
overlap and the categories agree), negation accuracy (on matched mentions), the share of true positive
findings that were grounded, and the grounding metrics per positive finding (Nuetzel protocol: fg/bg mIoU,
CNR, Top-1) for the checkpoint's default recipe beside the centre-prior baseline on the same boxes; plus the
U-Net calls per finding of the shared pass.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import groundkit as gk
from groundkit.data.synthetic_reports import iter_report_samples
from groundkit.evaluation.baselines import baseline_row
from groundkit.reports import parse_report

METRICS = ("miou_fgbg", "cnr", "top1")


def _overlap(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def extraction(parsed, truth) -> tuple[int, int, int, int, int]:
    """(true positives, predicted, true, negation correct, negation judged) for one report."""
    pred = parsed.mentions
    tp = sum(any(_overlap((m.start, m.end), (t["start"], t["end"])) and m.category == t["category"] for t in truth) for m in pred)
    found = [(t, next((m for m in pred if _overlap((m.start, m.end), (t["start"], t["end"])) and m.category == t["category"]), None))
             for t in truth]
    judged = [(t, m) for t, m in found if m is not None]
    return tp, len(pred), len(truth), sum(m.negated == t["negated"] for t, m in judged), len(judged)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="demo")
    ap.add_argument("--recipe", default=None)
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--spacy", action="store_true", help="spaCy sentence boundaries (default: the rule-based path)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    model = gk.load(args.checkpoint, device="cpu")
    counts = np.zeros(5, int)
    rows = {"model": [], "centre": []}
    grounded = positives = 0
    calls, t0 = [], time.time()
    for i, (img, findings, report) in enumerate(iter_report_samples(args.n, args.seed, args.size)):
        parsed = parse_report(report["text"], use_spacy=args.spacy)
        counts += extraction(parsed, report["mentions"])
        rg = model.ground_report(img, report["text"], args.recipe, use_spacy=args.spacy)
        calls.append(rg.info["unet_calls_per_finding"])
        for k, truth in enumerate(findings):
            positives += 1
            mentions = [m for m in report["mentions"] if m["finding_index"] == k]
            hit = next((f for f in rg.positive if any(_overlap((x.start, x.end), (m["start"], m["end"]))
                                                      for x in f.finding.mentions for m in mentions)), None)
            if hit is None:
                continue
            grounded += 1
            g = hit.grounding
            rows["model"].append(g.evaluate(truth["boxes"]))
            rows["centre"].append(baseline_row("centre", g.recipe, g.geometry, truth["boxes"]))
        if (i + 1) % 20 == 0:
            print(f"{i + 1} reports, {time.time() - t0:.0f} s", flush=True)
    tp, npred, ntrue, neg_ok, judged = counts
    print(f"\nreports: {args.n} (seed {args.seed}), mentions: {ntrue} true, {npred} predicted")
    print(f"mention extraction: precision {tp / max(npred, 1):.3f}, recall {judged / max(ntrue, 1):.3f}")
    print(f"negation accuracy (matched mentions): {neg_ok / max(judged, 1):.3f} ({judged} judged)")
    print(f"positive findings grounded: {grounded}/{positives} ({grounded / max(positives, 1):.1%})")
    print(f"U-Net calls per finding (shared pass): {np.mean(calls):.2f}")
    for name, rs in rows.items():
        print(f"{name:<7} " + "  ".join(f"{m} {np.nanmean([r[m] for r in rs]):.3f}" for m in METRICS) + f"  (n={len(rs)})")


if __name__ == "__main__":
    main()
