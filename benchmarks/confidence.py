"""How well the demo's calibrated confidence orders and predicts grounding quality, on a synthetic TEST split
that no calibration saw (docs/confidence.md).

    python benchmarks/confidence.py                                   # demo-default + nuetzel2025, 200 images
    python benchmarks/confidence.py --recipes demo-default --n 60 --data /tmp/gk-conf-test
    python benchmarks/confidence.py --calibrate /tmp/val --n-cal 300  # refit on a validation folder first
    python benchmarks/confidence.py --recipes vilouras2024 --n 40 --rows /tmp/vil40.json   # keep the test groundings
    python benchmarks/confidence.py --recipes vilouras2024 --n 40 --rows /tmp/vil40.json --calibration new.json

Per recipe it prints, for the confidence as shipped (groundkit/assets/demo/calibration/<recipe>.json, fitted on
the validation split, seed 77): the Spearman correlation between confidence and the IoU of the returned mask
with the true boxes; the mean IoU of all groundings vs the most confident 50 %; the area under the
risk-coverage curve (risk = 1 - IoU) next to a random-confidence baseline and the oracle ordering; the 10-bin
ECE of the confidence as P(IoU >= 0.3), and the reliability bins. Figures are printed, never asserted.
The test set is written by ``groundkit demo-data --seed SEED --split test`` (default seed 31337: neither the
demo's training seeds 1000+, its validation seed 77 nor its documented test seed 2026).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch


def _ensure_data(folder: Path, n: int, seed: int, split: str) -> None:
    if not (folder / "MS_CXR_Local_Alignment_synthetic.csv").is_file():
        print(f"writing {n} synthetic images (seed {seed}, split {split}) to {folder} ...", flush=True)
        subprocess.run([sys.executable, "-m", "groundkit", "demo-data", "--out", str(folder), "--n", str(n),
                        "--seed", str(seed), "--split", split], check=True, stdout=subprocess.DEVNULL)


def _test_rows(cache: Path | None, model, samples, recipe: str, digest: str, seed: int) -> list[dict]:
    """The test groundings' rows, from ``cache`` when it holds this recipe (same digest, seed and samples)."""
    from groundkit.bench import confidence as bc

    key = {"recipe": recipe, "digest": digest, "seed": seed, "ids": [s.sample_id for s in samples]}
    store = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
    hit = store.get(recipe)
    if hit is not None and hit["key"] == key:
        print(f"{recipe}: test groundings read from {cache}", flush=True)
        return hit["rows"]
    rows = bc.collect(model, samples, recipe)
    if cache is not None:
        store[recipe] = {"key": key, "rows": rows}
        cache.write_text(json.dumps(store))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="demo-default,nuetzel2025")
    ap.add_argument("--n", type=int, default=200, help="test samples (first N of the test folder)")
    ap.add_argument("--seed", type=int, default=31337, help="seed of the test split (never the calibration's)")
    ap.add_argument("--data", type=Path, default=None, help="test folder (written here when missing)")
    ap.add_argument("--calibrate", type=Path, default=None, help="validation folder: refit into a temporary folder first")
    ap.add_argument("--n-cal", type=int, default=300)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    ap.add_argument("--calibration", type=Path, default=None,
                    help="judge this calibration file instead of the shipped one (one recipe)")
    ap.add_argument("--rows", type=Path, default=None,
                    help="test groundings (signals, IoU) cache: read when it exists, else written; a new calibration "
                         "is then judged on the same groundings without grounding again")
    args = ap.parse_args()
    torch.set_num_threads(1)

    import groundkit as gk
    from groundkit.bench import confidence as bc
    from groundkit.bench.datasets import load_dataset
    from groundkit.engine import confidence as conf
    from groundkit.evaluation import calibration as cal

    data = args.data or Path(os.environ.get("TMPDIR", "/tmp")) / f"gk-confidence-test-{args.seed}-{args.n}"
    _ensure_data(data, args.n, args.seed, "test")
    samples = list(load_dataset("synthetic", data=data))[: args.n]
    model = gk.load("demo")
    out = {}
    for recipe in [r.strip() for r in args.recipes.split(",") if r.strip()]:
        r = model.recipe(recipe)
        calibration = conf.load_calibration(model.entry.path, r.name)
        if args.calibration is not None:
            calibration = json.loads(args.calibration.read_text())
            if calibration.get("recipe") != r.name:
                raise SystemExit(f"--calibration {args.calibration}: fitted for {calibration.get('recipe')!r}, not {r.name!r}")
        if args.calibrate is not None:
            val = list(load_dataset("synthetic", data=args.calibrate))[: args.n_cal]
            calibration = bc.fit(bc.collect(model, val, recipe), checkpoint="demo", recipe=r.name,
                                 recipe_digest=r.digest(), data=str(args.calibrate))
        if calibration is None:
            print(f"{recipe}: no calibration (run groundkit calibrate or pass --calibrate); skipped")
            continue
        t0 = time.perf_counter()
        rows = _test_rows(args.rows, model, samples, recipe, r.digest(), args.seed)
        secs = time.perf_counter() - t0
        probs = [conf.predict(calibration, row["signals"]) for row in rows]
        ious = [row["iou"] for row in rows]
        s = cal.summary(probs, ious)
        s["reliability"] = cal.reliability(probs, [i >= cal.IOU_THRESHOLD for i in ious])
        s["calibration"] = conf.describe_calibration(calibration)
        out[recipe] = s
        gain = s["mean_iou_top50"] / s["mean_iou"] - 1 if s["mean_iou"] > 0 else float("nan")
        print(f"\n{recipe}: {s['n']} test groundings (seed {args.seed}), {secs:.0f} s; calibrated on "
              f"{calibration.get('data')} (n={calibration.get('n')})")
        print(f"  Spearman(confidence, IoU)     {s['spearman']:.3f}   (target >= 0.5)")
        print(f"  mean IoU all / top-50%        {s['mean_iou']:.3f} / {s['mean_iou_top50']:.3f}   ({gain:+.1%} relative; target >= +25%)")
        print(f"  AURC (risk = 1 - IoU)         {s['aurc']:.3f}   random {s['aurc_random']:.3f}   oracle {s['aurc_oracle']:.3f}")
        print(f"  ECE (10 bins, P(IoU >= 0.3))  {s['ece']:.3f}   (target <= 0.1); hit rate {s['hit_rate']:.2f}")
        print("  reliability (mean conf -> hit rate, n): "
              + "  ".join(f"{c:.2f}->{h:.2f} ({k})" for c, h, k in s["reliability"]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
