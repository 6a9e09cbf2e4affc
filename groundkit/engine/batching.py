"""How much goes through the U-Net at once: the automatic batch size and cross-image batching's bookkeeping.

Why apart from the pipeline: the batch size is a property of the device (measured once per model), and the
cross-image store is what lets ``precapture`` (several images' passes in shared forwards) hand each image's
capture to the ``ground_many`` call that follows it, possibly on another thread (the benchmark runner).
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import torch

from groundkit.engine.caches import LRU
from groundkit.engine.recorder import Recorder
from groundkit.recipes import Recipe

CPU_BATCH = 8  # U-Net batch items per forward off CUDA when the recipe says batch_size=0 (automatic)


def measure_batch_size(adapter, layers, null_context: Callable[[], torch.Tensor], fraction: float, cap: int) -> int:
    """Items per U-Net forward. On CUDA: what fits in ``fraction`` of the free memory, measured by one probe
    forward of 2 items with capture armed on every cross-attention layer, as a pass runs; elsewhere
    ``CPU_BATCH`` (the batch does not buy parallelism there the same way). ``null_context`` is only called
    on CUDA, for the probe."""
    dev = adapter.device
    if dev.type != "cuda":
        return CPU_BATCH
    null = null_context()
    c, side = int(adapter.latent_channels), adapter.latent_size
    z = torch.zeros(2, c, side, side, device=dev)
    t = torch.full((2,), 500, device=dev)
    rec = Recorder(layers)
    w = torch.ones(2, 2, null.shape[1], device=dev)  # two groups, as a BBM pass records
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    with torch.no_grad(), adapter.capture(rec), rec.armed([0, 1], w):
        adapter.unet(z, t, null.expand(2, -1, -1))
    per_item = max(1, (torch.cuda.max_memory_allocated(dev) - base) / 2)
    rec.maps.clear()
    free, _ = torch.cuda.mem_get_info(dev)
    return int(max(1, min(cap, fraction * free // per_item)))


def item_categories(categories: Sequence[Sequence[str | None] | None] | None, phrases: list[list[str]]) -> list[list]:
    """Each item's categories, one per phrase (None for an item given none)."""
    given = categories if categories is not None else [None] * len(phrases)
    return [list(c) if c is not None else [None] * len(ph) for c, ph in zip(given, phrases)]


def check_items(items: Sequence[tuple[Any, Sequence[str]]], categories) -> tuple[list, list]:
    """``ground_batch``'s (image, phrases) items and their category lists, checked: ValueError naming what is wrong."""
    items = [(img, list(ph)) for img, ph in items]
    cats = list(categories) if categories is not None else [None] * len(items)
    if len(cats) != len(items):
        raise ValueError(f"ground_batch: {len(cats)} category lists for {len(items)} items")
    for _, ph in items:
        if not ph or any(not isinstance(p, str) or not p.strip() for p in ph):
            raise ValueError("every item needs a non-empty list of non-empty phrases")
    return items, cats


class Precaptured:
    """Captures made by ``precapture`` for a later ``ground_many`` of the same image, phrases, categories,
    recipe and token maps, which takes its capture out instead of running the passes again. An item given
    twice in one batch is kept twice, so each of its ``ground_many`` calls finds one."""

    def __init__(self, size: int = 256):
        self.store = LRU(size)  # key -> the captures not yet taken, oldest first
        self.lock = threading.RLock()

    @staticmethod
    def key(image_key: str, phrases, r: Recipe, categories, token_maps) -> tuple:
        return (image_key, tuple(phrases), tuple(categories), repr(r), bool(token_maps))

    def take(self, image_key: str, phrases, r: Recipe, categories, token_maps):
        """The capture kept for this call (removed from the store), or None."""
        key = self.key(image_key, phrases, r, categories, token_maps)
        with self.lock:
            kept = self.store.pop(key, None)
            if not kept:
                return None
            if len(kept) > 1:
                self.store.put(key, kept[1:])
            return kept[0]

    def keep(self, image_keys: Sequence[str], phrases, r: Recipe, categories, token_maps, caps) -> None:
        """Keep each item's capture, the store grown to hold at least the whole batch."""
        with self.lock:
            self.store.size = max(self.store.size, 2 * len(caps) + 8)
            for k, ph, c, cap in zip(image_keys, phrases, categories, caps):
                key = self.key(k, ph, r, c, token_maps)
                self.store.put(key, self.store.get(key, []) + [cap])

    def clear(self) -> None:
        with self.lock:
            self.store.clear()
