"""One prepared GPU check: published loops vs groundkit at real size, random weights, one report.

    python benchmarks/gpu_check.py                    # CUDA machine with only this repository: ~6 min on an H200
    python benchmarks/gpu_check.py --quick            # fewer images, no published loop: ~2-3 min on an H200
    python benchmarks/gpu_check.py --tiny             # tiny widths, 4 images: minutes on a CPU (the wiring)
    python benchmarks/gpu_check.py --tiny --quick     # tiny widths, 2 images, no published loop
    python benchmarks/gpu_check.py --dtype float32    # full precision instead of dtype "auto" (bf16 on CUDA)

No network and no downloads: the weights are random, written by the builders in groundkit/families/*/testing.py.

It builds real-size random-weight checkpoints in the published layouts (tests/builders.py: the MONAI
bundle + CLIP, SD 1.5 + CXR-BERT), then for every recipe (vilouras2024 on the MONAI LDM, nuetzel2025 and
nuetzel2025-bbm on SD) measures

* the published loop (benchmarks/speed.py: Vilouras' full inversion with [uncond, cond] batches;
  tests/published_nuetzel.py: Nuetzel's CFG loop, BBM's text pass included) phrase by phrase on the first
  ``--published-images`` images (its cost per phrase does not depend on the image or the phrase count);
* groundkit at 1 and 5 phrases per image (a different report's phrases per image, so that BBM's per-phrase
  text-pass cache does not flatter it), with cross-image batching off (one ``ground_many`` per image, over
  the first ``--off-images`` images: image after image, its per-phrase figures do not depend on the count) and
  on (``ground_batch`` over all ``--images`` images: their U-Net passes share forwards),
* on CUDA, peak memory of one image's grounding at 1, 4, 16 and 32 phrases (``--no-memory``: skip),

recording seconds per phrase (CUDA: synchronised wall time; CPU: process time), U-Net forwards (calls) and batch items per phrase, peak memory, the
automatic batch size, host-device synchronisations of one groundkit grounding (CUDA only:
``torch.cuda.set_sync_debug_mode``) and how far groundkit's map is from the published loop's on the
first image. Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out``. ``--budget`` seconds: work
left when it runs out is skipped and listed (the report is always written).

Every groundkit setting prints one line as soon as it is measured, for scripts to read, e.g.::

    RESULT vilouras2024 | 1 phrase/image | cross-image on | 29.9 forwards/phrase | 151.2 items/s | ...

(recipe, ``1 phrase/image`` or ``5 phrases/image``, ``cross-image on|off``, ``<N> forwards/phrase``,
``<X> items/s``: U-Net batch items per second of the whole grounding, post-processing included).
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
WEIGHT = {"vilouras2024": 0.45, "nuetzel2025": 0.2, "nuetzel2025-bbm": 0.35}  # shares of --budget (Vilouras' batch-1 runs cost most)


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
        a = make_heatmap(ref, plain, model.adapter.image_size).heatmap_crop
        b = make_heatmap(mine, plain, model.adapter.image_size).heatmap_crop
        return float(np.nanmax(np.abs(a - b)))
    ref_map = evaluation_space(ref, ref > 0, model.adapter.image_size)[0]
    g = model.ground(image, phrase, recipe)
    return float(np.nanmax(np.abs(ref_map - g.heatmap_crop)))


def clear(model) -> None:
    model.clear_caches(latents=False)


SETTINGS = ((1, False), (1, True), (5, False), (5, True))  # (phrases per image, cross-image batching)


def result_line(recipe_name: str, r: dict) -> str:
    """The parseable line of one groundkit setting (see the module docstring)."""
    n = r["phrases_per_image"]
    return (f"RESULT {recipe_name} | {n} phrase{'s' if n > 1 else ''}/image | cross-image {'on' if r['cross_image'] else 'off'} | "
            f"{r['forwards_per_phrase']:.1f} forwards/phrase | {r['items_per_s']:.1f} items/s | "
            f"{r['images_per_s']:.2f} images/s | {r['seconds_per_phrase']:.4f} s/phrase | {r['items_per_phrase']:.1f} items/phrase | "
            f"batch {r['batch_size']} | peak {r['peak_mb']:.0f} MB")


def run_recipe(model, recipe_name, data, args, device, deadline, skipped):
    from speed import UnetCounter

    recipe = model.recipe(recipe_name)
    counter = UnetCounter(model.adapter)
    try:
        return _run_recipe(model, recipe, recipe_name, data, args, device, deadline, skipped, counter)
    finally:
        counter.remove()


def _run_recipe(model, recipe, recipe_name, data, args, device, deadline, skipped, counter):
    rows = []
    n_pub = min(args.published_images, len(data))
    model.reserve_cache(len(data) + 8)
    for img, _ in data:  # load + encode every image once: the settings below time U-Net passes and post-processing
        model.prepare(img)
    if args.published_images <= 0:
        skipped.append(f"{recipe_name}: published loop (--quick / --published-images 0)")
    elif time.monotonic() < deadline:
        model.prepare(data[0][0])
        refs, sec, mem = measure(device, lambda: [published(model, img, ph[0], recipe) for img, ph in data[:n_pub]])
        fw, items = counter.take()
        diff = agreement(model, data[0][0], data[0][1][0], recipe, refs[0])
        counter.take()
        rows.append(dict(method="published loop", phrases_per_image=1, images=n_pub, seconds_per_phrase=sec / n_pub,
                         forwards_per_phrase=fw / n_pub, items_per_phrase=items / n_pub, peak_mb=mem, max_abs_diff=diff))
        print(f"published loop {recipe_name}, 1 phrase per image over {n_pub} image(s): {fw / n_pub:.1f} forwards per "
              f"phrase, {sec / n_pub:.3f} s per phrase, max |diff| to groundkit {diff:.1e}", flush=True)
    else:
        skipped.append(f"{recipe_name}: published loop")
    warm = False
    for n, cross in SETTINGS:
        label = f"{recipe_name}: groundkit, {n} phrase(s)/image, cross-image {'on' if cross else 'off'}"
        if time.monotonic() >= deadline:
            skipped.append(label)
            print(f"skipped (time budget): {label}", flush=True)
            continue
        if not warm and device.type == "cuda":  # warm-up (kernels, cuBLAS handles, allocator, compile)
            clear(model)
            model.ground_many(data[0][0], data[0][1][:n], recipe)
            warm = True
        clear(model)
        counter.take()
        # off: image after image, so its per-phrase figures do not depend on the image count: --off-images of them
        used = data if cross else data[: max(1, min(len(data), args.off_images))]
        if cross:
            run = lambda n=n, used=used: model.ground_batch([(img, ph[:n]) for img, ph in used], recipe)
        else:
            run = lambda n=n, used=used: [model.ground_many(img, ph[:n], recipe) for img, ph in used]
        _, sec, mem = measure(device, run)
        fw, items = counter.take()
        k = n * len(used)
        sec = max(sec, 1e-9)
        row = dict(method="groundkit", cross_image=cross, phrases_per_image=n, images=len(used), seconds=sec,
                   seconds_per_phrase=sec / k, forwards_per_phrase=fw / k, items_per_phrase=items / k,
                   items_per_s=items / sec, images_per_s=len(used) / sec, peak_mb=mem,
                   batch_size=model.auto_batch_size() if recipe.batch_size == 0 else recipe.batch_size)
        rows.append(row)
        print(result_line(recipe_name, row), flush=True)
    clear(model)
    syncs = count_syncs(device, lambda: model.ground(data[-1][0], data[-1][1][0], recipe))
    memory = []
    if args.memory and device.type == "cuda":
        memory = memory_rows(model, recipe, recipe_name, data, device, deadline, skipped)
    return dict(recipe=recipe_name, grid=recipe.grid, window=list(recipe.steps), rows=rows, cuda_syncs_one_grounding=syncs,
                memory=memory)


def memory_rows(model, recipe, recipe_name, data, device, deadline, skipped) -> list[dict]:
    """CUDA peak memory (allocated, above what the loaded model holds) of one image's grounding at 1, 4, 16
    and 32 phrases, caches cleared first."""
    phrases = [p for _, ph in data for p in ph]
    phrases = (phrases * (32 // max(1, len(phrases)) + 1))[:32]
    out = []
    for k in (1, 4, 16, 32):
        if time.monotonic() >= deadline:
            skipped.append(f"{recipe_name}: memory at {k} phrases")
            continue
        clear(model)
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        gs = model.ground_many(data[0][0], phrases[:k], recipe)
        torch.cuda.synchronize(device)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        maps = sum(g.heatmap.nbytes + g.mask.nbytes for g in gs) / 2**20
        out.append(dict(phrases=k, peak_above_model_mb=peak, returned_maps_mb=maps))
        print(f"MEMORY {recipe_name} | {k} phrases | peak {peak:.0f} MB above the model | maps returned {maps:.1f} MB",
              flush=True)
    return out


def markdown(report) -> str:
    head = report["setup"]
    lines = [f"# groundkit GPU check ({'tiny' if head['tiny'] else 'real-size'} random weights)", "",
             f"device {head['device']} ({head['device_name']}), U-Net dtype {head['dtype']}, compile {head['compile']}, "
             f"torch {head['torch']}, {head['images']} images, build {head['build_seconds']:.0f} s, total "
             f"{report['total_seconds']:.0f} s", "",
             "| recipe | method | phrases/image | cross-image | s/phrase | forwards/phrase | items/phrase | items/s | peak MB | batch "
             "| max \\|diff\\| vs published |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rec in report["recipes"]:
        base = next((r["seconds_per_phrase"] for r in rec["rows"] if r["method"] == "published loop"), None)
        for r in rec["rows"]:
            speed = f" (x{base / r['seconds_per_phrase']:.1f})" if base and r["method"] != "published loop" else ""
            diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else ""
            cross = "" if "cross_image" not in r else ("on" if r["cross_image"] else "off")
            ips = f"{r['items_per_s']:.1f}" if "items_per_s" in r else ""
            lines.append(f"| {rec['recipe']} | {r['method']} ({r['images']} img) | {r['phrases_per_image']} | {cross} | "
                         f"{r['seconds_per_phrase']:.3f}{speed} | {r['forwards_per_phrase']:.1f} | {r['items_per_phrase']:.1f} | "
                         f"{ips} | {r['peak_mb']:.0f} | {r.get('batch_size', '')} | {diff} |")
    lines += ["", "CUDA synchronisations during one grounding (1 phrase): " + ", ".join(
        f"{rec['recipe']} {rec.get('cuda_syncs_one_grounding')}" for rec in report["recipes"])]
    mem = [(rec["recipe"], m) for rec in report["recipes"] for m in rec.get("memory", [])]
    if mem:
        lines += ["", "| recipe | phrases (one image) | CUDA peak above the model, MB | maps returned, MB |", "|---|---|---|---|"]
        lines += [f"| {name} | {m['phrases']} | {m['peak_above_model_mb']:.0f} | {m['returned_maps_mb']:.1f} |" for name, m in mem]
    failed = [rec for rec in report["recipes"] if rec.get("error")]
    if failed:
        lines += ["", "Failed: " + "; ".join(f"{rec['recipe']}: {rec['error']}" for rec in failed)]
    if report["skipped"]:
        lines += ["", "Skipped (time budget): " + "; ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny widths and 4 images (CPU: the wiring, in minutes)")
    ap.add_argument("--quick", action="store_true", help="fewer images (8; --tiny: 2), no published loop, budget 150 s (--tiny: 300 s)")
    ap.add_argument("--no-memory", dest="memory", action="store_false", help="skip the CUDA peak-memory rows")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="auto", help="auto (CUDA: bfloat16 + TF32) | float32 | bfloat16 | float16")
    ap.add_argument("--compile", action="store_true", help="torch.compile the U-Net (the published loop runs through it too)")
    ap.add_argument("--images", type=int, default=None, help="images of the cross-image-on runs (default 16, --quick 8; --tiny: 4, --tiny --quick 2)")
    ap.add_argument("--off-images", type=int, default=None, help="images of the cross-image-off settings (one image "
                    "after the other, so the per-phrase figures do not depend on it; default 4, --tiny 2)")
    ap.add_argument("--published-images", type=int, default=None, help="images of the published loop (default 2; --tiny: 1)")
    ap.add_argument("--only", action="append", choices=[r for _, r in RECIPES], help="run only these recipes")
    ap.add_argument("--budget", type=float, default=None, help="seconds after the build before remaining work is skipped "
                    "(default 300; --quick: 150; --tiny: 900, --tiny --quick: 300); shared out among the recipes")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    args = ap.parse_args()
    args.images = args.images or ((2 if args.quick else 4) if args.tiny else (8 if args.quick else 16))
    args.off_images = args.off_images or (2 if args.tiny else 4)
    if args.published_images is None:
        args.published_images = 0 if args.quick else (1 if args.tiny else 2)
    args.budget = args.budget if args.budget is not None else ((300.0 if args.quick else 900.0) if args.tiny else
                                                               (150.0 if args.quick else 300.0))
    from groundkit.api import pick_device, resolve_dtype
    from groundkit.families.diffusers_sd.testing import build_sd_cxrbert
    from groundkit.families.monai_ldm.testing import build_monai_bundle

    device = pick_device(args.device)
    start = time.perf_counter()
    print(f"gpu_check: device {device}, {'tiny' if args.tiny else 'real-size'} random weights, {args.images} images, "
          f"published loop on {args.published_images} image(s), budget {args.budget:.0f} s; building checkpoints ...", flush=True)
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
    print(f"built in {build:.0f} s", flush=True)
    deadline = time.monotonic() + args.budget
    data = samples(args.images, 512)
    report = {"setup": dict(tiny=args.tiny, device=str(device), device_name=torch.cuda.get_device_name(device) if device.type == "cuda"
                            else "cpu", dtype=str(resolve_dtype(args.dtype, device)).replace("torch.", ""), compile=args.compile,
                            torch=torch.__version__, images=args.images, published_images=args.published_images,
                            build_seconds=build, threads=torch.get_num_threads()),
              "recipes": [], "skipped": []}
    models = {}
    for j, (family, recipe) in enumerate(wanted):
        now = time.monotonic()  # each recipe gets its share of what is left (time a recipe leaves over goes to the next)
        left = [WEIGHT.get(r, 1.0) for _, r in wanted[j:]]
        share = now + max(0.0, deadline - now) * left[0] / sum(left)
        print(f"== {recipe}", flush=True)
        try:
            if family not in models:
                t = time.perf_counter()
                models[family] = gk.load(folders[family], device=str(device), dtype=args.dtype, compile=args.compile)
                print(f"loaded {family} in {time.perf_counter() - t:.0f} s", flush=True)
            report["recipes"].append(run_recipe(models[family], recipe, data, args, device, share, report["skipped"]))
        except Exception as e:  # one recipe failing must not cost the others (or the report)
            import traceback

            traceback.print_exc()
            print(f"FAILED {recipe}: {type(e).__name__}: {e}", flush=True)
            report["recipes"].append(dict(recipe=recipe, rows=[], error=f"{type(e).__name__}: {e}"))
    report["total_seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
