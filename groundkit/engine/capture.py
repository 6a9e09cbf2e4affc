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

from ..adapters.base import LayerInfo


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


class CaptureAttnProcessor:
    """diffusers attention processor for ``attn2`` layers: explicit float32 softmax, recorded."""

    def __init__(self, recorder: Recorder, name: str):
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
def diffusers_capture(unet: torch.nn.Module, recorder: Recorder) -> Iterator[Recorder]:
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


@contextmanager
def monai_capture(unet: torch.nn.Module, recorder: Recorder) -> Iterator[Recorder]:
    """MONAI ``CrossAttentionBlock``: explicit softmax with ``save_attn``, read by a forward hook."""
    modules = dict(unet.named_modules())
    saved, handles = [], []
    try:
        for name in recorder.layers:
            mod = modules[name]
            saved.append((mod, mod.save_attn, mod.use_flash_attention))
            mod.save_attn, mod.use_flash_attention = True, False

            def hook(module, args, output, _name=name):
                recorder.record(_name, module.att_mat)
                module.att_mat = torch.Tensor()  # free it now, not at the next forward

            handles.append(mod.register_forward_hook(hook))
        yield recorder
    finally:
        for h in handles:
            h.remove()
        for mod, save_attn, flash in saved:
            mod.save_attn, mod.use_flash_attention = save_attn, flash
