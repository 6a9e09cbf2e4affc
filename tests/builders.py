"""Checkpoint folders in the real published layouts, with random weights (nothing can be downloaded).

Used by the tests (tiny sizes, seconds) and by benchmark scripts (``tiny=False``: real architecture sizes).
Import with ``tests/`` on ``sys.path`` (tests/conftest.py does that): ``from builders import build_monai_bundle``.

* :func:`build_monai_bundle` - MONAI model-zoo bundle ``cxr_image_synthesis_latent_diffusion_model``
  (``configs/inference.json`` in the bundle's real format, ``models/*.pth`` state dicts of the OLD
  ``generative`` (monai-generative) classes, plus a CLIP ``text_encoder/`` and ``tokenizer/`` standing in
  for SD-2.1-base's, which the bundle itself only references by hub id).
* :func:`build_sd_cxrbert` - diffusers tree of the SD-1.5 U-Net fine-tuned with CXR-BERT
  (``unet/``, ``unet_ema/``, ``vae/``, ``scheduler/``, ``text_encoder/`` = CXR-BERT-specialized layout,
  ``tokenizer/`` = WordPiece vocab).
* :func:`build_cxrbert_folder`, :func:`build_plain_bert_folder` - text encoder folders on their own.
* :func:`build_clip_tokenizer_files`, :func:`wordpiece_vocab` - tokenizer vocabularies.

Random weights: every parameter that the architecture zero-initialises (MONAI's ``zero_module`` output
convolutions, ...) is re-drawn from N(0, 0.02) so that every block influences the output.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "REPORT_WORDS",
    "MONAI_AE_FULL",
    "MONAI_AE_TINY",
    "MONAI_UNET_FULL",
    "MONAI_UNET_TINY",
    "MONAI_SCHEDULER",
    "SD15_UNET_FULL",
    "SD15_UNET_TINY",
    "SD15_VAE_FULL",
    "SD15_VAE_TINY",
    "SD15_SCHEDULER",
    "CXRBERT_FULL",
    "CXRBERT_TINY",
    "CLIP_TEXT_FULL",
    "CLIP_TEXT_TINY",
    "build_monai_bundle",
    "build_sd_cxrbert",
    "build_cxrbert_folder",
    "build_plain_bert_folder",
    "build_clip_text_encoder",
    "build_clip_tokenizer_files",
    "wordpiece_vocab",
    "bytes_to_unicode",
]

# Words that get whole-word tokens in the tiny vocabularies (both CLIP BPE and WordPiece). "pneumothorax" and
# "cardiomegaly" are deliberately absent: they split into several sub-tokens (WordPiece: pneumo ##thorax,
# cardio ##megaly), which the word-alignment code must handle.
REPORT_WORDS = [
    "the", "of", "and", "in", "is", "no", "a", "with", "there", "small", "large", "big", "mild", "moderate",
    "severe", "right", "left", "sided", "bilateral", "pleural", "effusion", "effusions",
    "consolidation", "opacity", "opacities", "atelectasis", "edema", "pulmonary", "lung",
    "lungs", "lobe", "lower", "upper", "middle", "base", "bases", "apex", "heart", "size", "enlarged",
    "normal", "tube", "line", "catheter", "pneumonia", "nodule", "mass", "fracture", "rib", "basilar",
    "retrocardiac", "hilar", "mediastinal", "silhouette", "stable", "unchanged", "increased", "decreased",
]

# ---------------------------------------------------------------------------------------------------
# architecture settings (full = the published configs; tiny = same structure, small widths)

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

# SD-2.1-base text_encoder/config.json (CLIPTextModel, OpenCLIP ViT-H text tower minus its last layer)
CLIP_TEXT_FULL: dict[str, Any] = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23, "num_attention_heads": 16,
    "max_position_embeddings": 77, "hidden_act": "gelu", "layer_norm_eps": 1e-05, "projection_dim": 512,
    "vocab_size": 49408, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "attention_dropout": 0.0,
    "dropout": 0.0, "initializer_factor": 1.0, "initializer_range": 0.02,
}
CLIP_TEXT_TINY = {
    **CLIP_TEXT_FULL, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "projection_dim": 16,
}  # vocab_size is set to the tiny BPE vocabulary's size

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

# microsoft/BiomedVLP-CXR-BERT-specialized config.json (BERT-base + projection_size)
CXRBERT_FULL: dict[str, Any] = {
    "architectures": ["CXRBertModel"],
    "auto_map": {
        "AutoConfig": "configuration_cxrbert.CXRBertConfig",
        "AutoModel": "modeling_cxrbert.CXRBertModel",
    },
    "model_type": "cxr-bert", "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": False,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
    "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0,
    "position_embedding_type": "absolute", "projection_size": 128, "torch_dtype": "float32",
    "transformers_version": "4.17.0.dev0", "type_vocab_size": 2, "use_cache": True, "vocab_size": 30522,
}
CXRBERT_TINY = {**CXRBERT_FULL, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                "num_hidden_layers": 2, "max_position_embeddings": 128, "projection_size": 16}
# vocab_size of the tiny variant = size of the tiny WordPiece vocabulary


# ---------------------------------------------------------------------------------------------------
# helpers


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


@torch.no_grad()
def _redraw_zero_params(module: torch.nn.Module, gen: torch.Generator, std: float = 0.02) -> None:
    """Give zero-initialised parameters random values (so every block matters in tests)."""
    for p in module.parameters():
        if p.numel() and not p.any():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def _gen(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------
# CLIP byte-level BPE tokenizer files


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges (lowest rank first) to one pre-token, CLIP style (last symbol ends with </w>)."""
    syms = list(word[:-1]) + [word[-1] + "</w>"]
    while len(syms) > 1:
        pairs = [(ranks.get((a, b), 1 << 60), i) for i, (a, b) in enumerate(zip(syms, syms[1:]))]
        r, i = min(pairs)
        if r == 1 << 60:
            break
        a, b = syms[i], syms[i + 1]
        out, j = [], 0
        while j < len(syms):
            if j < len(syms) - 1 and syms[j] == a and syms[j + 1] == b:
                out.append(a + b)
                j += 2
            else:
                out.append(syms[j])
                j += 1
        syms = out
    return syms


