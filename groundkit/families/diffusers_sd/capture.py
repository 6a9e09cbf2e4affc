"""Capture for diffusers U-Nets: an attention processor (diffusers' own seam) on the cross-attention layers.

diffusers' stock ``AttnProcessor`` does the work; the only step groundkit changes is where it asks the layer for
its attention probabilities (``attn.get_attention_scores``): that call is answered with an explicit float32
softmax, reported to the engine's sink. Layers outside the window keep their fast processor.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from groundkit.core.types import AttentionSink


class _RecordingAttention:
    """A per-call stand-in for a diffusers ``Attention`` layer: every attribute is the layer's own, except
    ``get_attention_scores``, which computes the softmax in float32 and records it.

    Why a stand-in rather than patching the layer: the layer is shared (compiled graphs, other threads), so
    nothing on it is ever replaced; the stand-in lives for one processor call.
    """

    __slots__ = ("_attn", "_recorder", "_name")

    def __init__(self, attn: Any, recorder: AttentionSink, name: str):
        self._attn, self._recorder, self._name = attn, recorder, name

    def __getattr__(self, item: str) -> Any:
        if item in _RecordingAttention.__slots__:  # not set yet (a copy in the making): no endless recursion
            raise AttributeError(item)
        return getattr(self._attn, item)

    def get_attention_scores(self, query: torch.Tensor, key: torch.Tensor,
                             attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """float32 ``softmax(Q K^T * scale + mask)`` whatever the layer's ``upcast_*`` flags, recorded as
        (batch, heads, queries, keys); returned in the query's dtype, as diffusers does.

        The keys are made contiguous so that the product is the GEMM groundkit has always computed (a 4-D
        ``matmul`` over per-head views): the maps stay bit-for-bit the same. Multiplying by the transposed view
        instead moves the last bit (~1e-7), which a U-Net amplifies to ~2e-6 in its output."""
        scores = torch.matmul(query.float(), key.float().transpose(-1, -2).contiguous()) * self._attn.scale
        if attention_mask is not None:
            scores = scores + attention_mask.float()
        probs = scores.softmax(dim=-1)
        heads = self._attn.heads
        self._recorder.record(self._name, probs.view(probs.shape[0] // heads, heads, *probs.shape[1:]))
        return probs.to(query.dtype)


class CaptureAttnProcessor:
    """diffusers attention processor for ``attn2`` layers: the stock ``AttnProcessor``, its probabilities recorded."""

    def __init__(self, recorder: AttentionSink, name: str):
        from diffusers.models.attention_processor import AttnProcessor  # here: importing the family must not import diffusers

        self.recorder, self.name = recorder, name
        self._stock = AttnProcessor()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        return self._stock(_RecordingAttention(attn, self.recorder, self.name), hidden_states,
                           encoder_hidden_states, attention_mask, temb, *args, **kwargs)


@contextmanager
def diffusers_capture(unet: torch.nn.Module, recorder: AttentionSink) -> Iterator[AttentionSink]:
    """Install capture processors on the recorder's layers; restore the originals on exit."""
    original = dict(unet.attn_processors)
    wanted = {name + ".processor": name for name in recorder.layers}
    missing = set(wanted) - set(original)
    if missing:
        raise KeyError(f"U-Net has no attention processor named {sorted(missing)[:3]}")
    procs = {key: (CaptureAttnProcessor(recorder, wanted[key]) if key in wanted else proc) for key, proc in original.items()}
    unet.set_attn_processor(procs)
    try:
        yield recorder
    finally:
        unet.set_attn_processor(original)
