"""Tiny checkpoints of the toy family, for groundkit's adapter contract suite (``groundkit.testing``).

``groundkit.testing.family_checkpoints("toy-family")`` finds ``tiny_checkpoints()`` here, beside the adapter,
so that a test run that checks every installed family checks this one too; this package's own tests use
:func:`build` directly.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from groundkit_toy_family import ToyNet


def build(folder, seed: int = 0) -> Path:
    """A toy checkpoint folder with random weights: toy.json (sizes) and weights.safetensors."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"channels": 8, "dim": 16, "tokens": 8}
    (folder / "toy.json").write_text(json.dumps(cfg))
    torch.manual_seed(seed)
    net = ToyNet(**cfg)
    with torch.no_grad():
        net.pos.normal_(0, 0.1)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "weights.safetensors")
    return folder


def tiny_checkpoints() -> dict[str, Callable[[Path], Path]]:
    """Layout name -> builder(root folder) -> a tiny checkpoint folder."""
    return {"toy": lambda root: build(Path(root) / "toy")}
