"""The grounding pipeline: one adapter, its caches, and the passes a recipe asks for.

`GroundingModel` owns one adapter and composes the jobs around it: the caches of what does not depend on the
phrase or on the recipe knobs being compared (groundkit.engine.caches: image latents, inversion trajectories
per image, BBM text passes per phrase and seed), the batch size and cross-image batching
(groundkit.engine.batching), the capture passes (groundkit.engine.capture) and the turning of captured maps
into results (groundkit.engine.results). Grounding several phrases of one report with `ground_many` runs the
phrase-independent work once and batches the phrases' U-Net calls. It talks to the model family only through
the Adapter protocol. Grounding a radiology report (parse, then ground its positive findings) is the API's:
:class:`groundkit.api.GroundingModel` adds ``ground_report``.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Sequence

import torch

from groundkit.engine import confidence
from groundkit.engine.batching import Precaptured, check_items, item_categories, measure_batch_size
from groundkit.engine.caches import Caches, Prepared
from groundkit.engine.capture import Captured, capture_images
from groundkit.engine.contrast import capture_recipe, check_contrast
from groundkit.engine.results import groundings
from groundkit.grounding import Grounding
from groundkit.recipes import Recipe, Resolved, get_recipe, resolve_recipe


class GroundingModel:
    """One adapter and everything grounding with it keeps: caches, batch size, captures awaiting their results."""

    def __init__(self, adapter, entry: Any, load_seconds: float = 0.0, cache_size: int = 8):
        self.adapter, self.entry, self.load_seconds = adapter, entry, load_seconds
        self.caches = Caches(cache_size)
        # the capture's view of the caches (CaptureHost): the same objects, cleared in place, never rebound
        self.inversions, self.text_passes, self.uncond0 = self.caches.inversions, self.caches.text_passes, self.caches.uncond0
        self.layers = adapter.cross_attention_layers()
        self._auto_batch: int | None = None
        self.compiled = False
        self._null_ctx: torch.Tensor | None = None  # the unconditional context, encoded on first use
        self._unet_lock = threading.RLock()  # U-Net passes (capture hooks) run one at a time, whatever the thread
        self._precaptured = Precaptured()  # Captured by precapture for a later ground_many (see ground_batch)
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
    def prepare(self, image) -> Prepared:
        """Load and encode an image (a path, or an (H, W) array in [0, 1]); its latents are cached."""
        return self.caches.prepare(self.adapter, image)

    def clear_caches(self, latents: bool = True) -> None:
        """Forget the cached inversion trajectories, BBM text passes and (``latents``) image latents: a cold start,
        as a benchmark of the passes needs (``latents=False`` keeps the encoded images)."""
        self.caches.clear(latents)
        self._precaptured.clear()

    def reserve_cache(self, images: int) -> None:
        """Let the image-latent cache hold at least ``images`` images (a batch in flight must not evict itself and
        be encoded twice). The inversion cache keeps its size: a batch passes its trajectories on directly."""
        self.caches.reserve(images)

    def auto_batch_size(self, fraction: float = 0.6, cap: int = 64) -> int:
        """Items per U-Net forward (what ``batch_size=0``, the default, means). On CUDA: what fits in
        ``fraction`` of the free memory, measured by one probe forward of 2 items with capture armed on every
        cross-attention layer, as a pass runs; on CPU/MPS a fixed ``batching.CPU_BATCH`` (the batch does not buy
        parallelism there the same way). Measured once per model."""
        if self._auto_batch is None:
            self._auto_batch = measure_batch_size(self.adapter, self.layers, self.null, fraction, cap)
        return self._auto_batch

    def compile(self, **options: Any) -> GroundingModel:
        """Run the U-Net's forward through ``torch.compile`` (``nn.Module.compile``, in place: the module, its
        layer names and the capture seams stay as they are, so every recipe captures as in eager mode). The
        first forwards of each shape pay the compilation; the maps are the eager ones."""
        self.adapter.compile(**options)
        self.compiled = True
        return self

    def null(self) -> torch.Tensor:
        """The unconditional (empty prompt) context, encoded on first use."""
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
        # with the contrast, the same passes also record the layers that refine it (capture_recipe): no extra call
        captured = self.capture(prep, phrases, capture_recipe(resolved.recipe, self.layers, len(phrases), contrast),
                                categories=categories, token_maps=token_maps, progress=progress)
        out = groundings(self, prep, phrases, captured, resolved, contrast, token_maps, t0)
        confidence.abstain(out, min_confidence)
        return out

    def capture(self, prep: Prepared, phrases, r: Recipe, categories, token_maps=False, progress=False) -> Captured:
        """Run the recipe's passes and return per-phrase AttentionMaps (what ablations store). What
        ``precapture``/``ground_batch`` already captured for this image, phrases and recipe is taken as is."""
        pre = self._precaptured.take(prep.key, phrases, r, categories, token_maps)
        if pre is not None:
            return pre
        return self.capture_many([prep], [phrases], r, [categories], token_maps, progress)[0]

    # ------------------------------------------------------------------ several images
    def precapture(self, items: Sequence[tuple[Any, Sequence[str]]], recipe: str | Recipe | None = None, *,
                   categories: Sequence[Sequence[str | None] | None] | None = None, token_maps: bool = False,
                   progress: bool = False, **overrides: Any) -> list[Captured]:
        """Run the U-Net passes of several images together (``capture_many``) and keep each image's result
        for its next ``ground_many(image, phrases, recipe, categories=...)`` call, which then only
        post-processes. ``items``: (image, phrases) pairs; images are prepared (loaded, encoded) here unless
        given as ``Prepared``. Returns the Captured per item."""
        r = self.resolve(recipe, **overrides).recipe
        preps = [x if isinstance(x, Prepared) else self.prepare(x) for x, _ in items]
        phrases = [list(ph) for _, ph in items]
        cats = item_categories(categories, phrases)
        self.reserve_cache(2 * len(items) + 8)
        caps = self.capture_many(preps, phrases, r, cats, token_maps, progress)
        self._precaptured.keep([p.key for p in preps], phrases, r, cats, token_maps, caps)
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
        items, cats = check_items(items, categories)
        k = images_per_batch or self.images_per_batch(recipe, **overrides)
        out: list[list[Grounding]] = []
        for i in range(0, len(items), k):
            chunk, ccats = items[i : i + k], cats[i : i + k]
            self.precapture(chunk, recipe, categories=ccats, token_maps=token_maps, progress=progress, **overrides)
            for (img, ph), c in zip(chunk, ccats):
                out.append(self.ground_many(img, ph, recipe, categories=c, token_maps=token_maps, progress=progress,
                                            **overrides))
        return out

    def capture_many(self, preps: Sequence[Prepared], phrases_list, r: Recipe, categories_list, token_maps=False,
                     progress=False) -> list[Captured]:
        """``capture`` of several images at once: items of different images share U-Net forwards (inversion
        of up to ``batch_size`` images per forward, window items and BBM text passes pooled), each image's
        maps equal to its own ``capture``. Each Captured counts its own batch items and its share of the
        forwards and seconds."""
        with self._unet_lock:
            return capture_images(self, list(preps), [list(p) for p in phrases_list], r, list(categories_list),
                                  token_maps, progress)
