"""A MONAI model-zoo bundle ``cxr_image_synthesis_latent_diffusion_model`` in its real layout, with random
weights (tiny or full size): ``configs/inference.json`` in the bundle's format, ``models/*.pth`` state dicts
of the OLD ``generative`` classes (needs the dev extra's monai-generative), and a CLIP text encoder."""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from groundkit.core.testing import redraw_zero_params, seeded, write_json
from groundkit.families.text.testing import CLIP_TEXT_FULL, build_clip_text_encoder, build_clip_tokenizer_files

MONAI_AE_FULL: dict[str, Any] = {
    "spatial_dims": 2, "in_channels": 1, "out_channels": 1, "latent_channels": 3,
    "num_channels": [64, 128, 128, 128], "num_res_blocks": 2, "norm_num_groups": 32, "norm_eps": 1e-06,
    "attention_levels": [False, False, False, False],
    "with_encoder_nonlocal_attn": False, "with_decoder_nonlocal_attn": False,
}
MONAI_AE_TINY = {**MONAI_AE_FULL, "num_channels": [8, 8, 8, 8], "norm_num_groups": 4}

MONAI_UNET_FULL: dict[str, Any] = {
    "spatial_dims": 2, "in_channels": 3, "out_channels": 3, "num_channels": [256, 512, 768],
    "num_res_blocks": 2, "attention_levels": [False, True, True], "norm_num_groups": 32, "norm_eps": 1e-06,
    "resblock_updown": False, "num_head_channels": [0, 512, 768], "with_conditioning": True,
    "transformer_num_layers": 1, "cross_attention_dim": 1024,
}
MONAI_UNET_TINY = {
    **MONAI_UNET_FULL, "num_channels": [32, 32, 32], "norm_num_groups": 8, "num_head_channels": [0, 32, 32],
    "cross_attention_dim": 32,
}
MONAI_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.0015, "beta_end": 0.0205, "num_train_timesteps": 1000, "schedule": "scaled_linear_beta",
    "prediction_type": "v_prediction", "clip_sample": False,
}


def inference_json(ae: dict[str, Any], unet: dict[str, Any]) -> dict[str, Any]:
    """The bundle's configs/inference.json (v1.0.0), with the given network arguments."""
    return {
        "imports": [
            "$import torch",
            "$from datetime import datetime",
            "$from pathlib import Path",
            "$from transformers import CLIPTextModel",
            "$from transformers import CLIPTokenizer",
        ],
        "bundle_root": ".",
        "model_dir": "$@bundle_root + '/models'",
        "output_dir": "$@bundle_root + '/output'",
        "create_output_dir": "$Path(@output_dir).mkdir(exist_ok=True)",
        "prompt": "Big right-sided pleural effusion",
        "prompt_list": "$['', @prompt]",
        "guidance_scale": 7.0,
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "tokenizer": "$CLIPTokenizer.from_pretrained(\"stabilityai/stable-diffusion-2-1-base\", subfolder=\"tokenizer\")",
        "text_encoder": "$CLIPTextModel.from_pretrained(\"stabilityai/stable-diffusion-2-1-base\", subfolder=\"text_encoder\")",
        "tokenized_prompt": "$@tokenizer(@prompt_list, padding=\"max_length\", max_length=@tokenizer.model_max_length, truncation=True,return_tensors=\"pt\")",
        "prompt_embeds": "$@text_encoder(@tokenized_prompt.input_ids.squeeze(1))[0].to(@device)",
        "out_file": "$datetime.now().strftime('sample_%H%M%S_%d%m%Y')",
        "autoencoder_def": {"_target_": "generative.networks.nets.AutoencoderKL", **ae},
        "load_autoencoder_path": "$@model_dir + '/autoencoder.pth'",
        "load_autoencoder": "$@autoencoder_def.load_state_dict(torch.load(@load_autoencoder_path))",
        "autoencoder": "$@autoencoder_def.to(@device)",
        "diffusion_def": {"_target_": "generative.networks.nets.DiffusionModelUNet", **unet},
        "load_diffusion_path": "$@model_dir + '/diffusion_model.pth'",
        "load_diffusion": "$@diffusion_def.load_state_dict(torch.load(@load_diffusion_path))",
        "diffusion": "$@diffusion_def.to(@device)",
        "scheduler": {
            "_target_": "generative.networks.schedulers.DDIMScheduler",
            "_requires_": ["@load_diffusion", "@load_autoencoder"],
            **MONAI_SCHEDULER,
        },
        "noise": "$torch.randn((1, 3, 64, 64)).to(@device)",
        "set_timesteps": "$@scheduler.set_timesteps(num_inference_steps=50)",
        "sampler": {"_target_": "scripts.sampler.Sampler", "_requires_": "@set_timesteps"},
        "sample": "$@sampler.sampling_fn(@noise, @autoencoder, @diffusion, @scheduler, @prompt_embeds)",
        "saver": {"_target_": "scripts.saver.JPGSaver", "_requires_": "@create_output_dir", "output_dir": "@output_dir"},
        "save_jpg": "$@saver.save(@sample, @out_file)",
        "save": "$torch.save(@sample, @output_dir + '/' + @out_file + '.pt')",
    }


