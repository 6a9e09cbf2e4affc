"""RadEdit (microsoft/radedit) in the layout groundkit's ``radedit`` entry reads, with random weights (tiny or
full size): the three hub repositories its model card loads, side by side in one folder.

    radedit/
      unet/            microsoft/radedit, subfolder unet (config.json + diffusion_pytorch_model.safetensors)
      vae/             stabilityai/sdxl-vae (config.json with scaling_factor 0.13025, diffusion_pytorch_model.safetensors)
      text_encoder/    microsoft/BiomedVLP-BioViL-T (config.json, pytorch_model.bin, vocab.txt, tokenizer files,
                       and the image model file a text encoder never reads)

No scheduler folder: the model card constructs ``DDIMScheduler(beta_schedule="linear", clip_sample=False,
prediction_type="epsilon", timestep_spacing="trailing", steps_offset=1)`` in code, so the checkpoint entry gives
those settings inline (:data:`RADEDIT_SCHEDULER`).

What is certain and what is assumed about the U-Net config (:data:`RADEDIT_UNET_FULL`): in/out channels 4 (the
SDXL VAE's latents), sample_size 64 (512-pixel images, as the model card's examples), cross_attention_dim 768
(BioViL-T's hidden size: the pipeline feeds its 768-wide states, 128 tokens, to the U-Net). The block layout
(SD-2-style: 320/640/1280/1280 channels, linear projections, 64-channel heads) is an ASSUMPTION made without the
real config.json; groundkit itself builds whatever ``unet/config.json`` says.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from groundkit.core.testing import redraw_zero_params, seeded
from groundkit.families.diffusers_sd.testing import SD15_UNET_FULL, save_diffusers
from groundkit.families.text.testing import BIOVILT_FULL, BIOVILT_TINY, build_biovilt_folder

# SD 1.5's block layout (an assumption: the card shows no config), 768-wide cross-attention from BioViL-T,
# per-block heads and linear projections as in SD 2.x-style configs
RADEDIT_UNET_FULL: dict[str, Any] = {**SD15_UNET_FULL, "cross_attention_dim": BIOVILT_FULL["hidden_size"],
                                     "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True}
RADEDIT_UNET_TINY = {**RADEDIT_UNET_FULL, "block_out_channels": [32, 32, 64, 64], "norm_num_groups": 8,
                     "attention_head_dim": [2, 2, 4, 4], "cross_attention_dim": BIOVILT_TINY["hidden_size"]}

# stabilityai/sdxl-vae config.json: SD's AutoencoderKL architecture, retrained; its own scaling factor
SDXL_VAE_FULL: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "act_fn": "silu",
    "norm_num_groups": 32, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True,
}
SDXL_VAE_TINY = {**SDXL_VAE_FULL, "block_out_channels": [8, 16, 16, 16], "norm_num_groups": 8}

# the DDIMScheduler arguments of the RadEdit model card (beta_start/beta_end/num_train_timesteps: the defaults,
# 0.0001 / 0.02 / 1000; set_alpha_to_one: the default, True)
RADEDIT_SCHEDULER: dict[str, Any] = {
    "_class_name": "DDIMScheduler", "beta_schedule": "linear", "clip_sample": False, "prediction_type": "epsilon",
    "timestep_spacing": "trailing", "steps_offset": 1,
}
RADEDIT_MAX_LENGTH = 128  # AutoTokenizer.from_pretrained("microsoft/BiomedVLP-BioViL-T", model_max_length=128)


def build_radedit(root: str | os.PathLike, tiny: bool = True, seed: int = 0) -> Path:
    """Write the RadEdit folder described in the module docstring; return it. Full size: ~4 GB of disk."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    tree = Path(root) / "radedit"
    tree.mkdir(parents=True, exist_ok=True)
    gen = seeded(seed)
    unet = UNet2DConditionModel(**(RADEDIT_UNET_TINY if tiny else RADEDIT_UNET_FULL)).eval()
    redraw_zero_params(unet, gen)
    save_diffusers(unet, tree / "unet")
    del unet
    gen = seeded(seed + 1)
    vae = AutoencoderKL(**(SDXL_VAE_TINY if tiny else SDXL_VAE_FULL)).eval()
    redraw_zero_params(vae, gen)
    save_diffusers(vae, tree / "vae")
    del vae
    build_biovilt_folder(tree / "text_encoder", tiny=tiny, seed=seed + 3)
    return tree


def radedit_entry(folder: str | os.PathLike, image_size: int = 512) -> dict[str, Any]:
    """The checkpoint options of the shipped ``radedit`` entry, for a folder built here (tests, benchmarks)."""
    return {"path": str(folder), "image_size": image_size, "scale_factor": 0.13025, "max_length": RADEDIT_MAX_LENGTH,
            "scheduler": dict(RADEDIT_SCHEDULER), "attention_mask": False}
