"""Peak memory of one image's grounding as a function of phrases, layers and window steps (CPU, random weights).

    python benchmarks/memory.py                        # SD 1.5 + CXR-BERT at real width, 256-px input
    python benchmarks/memory.py --size 512             # the published input size (slow on one CPU thread)
    python benchmarks/memory.py --family monai         # the MONAI LDM bundle + CLIP, vilouras2024 (fast window)
    python benchmarks/memory.py --tiny                 # tiny widths: the wiring, in a minute

Method: every setting runs in a fresh child process (``--child``), which loads the checkpoint, loads and
encodes the image, then resets the kernel's peak-RSS mark (``VmHWM``, through ``/proc/self/clear_refs``, as
benchmarks/full_size_smoke.py does; no psutil) and grounds the phrases. It reports

* ``peak above start``: VmHWM after grounding minus VmRSS before it (the grounding's own peak: U-Net
  activations, captured maps, post-processing; a warm-up grounding of another phrase first pages the
  memory-mapped weights in, and its caches are emptied), and
* ``maps returned``: the bytes of the heat maps and masks the call returns.

Why not tracemalloc: it does not see torch's CPU allocations. Why a process per setting: the peak mark is
per process, and freed memory of an earlier setting would hide a smaller later one.

Settings (``nuetzel2025`` on SD, window ``--steps``, default 2 GT-noised steps so that 32 phrases stay minutes on
one thread): phrases 1, 4, 16, 32 with the recipe's layers (all 16 of SD); 1 and 32 phrases with the up-block layers
only; 1 and 4 phrases with a 4x longer window; with ``--bbm``, ``nuetzel2025-bbm`` (10-step grid) at 1 and 32 phrases. The check
of docs/speed-throughput.md: the peak at 32 phrases stays under 2x the peak at 1 phrase plus the maps returned.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procmem import reset_peak, status_kb

PHRASES = ["left pleural effusion", "moderate cardiomegaly", "right apical pneumothorax", "bibasal atelectasis",
           "right lower lobe consolidation", "mild pulmonary edema", "left upper lobe opacity", "small right effusion"]


def child(spec: dict) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import groundkit as gk

    model = gk.load(spec["tree"], device="cpu")
    rng = np.random.default_rng(0)
    img = (rng.random((spec["size"], spec["size"])) * 0.3).astype(np.float32)
    img[spec["size"] // 4 : spec["size"] // 2, spec["size"] // 4 : spec["size"] // 2] += 0.6
    model.prepare(img)
    # warm-up: one grounding of another phrase pages the (memory-mapped) weights in and sets up the kernels; the
    # caches it filled are emptied, so the measured call recomputes everything
    model.ground_many(img, ["warm up"], spec["recipe"], **spec["overrides"])
    model.clear_caches(latents=False)
    gc.collect()
    phrases = [f"{PHRASES[i % len(PHRASES)]}" + ("" if i < len(PHRASES) else f" {i}") for i in range(spec["phrases"])]
    exact = reset_peak()
    start_kb = status_kb("VmRSS") or 0
    start_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    gs = model.ground_many(img, phrases, spec["recipe"], **spec["overrides"])
    seconds = time.perf_counter() - t
    peak_kb = status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maps = sum(g.heatmap.nbytes + g.mask.nbytes for g in gs)
    return dict(phrases=spec["phrases"], recipe=spec["recipe"], label=spec["label"], exact=exact,
                start_mb=start_kb / 1024, peak_mb=peak_kb / 1024, peak_above_start_mb=(peak_kb - (start_kb if exact else start_max)) / 1024,
                maps_mb=maps / 2**20, seconds=seconds, unet_items=gs[0].info["unet_calls_total"],
                unet_forwards=gs[0].info["unet_forwards"], layers=len(gs[0].recipe.layers or []),
                batch_size=spec["overrides"].get("batch_size", 0))


def settings(args) -> list[dict]:
    if args.family == "monai":
        base = dict(grid="stride:50", steps=(3, 6))
        out = [dict(label="recipe layers", recipe="vilouras2024", phrases=k, overrides=base) for k in args.phrases]
        out += [dict(label="all layers", recipe="vilouras2024", phrases=k, overrides={**base, "layers": "all"}) for k in (1, 32)]
        return out
    a, b = (int(x) for x in args.steps.split(":"))
    base = dict(steps=(a, b), tokens="all")
    longer = dict(steps=(max(0, b - 4 * (b - a)), b), tokens="all")
    out = [dict(label="recipe layers", recipe="nuetzel2025", phrases=k, overrides=base) for k in args.phrases]
    if not args.quick:
        out += [dict(label="up-block layers only", recipe="nuetzel2025", phrases=k, overrides={**base, "layers": "up"})
                for k in (1, 32)]
        out += [dict(label=f"window x4 ({longer['steps'][1] - longer['steps'][0]} steps)", recipe="nuetzel2025", phrases=k,
                     overrides=longer) for k in (1, 4)]
    if args.bbm:
        out += [dict(label="BBM, 10-step grid", recipe="nuetzel2025-bbm", phrases=k,
                     overrides=dict(grid="stride:100", steps=(8, 10), bbm_steps=(8, 10), tokens="all")) for k in (1, 32)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--family", choices=["sd", "monai"], default="sd")
    ap.add_argument("--size", type=int, default=256, help="model input size in pixels (published: 512)")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--quick", action="store_true", help="only the phrase sweep")
    ap.add_argument("--phrases", type=int, nargs="+", default=[1, 4, 16, 32])
    ap.add_argument("--bbm", action="store_true", help="also nuetzel2025-bbm on a 10-step grid at 1 and 32 phrases (slow at real width)")
    ap.add_argument("--steps", default="48:50", help="nuetzel2025 window of the sweep")
    ap.add_argument("--workdir", type=Path, default=None, help="where the checkpoint is built (kept; reused when present)")
    ap.add_argument("--out", type=Path, default=Path("memory_out"))
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return
    from groundkit.families.diffusers_sd.testing import build_sd_cxrbert
    from groundkit.families.monai_ldm.testing import build_monai_bundle

    work = args.workdir or Path(tempfile.mkdtemp(prefix="groundkit-memory-"))
    kind = f"{args.family}-{'tiny' if args.tiny else 'real'}"
    tree = work / kind
    marker = tree / ".built"
    if not marker.exists():
        t = time.perf_counter()
        tree = (build_monai_bundle if args.family == "monai" else build_sd_cxrbert)(tree, tiny=args.tiny, seed=0)
        (Path(work / kind) / ".built").write_text(str(tree))
        print(f"built {kind} in {time.perf_counter() - t:.0f} s", flush=True)
    tree = Path(marker.read_text()) if marker.exists() else tree
    (tree / "groundkit.yaml").write_text(f"image_size: {args.size}\n")
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for spec in settings(args):
        spec = {**spec, "tree": str(tree), "size": args.size}
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                              env=env)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"FAILED {spec['label']} {spec['phrases']} phrases:\n{proc.stderr[-2000:]}", flush=True)
            continue
        r = json.loads(line[7:])
        rows.append(r)
        print(f"{r['recipe']:16s} {r['label']:24s} {r['phrases']:3d} phrases: peak {r['peak_above_start_mb']:8.1f} MB above "
              f"start ({r['start_mb']:.0f} MB), maps returned {r['maps_mb']:.2f} MB, {r['unet_items']} items in "
              f"{r['unet_forwards']} forwards, {r['seconds']:.1f} s", flush=True)
    one = {(r["recipe"], r["label"]): r for r in rows if r["phrases"] == 1}
    verdicts = []
    for r in rows:
        ref = one.get((r["recipe"], r["label"]))
        if r["phrases"] == 32 and ref is not None:
            bound = 2 * (ref["start_mb"] + ref["peak_above_start_mb"]) + r["maps_mb"]
            ok = r["start_mb"] + r["peak_above_start_mb"] <= bound
            verdicts.append(dict(recipe=r["recipe"], label=r["label"], peak_32_mb=r["start_mb"] + r["peak_above_start_mb"],
                                 bound_mb=bound, ok=ok))
            print(f"check {r['recipe']} {r['label']}: process peak at 32 phrases {verdicts[-1]['peak_32_mb']:.0f} MB <= "
                  f"2 x peak at 1 phrase + maps = {bound:.0f} MB: {'yes' if ok else 'NO'}; growth above start "
                  f"{r['peak_above_start_mb'] / max(ref['peak_above_start_mb'], 1e-9):.1f}x", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"memory_{kind}_{args.size}.json").write_text(json.dumps(dict(family=args.family, size=args.size,
                                                                              tiny=args.tiny, rows=rows, checks=verdicts), indent=2))


if __name__ == "__main__":
    main()
