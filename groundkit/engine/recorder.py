"""Cross-attention capture, reduced over heads and tokens as it streams past.

Only ``attn2`` (cross-attention) layers in the window are touched; self-attention and layers
outside the window keep their fast path. The recorder never holds a (T, L, 77, 64, 64) tensor:
each forward's probabilities are averaged over heads and multiplied by a per-item token weight
matrix (G groups x N tokens) straight away, so memory is (items, G, h, w) per layer.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Hashable, Iterator

import torch

from groundkit.core.types import LayerInfo


class Recorder:
    """Collects token-group maps per (item key, layer index) for the forwards it is armed for."""

    def __init__(self, layers: list[LayerInfo]):
        self.layers = {info.name: info for info in layers}
        self._keys: list[Hashable | None] | None = None
        self._weights: torch.Tensor | None = None
        self._keep: list[int] = []
        self._idx: torch.Tensor | None = None  # rows to keep; None = every row
        self._idx_cache: dict[tuple[tuple[int, ...], str], torch.Tensor] = {}
        self.maps: dict[tuple[Hashable, int], torch.Tensor] = {}

    @contextmanager
    def armed(self, keys: list[Hashable | None], weights: torch.Tensor) -> Iterator[None]:
        """Record the next forward: ``keys[b]`` names batch item b (None = do not keep, e.g. the
        unconditional half of CFG); ``weights`` (B, G, N) turns tokens into G group maps."""
        if weights.shape[0] != len(keys):
            raise ValueError(f"recorder: {len(keys)} keys for {weights.shape[0]} weight rows")
        keep = tuple(b for b, k in enumerate(keys) if k is not None)
        self._keys, self._keep = keys, list(keep)
        if len(keep) == len(keys):
            self._idx, self._weights = None, weights.float()
        else:  # index tensors are made once per pattern of kept rows, never per layer or per forward
            key = (keep, str(weights.device))
            if key not in self._idx_cache:
                self._idx_cache[key] = torch.tensor(keep, dtype=torch.long, device=weights.device)
            self._idx = self._idx_cache[key]
            self._weights = weights.index_select(0, self._idx).float() if keep else None
        try:
            yield
        finally:
            self._keys = self._weights = self._idx = None

    def record(self, name: str, probs: torch.Tensor) -> None:
        """``probs``: (B, heads, HW, N) post-softmax attention of layer ``name``."""
        if self._keys is None:
            return
        info = self.layers[name]
        if not self._keep:
            return
        kept = probs if self._idx is None else probs.index_select(0, self._idx)
        p = kept.mean(dim=1, dtype=torch.float32)  # (B', HW, N), heads averaged in float32 without a float32 copy of every head
        g = torch.bmm(self._weights, p.transpose(1, 2))  # (B', G, HW); weights (B', G, N) live on the device already
        hw = g.shape[-1]
        side = info.resolution if info.resolution * info.resolution == hw else int(math.isqrt(hw))
        if side * side != hw:
            raise RuntimeError(f"layer {name}: {hw} query pixels is not a square grid")
        g = g.reshape(g.shape[0], g.shape[1], side, side)
        for row, b in enumerate(self._keep):
            self.maps[(self._keys[b], info.index)] = g[row]
