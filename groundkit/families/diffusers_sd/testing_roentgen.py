"""Stable Diffusion 1.x/2.x diffusers folders with a CLIP text encoder, with random weights (tiny or full size).

* ``variant="sd1"`` - RoentGen's layout (Stanford AIMI, SD 1.x fine-tuned on MIMIC-CXR with its CLIP text encoder;
  weights on request, not on a hub): ``model_index.json`` (StableDiffusionPipeline), ``unet/``, ``vae/``,
  ``text_encoder/`` (CLIP ViT-L/14 text tower), ``tokenizer/`` (CLIP BPE, padding ``<|endoftext|>``),
  ``scheduler/`` (SD 1.x's PNDMScheduler config), written as 2022 libraries saved them: ``*.bin`` weights,
  the VAE's attention under its old names (query/key/value/proj_attn), the text encoder's keys under
  ``text_model.`` with the ``position_ids`` buffer.
* ``variant="sd2-v"`` - SD 2.x (768-v) layout: linear-projection U-Net with per-level heads, 1024-wide CLIP
  (OpenCLIP ViT-H text tower), a DDIMScheduler config with ``prediction_type: v_prediction``, safetensors.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from groundkit.core.testing import redraw_zero_params, seeded, write_json
from groundkit.families.diffusers_sd.testing import (
    SD15_UNET_FULL,
    SD15_UNET_TINY,
    SD15_VAE_FULL,
    SD15_VAE_TINY,
    save_diffusers,
)
from groundkit.families.text.testing import (
    CLIP_L_TEXT_FULL,
    CLIP_L_TEXT_TINY,
    CLIP_TEXT_FULL,
    CLIP_TEXT_TINY,
    build_clip_text_encoder,
    build_clip_tokenizer_files,
)

# SD 1.x scheduler/scheduler_config.json (PNDM; groundkit reads its beta schedule with DDIMScheduler)
SD1_PNDM_SCHEDULER: dict[str, Any] = {
    "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1, "trained_betas": None, "clip_sample": False,
}
# SD 2.x (768-v) scheduler/scheduler_config.json
SD2_V_SCHEDULER: dict[str, Any] = {
    "_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
}
SD2_UNET_FULL: dict[str, Any] = {
    **SD15_UNET_FULL, "sample_size": 96, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024,
    "use_linear_projection": True, "upcast_attention": True,
}
SD2_UNET_TINY = {**SD2_UNET_FULL, "block_out_channels": [32, 32, 64, 64], "norm_num_groups": 8,
                 "attention_head_dim": [2, 2, 4, 4], "cross_attention_dim": CLIP_TEXT_TINY["hidden_size"]}
SD1_CLIP_UNET_TINY = {**SD15_UNET_TINY, "cross_attention_dim": CLIP_L_TEXT_TINY["hidden_size"]}

_OLD_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def _legacy_vae_keys(sd: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """A diffusers <= 0.13 AutoencoderKL state dict: mid-block attention named query/key/value/proj_attn."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, v in sd.items():
        if ".attentions." in k:
            for new, old in _OLD_ATTENTION.items():
                k = k.replace(f".{new}.", f".{old}.")
        out[k] = v
    return out


def _save_bin(model, folder: Path, sd: dict[str, torch.Tensor] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_config(folder)
    torch.save(OrderedDict(sd if sd is not None else model.state_dict()), folder / "diffusion_pytorch_model.bin")


def _model_index(tree: Path, scheduler: str) -> None:
    write_json(tree / "model_index.json", {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.10.0.dev0",
        "feature_extractor": [None, None], "safety_checker": [None, None], "requires_safety_checker": False,
        "scheduler": ["diffusers", scheduler], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]})


def build_sd_clip(root: str | os.PathLike, tiny: bool = True, seed: int = 0, variant: str = "sd1",
                  name: str | None = None) -> Path:
    """Write an SD 1.x (``sd1``) or SD 2.x v-prediction (``sd2-v``) diffusers folder with CLIP; return it."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if variant not in ("sd1", "sd2-v"):
        raise ValueError(f"variant must be 'sd1' or 'sd2-v', not {variant!r}")
    sd1 = variant == "sd1"
    tree = Path(root) / (name or ("sd1_clip" if sd1 else "sd2_v_clip"))
    tree.mkdir(parents=True, exist_ok=True)
    _model_index(tree, "PNDMScheduler" if sd1 else "DDIMScheduler")
    write_json(tree / "scheduler" / "scheduler_config.json", SD1_PNDM_SCHEDULER if sd1 else SD2_V_SCHEDULER)
    text_cfg = (CLIP_L_TEXT_TINY if tiny else CLIP_L_TEXT_FULL) if sd1 else (CLIP_TEXT_TINY if tiny else CLIP_TEXT_FULL)
    tok = build_clip_tokenizer_files(tree / "tokenizer", size=None if tiny else text_cfg["vocab_size"],
                                     pad="<|endoftext|>" if sd1 else "!")
    n_vocab = len(json.loads((tok / "vocab.json").read_text(encoding="utf-8")))
    build_clip_text_encoder(tree / "text_encoder", tiny=tiny, seed=seed + 3, vocab_size=n_vocab if tiny else None,
                            config=text_cfg, legacy_bin=sd1)
    unet_cfg = (SD1_CLIP_UNET_TINY if tiny else SD15_UNET_FULL) if sd1 else (SD2_UNET_TINY if tiny else SD2_UNET_FULL)
    unet = UNet2DConditionModel(**unet_cfg).eval()
    redraw_zero_params(unet, seeded(seed))
    if sd1:
        _save_bin(unet, tree / "unet")
    else:
        save_diffusers(unet, tree / "unet")
    del unet
    vae = AutoencoderKL(**(SD15_VAE_TINY if tiny else SD15_VAE_FULL)).eval()
    redraw_zero_params(vae, seeded(seed + 1))
    if sd1:
        _save_bin(vae, tree / "vae", _legacy_vae_keys(vae.state_dict()))
    else:
        save_diffusers(vae, tree / "vae")
    del vae
    return tree


def build_roentgen(root: str | os.PathLike, tiny: bool = True, seed: int = 0) -> Path:
    """RoentGen's folder layout (SD 1.x + fine-tuned CLIP), random weights; full size ~5 GB of disk."""
    return build_sd_clip(root, tiny=tiny, seed=seed, variant="sd1", name="roentgen")
