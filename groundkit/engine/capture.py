"""The U-Net passes of several images at once, and what they capture.

Why apart from the pipeline: this is the one place where items of different images are pooled into
shared U-Net forwards (a batched DDIM inversion, GT-noised window items, BBM text passes), and where each
image's share of the calls, forwards and seconds is booked. The pipeline owns the caches and passes them in
through ``CaptureHost``, so this module holds no state of its own.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch

from groundkit.engine import passes as engine
from groundkit.engine.maps import AttentionMaps
from groundkit.engine.tokens import TokenSelection, select_tokens
from groundkit.recipes import Recipe


class CaptureHost(Protocol):
    """What the capture needs of its owner (``GroundingModel``): the adapter, its layers and the caches."""

    adapter: Any
    layers: list
    inversions: Any  # (image key, grid, last step) -> {step: latent}; an LRU with .get/.put
    text_passes: Any  # text_key(...) -> AttentionMaps; an LRU
    uncond0: dict  # BBM text pass: the first step's unconditional prediction, per seed

    def auto_batch_size(self) -> int: ...

    def null(self) -> torch.Tensor: ...


@dataclass
class Captured:
    maps: list[AttentionMaps]
    text_maps: list[AttentionMaps] | None
    explained: list[Any]
    calls: int
    forwards: int
    timings: dict[str, float]
    cache: dict[str, int]


def text_key(phrase: str, category: str | None, r: Recipe) -> tuple:
    """What BBM's text-only pass depends on: not the image."""
    return (phrase, category, r.tokens, r.seed, r.guidance_scale, r.grid, r.bbm_steps, r.layers)


def selector() -> Callable[..., TokenSelection]:
    """``select_tokens`` that selects each phrase once per capture: a phrase that several images of one batch
    share (or an item given twice) takes the selection already made. A selection depends on the phrase's
    tokens, the filter and the category, never on the image."""
    memo: dict[tuple, TokenSelection] = {}

    def select(text, b: int, spec: str, category: str | None = None) -> TokenSelection:
        key = (spec, category, text.phrases[b], tuple(text.tokens[b]))
        if key not in memo:
            memo[key] = select_tokens(text, b, spec, category)
        return memo[key]

    return select


def _token_weights(adapter, phrases_list, categories_list, r: Recipe, token_maps):
    """Each image's text encoding and the token weights of its capture groups (selected, BBM's start token and,
    with ``token_maps``, one group per word), with what the token filter explains of its choice."""
    texts, weights, groups_l, explained = [], [], [], []
    select = selector()
    for phrases, categories in zip(phrases_list, categories_list):
        categories = list(categories) if categories is not None else [None] * len(phrases)
        text = adapter.encode_text(phrases)
        groups = ["selected"] + (["start"] if r.bbm else [])
        word_groups: list[list[str]] = [[] for _ in phrases]
        if token_maps:
            for b, phrase in enumerate(phrases):
                word_groups[b] = [phrase[s:e] for s, e in text.word_spans[b]]
        all_groups = groups + [f"word:{w}" for w in sorted({w for ws in word_groups for w in ws})]
        n_tok = text.embeddings.shape[1]
        w_i = torch.zeros(len(phrases), len(all_groups), n_tok)
        ex = []
        for b in range(len(phrases)):
            chosen = select(text, b, r.tokens, categories[b])  # once: its weights and its account
            w_i[b, 0] = chosen.weights()
            ex.append(chosen.to_dict())
            if r.bbm:
                w_i[b, 1] = select(text, b, "start").weights()
            for w in word_groups[b]:
                w_i[b, all_groups.index(f"word:{w}")] = select(text, b, f"words:{w}").weights()
        texts.append(text)
        weights.append(w_i.to(adapter.device))
        groups_l.append(all_groups)
        explained.append(ex)
    return texts, weights, groups_l, explained