def build_clip_tokenizer_files(
    folder: str | os.PathLike, words: list[str] | None = None, size: int | None = None
) -> Path:
    """Write a small but valid CLIP BPE tokenizer in SD-2.1-base's ``tokenizer/`` layout.

    ``vocab.json`` follows CLIP's order: the 256 byte characters (so ``"!"`` is id 0), the same with
    ``</w>``, one entry per merge, then ``<|startoftext|>`` and ``<|endoftext|>`` last. Merges are chosen so
    that each of ``words`` (default :data:`REPORT_WORDS`) is a single token; other words split into several
    sub-tokens. Padding is ``"!"`` (id 0), as in SD 2.x's ``special_tokens_map.json``. With ``size``
    (49408 for the real vocabulary size) unreachable filler entries pad the vocabulary so that
    ``<|startoftext|>`` / ``<|endoftext|>`` get CLIP's ids 49406 / 49407.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    known = set(vocab_list)
    for w in words or REPORT_WORDS:
        w = w.lower()
        syms = _bpe(w, ranks)
        while len(syms) > 1:  # merge left to right until the word is one symbol
            pair = (syms[0], syms[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            tok = pair[0] + pair[1]
            if tok not in known:
                known.add(tok)
                vocab_list.append(tok)
            syms = _bpe(w, ranks)
    if size is not None:
        if size < len(vocab_list) + 2:
            raise ValueError(f"CLIP vocabulary size {size} < {len(vocab_list) + 2} required entries")
        vocab_list += [f"<|unused{i}|>" for i in range(size - 2 - len(vocab_list))]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(vocab_list)}
    _write_json(folder / "vocab.json", vocab)
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    added = {"__type": "AddedToken", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    _write_json(
        folder / "special_tokens_map.json",
        {
            "bos_token": {**{k: v for k, v in added.items() if k != "__type"}, "content": "<|startoftext|>"},
            "eos_token": {**{k: v for k, v in added.items() if k != "__type"}, "content": "<|endoftext|>"},
            "pad_token": {"content": "!", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
            "unk_token": {**{k: v for k, v in added.items() if k != "__type"}, "content": "<|endoftext|>"},
        },
    )
    _write_json(
        folder / "tokenizer_config.json",
        {
            "add_prefix_space": False,
            "bos_token": {**added, "content": "<|startoftext|>"},
            "do_lower_case": True,
            "eos_token": {**added, "content": "<|endoftext|>"},
            "errors": "replace",
            "model_max_length": 77,
            "name_or_path": "stabilityai/stable-diffusion-2-1-base",
            "pad_token": "!",
            "special_tokens_map_file": "./special_tokens_map.json",
            "tokenizer_class": "CLIPTokenizer",
            "unk_token": {**added, "content": "<|endoftext|>"},
        },
    )
    return folder


def build_clip_text_encoder(folder: str | os.PathLike, tiny: bool = True, seed: int = 0, vocab_size: int | None = None) -> Path:
    """``CLIPTextModel.save_pretrained`` (config.json + model.safetensors) of SD-2.1-base's text encoder."""
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    cfg = dict(CLIP_TEXT_TINY if tiny else CLIP_TEXT_FULL)
    if vocab_size is not None:
        cfg["vocab_size"] = int(vocab_size)
    gen = _gen(seed)
    model = CLIPTextModel(CLIPTextConfig(**cfg)).eval()
    _redraw_zero_params(model, gen)
    model.save_pretrained(folder, safe_serialization=True)
    del model
    return folder


