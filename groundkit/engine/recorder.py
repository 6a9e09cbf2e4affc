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
        self.maps: dict[tuple[Hashable, int], torch.Tensor] = {}

    @contextmanager
    def armed(self, keys: list[Hashable | None], weights: torch.Tensor) -> Iterator[None]:
        """Record the next forward: ``keys[b]`` names batch item b (None = do not keep, e.g. the
        unconditional half of CFG); ``weights`` (B, G, N) turns tokens into G group maps."""
        if weights.shape[0] != len(keys):
            raise ValueError(f"recorder: {len(keys)} keys for {weights.shape[0]} weight rows")
        self._keys, self._weights = keys, weights
        try:
            yield
        finally:
            self._keys = self._weights = None

    def record(self, name: str, probs: torch.Tensor) -> None:
        """``probs``: (B, heads, HW, N) post-softmax attention of layer ``name``."""
        if self._keys is None:
            return
        info = self.layers[name]
        keep = [b for b, k in enumerate(self._keys) if k is not None]
        if not keep:
            return
        idx = torch.tensor(keep, device=probs.device)
        p = probs.index_select(0, idx).float().mean(dim=1)  # (B', HW, N), heads averaged
        w = self._weights.index_select(0, idx.to(self._weights.device)).to(p.device, torch.float32)  # (B', G, N)
        g = torch.bmm(w, p.transpose(1, 2))  # (B', G, HW)
        hw = g.shape[-1]
        side = info.resolution if info.resolution * info.resolution == hw else int(math.isqrt(hw))
        if side * side != hw:
            raise RuntimeError(f"layer {name}: {hw} query pixels is not a square grid")
        g = g.reshape(g.shape[0], g.shape[1], side, side)
        for row, b in enumerate(keep):
            self.maps[(self._keys[b], info.index)] = g[row]