def capture_images(host: CaptureHost, preps, phrases_list, r: Recipe, categories_list, token_maps, progress) -> list[Captured]:
    """Every image's passes, items of different images sharing U-Net forwards (see ``GroundingModel.capture_many``)."""
    n = len(preps)
    if r.batch_size == 0:
        r = r.override(batch_size=host.auto_batch_size())
    texts, weights, groups_l, explained = _token_weights(host.adapter, phrases_list, categories_list, r, token_maps)
    grid = r.timesteps(host.adapter.schedule.num_train_timesteps)
    steps = sorted(set(range(*r.steps)) | (set(range(*r.bbm_steps)) if r.bbm else set()))
    layer_infos = [host.layers[i] for i in (r.layers if r.layers is not None else range(len(host.layers)))]
    timings: list[dict[str, float]] = [{} for _ in range(n)]
    cache = [{"latents": 0, "inversion": 0, "text_pass": 0} for _ in range(n)]
    calls: list[float] = [0] * n
    forwards: list[float] = [0] * n
    ctxs = [t.embeddings for t in texts]
    if r.mode == "gt-noised":
        z_stds = [p.z_std if r.latent == "sample" else None for p in preps]
        res = engine.gt_noised_pass_many(host.adapter, grid, [p.z0 for p in preps], ctxs, weights, steps, layer_infos,
                                         r.seed, r.batch_size, progress, z_stds=z_stds)
    else:
        lats: list[dict | None] = [None] * n
        todo: dict[tuple, list[int]] = {}  # inversion cache key -> images that need it (an image given twice: once)
        for i, prep in enumerate(preps):
            key = (prep.key, r.grid, max(steps))
            hit = host.inversions.get(key)
            if hit is not None and set(steps) <= set(hit):
                cache[i]["inversion"] = 1
                lats[i] = {s: hit[s] for s in steps}
            else:
                todo.setdefault(key, []).append(i)
        if todo:
            t = time.perf_counter()
            keys = list(todo)
            firsts = [todo[k][0] for k in keys]
            got, c, f = engine.inversion_latents_many(host.adapter, grid, [preps[i].z0 for i in firsts], steps,
                                                      host.null(), r.batch_size)
            secs = time.perf_counter() - t
            for key, lat in zip(keys, got):
                host.inversions.put(key, lat)
                for j, i in enumerate(todo[key]):
                    lats[i] = {s: lat[s] for s in steps}
                    if j == 0:  # its batch items; its share of the forwards and seconds
                        calls[i] += c // len(keys)
                        forwards[i] += f if len(keys) == 1 else f / len(keys)
                        timings[i]["inversion_seconds"] = secs / len(keys)
                    else:
                        cache[i]["inversion"] = 1
        res = engine.inversion_pass_many(host.adapter, grid, lats, ctxs, weights, steps, layer_infos, r.batch_size,
                                         progress)
    maps_l = []
    for i in range(n):
        calls[i] += res[i].unet_calls
        forwards[i] += res[i].forwards
        timings[i]["capture_seconds"] = res[i].seconds
        maps_l.append([AttentionMaps(layer_infos, res[i].steps, groups_l[i], m) for m in res[i].maps])
    text_maps_l: list[list[AttentionMaps] | None] = [None] * n
    if r.bbm:
        text_maps_l = _text_maps_many(host, phrases_list, categories_list, ctxs, weights, r, grid, layer_infos,
                                           tuple(preps[0].z0.shape), progress, calls, forwards, timings, cache)
    return [Captured(maps_l[i], text_maps_l[i], explained[i], calls[i], forwards[i], timings[i], cache[i])
            for i in range(n)]

def text_chunk(device: torch.device, r: Recipe) -> int:
    """Phrases per BBM text-pass call. Its paired steps see 2 items per phrase: on CUDA, where the batch
    size is what fits in memory, half the batch size; on CPU/MPS the batch size (a fixed number there, not
    a memory measure)."""
    return max(1, r.batch_size // 2 if device.type == "cuda" else r.batch_size)

def _text_maps_many(host: CaptureHost, phrases_list, categories_list, ctxs, weights, r, grid, layer_infos, latent_shape,
                    progress, calls, forwards, timings, cache) -> list[list[AttentionMaps]]:
    """BBM text-only passes of every image's phrases: cached per (phrase, seed, ...); the missing ones of
    all images pooled, ``text_chunk`` phrases per call."""
    bsteps = list(range(*r.bbm_steps))
    keys_l, todo, owner = [], {}, {}
    for i, phrases in enumerate(phrases_list):
        cats = list(categories_list[i]) if categories_list[i] is not None else [None] * len(phrases)
        keys = [text_key(phrases[b], cats[b], r) for b in range(len(phrases))]
        keys_l.append(keys)
        for b, k in enumerate(keys):
            if k not in host.text_passes and k not in todo:
                todo[k], owner[k] = (i, b), i
    got: dict[tuple, AttentionMaps] = {}
    pending = list(todo)
    size = text_chunk(host.adapter.device, r)
    for c0 in range(0, len(pending), size):
        chunk = pending[c0 : c0 + size]
        ctx = torch.cat([ctxs[todo[k][0]][todo[k][1] : todo[k][1] + 1] for k in chunk])
        tw = torch.stack([weights[todo[k][0]][todo[k][1], :1] for k in chunk])
        tp = engine.text_pass(host.adapter, grid, ctx, tw, host.null(), bsteps, layer_infos, r.seed, r.guidance_scale,
                              latent_shape, progress, uncond_cache=host.uncond0)
        mine = {}
        for j, k in enumerate(chunk):
            got[k] = AttentionMaps(layer_infos, tp.steps, ["selected"], tp.maps[j])
            host.text_passes.put(k, got[k])
            mine[owner[k]] = mine.get(owner[k], 0) + 1
        for i, m in mine.items():  # each image pays for its phrases' share of the call
            share = m / len(chunk)
            calls[i] += tp.unet_calls if share == 1 else tp.unet_calls * share
            forwards[i] += tp.forwards if share == 1 else tp.forwards * share
            timings[i]["text_pass_seconds"] = timings[i].get("text_pass_seconds", 0.0) + tp.seconds * share
    out = []
    for i, keys in enumerate(keys_l):
        cache[i]["text_pass"] = len(keys) - sum(1 for k in todo if owner[k] == i)
        out.append([got[k] if k in got else host.text_passes[k] for k in keys])
    return out
