"""Capture for diffusers U-Nets: an attention processor (diffusers' own seam) on the cross-attention layers.

It computes the same attention as diffusers' processors with an explicit float32 softmax and reports
the probabilities to the engine's sink; layers outside the window keep their fast processor.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from groundkit.core.types import AttentionSink


class CaptureAttnProcessor:
    """diffusers attention processor for ``attn2`` layers: explicit float32 softmax, recorded."""

    def __init__(self, recorder: AttentionSink, name: str):
        self.recorder, self.name = recorder, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b4, c4, h4, w4 = hidden_states.shape
            hidden_states = hidden_states.view(b4, c4, h4 * w4).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        batch, n_query, _ = hidden_states.shape
        heads = attn.heads
        q = attn.to_q(hidden_states)
        k = attn.to_k(context)
        v = attn.to_v(context)
        d = q.shape[-1] // heads
        q = q.view(batch, -1, heads, d).transpose(1, 2)
        k = k.view(batch, -1, heads, d).transpose(1, 2)
        v = v.view(batch, -1, heads, d).transpose(1, 2)
        scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * attn.scale
        if attention_mask is not None:
            mask = attn.prepare_attention_mask(attention_mask, k.shape[2], batch)
            scores = scores + mask.view(batch, heads, -1, k.shape[2]).float()
        probs = scores.softmax(dim=-1)
        self.recorder.record(self.name, probs)
        out = torch.matmul(probs.to(v.dtype), v)
        out = out.transpose(1, 2).reshape(batch, n_query, heads * d)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b4, c4, h4, w4)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


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
