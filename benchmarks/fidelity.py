"""How far groundkit's Nuetzel recipes are from the published loop, and what each fidelity knob moves.

    python benchmarks/fidelity.py            # tiny SD-1.5 + CXR-BERT in the published layout, 8 images

For each image it grounds one phrase with the faithful recipe (nuetzel2025 / nuetzel2025-bbm) and with
one knob changed at a time, and compares with the independent published-style loop
(tests/published_nuetzel.py) on identical weights and noise: max |map difference|, share of mask
pixels that differ, and the largest change of a Nuetzel metric (fg/bg mIoU, CNR, Top-1, AUROC).
The figures behind the README's "Deviations" section.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import groundkit as gk
from groundkit.evaluation.protocols import get_protocol

PHRASES = ["small left apical pneumothorax", "moderate cardiomegaly", "right lower lobe consolidation",
           "left pleural effusion"]
KNOBS = {
    "faithful (default)": {},
    "latent=mean (posterior mean, not a sample per step)": {"latent": "mean"},
    "map_fp16=false (float64 maps)": {"map_fp16": False},
    "seed=1 (other noise; the published RNG is unseeded)": {"seed": 1},
}


def _images(n: int):
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.random((150, 128)).astype(np.float32) * 0.3
        y, x = rng.integers(10, 90), rng.integers(10, 70)
        img[y:y + 40, x:x + 40] += 0.6
        yield img, [(float(x), float(y), 40.0, 40.0)], PHRASES[i % len(PHRASES)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from builders import build_sd_cxrbert
    from published_nuetzel import evaluation_space, published_bbm

    work = Path(tempfile.mkdtemp(prefix="groundkit-fidelity-"))
    tree = build_sd_cxrbert(work, tiny=True)
    (tree / "groundkit.yaml").write_text("image_size: 128\n")
    model = gk.load(tree, device="cpu")
    proto = get_protocol("nuetzel")
    for recipe in ("nuetzel2025", "nuetzel2025-bbm"):
        stats = {k: {"map": 0.0, "mask": 0.0, "metric": 0.0} for k in KNOBS}
        for img, boxes, phrase in _images(args.n):
            g0 = model.ground(img, phrase, recipe)
            prelim, mask, _ = published_bbm(model, img, phrase, g0.info["tokens"]["positions"], bbm=recipe.endswith("bbm"))
            ref_map, ref_mask = evaluation_space(prelim, mask, model.adapter.image_size)
            ref_metrics = proto.evaluate(ref_map, ref_mask, g0.geometry, boxes)
            for name, over in KNOBS.items():
                g = g0 if not over else model.ground(img, phrase, recipe, **over)
                st = stats[name]
                st["map"] = max(st["map"], float(np.abs(g.heatmap_crop - ref_map).max()))
                st["mask"] = max(st["mask"], float((g.mask_crop != ref_mask).mean()))
                m = g.evaluate(boxes)
                st["metric"] = max(st["metric"], max(abs(m[k] - ref_metrics[k]) for k in ("miou_fgbg", "cnr", "top1", "auroc")))
        print(f"\n{recipe}: difference to the published loop, worst of {args.n} images")
        print(f"  {'setting':<55} {'max|map|':>10} {'mask px':>9} {'max|metric|':>12}")
        for name, st in stats.items():
            print(f"  {name:<55} {st['map']:10.2e} {st['mask']:9.2%} {st['metric']:12.2e}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
