"""The grounding pipeline: one adapter, its caches, and the passes a recipe asks for.

`GroundingModel` owns one adapter and caches what does not depend on the phrase or on the
recipe knobs being compared: image latents, unconditional inversion trajectories (per image)
and BBM text-only passes (per phrase and seed). Grounding several phrases of one report with
`ground_many` runs the phrase-independent work once and batches the phrases' U-Net calls.
It talks to the model family only through the Adapter protocol.
"""
from __future__ import annotations

import hashlib
import platform
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from groundkit.data.images import load_image
from groundkit.engine import passes as engine
from groundkit.engine.heatmap import make_heatmap
from groundkit.engine.maps import AttentionMaps
from groundkit.engine.recorder import Recorder
from groundkit.engine.tokens import explain, token_weights
from groundkit.grounding import Grounding
from groundkit.recipes import Recipe, Resolved, get_recipe, resolve_recipe

CPU_BATCH = 8  # U-Net batch items per forward off CUDA when the recipe says batch_size=0 (automatic)


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass
class _Prepared:
    image: np.ndarray
    key: str
    z0: torch.Tensor  # posterior mean
    geometry: Any
    z_std: torch.Tensor | None = None  # posterior standard deviation (None: the adapter has no posterior)


class GroundingModel:
    def __init__(self, adapter, entry: Any, load_seconds: float = 0.0, cache_size: int = 8):
        self.adapter, self.entry, self.load_seconds = adapter, entry, load_seconds
        self._latents: _LRU = _LRU(cache_size)
        self._inversions: _LRU = _LRU(cache_size)
        self._text_passes: _LRU = _LRU(64)
        self._uncond0: dict = {}  # BBM text pass: the first step's unconditional prediction, per seed
        self.layers = adapter.cross_attention_layers()
        self._auto_batch: int | None = None
        self.compiled = False
        _ = getattr(entry, "default_recipe", None)  # registers "<checkpoint>-default" now, so it can be named

    # ------------------------------------------------------------------ recipes
    def resolve(self, recipe: str | Recipe | None = None, **overrides: Any) -> Resolved:
        """The recipe for this model and where each field came from: the named recipe (None: the checkpoint's
        default recipe), then your overrides; the layer selector resolved to this model's layers."""
        grid_probe = get_recipe(recipe if recipe is not None else self.entry.default_recipe)
        grid_probe = grid_probe.override(**{k: v for k, v in overrides.items() if k == "grid"}) if "grid" in overrides else grid_probe
        return resolve_recipe(recipe, self.entry.default_recipe, overrides, layers=self.layers,
                              grid_len=len(grid_probe.timesteps(self.adapter.schedule.num_train_timesteps)),
                              model=self.entry.name, base_of_default=self.entry.recipe)

    def recipe(self, recipe: str | Recipe | None = None, **overrides: Any) -> Recipe:
        """The resolved recipe (see :meth:`resolve`)."""
        return self.resolve(recipe, **overrides).recipe

    # ------------------------------------------------------------------ caches
    def prepare(self, image) -> _Prepared:
        img = load_image(image)
        key = hashlib.sha1(np.ascontiguousarray(img).tobytes() + str(img.shape).encode()).hexdigest()
        hit = self._latents.get(key)
        if hit is None:
            pixels, geo = self.adapter.preprocess(img)
            if hasattr(self.adapter, "encode_posterior"):
                mean, std = self.adapter.encode_posterior(pixels)
            else:
                mean, std = self.adapter.encode_image(pixels), None
            hit = (mean, geo, std)
            self._latents.put(key, hit)
        return _Prepared(img, key, hit[0], hit[1], hit[2])

    def auto_batch_size(self, fraction: float = 0.6, cap: int = 64) -> int:
        """Items per U-Net forward (what ``batch_size=0``, the default, means). On CUDA: what fits in
        ``fraction`` of the free memory, measured by one probe forward of 2 items with capture armed on every
        cross-attention layer, as a pass runs; on CPU/MPS a fixed ``CPU_BATCH`` (the batch does not buy
        parallelism there the same way)."""
        if self._auto_batch is not None:
            return self._auto_batch
        dev = self.adapter.device
        if dev.type != "cuda":
            self._auto_batch = CPU_BATCH
            return CPU_BATCH
        null = self._null()
        c, side = int(self.adapter.latent_channels), self.adapter.latent_size
        z = torch.zeros(2, c, side, side, device=dev)
        t = torch.full((2,), 500, device=dev)
        rec = Recorder(self.layers)
        w = torch.ones(2, 2, null.shape[1], device=dev)  # two groups, as a BBM pass records
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        with torch.no_grad(), self.adapter.capture(rec), rec.armed([0, 1], w):
            self.adapter.unet(z, t, null.expand(2, -1, -1))
        per_item = max(1, (torch.cuda.max_memory_allocated(dev) - base) / 2)
        rec.maps.clear()
        free, _ = torch.cuda.mem_get_info(dev)
        self._auto_batch = int(max(1, min(cap, fraction * free // per_item)))
        return self._auto_batch

    def compile(self, **options: Any) -> GroundingModel:
        """Run the U-Net's forward through ``torch.compile`` (``nn.Module.compile``, in place: the module, its
        layer names and the capture seams stay as they are, so every recipe captures as in eager mode). The
        first forwards of each shape pay the compilation; the maps are the eager ones."""
        self.adapter.unet_model.compile(**options)
        self.compiled = True
        return self

    def _null(self) -> torch.Tensor:
        if not hasattr(self, "_null_ctx"):
            enc = getattr(self.adapter, "encode_unconditional", None)
            self._null_ctx = enc() if enc is not None else self.adapter.encode_text([""]).embeddings
        return self._null_ctx

    # ------------------------------------------------------------------ grounding
    def ground(self, image, phrase: str, recipe: str | Recipe | None = None, *, category: str | None = None,
               token_maps: bool = False, progress: bool = False, **overrides: Any) -> Grounding:
        """Ground one phrase in one image (a path, or an (H, W) array in [0, 1])."""
        return self.ground_many(image, [phrase], recipe, categories=[category], token_maps=token_maps,
                                progress=progress, **overrides)[0]

    def ground_many(self, image, phrases: Sequence[str], recipe: str | Recipe | None = None, *,
                    categories: Sequence[str | None] | None = None, token_maps: bool = False,
                    progress: bool = False, **overrides: Any) -> list[Grounding]:
        """Ground several phrases of one image: phrase-independent work once, U-Net calls batched."""
        if isinstance(phrases, str):
            raise TypeError("ground_many takes a list of phrases; use ground() for one phrase")
        phrases = list(phrases)
        if not phrases or any(not p or not p.strip() for p in phrases):
            raise ValueError("every phrase must be a non-empty string")
        categories = list(categories) if categories is not None else [None] * len(phrases)
        resolved = self.resolve(recipe, **overrides)
        r = resolved.recipe
        t0 = time.perf_counter()
        prep = self.prepare(image)
        captured = self.capture(prep, phrases, r, categories=categories, token_maps=token_maps, progress=progress)
        out = []
        for p, phrase in enumerate(phrases):
            maps, text_maps = captured.maps[p], (captured.text_maps[p] if captured.text_maps else None)
            hm = make_heatmap(maps, r, self.adapter.image_size, text_maps)
            words = None
            if token_maps:
                words = {}
                for g in maps.groups:
                    if g.startswith("word:"):
                        sub = make_heatmap(_rename(maps, g), r.override(bbm=None, threshold="none"), self.adapter.image_size)
                        words[g[5:]] = sub.heatmap
            info = {
                "checkpoint": self.entry.name, "adapter": self.adapter.name, "device": str(self.adapter.device),
                "dtype": str(self.adapter.dtype).replace("torch.", ""), "compiled": self.compiled, "seed": r.seed,
                "tokens": captured.explained[p], "empty_selection": captured.explained[p].get("fallback") == "no content word",
                "unet_calls": captured.calls / len(phrases),
                "unet_calls_total": captured.calls, "unet_forwards": captured.forwards,
                "phrases_in_batch": len(phrases), "timings": dict(captured.timings), "cache": dict(captured.cache),
                "bbm_similarity": hm.bbm_similarity, "recipe_provenance": resolved.to_dict(), "versions": versions(),
            }
            out.append(Grounding(phrase, hm.heatmap, hm.mask, prep.geometry, r, info, words, prep.image))
        total = time.perf_counter() - t0
        for g in out:
            g.info["timings"]["total_seconds_batch"] = total
        return out

    def ground_report(self, image, report: str, recipe: str | Recipe | None = None, *, use_spacy: bool | None = None,
                      progress: bool = False, **overrides: Any):
        """Ground every positive finding of a radiology report in one image, in ONE batched call that shares
        the per-image work; negated findings are listed, not grounded. Returns a ReportGrounding."""
        from groundkit.core.categories import CATEGORIES
        from groundkit.report_grounding import PALETTE, GroundedFinding, ReportGrounding
        from groundkit.reports import parse_report

        t0 = time.perf_counter()
        parsed = parse_report(report, use_spacy=use_spacy)
        found = [GroundedFinding(f, PALETTE[i % len(PALETTE)]) for i, f in enumerate(parsed.findings)]
        todo = [f for f in found if not f.negated]
        gs = []
        if todo:
            cats = [f.finding.category if f.finding.category in CATEGORIES else None for f in todo]
            gs = self.ground_many(image, [f.finding.phrase for f in todo], recipe, categories=cats, progress=progress, **overrides)
            for f, g in zip(todo, gs):
                f.grounding = g
        r = gs[0].recipe if gs else self.recipe(recipe, **overrides)
        total = gs[0].info["unet_calls_total"] if gs else 0
        info = {"checkpoint": self.entry.name, "recipe": r.name, "recipe_digest": r.digest(),
                "seconds": round(time.perf_counter() - t0, 3), "unet_calls_total": total,
                "unet_calls_per_finding": total / len(todo) if todo else 0, "unet_forwards": gs[0].info["unet_forwards"] if gs else 0,
                "findings_grounded": len(todo), "findings_negated": len(found) - len(todo), "groundkit": versions()["groundkit"]}
        return ReportGrounding(report, parsed, found, self.prepare(image).image, info)

    def capture(self, prep: _Prepared, phrases, r: Recipe, categories, token_maps=False, progress=False) -> Captured:
        """Run the recipe's passes and return per-phrase AttentionMaps (what ablations store)."""
        text = self.adapter.encode_text(phrases)
        groups = ["selected"] + (["start"] if r.bbm else [])
        word_groups: list[list[str]] = [[] for _ in phrases]
        if token_maps:
            for b, phrase in enumerate(phrases):
                word_groups[b] = [phrase[s:e] for s, e in text.word_spans[b]]
        all_groups = groups + [f"word:{w}" for w in sorted({w for ws in word_groups for w in ws})]
        n_tok = text.embeddings.shape[1]
        weights = torch.zeros(len(phrases), len(all_groups), n_tok)
        explained = []
        for b in range(len(phrases)):
            weights[b, 0] = token_weights(text, b, r.tokens, categories[b])
            explained.append(explain(text, b, r.tokens, categories[b]))
            if r.bbm:
                weights[b, 1] = token_weights(text, b, "start")
            for w in word_groups[b]:
                weights[b, all_groups.index(f"word:{w}")] = token_weights(text, b, f"words:{w}")
        weights = weights.to(self.adapter.device)
        grid = r.timesteps(self.adapter.schedule.num_train_timesteps)
        steps = sorted(set(range(*r.steps)) | (set(range(*r.bbm_steps)) if r.bbm else set()))
        layer_infos = [self.layers[i] for i in (r.layers if r.layers is not None else range(len(self.layers)))]
        timings: dict[str, float] = {}
        cache = {"latents": 0, "inversion": 0, "text_pass": 0}
        calls = forwards = 0
        ctx = text.embeddings
        if r.batch_size == 0:
            r = r.override(batch_size=self.auto_batch_size())
        if r.mode == "gt-noised":
            z_std = prep.z_std if r.latent == "sample" else None
            res = engine.gt_noised_pass(self.adapter, grid, prep.z0, ctx, weights, steps, layer_infos, r.seed, r.batch_size,
                                        progress, z_std=z_std)
        else:
            key = (prep.key, r.grid, max(steps))
            hit = self._inversions.get(key)
            if hit is not None and set(steps) <= set(hit):
                cache["inversion"] = 1
                lat = {s: hit[s] for s in steps}
            else:
                t = time.perf_counter()
                lat, c, f = engine.inversion_latents(self.adapter, grid, prep.z0, steps, self._null())
                self._inversions.put(key, lat)
                calls, forwards = calls + c, forwards + f
                timings["inversion_seconds"] = time.perf_counter() - t
            res = engine.inversion_pass(self.adapter, grid, lat, ctx, weights, steps, layer_infos, r.batch_size, progress)
        calls, forwards = calls + res.unet_calls, forwards + res.forwards
        timings["capture_seconds"] = res.seconds
        maps = [AttentionMaps(layer_infos, res.steps, all_groups, m) for m in res.maps]
        text_maps = None
        if r.bbm:
            bsteps = list(range(*r.bbm_steps))
            keys = [_text_key(phrases[b], categories[b], r) for b in range(len(phrases))]
            todo = [b for b in range(len(phrases)) if keys[b] not in self._text_passes]
            if todo:
                tw = torch.stack([weights[b, :1] for b in todo])
                tp = engine.text_pass(self.adapter, grid, ctx[todo], tw, self._null(), bsteps, layer_infos, r.seed,
                                      r.guidance_scale, tuple(prep.z0.shape), progress, uncond_cache=self._uncond0)
                calls, forwards = calls + tp.unet_calls, forwards + tp.forwards
                timings["text_pass_seconds"] = tp.seconds
                for j, b in enumerate(todo):
                    self._text_passes.put(keys[b], AttentionMaps(layer_infos, tp.steps, ["selected"], tp.maps[j]))
            cache["text_pass"] = len(phrases) - len(todo)
            text_maps = [self._text_passes[k] for k in keys]
        return Captured(maps, text_maps, explained, calls, forwards, timings, cache)


@dataclass
class Captured:
    maps: list[AttentionMaps]
    text_maps: list[AttentionMaps] | None
    explained: list[Any]
    calls: int
    forwards: int
    timings: dict[str, float]
    cache: dict[str, int]


def _text_key(phrase: str, category: str | None, r: Recipe) -> tuple:
    """What BBM's text-only pass depends on: not the image."""
    return (phrase, category, r.tokens, r.seed, r.guidance_scale, r.grid, r.bbm_steps, r.layers)


def _rename(maps: AttentionMaps, group: str) -> AttentionMaps:
    """View a per-word group as the 'selected' group, to reuse the same aggregation."""
    groups = ["selected" if g == group else (g if g != "selected" else "_selected") for g in maps.groups]
    return AttentionMaps(maps.layers, maps.steps, groups, maps.maps)


def versions() -> dict[str, str]:
    from groundkit.core.version import __version__

    out = {"groundkit": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("monai", "diffusers", "transformers", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            pass
    return out
