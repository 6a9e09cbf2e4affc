"""The grounding pipeline: one adapter, its caches, and the passes a recipe asks for.

`GroundingModel` owns one adapter and caches what does not depend on the phrase or on the
recipe knobs being compared: image latents, unconditional inversion trajectories (per image)
and BBM text-only passes (per phrase and seed). Grounding several phrases of one report with
`ground_many` runs the phrase-independent work once and batches the phrases' U-Net calls.
It talks to the model family only through the Adapter protocol. Grounding a radiology report (parse, then
ground its positive findings) is the API's: :class:`groundkit.api.GroundingModel` adds ``ground_report``.
"""
from __future__ import annotations

import functools
import hashlib
import platform
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from groundkit.data.images import load_image
from groundkit.engine import confidence
from groundkit.engine.capture import Captured, capture_images
from groundkit.engine.contrast import check_contrast, contrast_scores
from groundkit.engine.contrast import describe as describe_contrast
from groundkit.engine.heatmap import make_heatmap
from groundkit.engine.maps import AttentionMaps
from groundkit.engine.recorder import Recorder
from groundkit.engine.side_prior import describe as describe_side_prior
from groundkit.grounding import Grounding
from groundkit.recipes import Recipe, Resolved, get_recipe, layer_choice, resolve_recipe

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
        self.inversions: _LRU = _LRU(cache_size)
        self.text_passes: _LRU = _LRU(64)
        self.uncond0: dict = {}  # BBM text pass: the first step's unconditional prediction, per seed
        self.layers = adapter.cross_attention_layers()
        self._auto_batch: int | None = None
        self.compiled = False
        self._null_ctx: torch.Tensor | None = None  # the unconditional context, encoded on first use
        self._unet_lock = threading.RLock()  # U-Net passes (capture hooks) run one at a time, whatever the thread
        self._cache_lock = threading.RLock()  # the LRU caches may be read from post-processing threads
        self._precaptured: _LRU = _LRU(256)  # Captured by capture_many for a later ground_many (see ground_batch)
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
        with self._cache_lock:
            hit = self._latents.get(key)
        if hit is None:
            pixels, geo = self.adapter.preprocess(img)
            mean, std = self.adapter.encode_posterior(pixels)
            hit = (mean, geo, std)
            with self._cache_lock:
                self._latents.put(key, hit)
        return _Prepared(img, key, hit[0], hit[1], hit[2])

    def clear_caches(self, latents: bool = True) -> None:
        """Forget the cached inversion trajectories, BBM text passes and (``latents``) image latents: a cold start,
        as a benchmark of the passes needs (``latents=False`` keeps the encoded images)."""
        with self._cache_lock:
            for c in (self.inversions, self.text_passes, self.uncond0, self._precaptured):
                c.clear()
            if latents:
                self._latents.clear()

    def reserve_cache(self, images: int) -> None:
        """Let the image-latent cache hold at least ``images`` images (a batch in flight must not evict itself and
        be encoded twice). The inversion cache keeps its size: a batch passes its trajectories on directly."""
        with self._cache_lock:
            self._latents.size = max(self._latents.size, int(images))

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
        null = self.null()
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
        self.adapter.compile(**options)
        self.compiled = True
        return self

    def null(self) -> torch.Tensor:
        if self._null_ctx is None:
            self._null_ctx = self.adapter.encode_unconditional()
        return self._null_ctx

    # ------------------------------------------------------------------ grounding
    def ground(self, image, phrase: str, recipe: str | Recipe | None = None, *, category: str | None = None,
               token_maps: bool = False, progress: bool = False, min_confidence: float | None = None,
               **overrides: Any) -> Grounding:
        """Ground one phrase in one image (a path, or an (H, W) array in [0, 1]). ``min_confidence``: below it the
        grounding is marked not localised (``.localised`` False, mask hidden; needs a calibration)."""
        return self.ground_many(image, [phrase], recipe, categories=[category], token_maps=token_maps,
                                progress=progress, min_confidence=min_confidence, **overrides)[0]

    def ground_many(self, image, phrases: Sequence[str], recipe: str | Recipe | None = None, *,
                    categories: Sequence[str | None] | None = None, token_maps: bool = False,
                    progress: bool = False, contrast: str = "none", min_confidence: float | None = None,
                    **overrides: Any) -> list[Grounding]:
        """Ground several phrases of one image: phrase-independent work once, U-Net calls batched.

        ``contrast="findings"`` computes each phrase's map against the others' (the phrases are taken as the
        findings of one report, groundkit.engine.contrast) from the same capture; ``"none"`` (the default)
        grounds every phrase on its own, as ``ground`` does."""
        if isinstance(phrases, str):
            raise TypeError("ground_many takes a list of phrases; use ground() for one phrase")
        phrases = list(phrases)
        if not phrases or any(not p or not p.strip() for p in phrases):
            raise ValueError("every phrase must be a non-empty string")
        contrast = check_contrast(contrast)
        categories = list(categories) if categories is not None else [None] * len(phrases)
        resolved = self.resolve(recipe, **overrides)
        confidence.require(self.entry, resolved.recipe, min_confidence)
        t0 = time.perf_counter()
        prep = self.prepare(image)
        captured = self.capture(prep, phrases, resolved.recipe, categories=categories, token_maps=token_maps,
                                progress=progress)
        out = self._groundings(prep, phrases, captured, resolved, contrast, token_maps, t0)
        confidence.abstain(out, min_confidence)
        return out

    def _groundings(self, prep: _Prepared, phrases: list[str], captured: Captured, resolved: Resolved, contrast: str,
                    token_maps: bool, t0: float, sides: Sequence[str | None] | None = None,
                    zones: Sequence[str | None] | None = None) -> list[Grounding]:
        """One Grounding per phrase from one capture (post-processing only: no U-Net call). ``sides`` / ``zones``:
        the report's side and zone per phrase for the side prior (report flow only; None: no side prior)."""
        r = resolved.recipe
        scores = contrast_scores(captured.maps, r, self.adapter.image_size, contrast=contrast == "findings", sides=sides,
                                 zones=zones)
        out = []
        for p, phrase in enumerate(phrases):
            maps, text_maps = captured.maps[p], (captured.text_maps[p] if captured.text_maps else None)
            hm = make_heatmap(maps, r, self.adapter.image_size, text_maps, score=scores[p] if scores else None)
            words = None
            if token_maps:
                words = {}
                for g in maps.groups:
                    if g.startswith("word:"):
                        sub = make_heatmap(_rename(maps, g), r.override(bbm=None, threshold="none"), self.adapter.image_size)
                        words[g[5:]] = sub.heatmap_crop
            info = {
                "checkpoint": self.entry.name, "adapter": self.adapter.name, "device": str(self.adapter.device),
                "dtype": str(self.adapter.dtype).replace("torch.", ""), "compiled": self.compiled, "seed": r.seed,
                "tokens": captured.explained[p], "empty_selection": captured.explained[p].get("fallback") == "no content word",
                "unet_calls": captured.calls / len(phrases),
                "unet_calls_total": captured.calls, "unet_forwards": captured.forwards,
                "phrases_in_batch": len(phrases), "timings": dict(captured.timings), "cache": dict(captured.cache),
                "bbm_similarity": hm.bbm_similarity, "contrast": describe_contrast(contrast, len(phrases)),
                "side_prior": {**describe_side_prior(sides is not None, [sides[p]] if sides else [], [zones[p]] if zones else []),
                               "side": sides[p] if sides else None, "zone": zones[p] if zones else None},
                "recipe_provenance": resolved.to_dict(), "versions": versions(),
                "layers": layer_choice(resolved.layers_spec, self.layers, r.layers),
            }
            out.append(Grounding(phrase, hm.heatmap_crop, hm.mask_crop, prep.geometry, r, info, words, prep.image))
            confidence.attach(out[-1], maps, text_maps, self.entry)  # signals + calibrated confidence, no U-Net call
        total = time.perf_counter() - t0
        for g in out:
            g.info["timings"]["total_seconds_batch"] = total
        return out

    def capture(self, prep: _Prepared, phrases, r: Recipe, categories, token_maps=False, progress=False) -> Captured:
        """Run the recipe's passes and return per-phrase AttentionMaps (what ablations store). What
        ``precapture``/``ground_batch`` already captured for this image, phrases and recipe is taken as is."""
        pre = self._take_precaptured(prep, phrases, r, categories, token_maps)
        if pre is not None:
            return pre
        return self.capture_many([prep], [phrases], r, [categories], token_maps, progress)[0]

    # ------------------------------------------------------------------ several images
    def _pre_key(self, prep: _Prepared, phrases, r: Recipe, categories, token_maps) -> tuple:
        return (prep.key, tuple(phrases), tuple(categories), repr(r), bool(token_maps))

    def _take_precaptured(self, prep, phrases, r, categories, token_maps) -> Captured | None:
        with self._cache_lock:
            return self._precaptured.pop(self._pre_key(prep, phrases, r, categories, token_maps), None)

    def precapture(self, items: Sequence[tuple[Any, Sequence[str]]], recipe: str | Recipe | None = None, *,
                   categories: Sequence[Sequence[str | None] | None] | None = None, token_maps: bool = False,
                   progress: bool = False, **overrides: Any) -> list[Captured]:
        """Run the U-Net passes of several images together (``capture_many``) and keep each image's result
        for its next ``ground_many(image, phrases, recipe, categories=...)`` call, which then only
        post-processes. ``items``: (image, phrases) pairs; images are prepared (loaded, encoded) here unless
        given as ``_Prepared``. Returns the Captured per item."""
        r = self.resolve(recipe, **overrides).recipe
        preps = [x if isinstance(x, _Prepared) else self.prepare(x) for x, _ in items]
        phrases = [list(ph) for _, ph in items]
        cats = [list(c) if c is not None else [None] * len(ph)
                for c, ph in zip(categories if categories is not None else [None] * len(items), phrases)]
        self.reserve_cache(2 * len(items) + 8)
        with self._unet_lock:
            caps = self.capture_many(preps, phrases, r, cats, token_maps, progress)
        with self._cache_lock:
            self._precaptured.size = max(self._precaptured.size, 2 * len(items) + 8)
            for prep, ph, c, cap in zip(preps, phrases, cats, caps):
                self._precaptured.put(self._pre_key(prep, ph, r, c, token_maps), cap)
        return caps

    def images_per_batch(self, recipe: str | Recipe | None = None, **overrides: Any) -> int:
        """How many images ``ground_batch`` and the benchmark runner capture together: the U-Net batch size
        (each image adds at least one item per forward of the shared inversion or window)."""
        r = self.recipe(recipe, **overrides)
        return max(1, int(r.batch_size or self.auto_batch_size()))

    def ground_batch(self, items: Sequence[tuple[Any, Sequence[str]]], recipe: str | Recipe | None = None, *,
                     categories: Sequence[Sequence[str | None] | None] | None = None, token_maps: bool = False,
                     progress: bool = False, images_per_batch: int | None = None, **overrides: Any) -> list[list[Grounding]]:
        """Ground several images, each with its own phrases: ``items`` is a list of (image, phrases). Up to
        ``images_per_batch`` images (default: the U-Net batch size) share U-Net forwards: one batched DDIM
        inversion, GT-noised items of several images per forward, one BBM text pass for the phrases of all
        of them. Returns, per item, what ``ground_many(image, phrases, ...)`` returns, with the same maps."""
        items = [(img, list(ph)) for img, ph in items]
        cats = list(categories) if categories is not None else [None] * len(items)
        if len(cats) != len(items):
            raise ValueError(f"ground_batch: {len(cats)} category lists for {len(items)} items")
        for _, ph in items:
            if not ph or any(not isinstance(p, str) or not p.strip() for p in ph):
                raise ValueError("every item needs a non-empty list of non-empty phrases")
        k = images_per_batch or self.images_per_batch(recipe, **overrides)
        out: list[list[Grounding]] = []
        for i in range(0, len(items), k):
            chunk, ccats = items[i : i + k], cats[i : i + k]
            self.precapture(chunk, recipe, categories=ccats, token_maps=token_maps, progress=progress, **overrides)
            for (img, ph), c in zip(chunk, ccats):
                out.append(self.ground_many(img, ph, recipe, categories=c, token_maps=token_maps, progress=progress,
                                            **overrides))
        return out

    def capture_many(self, preps: Sequence[_Prepared], phrases_list, r: Recipe, categories_list, token_maps=False,
                     progress=False) -> list[Captured]:
        """``capture`` of several images at once: items of different images share U-Net forwards (inversion
        of up to ``batch_size`` images per forward, window items and BBM text passes pooled), each image's
        maps equal to its own ``capture``. Each Captured counts its own batch items and its share of the
        forwards and seconds."""
        with self._unet_lock:
            return capture_images(self, list(preps), [list(p) for p in phrases_list], r, list(categories_list),
                                  token_maps, progress)

def _rename(maps: AttentionMaps, group: str) -> AttentionMaps:
    """View a per-word group as the 'selected' group, to reuse the same aggregation."""
    groups = ["selected" if g == group else (g if g != "selected" else "_selected") for g in maps.groups]
    return AttentionMaps(maps.layers, maps.steps, groups, maps.maps)


def versions() -> dict[str, str]:
    """Library versions recorded with every grounding (a copy: callers may add to it)."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    """Looked up once per process: it is called for every grounding, and a library that is not installed
    (monai, say) would otherwise cost a failed import search each time."""
    from groundkit.core.version import __version__

    out = {"groundkit": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("monai", "diffusers", "transformers", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            pass
    return out
