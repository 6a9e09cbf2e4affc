"""Helpers for building checkpoints with random weights in the published layouts (tests, benchmarks)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


@torch.no_grad()
def redraw_zero_params(module: torch.nn.Module, gen: torch.Generator, std: float = 0.02) -> None:
    """Give zero-initialised parameters random values (so every block matters in tests)."""
    for p in module.parameters():
        if p.numel() and not p.any():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def seeded(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
