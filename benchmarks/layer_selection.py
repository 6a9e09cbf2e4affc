"""What the published recipes' ``attn2`` layer selection changes against every text-attending layer.

    python benchmarks/layer_selection.py                  # tiny SD-1.5 + CXR-BERT U-Nets at 128 px, and the demo
    python benchmarks/layer_selection.py --size 64

A diffusers U-Net built with ``only_cross_attention`` lets each transformer block's first attention (``attn1``)
attend to the text too. The published code hooks each block's ``attn2`` only; the ``attn2`` selector (what
``nuetzel2025`` and ``vilouras2024`` now say) does the same, ``all`` takes both. For three models it prints the
layer counts (text-attending, attn2, attn1) and, per recipe, the largest and the mean per-map max |difference|
between the heatmaps (crop space, each in [0, 1]) of the recipe's selector as published (``attn2``; vilouras2024:
``3,4,6,7@16x16:attn2|16x16:attn2``) and the same selector without the qualifier (``all``; ``3,4,6,7@16x16|16x16``:
what both said before), over two images and three phrases:

* a tiny SD-1.5 + CXR-BERT U-Net (random weights) with ``only_cross_attention=True``;
* the same U-Net without it (control: both selections are the same layers, so the difference must be 0);
* the bundled demo (trained; ``only_cross_attention`` in one down and one up block).

``vilouras2024-fast`` stands in for the faithful vilouras2024 (same window in t, 3x fewer U-Net calls). Figures
are printed, never asserted. One torch thread (OMP_NUM_THREADS=1).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

import groundkit as gk
from groundkit.data.images import load_image
from groundkit.families.diffusers_sd.testing import build_sd_cxrbert

DEMO = Path(gk.__file__).parent / "assets" / "demo"
PHRASES = ["small left pleural effusion", "cardiomegaly", "right lower lobe consolidation"]
RECIPES = ("nuetzel2025", "vilouras2024-fast")


def tiny_unet(root: Path, size: int, only_cross: bool) -> gk.GroundingModel:
    tree = build_sd_cxrbert(root, tiny=True, unet_overrides={"only_cross_attention": only_cross})
    (tree / "groundkit.yaml").write_text(f"image_size: {size}\n")
    return gk.load(tree, device="cpu")


def text_attending(spec: str) -> str:
    """The same selector without the attn2 qualifier: what it selected when every text-attending layer counted."""
    return "all" if spec == "attn2" else spec.replace(":attn2", "")


def compare(model: gk.GroundingModel, images: list[np.ndarray], recipe: str) -> tuple[float, float]:
    """(largest, mean) over images x phrases of max |heatmap(published selector) - heatmap(same without attn2)|."""
    before = text_attending(gk.get_recipe(recipe).layers)
    diffs = []
    for img in images:
        published = model.ground_many(img, PHRASES, recipe)
        every = model.ground_many(img, PHRASES, recipe, layers=before)
        diffs += [float(np.abs(a.heatmap_crop - b.heatmap_crop).max()) for a, b in zip(published, every)]
    return max(diffs), float(np.mean(diffs))


def report(label: str, model: gk.GroundingModel, images: list[np.ndarray]) -> None:
    kinds = [i.attention for i in model.layers]
    print(f"\n{label}: {len(kinds)} text-attending layers = {kinds.count('attn2')} attn2 + {kinds.count('attn1')} attn1")
    for recipe in RECIPES:
        spec = gk.get_recipe(recipe).layers
        try:
            model.recipe(recipe)
        except ValueError:  # e.g. vilouras2024's 16x16 layers on a U-Net served below 128 px
            print(f"  {recipe:<18} {spec!r} selects no layer of this model at this size")
            continue
        now, then = (len(model.recipe(recipe, layers=s).layers or model.layers) for s in (spec, text_attending(spec)))
        largest, mean = compare(model, images, recipe)
        print(f"  {recipe:<18} {spec!r}: {now:>2} layers; without attn2 ({text_attending(spec)!r}): {then:>2} layers; "
              f"max |map difference| {largest:.3f} (mean of per-map maxima {mean:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128, help="input side of the tiny U-Nets (default 128: 16x16 layers)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    images = [load_image(DEMO / "sample.png"), load_image(DEMO / "sample_report.png")]
    print(f"groundkit {gk.__version__}, torch {torch.__version__}, {len(images)} images x {len(PHRASES)} phrases, CPU",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="gk-layers-") as tmp:
        report(f"tiny SD-1.5 U-Net, only_cross_attention=True, {args.size} px",
               tiny_unet(Path(tmp) / "oca", args.size, True), images)
        report(f"tiny SD-1.5 U-Net, as published (no only_cross_attention), {args.size} px",
               tiny_unet(Path(tmp) / "sd", args.size, False), images)
    report("demo (trained, 64 px)", gk.load("demo", device="cpu"), images)


if __name__ == "__main__":
    main()
