"""Runs a sampling schedule through an adapter with capture on, computing only what the window needs.

Three passes (docs/protocols.md §3):
- `gt_noised_pass_many`: every window step independently, all (step, phrase) items batched.
- `inversion_pass_many`: the unconditional DDIM-inversion trajectory once per image (stopped at the window's
  end; `inversion_latents_many` inverts several images per forward), then the conditional calls of all
  phrases batched.
- `text_pass`: DDIM sampling from noise with classifier-free guidance (BBM's text-only pass).
All return `PassMaps`: per phrase, per layer, a (steps, groups, h, w) tensor. The `*_many` forms run several
images' items through shared forwards and return one `PassMaps` per image, equal to the one that image alone
would give (one image is a batch of one).
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
    unet_calls: int = 0  # batch items evaluated (the cost unit of docs/protocols.md §7)
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


def _pad_groups(w: torch.Tensor, groups: int) -> torch.Tensor:
    """(P, G, N) token weights padded with zero rows to ``groups`` groups (images of one batch may have
    different per-word groups; the padded rows are never read back)."""
    if w.shape[1] == groups:
        return w
    return torch.cat([w, w.new_zeros(w.shape[0], groups - w.shape[1], w.shape[2])], dim=1)


def _window_pass_many(adapter, grid, latents, contexts, weights, steps, layers, batch_size, desc, progress,
                      start) -> list[PassMaps]:
    """Every (image, phrase, step) item of a window through the U-Net in batches of ``batch_size``, capture
    on; per image, its maps. ``latents[i][s]``: image i's latent at grid step s; ``contexts[i]`` (P_i, N, D)
    and ``weights[i]`` (P_i, G_i, N): image i's phrases. Items run step by step, then image by image, then
    phrase by phrase, so one image alone runs exactly the single-image schedule. Each image's PassMaps counts
    its own batch items and its share of the forwards."""
    recorder, unet = Recorder(layers), Counter(adapter)
    n_groups = [w.shape[1] for w in weights]
    g_max = max(n_groups)
    weights = [_pad_groups(w, g_max) for w in weights]
    items = [((i, p, s), grid[s]) for s in steps for i in range(len(contexts)) for p in range(contexts[i].shape[0])]
    chunks = list(_batched(items, batch_size))
    t_all = torch.tensor([t for _, t in items], device=adapter.device)  # one transfer per pass, not per forward
    with adapter.capture(recorder):
        for c, chunk in enumerate(tqdm(chunks, desc=desc, disable=not progress or len(chunks) < 2, leave=False)):
            z = torch.cat([latents[i][s] for (i, p, s), _ in chunk]).to(adapter.device)
            t = t_all[c * batch_size: c * batch_size + len(chunk)]
            ctx = torch.cat([contexts[i][p : p + 1] for (i, p, s), _ in chunk])
            w = torch.stack([weights[i][p] for (i, p, s), _ in chunk])
            with recorder.armed([key for key, _ in chunk], w):
                unet(z, t, ctx)
    seconds = time.perf_counter() - start
    out = []
    for i, ctx in enumerate(contexts):
        g = n_groups[i]
        maps = [{info.index: torch.stack([recorder.maps[((i, p, s), info.index)][:g] for s in steps]).cpu()
                 for info in layers} for p in range(ctx.shape[0])]
        items_i = ctx.shape[0] * len(steps)
        share = items_i / max(1, len(items))
        out.append(PassMaps(list(steps), [grid[s] for s in steps], maps, items_i,
                            unet.forwards if len(contexts) == 1 else unet.forwards * share, seconds * share))
    recorder.maps.clear()
    return out


def gt_noised_latents(adapter, grid, z0, steps, seed, z_std=None) -> dict[int, torch.Tensor]:
    """One image's GT-noised latents per window step: seeded per (seed, step), so an image's latents do not
    depend on which other images share its forwards."""
    mean = z0.float().cpu()
    std = z_std.float().cpu() if z_std is not None else None
    return {s: add_noise(posterior_latent(mean, std, seed, s), gt_noise(seed, s, tuple(z0.shape)),
                         float(adapter.schedule.alphas_cumprod[grid[s]])).to(adapter.device) for s in steps}


@torch.no_grad()
def gt_noised_pass_many(adapter, grid, z0s, contexts, weights, steps, layers, seed, batch_size, progress=False,
                        z_stds=None) -> list[PassMaps]:
    """Nuetzel's GT-noised sampling of several images: z_t = sqrt(a) z0 + sqrt(1-a) eps with fresh eps per
    step; items of different images share forwards, each image's maps equal its own pass's.

    ``z_stds[i]`` given: image i's z0 is a fresh posterior sample per step (mean ``z0s[i]``), as published. The
    U-Net output is discarded, so steps are independent and batched; no unconditional half (published
    with CFG, whose guided output is discarded, so it cannot change the maps)."""
    start = time.perf_counter()
    z_stds = z_stds if z_stds is not None else [None] * len(z0s)
    latents = [gt_noised_latents(adapter, grid, z0, steps, seed, sd) for z0, sd in zip(z0s, z_stds)]
    return _window_pass_many(adapter, grid, latents, contexts, weights, steps, layers, batch_size, "gt-noised",
                             progress, start)


@torch.no_grad()
def inversion_latents_many(adapter, grid, z0s, steps, null, batch_size) -> tuple[list[dict[int, torch.Tensor]], int, int]:
    """``inversion_latents`` of several images, up to ``batch_size`` images per U-Net forward: the DDIM
    inversion is per item (the U-Net and the DDIM move act on each batch row alone), so every image's
    trajectory equals its batch-1 trajectory up to float rounding. Returns (per image latents, items, forwards)."""
    out: list[dict[int, torch.Tensor]] = []
    calls = forwards = 0
    for chunk in _batched(list(z0s), max(1, batch_size)):
        lat, c, f = inversion_latents(adapter, grid, torch.cat([z.reshape(1, *z.shape[-3:]) for z in chunk]), steps, null)
        calls, forwards = calls + c, forwards + f
        out += [{s: v[b : b + 1].clone() for s, v in lat.items()} for b in range(len(chunk))]
    return out, calls, forwards


@torch.no_grad()
def inversion_pass_many(adapter, grid, latents, contexts, weights, steps, layers, batch_size, progress=False) -> list[PassMaps]:
    """Conditional calls of every image's phrases at its cached inversion latents, sharing forwards (guidance 0:
    the trajectory follows the unconditional prediction, so the conditional half only supplies attention)."""
    start = time.perf_counter()
    return _window_pass_many(adapter, grid, latents, contexts, weights, steps, layers, batch_size,
                             "inversion (cond)", progress, start)


@torch.no_grad()
def inversion_latents(adapter, grid, z0, steps, null) -> tuple[dict[int, torch.Tensor], int, int]:
    """The phrase-independent part of Vilouras' protocol: z_i of the unconditional inversion."""
    unet = Counter(adapter)
    lat = inversion_trajectory(unet, adapter.schedule, z0.to(adapter.device), grid, set(steps), null)
    return lat, unet.calls, unet.forwards