# ---------------------------------------------------------------------------------------------------
# MONAI bundle


def _inference_json(ae: dict[str, Any], unet: dict[str, Any]) -> dict[str, Any]:
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


def _old_generative_nets():
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
    AutoencoderKL, DiffusionModelUNet = _old_generative_nets()
    bundle = Path(root) / "cxr_image_synthesis_latent_diffusion_model"
    ae_kw = dict(MONAI_AE_TINY if tiny else MONAI_AE_FULL)
    unet_kw = dict(MONAI_UNET_TINY if tiny else MONAI_UNET_FULL)

    _write_json(bundle / "configs" / "inference.json", _inference_json(ae_kw, unet_kw))
    _write_json(bundle / "configs" / "metadata.json", _METADATA)
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
    gen = _gen(seed)
    ae = AutoencoderKL(**ae_kw).eval()
    _redraw_zero_params(ae, gen)
    torch.save(OrderedDict(ae.state_dict()), models / "autoencoder.pth")
    del ae
    gen = _gen(seed + 1)
    unet = DiffusionModelUNet(**unet_kw).eval()
    _redraw_zero_params(unet, gen)
    torch.save(OrderedDict(unet.state_dict()), models / "diffusion_model.pth")
    del unet

    tok_dir = build_clip_tokenizer_files(bundle / "tokenizer", size=None if tiny else CLIP_TEXT_FULL["vocab_size"])
    n_vocab = len(json.loads((tok_dir / "vocab.json").read_text(encoding="utf-8")))
    build_clip_text_encoder(
        bundle / "text_encoder", tiny=tiny, seed=seed + 2, vocab_size=n_vocab if tiny else None
    )
    return bundle


# ---------------------------------------------------------------------------------------------------
# WordPiece / CXR-BERT


