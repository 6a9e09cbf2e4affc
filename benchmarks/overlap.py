"""Overlapped post-processing in the benchmark runner: wall time vs the sum of its stages.

    python benchmarks/overlap.py                      # tiny SD + CXR-BERT at 64 px, 48 images, CPU
    python benchmarks/overlap.py --images 48 --post-sleep 0.3

Runs ``run_benchmark`` twice on the same synthetic set (``groundkit.data.synthetic``) with a deliberately slow
post-processing step (``--post-sleep`` seconds added to every sample's scoring, ``groundkit.bench.schedule._score``; default
"auto": the U-Net seconds per image of a first, sequential run, so that both stages weigh the same):

* sequential: ``cross_image=False, workers=0`` (one image after the other, as before the pipeline);
* overlapped: the default pipeline (cross-image batches in the main thread, post-processing and metrics in a
  worker thread, the next chunk's images loaded and encoded by a loader thread).

It prints the overlapped run's wall time against the sum of its U-Net and post-processing stage seconds
(``run.json`` sessions[-1].stages), checks that both runs wrote the same rows in the same order, and writes
``overlap.json`` to ``--out``. One torch thread (OMP_NUM_THREADS=1) as the test-suite runs.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--post-sleep", default="auto", help="seconds added to each sample's post-processing, or auto")
    ap.add_argument("--steps", default="40:50", help="nuetzel2025 window (U-Net work per image)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("overlap_out"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    import groundkit as gk
    from groundkit.bench import runner, schedule
    from groundkit.bench.datasets import load_dataset
    from groundkit.bench.rows import read_rows, row_key
    from groundkit.data.synthetic import generate
    from groundkit.families.diffusers_sd.testing import build_sd_cxrbert

    work = Path(tempfile.mkdtemp(prefix="groundkit-overlap-"))
    tree = build_sd_cxrbert(work / "sd", tiny=True, seed=0)
    (tree / "groundkit.yaml").write_text("image_size: 64\n")
    generate(work / "data", n=args.images, seed=3, size=96)
    samples = load_dataset("synthetic", data=work / "data")
    overrides = {"steps": args.steps, "tokens": "all"}
    real_score = schedule._score
    sleep = {"s": 0.0}

    def slow_score(*a, **k):
        time.sleep(sleep["s"])
        return real_score(*a, **k)

    schedule._score = slow_score

    def run(name, **kw):
        model = gk.load(tree, device="cpu")
        out = work / name
        t = time.perf_counter()
        runner.run_benchmark([model], "nuetzel2025", overrides, samples, out, progress=False, tables=False,
                             page=False, **kw)
        wall = time.perf_counter() - t
        stages = json.loads((out / "run.json").read_text())["sessions"][-1]["stages"]
        return wall, stages, read_rows(out / "rows.jsonl")

    if args.post_sleep == "auto":  # calibrate: the U-Net seconds per image without the sleep
        _, st, rows0 = run("calibrate", workers=1)
        sleep["s"] = st["unet"] / max(1, len(rows0))  # per sample
    else:
        sleep["s"] = float(args.post_sleep)
    seq_wall, seq_st, seq_rows = run("sequential", cross_image=False, workers=0)
    ovl_wall, ovl_st, ovl_rows = run("overlapped", workers=args.workers)
    same = [(row_key(r), r.get("miou_fgbg"), r.get("error")) for r in seq_rows] == \
           [(row_key(r), r.get("miou_fgbg"), r.get("error")) for r in ovl_rows]
    stage_sum = ovl_st["unet"] + ovl_st["post"]
    result = dict(images=args.images, samples=len(samples), post_sleep_s=sleep["s"], steps=args.steps,
                  sequential=dict(wall_s=seq_wall, stages=seq_st),
                  overlapped=dict(wall_s=ovl_wall, stages=ovl_st, workers=args.workers),
                  overlapped_wall_vs_stage_sum=ovl_wall / stage_sum, same_rows=same)
    print(f"{len(samples)} samples on {args.images} images, post-processing sleep {sleep['s']:.3f} s per sample")
    print(f"sequential: wall {seq_wall:.1f} s")
    print(f"overlapped: wall {ovl_wall:.1f} s; stages: U-Net {ovl_st['unet']:.1f} s + post-processing {ovl_st['post']:.1f} s "
          f"= {stage_sum:.1f} s (prefetch {ovl_st['prefetch']:.1f} s) -> wall is {100 * (1 - ovl_wall / stage_sum):.0f} % "
          f"below the stage sum; {100 * (1 - ovl_wall / seq_wall):.0f} % below the sequential wall")
    print(f"same rows in the same order: {same}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overlap.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
