"""Helpers shared by U-Net-based families: where the cross-attention layers are, batch broadcasting."""
from __future__ import annotations

import torch

from groundkit.core.types import LayerInfo

_LEVEL_PREFIXES = (("down_blocks.", 0), ("mid_block.", 1), ("middle_block.", 1), ("up_blocks.", 2))


def ordered_cross_attention(unet: torch.nn.Module, latent_size: int, n_levels: int) -> list[LayerInfo]:
    """Every text-attending attention module in forward order (down, mid, up; registration order inside a part,
    which is forward order there) with its query-grid side: each block's ``attn2`` and, in blocks built with
    ``only_cross_attention``, its ``attn1`` (``LayerInfo.attention`` says which, so recipes can select
    ``attn2`` as the published code hooks). Registration order alone is not forward order: diffusers
    registers ``up_blocks`` before ``mid_block``."""
    found = []
    for name, module in unet.named_modules():
        # attn2 is cross-attention by construction; attn1 only in blocks built with only_cross_attention
        if not (name.endswith(".attn2") or (name.endswith(".attn1") and getattr(module, "is_cross_attention", False))):
            continue
        part = next((rank for prefix, rank in _LEVEL_PREFIXES if name.startswith(prefix)), None)
        if part is None:
            raise ValueError(f"cross-attention layer {name!r} is outside down/mid/up blocks")
        if part == 1:
            level = n_levels - 1
        else:
            block = int(name.split(".")[1])
            level = block if part == 0 else n_levels - 1 - block
        found.append((part, len(found), name, latent_size // (2**level)))
    found.sort()
    return [LayerInfo(i, name, res, ("down", "mid", "up")[part], name.rpartition(".")[2])
            for i, (part, _, name, res) in enumerate(found)]


def match_batch(z: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Broadcast a scalar timestep and a single text context to the latent batch, so the engine can
    batch timesteps (one phrase) or phrases (one timestep) through the same U-Net call."""
    t = t.expand(z.shape[0]) if t.numel() == 1 else t
    if context.shape[0] == 1 and z.shape[0] > 1:
        context = context.expand(z.shape[0], -1, -1)
    return t, context


def quiet_transformers() -> None:
    """transformers logs per-load advice and draws its own progress bars; groundkit reports progress itself.
    Called where a family imports transformers, so that a family that never needs transformers (the demo)
    does not pay for importing it (about 0.8 s) on every load."""
    from transformers.utils import logging as tlog

    tlog.disable_progress_bar()
    tlog.set_verbosity_error()
