"""Capture for MONAI's DiffusionModelUNet: its CrossAttentionBlock keeps the softmax when asked
(``save_attn``); a forward hook hands it to the engine's sink and frees it at once."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from groundkit.core.types import AttentionSink


@contextmanager
def monai_capture(unet: torch.nn.Module, recorder: AttentionSink) -> Iterator[AttentionSink]:
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
