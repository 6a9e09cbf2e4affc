"""U-Net calls (batch items), forwards, time and peak memory per phrase: published protocols vs groundkit's schedules.

    python benchmarks/speed.py --tiny          # seconds: tiny random models, everything run for real
    python benchmarks/speed.py                 # real-size random-weight models (CPU: ~15 minutes)
    python benchmarks/speed.py --device cuda   # on a GPU

Both protocols are run the published way (naive: every grid step, [uncond, cond] batches, phrase by
phrase) and the groundkit way (same maps: phrase-independent work once per image, no CFG half where
it cannot change the maps, batched timesteps and phrases), and the maps are compared. At real size
on a CPU the naive Vilouras run (334 forwards of batch 2 per phrase) takes long: `--naive-steps K`
runs its first K steps and extrapolates linearly, and says so in the table.

Time is the process's CPU time on a CPU (wall time on a shared host measures the neighbours) and
CUDA-synchronised wall time on a GPU; the variants run ``--repeats`` times interleaved and each ratio is
of medians.
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import groundkit as gk
from groundkit.engine.heatmap import make_heatmap
from groundkit.engine.maps import AttentionMaps
from groundkit.engine.recorder import Recorder
from groundkit.engine.schedules import ddim_move
from groundkit.engine.tokens import explain, token_weights
from groundkit.recipes import RECIPES

PHRASES = ["small left apical pneumothorax", "moderate cardiomegaly", "right lower lobe consolidation",
           "bilateral pleural effusions", "left basal atelectasis"]


# ---------------------------------------------------------------- memory
def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:  # Linux: reset the process's peak RSS (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the published (naive) schedules
@torch.no_grad()
def naive_vilouras(model, image, phrase, recipe, max_steps=None):
    """Published loop: DDIM inversion over the whole grid, batch [uncond, cond] at every step,
    guidance 0, maps recorded from the conditional half at the window's steps."""
    a = model.adapter
    prep = model.prepare(image)
    text, null = a.encode_text([phrase]), a.encode_text([""]).embeddings
    w = token_weights(text, 0, recipe.tokens)[None, None].to(a.device)
    grid = recipe.timesteps(a.schedule.num_train_timesteps)
    window = set(range(*recipe.steps))
    layers = [model.layers[i] for i in (recipe.layers or range(len(model.layers)))]
    rec, calls = Recorder(layers), 0
    z = prep.z0.float()
    n = len(grid) if max_steps is None else min(max_steps, len(grid))
    with a.capture(rec):
        for i in range(n):
            keys = [None, (0, i) if i in window else None]
            with rec.armed(keys, torch.cat([w, w])):
                pred = a.unet(torch.cat([z, z]), torch.tensor([grid[i]] * 2, device=a.device), torch.cat([null, text.embeddings]))
            calls += 2
            if i + 1 < len(grid):
                z = ddim_move(a.schedule, z, pred[:1], grid[i], float(a.schedule.alphas_cumprod[grid[i + 1]]))
    return _maps_from(rec, layers, sorted(window)) if n == len(grid) else None, calls, n / len(grid)


def naive_nuetzel(model, image, phrase, recipe):
    """Published loop (tests/published_nuetzel.py, written from the published code): all 50 grid steps one
    at a time, CFG batch [uncond, cond], a posterior sample and fresh noise per step; with BBM also the
    text-only DDIM pass (guidance 16) and the published float16 / 8-bit merge. Returns the final map."""
    from published_nuetzel import published_bbm

    positions = explain(model.adapter.encode_text([phrase]), 0, recipe.tokens)["positions"]
    grid = recipe.timesteps(model.adapter.schedule.num_train_timesteps)
    prelim, _, _ = published_bbm(model, image, phrase, positions, seed=recipe.seed, bbm=bool(recipe.bbm),
                                 rev_diff_steps=len(grid) - recipe.steps[0], steps=len(grid))
    calls = 2 * len(grid) * (2 if recipe.bbm else 1)
    return prelim, calls, 1.0


def _maps_from(rec, layers, steps):
    maps = {info.index: torch.stack([rec.maps[((0, s), info.index)] for s in steps]).cpu() for info in layers}
    return AttentionMaps(layers, steps, ["selected"], maps)


# ---------------------------------------------------------------- measurement
class UnetCounter:
    """Counts every U-Net forward and batch item of an adapter (published loops and groundkit alike):
    forwards are what a GPU pays for, batch items what a CPU pays for."""

    def __init__(self, adapter):
        self.adapter, self.inner, self.forwards, self.items = adapter, adapter.unet, 0, 0
        adapter.unet = self

    def __call__(self, z, t, context):
        self.forwards += 1
        self.items += z.shape[0]
        return self.inner(z, t, context)

    def take(self) -> tuple[int, int]:
        out = (self.forwards, self.items)
        self.forwards = self.items = 0
        return out

    def remove(self) -> None:
        self.adapter.unet = self.inner


def timed(device, fn):
    """(result, seconds, peak MB). Seconds are process CPU time on a CPU (wall time on a busy host measures
    the neighbours too) and synchronised wall time on CUDA (the work is on the device)."""
    reset_peak(device)
    sync(device)
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    t = clock()
    out = fn()
    sync(device)
    return out, clock() - t, peak_mb(device)