def wordpiece_vocab(size: int | None = None, words: list[str] | None = None) -> list[str]:
    """A BERT WordPiece vocabulary: specials first ([PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, as in
    PubMedBERT/CXR-BERT), then single characters, their ``##`` continuations, a few sub-word pieces and
    :data:`REPORT_WORDS`; padded with ``[unusedN]`` entries to ``size`` when given."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    pieces = ["pneumo", "##thorax", "cardio", "##megaly", "##al", "##s", "##ed", "##ing", "##ity", "##ation"]
    out: list[str] = []
    seen: set[str] = set()
    for t in specials + chars + ["##" + c for c in chars if c.isalnum()] + pieces + list(words or REPORT_WORDS):
        if t not in seen:
            seen.add(t)
            out.append(t)
    if size is not None:
        if size < len(out):
            raise ValueError(f"vocabulary size {size} < {len(out)} required entries")
        out += [f"[unused{i}]" for i in range(size - len(out))]
    return out


def _write_wordpiece_tokenizer(folder: Path, vocab: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    _write_json(
        folder / "special_tokens_map.json",
        {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"},
    )
    # As published: uncased, model_max_length 512; tokenizer_class/auto_map name the remote-code tokenizer
    # (which groundkit ignores).
    _write_json(
        folder / "tokenizer_config.json",
        {
            "do_lower_case": True,
            "model_max_length": 512,
            "tokenizer_class": "CXRBertTokenizer",
            "auto_map": {"AutoTokenizer": ["tokenization_cxrbert.CXRBertTokenizer", None]},
            "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
            "mask_token": "[MASK]", "strip_accents": None, "tokenize_chinese_chars": True,
        },
    )


def cxrbert_state_dict(cfg: dict[str, Any], seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """Random weights with the published CXR-BERT-specialized state-dict keys.

    = ``BertForMaskedLM`` keys as saved by transformers 4.x (``bert.embeddings.position_ids`` buffer included,
    ``cls.predictions.decoder.{weight,bias}`` tied to the word embeddings / ``cls.predictions.bias``), plus
    ``cls_projection_head.{dense_to_hidden,LayerNorm,dense_to_output}.{weight,bias}``.
    """
    from transformers import BertConfig, BertForMaskedLM

    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id")
    gen = _gen(seed)
    mlm = BertForMaskedLM(BertConfig(**{k: cfg[k] for k in keys})).eval()
    _redraw_zero_params(mlm, gen)
    with torch.no_grad():  # LayerNorms/biases away from their 1/0 init, so a wrong mapping shows
        for name, p in mlm.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    # transformers 4.x saved the position_ids buffer (persistent then); place it where it was.
    ordered: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, v in mlm.state_dict().items():
        if k == "bert.embeddings.word_embeddings.weight":
            ordered["bert.embeddings.position_ids"] = torch.arange(cfg["max_position_embeddings"]).unsqueeze(0)
        ordered[k] = v
    if "cls.predictions.decoder.weight" not in ordered:
        ordered["cls.predictions.decoder.weight"] = ordered["bert.embeddings.word_embeddings.weight"]
    if "cls.predictions.decoder.bias" not in ordered:
        ordered["cls.predictions.decoder.bias"] = ordered["cls.predictions.bias"]
    h, p = cfg["hidden_size"], cfg["projection_size"]
    ordered["cls_projection_head.dense_to_hidden.weight"] = torch.randn(p, h, generator=gen) * 0.02
    ordered["cls_projection_head.dense_to_hidden.bias"] = torch.randn(p, generator=gen) * 0.02
    ordered["cls_projection_head.LayerNorm.weight"] = 1 + torch.randn(p, generator=gen) * 0.02
    ordered["cls_projection_head.LayerNorm.bias"] = torch.randn(p, generator=gen) * 0.02
    ordered["cls_projection_head.dense_to_output.weight"] = torch.randn(p, p, generator=gen) * 0.02
    ordered["cls_projection_head.dense_to_output.bias"] = torch.randn(p, generator=gen) * 0.02
    del mlm
    return ordered


def build_cxrbert_folder(
    folder: str | os.PathLike,
    tiny: bool = True,
    seed: int = 0,
    with_tokenizer: bool = True,
    weights: str = "bin",
) -> Path:
    """A ``microsoft/BiomedVLP-CXR-BERT-specialized``-style folder: config.json (architectures
    ["CXRBertModel"], auto_map to the remote-code modules - which are NOT written), ``pytorch_model.bin``
    (``weights="bin"``, torch.save as published) or ``model.safetensors``, and, with ``with_tokenizer``,
    vocab.txt + tokenizer_config.json + special_tokens_map.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = wordpiece_vocab(None if tiny else CXRBERT_FULL["vocab_size"])
    cfg = dict(CXRBERT_TINY if tiny else CXRBERT_FULL)
    if tiny:
        cfg["vocab_size"] = len(vocab)
    _write_json(folder / "config.json", cfg)
    sd = cxrbert_state_dict(cfg, seed)
    if weights == "bin":
        torch.save(sd, folder / "pytorch_model.bin")
    elif weights == "safetensors":
        from safetensors.torch import save_file

        # safetensors refuses shared storage: store the tied copies as separate tensors.
        save_file({k: v.contiguous().clone() for k, v in sd.items()}, str(folder / "model.safetensors"))
    else:
        raise ValueError(f"weights must be 'bin' or 'safetensors', not {weights!r}")
    if with_tokenizer:
        _write_wordpiece_tokenizer(folder, vocab)
    return folder


