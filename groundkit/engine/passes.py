"""Runs a sampling schedule through an adapter with capture on, computing only what the window needs.

Three passes (SPEC section 3):
- `gt_noised_pass`: every window step independently, all (step, phrase) items batched.
- `inversion_pass`: the unconditional DDIM-inversion trajectory once per image (batch 1, stopped
  at the window's end), then the conditional calls of all phrases batched.
- `text_pass`: DDIM sampling from noise with classifier-free guidance (BBM's text-only pass).
All return `PassMaps`: per phrase, per layer, a (steps, groups, h, w) tensor.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from groundkit.core.types import LayerInfo
from groundkit.engine.recorder import Recorder
from groundkit.engine.schedules import (
    STREAM_TEXT_PASS,
    add_noise,
    ddim_move,
    gt_noise,
    inversion_trajectory,
    posterior_latent,
    previous_abar,
    step_generator,
)


@dataclass
class PassMaps:
    """Captured maps of one pass: ``maps[p][layer]`` is (len(steps), G, h, w), float32 on CPU."""

    steps: list[int]  # grid indices, in run order
    timesteps: list[int]
    maps: list[dict[int, torch.Tensor]]
    unet_calls: int = 0  # batch items evaluated (the cost unit of SPEC section 7)
    forwards: int = 0  # U-Net forward invocations
    seconds: float = 0.0
    cache_hits: dict[str, int] = field(default_factory=dict)


class Counter:
    """Wraps an adapter's U-Net call to count items and forwards."""

    def __init__(self, adapter):
        self.adapter, self.calls, self.forwards = adapter, 0, 0

    def __call__(self, z: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        self.calls += z.shape[0]
        self.forwards += 1
        return self.adapter.unet(z, t, context)


def _collect(recorder: Recorder, n_phrases: int, steps: list[int], layers: list[LayerInfo]) -> list[dict[int, torch.Tensor]]:
    out = []
    for p in range(n_phrases):
        per_layer = {}
        for info in layers:
            per_layer[info.index] = torch.stack([recorder.maps[((p, s), info.index)] for s in steps]).cpu()
        out.append(per_layer)
    recorder.maps.clear()
    return out


def _batched(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _run_items(adapter, unet: Counter, recorder: Recorder, items, latents, contexts, weights, batch_size, desc, progress):
    """items: list of (key=(phrase, step), grid t); latents[step], contexts[phrase], weights[phrase]."""
    chunks = list(_batched(items, batch_size))
    for chunk in tqdm(chunks, desc=desc, disable=not progress or len(chunks) < 2, leave=False):
        z = torch.cat([latents[s] for (p, s), _ in chunk]).to(adapter.device)
        t = torch.tensor([t for _, t in chunk], device=adapter.device)
        ctx = torch.cat([contexts[p : p + 1] for (p, s), _ in chunk])
        w = torch.stack([weights[p] for (p, s), _ in chunk])
        with recorder.armed([key for key, _ in chunk], w):
            unet(z, t, ctx)


def _window_pass(adapter, grid, recorder, unet, latents, contexts, weights, steps, layers, batch_size, desc, progress,
                 start) -> PassMaps:
    """Every (phrase, step) item of a window through the U-Net in batches, capture on; the maps per phrase."""
    items = [((p, s), grid[s]) for s in steps for p in range(contexts.shape[0])]
    with adapter.capture(recorder):
        _run_items(adapter, unet, recorder, items, latents, contexts, weights, batch_size, desc, progress)
    maps = _collect(recorder, contexts.shape[0], steps, layers)
    return PassMaps(steps, [grid[s] for s in steps], maps, unet.calls, unet.forwards, time.perf_counter() - start)


@torch.no_grad()
def gt_noised_pass(adapter, grid, z0, contexts, weights, steps, layers, seed, batch_size, progress=False, z_std=None) -> PassMaps:
    """Nuetzel's GT-noised sampling: z_t = sqrt(a) z0 + sqrt(1-a) eps with fresh eps per step.

    ``z_std`` given: z0 is a fresh posterior sample per step (mean ``z0``), as published. The U-Net
    output is discarded, so steps are independent and batched; no unconditional half (published
    with CFG, whose guided output is discarded, so it cannot change the maps)."""
    start = time.perf_counter()
    recorder, unet = Recorder(layers), Counter(adapter)
    mean = z0.float().cpu()
    std = z_std.float().cpu() if z_std is not None else None
    latents = {s: add_noise(posterior_latent(mean, std, seed, s), gt_noise(seed, s, tuple(z0.shape)),
                            float(adapter.schedule.alphas_cumprod[grid[s]])).to(adapter.device) for s in steps}
    return _window_pass(adapter, grid, recorder, unet, latents, contexts, weights, steps, layers, batch_size, "gt-noised",
                        progress, start)


@torch.no_grad()
def inversion_latents(adapter, grid, z0, steps, null) -> tuple[dict[int, torch.Tensor], int, int]:
    """The phrase-independent part of Vilouras' protocol: z_i of the unconditional inversion."""
    unet = Counter(adapter)
    lat = inversion_trajectory(unet, adapter.schedule, z0.to(adapter.device), grid, set(steps), null)
    return lat, unet.calls, unet.forwards


@torch.no_grad()
def inversion_pass(adapter, grid, latents, contexts, weights, steps, layers, batch_size, progress=False) -> PassMaps:
    """Conditional calls of all phrases at the cached inversion latents (guidance 0: the trajectory
    follows the unconditional prediction, so the conditional half only supplies attention)."""
    start = time.perf_counter()
    recorder, unet = Recorder(layers), Counter(adapter)
    return _window_pass(adapter, grid, recorder, unet, latents, contexts, weights, steps, layers, batch_size,
                        "inversion (cond)", progress, start)


@torch.no_grad()
def text_pass(adapter, grid, contexts, weights, null, steps, layers, seed, guidance_scale, latent_shape, progress=False) -> PassMaps:
    """Text-only DDIM sampling from seeded noise with CFG; records the conditional half.

    Runs the grid from its start up to the last recorded step. The initial noise depends only on
    the seed, so the pass depends only on (phrase, seed) and can be cached per phrase."""
    start = time.perf_counter()
    n = contexts.shape[0]
    recorder, unet = Recorder(layers), Counter(adapter)
    x = torch.randn(latent_shape, generator=step_generator(seed, STREAM_TEXT_PASS), dtype=torch.float32)
    z = x.expand(n, *latent_shape[1:]).clone().to(adapter.device)
    keep = set(steps)
    ctx = torch.cat([null.expand(n, -1, -1), contexts])
    w = torch.cat([weights, weights])
    with adapter.capture(recorder):
        for i in tqdm(range(max(steps) + 1), desc="text pass", disable=not progress, leave=False):
            t = grid[i]
            keys = [None] * n + ([(p, i) for p in range(n)] if i in keep else [None] * n)
            with recorder.armed(keys, w):
                pred = unet(torch.cat([z, z]), torch.full((2 * n,), t, device=adapter.device), ctx)
            uncond, cond = pred.float().chunk(2)
            guided = uncond + guidance_scale * (cond - uncond)
            z = ddim_move(adapter.schedule, z, guided, t, previous_abar(adapter.schedule, grid, i))
    maps = _collect(recorder, n, sorted(keep), layers)
    return PassMaps(sorted(keep), [grid[s] for s in sorted(keep)], maps, unet.calls, unet.forwards, time.perf_counter() - start)
