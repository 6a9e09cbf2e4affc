"""What a GroundingModel keeps between calls: encoded images, inversion trajectories, BBM text passes.

Why apart from the pipeline: none of these depend on the phrase being grounded or on the recipe knobs being
compared (post-processing, contrast), so they are shared by every call on the model; the capture
(groundkit.engine.capture) reads and fills them, the pipeline only owns one :class:`Caches`. They may be read
from post-processing threads while the U-Net runs, hence one lock over all of them.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from groundkit.data.images import load_image


class LRU(OrderedDict):
    """A dict that forgets its least recently put entry beyond ``size`` entries."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass
class Prepared:
    """An image loaded and encoded: what every pass of it starts from."""

    image: np.ndarray
    key: str
    z0: torch.Tensor  # posterior mean
    geometry: Any
    z_std: torch.Tensor | None = None  # posterior standard deviation (None: the adapter has no posterior)


class Caches:
    """The per-image and per-phrase caches of one model, and the lock they are read and written under."""

    def __init__(self, size: int = 8):
        self.latents = LRU(size)  # image key -> (posterior mean, geometry, posterior std)
        self.inversions = LRU(size)  # (image key, grid, last step) -> {step: latent}
        self.text_passes = LRU(64)  # capture.text_key(...) -> AttentionMaps of BBM's text-only pass
        self.uncond0: dict = {}  # BBM text pass: the first step's unconditional prediction, per seed
        self.lock = threading.RLock()

    def prepare(self, adapter, image) -> Prepared:
        """Load ``image`` (a path or an array) and encode it, or take its latents from the cache."""
        img = load_image(image)
        key = hashlib.sha1(np.ascontiguousarray(img).tobytes() + str(img.shape).encode()).hexdigest()
        with self.lock:
            hit = self.latents.get(key)
        if hit is None:
            pixels, geo = adapter.preprocess(img)
            mean, std = adapter.encode_posterior(pixels)
            hit = (mean, geo, std)
            with self.lock:
                self.latents.put(key, hit)
        return Prepared(img, key, hit[0], hit[1], hit[2])

    def clear(self, latents: bool = True) -> None:
        """Forget the inversions, text passes and (``latents``) the encoded images."""
        with self.lock:
            for c in (self.inversions, self.text_passes, self.uncond0):
                c.clear()
            if latents:
                self.latents.clear()

    def reserve(self, images: int) -> None:
        """Let the latent cache hold at least ``images`` images."""
        with self.lock:
            self.latents.size = max(self.latents.size, int(images))