def build_plain_bert_folder(
    folder: str | os.PathLike, hidden_size: int = 32, num_layers: int = 2, seed: int = 0, bare_keys: bool = True
) -> Path:
    """A plain BERT folder (model_type "bert"): ``BertModel.save_pretrained``-style bare keys
    (``embeddings.*``, ``encoder.*``, ``pooler.*``) when ``bare_keys``, else ``bert.*`` keys of a
    ``BertForMaskedLM`` in ``model.safetensors``; plus the WordPiece tokenizer files."""
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForMaskedLM, BertModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = wordpiece_vocab()
    cfg = {
        "architectures": ["BertModel" if bare_keys else "BertForMaskedLM"], "model_type": "bert",
        "vocab_size": len(vocab), "hidden_size": hidden_size, "num_hidden_layers": num_layers,
        "num_attention_heads": 2, "intermediate_size": 2 * hidden_size, "max_position_embeddings": 128,
        "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0, "type_vocab_size": 2,
    }
    _write_json(folder / "config.json", cfg)
    gen = _gen(seed)
    bc = BertConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
    model = BertModel(bc, add_pooling_layer=True) if bare_keys else BertForMaskedLM(bc)
    _redraw_zero_params(model, gen)
    sd = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
    save_file(sd, str(folder / "model.safetensors"))
    _write_wordpiece_tokenizer(folder, vocab)
    return folder


# ---------------------------------------------------------------------------------------------------
# diffusers SD-1.5 + CXR-BERT tree


def _save_diffusers(model, folder: Path) -> None:
    model.save_pretrained(folder, safe_serialization=True)


def build_sd_cxrbert(root: str | os.PathLike, tiny: bool = True, seed: int = 0) -> Path:
    """Write the diffusers tree of the SD-1.5 U-Net fine-tuned with frozen CXR-BERT; return its folder.

    ``model_index.json``, ``unet/`` and ``unet_ema/`` (UNet2DConditionModel, fp32 safetensors; tiny: the
    EMA weights differ from ``unet/``; full size: ``unet_ema`` is a hard link/copy of ``unet``), ``vae/``
    (AutoencoderKL, scaling_factor 0.18215), ``scheduler/scheduler_config.json`` (DDIM as SD 1.5),
    ``text_encoder/`` (CXR-BERT-specialized: config with auto_map, pytorch_model.bin, no vocab) and
    ``tokenizer/`` (vocab.txt, do_lower_case, model_max_length 512). Full size needs ~8 GB of disk.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    tree = Path(root) / "sd15_cxrbert"
    tree.mkdir(parents=True, exist_ok=True)
    _write_json(
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
    _write_json(tree / "scheduler" / "scheduler_config.json", SD15_SCHEDULER)

    # text encoder (+ tokenizer in its own folder, the diffusers layout)
    build_cxrbert_folder(tree / "text_encoder", tiny=tiny, seed=seed + 3, with_tokenizer=False)
    vocab = wordpiece_vocab(None if tiny else CXRBERT_FULL["vocab_size"])
    _write_wordpiece_tokenizer(tree / "tokenizer", vocab)

    unet_cfg = dict(SD15_UNET_TINY if tiny else SD15_UNET_FULL)
    gen = _gen(seed)
    unet = UNet2DConditionModel(**unet_cfg).eval()
    _redraw_zero_params(unet, gen)
    _save_diffusers(unet, tree / "unet")
    if tiny:
        gen = _gen(seed + 10)
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.01)
        _save_diffusers(unet, tree / "unet_ema")
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
    del unet

    vae_cfg = dict(SD15_VAE_TINY if tiny else SD15_VAE_FULL)
    gen = _gen(seed + 1)
    vae = AutoencoderKL(**vae_cfg).eval()
    _redraw_zero_params(vae, gen)
    _save_diffusers(vae, tree / "vae")
    del vae
    return tree