def _variants(model, image, recipe, recipe_name, naive_steps):
    """(label, phrases, run) of every variant; run() -> (maps or None, extrapolation fraction)."""
    naive = naive_vilouras if recipe.mode == "ddim-inversion" else naive_nuetzel
    kw = {"max_steps": naive_steps} if recipe.mode == "ddim-inversion" else {}

    def published():
        maps, _, frac = naive(model, image, PHRASES[0], recipe, **kw)
        return maps, frac

    def ours(n, r):
        def run():
            model.clear_caches(latents=False)
            return model.ground_many(image, PHRASES[:n], r), 1.0
        return run

    out = [("published (naive)", 1, published)]
    out += [(f"groundkit {recipe_name}, {n} phrase(s)/image", n, ours(n, recipe)) for n in (1, 5)]
    fast = recipe_name + "-fast"
    if fast in RECIPES:  # measured fast variant (README: "Fast recipes"): fewer calls, not the same maps
        out += [(f"groundkit {fast}, {n} phrase(s)/image", n, ours(n, fast)) for n in (1, 5)]
    return out


def _agreement(model, image, recipe, nmaps, g) -> None:
    if isinstance(nmaps, AttentionMaps):  # Vilouras: the window's maps, post-processed alike
        ref = make_heatmap(nmaps, recipe.override(threshold="none"), model.adapter.image_size).heatmap_crop
        cap = model.capture(model.prepare(image), PHRASES[:1], recipe, [None]).maps[0]
        mine = make_heatmap(cap, recipe.override(threshold="none"), model.adapter.image_size).heatmap_crop
    else:  # Nuetzel (BBM included): the published loop's final map vs groundkit's, same evaluation resize
        from published_nuetzel import evaluation_space

        ref = evaluation_space(nmaps, nmaps > 0, model.adapter.image_size)[0]
        mine = g.heatmap_crop
    what = "BBM map (text pass and merge included)" if recipe.bbm else "maps"
    print(f"   same {what} as the published loop: max |diff| = {np.abs(ref - mine).max():.2e}")


def bench_family(name, folder, recipe_name, device, naive_steps, image, dtype, repeats=1):
    """Every variant ``repeats`` times, interleaved (A B C A B C ...), so that a slow spell of the host hits
    every variant alike; each variant's median time per phrase gives the ratios."""
    model = gk.load(folder, device=str(device), dtype=dtype)
    recipe = model.recipe(recipe_name)
    print(f"\n== {name}: {recipe_name} ({len(model.layers)} cross-attention layers, grid {recipe.grid}, window {recipe.steps})", flush=True)
    model.prepare(image)  # warm-up: latents cached for every variant alike
    counter = UnetCounter(model.adapter)
    variants = _variants(model, image, recipe, recipe_name, naive_steps)
    times: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    stats: dict[str, tuple] = {}
    for rep in range(repeats):
        for label, n, run in variants:
            counter.take()
            (out, frac), sec, mem = timed(device, run)
            fw, items = counter.take()
            times[label].append(sec / frac / n)
            stats[label] = (n, items / frac / n, fw / frac / n, mem, frac)
            if rep == 0 and label.startswith("published"):
                nmaps = out
            if rep == 0 and label.endswith(f"{recipe_name}, 1 phrase(s)/image") and nmaps is not None:
                _agreement(model, image, recipe, nmaps, out[0])
    counter.remove()
    rows = []
    for label, _, _ in variants:
        n, items, fw, mem, frac = stats[label]
        shown = label + ("" if frac == 1 else f", extrapolated from {frac:.0%} of the steps")
        rows.append((shown, n, items, float(np.median(times[label])), mem, fw))
    clock = "wall (CUDA-synchronised)" if device.type == "cuda" else "process CPU"
    for r in rows:
        print(f"   {r[0]:<62} items/phrase {r[2]:7.1f}   forwards/phrase {r[5]:7.1f}   s/phrase {r[3]:8.2f}   peak MB {r[4]:8.0f}")
    base = rows[0][3]
    print(f"   speed-up per phrase vs published ({clock} seconds, median of {repeats} interleaved repeats): "
          f"1 phrase x{base / rows[1][3]:.2f}, 5 phrases x{base / rows[2][3]:.2f}"
          + (f"; fast recipe: x{base / rows[3][3]:.2f}, x{base / rows[4][3]:.2f}" if len(rows) > 3 else ""))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny random models (seconds)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="float32", help="U-Net dtype (float32: the numbers comparable across devices; auto: bf16 on CUDA)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats per variant, median reported (default 3 --tiny, 1 at real size)")
    ap.add_argument("--naive-steps", type=int, default=None,
                    help="run only the first K steps of the naive Vilouras inversion and extrapolate (default: all when --tiny, 20 at real size on CPU)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    from builders import build_monai_bundle, build_sd_cxrbert

    from groundkit.api import pick_device

    device = pick_device(args.device)
    naive_steps = args.naive_steps if args.naive_steps is not None else (None if args.tiny or device.type != "cpu" else 20)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="groundkit-speed-"))
    rng = np.random.default_rng(0)
    image = (rng.random((600, 500)) * 0.3).astype(np.float32)
    image[200:350, 100:250] += 0.6
    print(f"device {device}, dtype {args.dtype}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{'tiny' if args.tiny else 'real-size'} random weights")
    t = time.perf_counter()
    monai = build_monai_bundle(work / "monai", tiny=args.tiny)
    sd = build_sd_cxrbert(work / "sd", tiny=args.tiny)
    print(f"built checkpoints in {time.perf_counter() - t:.0f} s under {work}")
    reps = args.repeats or (3 if args.tiny else 1)
    bench_family("MONAI LDM + CLIP (Vilouras 2024)", monai, "vilouras2024", device, naive_steps, image, args.dtype, reps)
    bench_family("SD 1.5 + CXR-BERT (Nuetzel 2025)", sd, "nuetzel2025", device, None, image, args.dtype, reps)
    bench_family("SD 1.5 + CXR-BERT (Nuetzel 2025, BBM)", sd, "nuetzel2025-bbm", device, None, image, args.dtype, reps)


if __name__ == "__main__":
    main()
