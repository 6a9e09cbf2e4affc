"""The diffusers tree of an SD-1.5 U-Net fine-tuned with CXR-BERT (Nuetzel et al.'s layout), with random
weights (tiny or full size): unet/, unet_ema/, vae/, scheduler/, text_encoder/ (CXR-BERT), tokenizer/."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from groundkit.core.testing import redraw_zero_params, seeded, write_json
from groundkit.families.text.testing import CXRBERT_FULL, build_cxrbert_folder, wordpiece_vocab, write_wordpiece_tokenizer

SD15_UNET_FULL: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-05,
    "cross_attention_dim": 768, "attention_head_dim": 8,
}
SD15_UNET_TINY = {**SD15_UNET_FULL, "block_out_channels": [32, 32, 64, 64], "norm_num_groups": 8,
                  "cross_attention_dim": 32}

SD15_VAE_FULL: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "act_fn": "silu",
    "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215,
}
SD15_VAE_TINY = {**SD15_VAE_FULL, "block_out_channels": [8, 16, 16, 16], "norm_num_groups": 8}

SD15_SCHEDULER: dict[str, Any] = {
    "_class_name": "DDIMScheduler", "_diffusers_version": "0.6.0", "num_train_timesteps": 1000,
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "trained_betas": None,
    "prediction_type": "epsilon", "set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False,
    "timestep_spacing": "leading",
}


def save_diffusers(model, folder: Path) -> None:
    model.save_pretrained(folder, safe_serialization=True)


def build_sd_cxrbert(root: str | os.PathLike, tiny: bool = True, seed: int = 0,
                     unet_overrides: dict[str, Any] | None = None) -> Path:
    """Write the diffusers tree of the SD-1.5 U-Net fine-tuned with frozen CXR-BERT; return its folder.

    ``model_index.json``, ``unet/`` and ``unet_ema/`` (UNet2DConditionModel, fp32 safetensors; tiny: the
    EMA weights differ from ``unet/``; full size: ``unet_ema`` is a hard link/copy of ``unet``), ``vae/``
    (AutoencoderKL, scaling_factor 0.18215), ``scheduler/scheduler_config.json`` (DDIM as SD 1.5),
    ``text_encoder/`` (CXR-BERT-specialized: config with auto_map, pytorch_model.bin, no vocab) and
    ``tokenizer/`` (vocab.txt, do_lower_case, model_max_length 512). Full size needs ~8 GB of disk.
    ``unet_overrides`` change the U-Net's config (e.g. ``only_cross_attention=True``: attn1 attends to the text).
    """
    from diffusers import AutoencoderKL

    tree = Path(root) / "sd15_cxrbert"
    tree.mkdir(parents=True, exist_ok=True)
    write_json(
        tree / "model_index.json",
        {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.21.4",
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "text_encoder": ["transformers", "CXRBertModel"],
            "tokenizer": ["transformers", "BertTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
    )
    write_json(tree / "scheduler" / "scheduler_config.json", SD15_SCHEDULER)

    # text encoder (+ tokenizer in its own folder, the diffusers layout)
    build_cxrbert_folder(tree / "text_encoder", tiny=tiny, seed=seed + 3, with_tokenizer=False)
    vocab = wordpiece_vocab(None if tiny else CXRBERT_FULL["vocab_size"])
    write_wordpiece_tokenizer(tree / "tokenizer", vocab)

    _write_unets(tree, tiny, seed, unet_overrides)

    vae_cfg = dict(SD15_VAE_TINY if tiny else SD15_VAE_FULL)
    gen = seeded(seed + 1)
    vae = AutoencoderKL(**vae_cfg).eval()
    redraw_zero_params(vae, gen)
    save_diffusers(vae, tree / "vae")
    del vae
    return tree


def _write_unets(tree: Path, tiny: bool, seed: int, unet_overrides: dict[str, Any] | None) -> None:
    """``unet/`` and ``unet_ema/``: tiny, the EMA weights are the U-Net's plus noise of std 0.01 (so the two
    differ); full size, ``unet_ema`` holds hard links (or copies) of ``unet``'s files, not a second draw."""
    from diffusers import UNet2DConditionModel

    unet_cfg = {**(SD15_UNET_TINY if tiny else SD15_UNET_FULL), **(unet_overrides or {})}
    gen = seeded(seed)
    unet = UNet2DConditionModel(**unet_cfg).eval()
    redraw_zero_params(unet, gen)
    save_diffusers(unet, tree / "unet")
    if tiny:
        gen = seeded(seed + 10)
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.01)
        save_diffusers(unet, tree / "unet_ema")
    else:
        ema = tree / "unet_ema"
        ema.mkdir(parents=True, exist_ok=True)
        for f in (tree / "unet").iterdir():
            dst = ema / f.name
            if dst.exists():
                dst.unlink()
            try:
                os.link(f, dst)
            except OSError:
                shutil.copy2(f, dst)
