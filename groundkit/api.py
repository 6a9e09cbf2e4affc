"""The library API, a thin facade: ``gk.load(checkpoint).ground(image, phrase, recipe=..., **overrides)``.

Loading resolves a checkpoint (registry), builds its family's adapter and hands it to the engine's
:class:`~groundkit.engine.pipeline.GroundingModel`; the ``list_*`` functions expose the registries.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from groundkit import registry
from groundkit.engine.pipeline import GroundingModel, versions
from groundkit.recipes import list_recipes

__all__ = ["GroundingModel", "load", "list_adapters", "list_checkpoints", "list_recipes", "pick_device", "versions"]


def pick_device(device: str | None = None) -> torch.device:
    """cuda, then mps, then cpu unless told."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load(checkpoint: str | Path = "demo", device: str | None = None, dtype: str | torch.dtype = "float32",
         checkpoints_file: str | Path | None = None) -> GroundingModel:
    """Load a checkpoint by name (checkpoints.yaml) or from a folder laid out as published."""
    entry = registry.resolve(checkpoint, checkpoints_file)
    dev = pick_device(device)
    dt = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    cls = registry.get_adapter_class(entry.adapter)
    _quiet_loaders()
    start = time.perf_counter()
    adapter = cls.from_entry(entry.adapter_entry(), device=dev, dtype=dt)
    return GroundingModel(adapter, entry, load_seconds=time.perf_counter() - start)


def _quiet_loaders() -> None:
    """Library loaders print per-tensor progress bars; groundkit shows its own progress instead."""
    try:
        from transformers.utils import logging as tlog

        tlog.disable_progress_bar()
        tlog.set_verbosity_error()
    except ImportError:
        pass


def list_checkpoints(checkpoints_file: str | Path | None = None) -> list[registry.CheckpointEntry]:
    """Every named checkpoint of checkpoints.yaml (present on disk or not)."""
    return list(registry.load_checkpoints(checkpoints_file).values())


def list_adapters() -> list[str]:
    """Every installed model family: built-ins and ``groundkit.adapters`` entry points."""
    return registry.adapter_names()