@torch.no_grad()
def text_pass(adapter, grid, contexts, weights, null, steps, layers, seed, guidance_scale, latent_shape, progress=False,
              uncond_cache: dict | None = None) -> PassMaps:
    """Text-only DDIM sampling from seeded noise with CFG; records the conditional half.

    Runs the grid from its start up to the last recorded step, with no call that cannot change a map: the
    unconditional half of the last step would only feed a DDIM move that is never used, and the first step's
    unconditional prediction depends on the seed alone (same noise, same empty prompt), so ``uncond_cache``
    keeps it across phrases: 2 x steps - 2 calls per phrase plus one per seed. The conditional and unconditional
    halves of a step share one forward (batch 2 x phrases): steps + 1 forwards, not 2 x steps - 1."""
    start = time.perf_counter()
    n = contexts.shape[0]
    recorder, unet = Recorder(layers), Counter(adapter)
    x = torch.randn(latent_shape, generator=step_generator(seed, STREAM_TEXT_PASS), dtype=torch.float32)
    z = x.expand(n, *latent_shape[1:]).clone().to(adapter.device)
    keep, last = set(steps), max(steps)
    cache = uncond_cache if uncond_cache is not None else {}
    pair_ctx = torch.cat([contexts, null.expand(n, -1, -1).to(contexts.dtype)])
    pair_w = torch.cat([weights, weights])
    with adapter.capture(recorder):
        for i in tqdm(range(last + 1), desc="text pass", disable=not progress, leave=False):
            t = grid[i]
            keys = [(p, i) for p in range(n)] if i in keep else [None] * n
            if i == 0 or i == last:  # step 0's unconditional half is cached per seed; the last step's feeds nothing
                with recorder.armed(keys, weights):
                    cond = unet(z, torch.full((n,), t, device=adapter.device), contexts).float()
                if i == last:
                    break
                uncond = _first_uncond(unet, adapter, x, t, null, cache, (seed, t, tuple(latent_shape)))
            else:  # [cond, uncond] of every phrase in one forward, as the published CFG batch
                with recorder.armed(keys + [None] * n, pair_w):
                    cond, uncond = unet(torch.cat([z, z]), torch.full((2 * n,), t, device=adapter.device), pair_ctx).float().chunk(2)
            guided = uncond + guidance_scale * (cond - uncond)
            z = ddim_move(adapter.schedule, z, guided, t, previous_abar(adapter.schedule, grid, i))
    maps = _collect(recorder, n, sorted(keep), layers)
    return PassMaps(sorted(keep), [grid[s] for s in sorted(keep)], maps, unet.calls, unet.forwards, time.perf_counter() - start)


def _first_uncond(unet, adapter, x, t, null, cache: dict, key) -> torch.Tensor:
    """The unconditional prediction at the first step: a function of the seed only, computed once per seed."""
    if key not in cache:
        cache[key] = unet(x.to(adapter.device), torch.full((1,), t, device=adapter.device), null).float()
    return cache[key]
