"""State dicts of the old ``generative`` package (what the model-zoo bundle ships) under MONAI core's names.

groundkit renames by name only and then loads strictly; MONAI's own ``load_old_state_dict`` is not used
because it silently keeps the network's random initial values for keys a file lacks.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from groundkit.core.safeload import load_into, load_state_dict


def convert_old_monai_keys(state: Mapping[str, Any], expected: Iterable[str]) -> tuple[dict[str, Any], int]:
    """Rename an old ``generative`` (monai-generative) state dict to MONAI core's names.

    Same renames as MONAI's ``load_old_state_dict`` (cross-attention ``to_out.0`` -> ``out_proj``, spatial
    attention ``to_q/k/v`` -> ``attn.to_q/k/v`` and ``proj_attn`` -> ``attn.out_proj``, upsampler ``conv`` ->
    ``postconv``), but pure: keys with no counterpart stay as they are (so a strict check reports them as
    unexpected) and a key the network expects but the file lacks stays missing - MONAI's own function
    silently keeps the network's random initial values for those. Returns ``(renamed dict, n renamed)``.
    """
    expected = list(expected)
    exp = set(expected)
    out = dict(state)
    renamed = 0
    for k in expected:
        if k in out:
            continue
        candidates = []
        if "postconv" in k:
            candidates.append(k.replace("postconv", "conv"))
        if ".attn.to_" in k:
            candidates.append(k.replace(".attn.to_", ".to_"))
        if ".attn.out_proj." in k:
            candidates.append(k.replace(".attn.out_proj.", ".proj_attn."))
        if ".out_proj." in k and "transformer_blocks" in k:
            candidates.append(k.replace(".out_proj.", ".to_out.0."))
        for old in candidates:
            if old in out and old not in exp:
                out[k] = out.pop(old)
                renamed += 1
                break
    return out, renamed


def normalize(model: torch.nn.Module, sd: Mapping[str, Any]) -> tuple[dict[str, Any], int, list[str]]:
    """The loader's renames, in the shape ``checkpoints verify`` expects."""
    own = set(model.state_dict())
    if set(sd) == own:
        return dict(sd), 0, []
    out, n = convert_old_monai_keys(sd, own)
    return out, n, []


def load_monai_weights(net: torch.nn.Module, file: Path) -> None:
    """Strictly load a new- or old-format state dict, naming the file on a mismatch."""
    sd = load_state_dict(file)
    own = net.state_dict()
    if set(sd) != set(own):
        sd, _ = convert_old_monai_keys(sd, own)
    load_into(net, sd, file, what=f"the {type(net).__name__} that configs/inference.json describes")
