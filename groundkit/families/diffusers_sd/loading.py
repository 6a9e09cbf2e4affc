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


def schedule_from_config(cfg: Mapping[str, Any], where: str = "scheduler config") -> NoiseSchedule:
    """The noise schedule of a scheduler config (any diffusers scheduler's: PNDM, DDIM, Euler ... share the
    beta fields), built by DDIMScheduler: alphas_cumprod, prediction_type (epsilon or v_prediction) and the
    final alpha (1 with ``set_alpha_to_one``, DDIMScheduler's default when the config does not say)."""
    from diffusers import DDIMScheduler

    if not isinstance(cfg, Mapping):
        raise ValueError(f"{where}: expected a mapping of scheduler settings, got {cfg!r}")
    try:
        sched = DDIMScheduler.from_config(dict(cfg))
    except (TypeError, ValueError, KeyError, NotImplementedError) as exc:
        raise ValueError(f"{where}: does not build a DDIMScheduler: {exc}") from None
    if sched.config.prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"{where}: prediction_type {sched.config.prediction_type!r} is not supported "
                         "(epsilon or v_prediction)")
    abar = sched.alphas_cumprod.to(torch.float64)
    final = 1.0 if sched.config.set_alpha_to_one else float(abar[0])
    return NoiseSchedule(abar, sched.config.prediction_type, final)


# U-Net conditioning a text-to-image pipeline of the SD layout can feed: encoder_hidden_states and t only
_NEEDS_MORE = {"addition_embed_type": ("text_time", "text_image", "image", "image_hint"),
               "class_embed_type": None, "num_class_embeds": None}


def unet_context_dim(cfg: Mapping[str, Any], where: str = "U-Net config") -> int:
    """The width of the text states the U-Net takes (``encoder_hid_dim`` when it projects them itself,
    else ``cross_attention_dim``, one value for every block); raises ValueError for a U-Net that needs
    conditioning besides text and timestep (SDXL-style added embeddings, class labels)."""
    for key, refused in _NEEDS_MORE.items():
        value = cfg.get(key)
        if value is not None and (refused is None or value in refused):
            raise ValueError(f"{where}: {key}={value!r}: this U-Net needs conditioning besides the text states and "
                             "the timestep, which a Stable-Diffusion-layout checkpoint does not provide")
    if cfg.get("encoder_hid_dim_type") in ("text_proj",) and cfg.get("encoder_hid_dim"):
        return int(cfg["encoder_hid_dim"])
    if cfg.get("encoder_hid_dim_type") not in (None, "text_proj"):
        raise ValueError(f"{where}: encoder_hid_dim_type={cfg['encoder_hid_dim_type']!r} is not supported (text only)")
    dim = cfg.get("cross_attention_dim", 1280)
    dims = {int(d) for d in dim} if isinstance(dim, (list, tuple)) else {int(dim)}
    if len(dims) != 1:
        raise ValueError(f"{where}: cross_attention_dim differs between blocks ({dim}); one text encoder cannot feed it")
    return dims.pop()


def check_text_width(unet_cfg: Mapping[str, Any], text_width: int | None, unet_where: str, text_where: str) -> None:
    """The text encoder's hidden size must be what the U-Net's cross-attention takes."""
    want = unet_context_dim(unet_cfg, unet_where)
    if text_width is not None and int(text_width) != want:
        raise ValueError(f"{unet_where}: the U-Net's cross-attention takes {want}-wide text states but the text "
                         f"encoder ({text_where}) gives {int(text_width)}: they do not belong together")


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
