"""The whole report pipeline measured on synthetic reports with ground truth (groundkit demo-data --reports).

    python benchmarks/report_grounding.py --n 120 --seed 4711            # held-out seed (2026: the earlier one)
    python benchmarks/report_grounding.py --checkpoint demo --spacy       # spaCy sentence boundaries
    python benchmarks/report_grounding.py --n 60 --seed 7 --no-zones      # the side prior without zone words

Prints mention extraction precision / recall (a predicted mention matches a true one when their spans
overlap and the categories agree), negation accuracy (on matched mentions), the share of true positive
findings that were grounded, and the grounding metrics per positive finding (Nuetzel protocol: fg/bg mIoU,
CNR, Top-1) for the checkpoint's default recipe with the report-level contrast between findings on and off,
each with the report flow's default side prior (the report's own left/right words), and both again without
the side prior (all four from ONE captured pass per report: only the post-processing differs), per number of
findings drawn in the image (1, 2, 3) and in all, beside the centre-prior baseline on the same boxes; plus the
U-Net calls per finding of the shared pass. The summary lines read, for a script:

    all findings, contrast on: miou_fgbg X  cnr Y  top1 Z  (n=N)
    all findings, contrast off: ...
    all findings, contrast on, no side prior: ...
    all findings, contrast off, no side prior: ...      (each finding on its own: the plain maps)
    all findings, centre prior: ...
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
from groundkit.bench.baselines import baseline_row
from groundkit.reports import parse_report

METRICS = ("miou_fgbg", "cnr", "top1")
# printed name -> (contrast mode, side prior) of ground_report_variants
VARIANTS = {"on": ("findings", True), "off": ("none", True), "on, no side prior": ("findings", False),
            "off, no side prior": ("none", False)}


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


def _means(rows) -> dict[str, float]:
    return {m: float(np.nanmean([r[m] for r in rows])) if rows else float("nan") for m in METRICS}


def _line(label: str, rows) -> str:
    v = _means(rows)
    return f"{label}: " + "  ".join(f"{m} {v[m]:.3f}" for m in METRICS) + f"  (n={len(rows)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="demo")
    ap.add_argument("--recipe", default=None)
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--seed", type=int, default=4711)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--spacy", action="store_true", help="spaCy sentence boundaries (default: the rule-based path)")
    ap.add_argument("--no-zones", action="store_true",
                    help="ablation: the side prior without the report's zone words (side words only, as before zones)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.no_zones:  # the report flow reads a finding's zone through api.zone_of; no zone -> side weight only
        import groundkit.api as api

        api.zone_of = lambda words: None
    model = gk.load(args.checkpoint, device="cpu")
    counts = np.zeros(5, int)
    # per method, per number of findings drawn in the image (1, 2, 3): metric rows of the positive findings
    rows: dict[str, dict[int, list]] = {k: {} for k in (*VARIANTS, "centre")}
    grounded = positives = 0
    calls, t0 = [], time.time()
    for i, (img, findings, report) in enumerate(iter_report_samples(args.n, args.seed, args.size)):
        parsed = parse_report(report["text"], use_spacy=args.spacy)
        counts += extraction(parsed, report["mentions"])
        # contrast on/off, side prior on/off, from ONE captured pass per report (post-processing only differs)
        both = model.ground_report_variants(img, report["text"], args.recipe, variants=list(VARIANTS.values()),
                                            use_spacy=args.spacy)
        calls.append(both[VARIANTS["on"]].info["unet_calls_per_finding"])
        nf = len(findings)
        for k, truth in enumerate(findings):
            positives += 1
            mentions = [m for m in report["mentions"] if m["finding_index"] == k]
            j = next((j for j, f in enumerate(both[VARIANTS["on"]].findings)
                      if f.grounding is not None and any(_overlap((x.start, x.end), (m["start"], m["end"]))
                                                         for x in f.finding.mentions for m in mentions)), None)
            if j is None:
                continue
            grounded += 1
            for key, variant in VARIANTS.items():
                g = both[variant].findings[j].grounding
                rows[key].setdefault(nf, []).append(g.evaluate(truth["boxes"]))
            g = both[VARIANTS["on"]].findings[j].grounding
            rows["centre"].setdefault(nf, []).append(baseline_row("centre", g.recipe, g.geometry, truth["boxes"]))
        if (i + 1) % 20 == 0:
            print(f"{i + 1} reports, {time.time() - t0:.0f} s", flush=True)
    tp, npred, ntrue, neg_ok, judged = counts
    print(f"\nreports: {args.n} (seed {args.seed}), mentions: {ntrue} true, {npred} predicted")
    print(f"mention extraction: precision {tp / max(npred, 1):.3f}, recall {judged / max(ntrue, 1):.3f}")
    print(f"negation accuracy (matched mentions): {neg_ok / max(judged, 1):.3f} ({judged} judged)")
    print(f"positive findings grounded: {grounded}/{positives} ({grounded / max(positives, 1):.1%})")
    print(f"U-Net calls per finding (shared pass, contrast and side prior on and off alike): {np.mean(calls):.2f}")
    for title, keys in (("with the side prior (the report flow's default)", ("on", "off", "centre")),
                        ("without the side prior", ("on, no side prior", "off, no side prior", "centre"))):
        print(f"\nper positive finding (Nuetzel protocol), {title}: contrast on | contrast off | centre prior:")
        print(f"{'findings in image':<18} " + " | ".join(f"{'miou_fgbg':>9} {'cnr':>6} {'top1':>6}" for _ in range(3)) + "      n")
        for nf in sorted(rows["on"]):
            vals = [_means(rows[k].get(nf, [])) for k in keys]
            print(f"{nf:<18} " + " | ".join(f"{v['miou_fgbg']:>9.3f} {v['cnr']:>6.2f} {v['top1']:>6.2f}" for v in vals)
                  + f"  {len(rows['on'].get(nf, [])):>5}")
    flat = {k: [r for nf in sorted(v) for r in v[nf]] for k, v in rows.items()}
    for key in (*VARIANTS, "centre"):
        print(_line(f"all findings, {'centre prior' if key == 'centre' else 'contrast ' + key}", flat[key]))
    on, centre = _means(flat["on"]), _means(flat["centre"])
    if centre["cnr"] > 0:
        print(f"CNR contrast on / centre prior: {on['cnr'] / centre['cnr']:.2f}x")


if __name__ == "__main__":
    main()
