"""diffusers folders loaded without ``from_pretrained``: config on the meta device, weights read safely,
every key assigned strictly; and the same networks on the meta device for ``checkpoints verify``."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from groundkit.core.io import read_json
from groundkit.core.safeload import CheckpointError, load_into, load_state_dict, read_shard_index
from groundkit.core.types import NoiseSchedule


def schedule_from_diffusers(folder: Path) -> NoiseSchedule:
    """alphas_cumprod exactly as diffusers' DDIMScheduler builds them from scheduler_config.json."""
    from diffusers import DDIMScheduler

    file = folder / "scheduler_config.json"
    cfg = read_json(file, "scheduler config")
    sched = DDIMScheduler.from_config(cfg)
    abar = sched.alphas_cumprod.to(torch.float64)
    final = 1.0 if sched.config.set_alpha_to_one else float(abar[0])
    return NoiseSchedule(abar, sched.config.prediction_type, final)


WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def load_diffusers_model(cls, folder: Path, what: str):
    """``cls`` built from ``folder/config.json`` on the meta device, then its weights read with
    groundkit.core.safeload (no pickle beyond tensors) and assigned strictly: every key consumed, none missing.
    diffusers' ``from_pretrained`` is not used: it fills missing keys with random values and only logs it."""
    cfg_file = folder / "config.json"
    config = read_json(cfg_file, f"{what} config")
    file = next((folder / n for n in WEIGHT_NAMES if (folder / n).is_file()), None)
    index = next((folder / (n + ".index.json") for n in WEIGHT_NAMES if (folder / (n + ".index.json")).is_file()), None)
    if file is not None:
        sd = load_state_dict(file)
    elif index is not None:
        file, sd = index, {}
        for shard in read_shard_index(index):
            sd.update(load_state_dict(shard))
    else:
        raise FileNotFoundError(f"{folder}: no {what} weights (looked for {' or '.join(WEIGHT_NAMES)})")
    try:
        with torch.device("meta"):
            model = cls.from_config(config)
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{cfg_file}: does not describe a {cls.__name__}: {e}") from None
    fix = getattr(model, "_fix_state_dict_keys_on_load", None)
    if fix is not None:
        fix(sd)  # deprecated attention names (query/key/value/proj_attn) of SD 1.x VAE files
    load_into(model, sd, file, what=f"the {what} ({cls.__name__}) that {cfg_file} describes", assign=True)
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{file}: {what} tensors not in the state dict: {left[:5]}")
    return model.eval()


def weight_candidates(folder: Path) -> tuple[Path, ...]:
    return tuple(folder / n for n in WEIGHT_NAMES) + tuple(folder / (n + ".index.json") for n in WEIGHT_NAMES)


def on_meta(cls, config_file: Path) -> torch.nn.Module:
    """``cls`` built from its config.json on the meta device (no memory)."""
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    cfg = read_json(config_file, f"{cls.__name__} config")
    try:
        with torch.device("meta"):
            return cls.from_config(cfg)
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise ValueError(f"{config_file}: does not build a {cls.__name__}: {exc}") from None


def normalize(model: torch.nn.Module, sd: Mapping[str, Any]) -> tuple[dict[str, Any], int, list[str]]:
    """diffusers' own rename of deprecated attention names (SD 1.x VAE files: query/key/value/proj_attn)."""
    sd = dict(sd)
    before = set(sd)
    fix = getattr(model, "_fix_state_dict_keys_on_load", None)
    if fix is not None:
        fix(sd)
    return sd, len(before - set(sd)), []