_METADATA = {
    "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
    "version": "1.0.0",
    "changelog": {"0.2": "Flipped images fixed"},
    "monai_version": "1.1.0",
    "pytorch_version": "1.13.0",
    "numpy_version": "1.22.4",
    "optional_packages_version": {"nibabel": "4.0.1", "generative": "0.1.0", "transformers": "4.26.1"},
    "task": "Chest X-ray image synthesis",
    "description": "A generative model for creating high-resolution chest X-ray based on MIMIC dataset",
    "copyright": "Copyright (c) MONAI Consortium",
    "data_source": "https://physionet.org/content/mimic-cxr-jpg/2.0.0/",
    "data_type": "image",
    "image_classes": "Radiography (X-ray) with 512 x 512 pixels",
    "intended_use": "This is a research tool/prototype and not to be used clinically",
    "network_data_format": {
        "inputs": {
            "latent_representation": {
                "type": "image", "format": "magnitude", "modality": "CXR", "num_channels": 3,
                "spatial_shape": [64, 64], "dtype": "float32", "value_range": [], "is_patch_data": False,
            },
            "timesteps": {"type": "vector", "value_range": [0, 1000], "dtype": "long"},
            "context": {"type": "vector", "value_range": [], "dtype": "float32"},
        },
        "outputs": {
            "pred": {
                "type": "image", "format": "magnitude", "modality": "CXR", "num_channels": 1,
                "spatial_shape": [512, 512], "dtype": "float32", "value_range": [0, 1], "is_patch_data": False,
                "channel_def": {"0": "X-ray"},
            }
        },
    },
}

# The bundle's scripts must never be imported by groundkit: importing these fails loudly.
_POISON_SCRIPT = (
    "raise RuntimeError('groundkit must never import or execute bundle scripts ({})')\n"
)


def old_generative_nets():
    try:
        from generative.networks.nets import AutoencoderKL, DiffusionModelUNet  # monai-generative 0.2.x
    except Exception as exc:  # pragma: no cover - depends on the dev environment
        raise ImportError(
            "build_monai_bundle needs the old 'generative' package (pip install monai-generative==0.2.3) to write "
            f"genuine old-format state dicts: {exc}"
        ) from exc
    return AutoencoderKL, DiffusionModelUNet


def build_monai_bundle(root: str | os.PathLike, tiny: bool = True, seed: int = 0) -> Path:
    """Write the ``cxr_image_synthesis_latent_diffusion_model`` bundle under ``root``; return its folder.

    Layout: ``configs/inference.json`` (real format, ``$`` expressions included - they must never be
    evaluated; evaluating ``create_output_dir`` would create ``output/``), ``configs/metadata.json``,
    ``models/autoencoder.pth`` and ``models/diffusion_model.pth`` (``torch.save`` of state dicts of the old
    ``generative.networks.nets`` classes: ``to_out.0`` / upsampler ``conv`` keys), ``scripts/*.py`` (poisoned:
    importing them raises), ``docs/README.md``, ``large_files.yml``; plus ``text_encoder/`` (CLIPTextModel)
    and ``tokenizer/`` (CLIP BPE) standing in for SD-2.1-base's, which the bundle loads by hub id.
    """
    AutoencoderKL, DiffusionModelUNet = old_generative_nets()
    bundle = Path(root) / "cxr_image_synthesis_latent_diffusion_model"
    ae_kw = dict(MONAI_AE_TINY if tiny else MONAI_AE_FULL)
    unet_kw = dict(MONAI_UNET_TINY if tiny else MONAI_UNET_FULL)

    write_json(bundle / "configs" / "inference.json", inference_json(ae_kw, unet_kw))
    write_json(bundle / "configs" / "metadata.json", _METADATA)
    (bundle / "docs").mkdir(parents=True, exist_ok=True)
    (bundle / "docs" / "README.md").write_text(
        "# Chest X-ray Latent Diffusion Synthesis\n\nRandom-weight stand-in written by groundkit's tests.\n",
        encoding="utf-8",
    )
    (bundle / "large_files.yml").write_text(
        "large_files:\n"
        '  - path: "models/autoencoder.pth"\n    url: ""\n    hash_val: ""\n    hash_type: ""\n'
        '  - path: "models/diffusion_model.pth"\n    url: ""\n    hash_val: ""\n    hash_type: ""\n',
        encoding="utf-8",
    )
    (bundle / "scripts").mkdir(parents=True, exist_ok=True)
    for name in ("__init__", "sampler", "saver"):
        (bundle / "scripts" / f"{name}.py").write_text(_POISON_SCRIPT.format(f"scripts/{name}.py"), encoding="utf-8")

    models = bundle / "models"
    models.mkdir(parents=True, exist_ok=True)
    gen = seeded(seed)
    ae = AutoencoderKL(**ae_kw).eval()
    redraw_zero_params(ae, gen)
    torch.save(OrderedDict(ae.state_dict()), models / "autoencoder.pth")
    del ae
    gen = seeded(seed + 1)
    unet = DiffusionModelUNet(**unet_kw).eval()
    redraw_zero_params(unet, gen)
    torch.save(OrderedDict(unet.state_dict()), models / "diffusion_model.pth")
    del unet

    tok_dir = build_clip_tokenizer_files(bundle / "tokenizer", size=None if tiny else CLIP_TEXT_FULL["vocab_size"])
    n_vocab = len(json.loads((tok_dir / "vocab.json").read_text(encoding="utf-8")))
    build_clip_text_encoder(
        bundle / "text_encoder", tiny=tiny, seed=seed + 2, vocab_size=n_vocab if tiny else None
    )
    return bundle
