"""Validation quality of demo training snapshots (synthetic seed 77 only: the split used for every choice).

    python benchmarks/demo/validate.py runs/demo-v2/main            # every snapshot not yet measured
    python benchmarks/demo/validate.py runs/demo-v2/main --n 96 --plot

For each ``snapshots/step_*`` folder it appends one JSON line to ``validation.jsonl``: Nuetzel-protocol
macro fg/bg mIoU, CNR and Top-1 for a late GT-noised window and the published window, the same for the
centre-prior baseline, and the side-swap accuracy (the phrase with the correct side puts more heatmap
mass on that side than the phrase with the side swapped). ``--plot`` draws validation vs steps.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import groundkit as gk
from groundkit.data import synthetic
from groundkit.bench.baselines import baseline_row
from groundkit.evaluation.protocols import aggregate

VALIDATION_SEED = 77
LATERAL = ("Consolidation", "Pneumonia", "Lung Opacity", "Atelectasis", "Pleural Effusion", "Pneumothorax")
WINDOWS = {"last5": dict(steps=(45, 50)), "published": dict(steps=(10, 50))}
METRICS = ["miou_fgbg", "cnr", "top1"]


def swap_side(phrase: str) -> str:
    return re.sub(r"\b(left|right)\b", lambda m: "right" if m.group(1) == "left" else "left", phrase)


def side_of(phrase: str) -> str | None:
    m = re.search(r"\b(left|right)\b", phrase)
    return m.group(1) if m else None


def side_mass(heatmap_crop: np.ndarray, side: str) -> float:
    """Share of heatmap mass on the patient's ``side`` (patient's left = image right)."""
    h = np.nan_to_num(np.clip(heatmap_crop, 0, None))
    half = h.shape[1] // 2
    part = h[:, half:] if side == "left" else h[:, :half]
    return float(part.sum() / max(h.sum(), 1e-12))


def evaluate(folder: Path, samples, windows=WINDOWS) -> dict:
    model = gk.load(folder, device="cpu")
    out: dict = {}
    for wname, win in windows.items():
        rows, centre = [], []
        for img, phrase, cat, boxes in samples:
            g = model.ground(img, phrase, "nuetzel2025", category=cat, **win)
            rows.append({"category": cat, **g.evaluate(boxes)})
            centre.append({"category": cat, **baseline_row("centre", g.recipe, g.geometry, boxes)})
        agg, cagg = aggregate(rows, METRICS), aggregate(centre, METRICS)
        for m in METRICS:
            out[f"{wname}/{m}"] = agg.macro[m]
            out[f"centre/{m}"] = cagg.macro[m]
    for tokens, key in (("lexical", "side_swap"), ("disease", "side_swap_disease")):
        wins, total = side_swap(model, samples, tokens)
        out[key] = wins / max(total, 1)
    out["side_swap_n"] = total
    return out


def side_swap(model, samples, tokens: str = "lexical") -> tuple[int, int]:
    """(wins, cases): the correct-side phrase puts more heatmap mass on its side than the swapped phrase.
    ``tokens`` matters: the side word's own map is often contralateral, so filters that keep it score lower."""
    wins = total = 0
    for img, phrase, cat, _ in samples:
        side = side_of(phrase)
        if cat not in LATERAL or side is None:
            continue
        right, wrong = model.ground_many(img, [phrase, swap_side(phrase)], "nuetzel2025", categories=[cat, cat],
                                         tokens=tokens, **WINDOWS["last5"])
        wins += side_mass(right.heatmap_crop, side) > side_mass(wrong.heatmap_crop, side)
        total += 1
    return wins, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--every", type=int, default=1, help="measure every k-th snapshot only")
    ap.add_argument("--plot", action="store_true")
    ap.add_argument("--quick", action="store_true", help="only the late window (no published window): ~4x faster")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    samples = list(synthetic.iter_samples(args.n, VALIDATION_SEED, size=256))
    log = args.run / "validation.jsonl"
    done = {json.loads(line)["step"] for line in log.read_text().splitlines()} if log.is_file() else set()
    snaps = sorted((args.run / "snapshots").glob("step_*"))
    for k, snap in enumerate(snaps):
        step = int(snap.name.split("_")[1])
        if step in done or (k % args.every and k != len(snaps) - 1):
            continue
        t0 = time.time()
        windows = {"last5": WINDOWS["last5"]} if args.quick else WINDOWS
        res = {"step": step, "n": args.n, **evaluate(snap, samples, windows), "seconds": round(time.time() - t0, 1)}
        with open(log, "a") as fh:
            fh.write(json.dumps(res) + "\n")
        print(json.dumps(res), flush=True)
    if args.plot:
        plot(log, args.run / "validation.png")


def plot(log: Path, png: Path) -> None:
    from groundkit import viz

    rows = sorted((json.loads(line) for line in log.read_text().splitlines()), key=lambda r: r["step"])
    xs = [r["step"] for r in rows]
    series = {f"{k} (last 5 steps)": [r[f"last5/{k}"] for r in rows] for k in METRICS}
    series.update({f"centre prior {k}": [r[f"centre/{k}"] for r in rows] for k in ("miou_fgbg", "cnr")})
    series["side-swap accuracy (lexical)"] = [r["side_swap"] for r in rows]
    series["side-swap accuracy (disease words)"] = [r.get("side_swap_disease", np.nan) for r in rows]
    viz.curve(xs, series, "training step", "validation (seed 77, macro)", png)


if __name__ == "__main__":
    main()
