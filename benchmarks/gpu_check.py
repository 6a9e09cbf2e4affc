"""One prepared GPU check: published loops vs groundkit at real size, random weights, one report.

    python benchmarks/gpu_check.py                    # CUDA machine with only this repository: ~8 min on an H200
    python benchmarks/gpu_check.py --tiny             # tiny widths, 2 images: minutes on a CPU (the wiring)
    python benchmarks/gpu_check.py --dtype float32    # full precision instead of dtype "auto" (bf16 on CUDA)

It builds real-size random-weight checkpoints in the published layouts (tests/builders.py: the MONAI
bundle + CLIP, SD 1.5 + CXR-BERT), then for every recipe (vilouras2024 on the MONAI LDM, nuetzel2025 and
nuetzel2025-bbm on SD) measures

* the published loop (benchmarks/speed.py: Vilouras' full inversion with [uncond, cond] batches;
  tests/published_nuetzel.py: Nuetzel's CFG loop, BBM's text pass included) phrase by phrase on the first
  ``--published-images`` images (its cost per phrase does not depend on the image or the phrase count);
* groundkit at 1 and 5 phrases per image over ``--images`` images (a different report's phrases per image,
  so that BBM's per-phrase text-pass cache does not flatter it),

recording seconds per phrase (CUDA: synchronised wall time; CPU: process time), U-Net forwards (calls) and batch items per phrase, peak memory, the
automatic batch size, host-device synchronisations of one groundkit grounding (CUDA only:
``torch.cuda.set_sync_debug_mode``) and how far groundkit's map is from the published loop's on the
first image. Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out``. ``--budget`` seconds: work
left when it runs out is skipped and listed (the report is always written).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import groundkit as gk
from groundkit.data.synthetic import iter_samples

RECIPES = (("monai", "vilouras2024"), ("sd", "nuetzel2025"), ("sd", "nuetzel2025-bbm"))


def measure(device, fn):
    """(result, seconds, peak MB): speed.py's clock (process CPU time on a CPU, synchronised wall time on
    CUDA) and peak (CUDA peak allocated, else the process's peak RSS)."""
    from speed import timed

    return timed(device, fn)


def count_syncs(device, fn) -> int | None:
    """Synchronising CUDA calls made by ``fn`` (torch's sync debug mode, as warnings); None off CUDA."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def samples(n_images: int, size: int):
    """n images, each with 5 phrases of its own (synthetic reports' phrases, cycled categories)."""
    items = list(iter_samples(n_images * 5, seed=18, size=size))
    return [(items[5 * i][0], [items[5 * i + k][1] for k in range(5)]) for i in range(n_images)]


def published(model, image, phrase, recipe):
    """The published loop of one phrase: (map to compare, nothing else needed)."""
    from speed import naive_nuetzel, naive_vilouras

    if recipe.mode == "ddim-inversion":
        return naive_vilouras(model, image, phrase, recipe)[0]
    return naive_nuetzel(model, image, phrase, recipe)[0]


def agreement(model, image, phrase, recipe, ref) -> float:
    """max |published - groundkit| on the first image's first phrase, post-processed alike (speed.py)."""
    from published_nuetzel import evaluation_space

    from groundkit.engine.heatmap import make_heatmap

    if recipe.mode == "ddim-inversion":
        plain = recipe.override(threshold="none")
        mine = model.capture(model.prepare(image), [phrase], recipe, [None]).maps[0]
        a = make_heatmap(ref, plain, model.adapter.image_size).heatmap
        b = make_heatmap(mine, plain, model.adapter.image_size).heatmap
        return float(np.nanmax(np.abs(a - b)))
    ref_map = evaluation_space(ref, ref > 0, model.adapter.image_size)[0]
    g = model.ground(image, phrase, recipe)
    return float(np.nanmax(np.abs(ref_map - g.heatmap_crop)))


def clear(model) -> None:
    model._inversions.clear()
    model._text_passes.clear()
    model._uncond0.clear()


def run_recipe(model, recipe_name, data, args, device, deadline, skipped):
    from speed import UnetCounter

    recipe = model.recipe(recipe_name)
    counter = UnetCounter(model.adapter)
    rows = []
    n_pub = min(args.published_images, len(data))
    if time.monotonic() < deadline:
        model.prepare(data[0][0])
        refs, sec, mem = measure(device, lambda: [published(model, img, ph[0], recipe) for img, ph in data[:n_pub]])
        fw, items = counter.take()
        diff = agreement(model, data[0][0], data[0][1][0], recipe, refs[0])
        counter.take()
        rows.append(dict(method="published loop", phrases_per_image=1, images=n_pub, seconds_per_phrase=sec / n_pub,
                         forwards_per_phrase=fw / n_pub, items_per_phrase=items / n_pub, peak_mb=mem, max_abs_diff=diff))
    else:
        skipped.append(f"{recipe_name}: published loop")
    for n in (1, 5):
        if time.monotonic() >= deadline:
            skipped.append(f"{recipe_name}: groundkit, {n} phrase(s)/image")
            continue
        clear(model)
        model.ground_many(data[0][0], data[0][1][:n], recipe)  # warm-up (kernels, allocator, compile)
        clear(model)
        counter.take()
        _, sec, mem = measure(device, lambda n=n: [model.ground_many(img, ph[:n], recipe) for img, ph in data])
        fw, items = counter.take()
        k = n * len(data)
        rows.append(dict(method="groundkit", phrases_per_image=n, images=len(data), seconds_per_phrase=sec / k,
                         forwards_per_phrase=fw / k, items_per_phrase=items / k, peak_mb=mem,
                         batch_size=model.auto_batch_size() if recipe.batch_size == 0 else recipe.batch_size))
    clear(model)
    syncs = count_syncs(device, lambda: model.ground(data[-1][0], data[-1][1][0], recipe))
    counter.remove()
    return dict(recipe=recipe_name, grid=recipe.grid, window=list(recipe.steps), rows=rows, cuda_syncs_one_grounding=syncs)


def markdown(report) -> str:
    head = report["setup"]
    lines = [f"# groundkit GPU check ({'tiny' if head['tiny'] else 'real-size'} random weights)", "",
             f"device {head['device']} ({head['device_name']}), U-Net dtype {head['dtype']}, compile {head['compile']}, "
             f"torch {head['torch']}, {head['images']} images, build {head['build_seconds']:.0f} s, total "
             f"{report['total_seconds']:.0f} s", "",
             "| recipe | method | phrases/image | s/phrase | forwards/phrase | items/phrase | peak MB | batch | max \\|diff\\| vs published |",
             "|---|---|---|---|---|---|---|---|---|"]
    for rec in report["recipes"]:
        base = next((r["seconds_per_phrase"] for r in rec["rows"] if r["method"] == "published loop"), None)
        for r in rec["rows"]:
            speed = f" (x{base / r['seconds_per_phrase']:.1f})" if base and r["method"] != "published loop" else ""
            diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else ""
            lines.append(f"| {rec['recipe']} | {r['method']} ({r['images']} img) | {r['phrases_per_image']} | "
                         f"{r['seconds_per_phrase']:.3f}{speed} | {r['forwards_per_phrase']:.1f} | {r['items_per_phrase']:.1f} | "
                         f"{r['peak_mb']:.0f} | {r.get('batch_size', '')} | {diff} |")
    lines += ["", "CUDA synchronisations during one grounding (1 phrase): " + ", ".join(
        f"{rec['recipe']} {rec['cuda_syncs_one_grounding']}" for rec in report["recipes"])]
    if report["skipped"]:
        lines += ["", "Skipped (time budget): " + "; ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny widths and 2 images (CPU: the wiring, in minutes)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="auto", help="auto (CUDA: bfloat16 + TF32) | float32 | bfloat16 | float16")
    ap.add_argument("--compile", action="store_true", help="torch.compile the U-Net (the published loop runs through it too)")
    ap.add_argument("--images", type=int, default=None, help="images per groundkit run (default 16; --tiny: 2)")
    ap.add_argument("--published-images", type=int, default=None, help="images of the published loop (default 2; --tiny: 1)")
    ap.add_argument("--only", action="append", choices=[r for _, r in RECIPES], help="run only these recipes")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds after the build before remaining work is skipped")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    args = ap.parse_args()
    args.images = args.images or (2 if args.tiny else 16)
    args.published_images = args.published_images or (1 if args.tiny else 2)
    from builders import build_monai_bundle, build_sd_cxrbert

    from groundkit.api import pick_device, resolve_dtype

    device = pick_device(args.device)
    start = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="groundkit-gpu-check-"))
    wanted = [(f, r) for f, r in RECIPES if not args.only or r in args.only]
    folders = {}
    if any(f == "monai" for f, _ in wanted):
        folders["monai"] = build_monai_bundle(work / "monai", tiny=args.tiny)
    if any(f == "sd" for f, _ in wanted):
        folders["sd"] = build_sd_cxrbert(work / "sd", tiny=args.tiny)
    if args.tiny:  # smaller inputs (MONAI: the smallest that keeps 16x16 layers for Vilouras' selector), so
        for family, folder in folders.items():  # that the published loops' hundreds of forwards stay minutes on a CPU
            (folder / "groundkit.yaml").write_text(f"image_size: {256 if family == 'monai' else 128}\n")
    build = time.perf_counter() - start
    deadline = time.monotonic() + args.budget
    data = samples(args.images, 512)
    report = {"setup": dict(tiny=args.tiny, device=str(device), device_name=torch.cuda.get_device_name(device) if device.type == "cuda"
                            else "cpu", dtype=str(resolve_dtype(args.dtype, device)).replace("torch.", ""), compile=args.compile,
                            torch=torch.__version__, images=args.images, published_images=args.published_images,
                            build_seconds=build, threads=torch.get_num_threads()),
              "recipes": [], "skipped": []}
    models = {}
    for family, recipe in wanted:
        if family not in models:
            models[family] = gk.load(folders[family], device=str(device), dtype=args.dtype, compile=args.compile)
        print(f"== {recipe}", flush=True)
        report["recipes"].append(run_recipe(models[family], recipe, data, args, device, deadline, report["skipped"]))
    report["total_seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
