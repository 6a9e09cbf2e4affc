"""Stable Diffusion 1.5 layout (diffusers folders) with a BERT-family or CLIP text encoder.

Nuetzel et al. fine-tune SD 1.5's U-Net with a frozen CXR-BERT-specialized encoder; the EMA
weights live in ``unet_ema/`` (``unet/`` accepted). CXR-BERT is loaded by groundkit's own class,
never with remote code. A folder without ``vae/`` is a pixel-space model (identity autoencoder):
the documented option the bundled demo checkpoint uses.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..engine.capture import Recorder, diffusers_capture
from ..safeload import CheckpointError, load_into, load_state_dict, read_shard_index
from .base import LayerInfo, NoiseSchedule, TextBatch, encode_with, match_batch, ordered_cross_attention, square_crop


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def schedule_from_diffusers(folder: Path) -> NoiseSchedule:
    """alphas_cumprod exactly as diffusers' DDIMScheduler builds them from scheduler_config.json."""
    from diffusers import DDIMScheduler

    file = folder / "scheduler_config.json"
    cfg = _read_json(file)
    sched = DDIMScheduler.from_config(cfg)
    abar = sched.alphas_cumprod.to(torch.float64)
    final = 1.0 if sched.config.set_alpha_to_one else float(abar[0])
    return NoiseSchedule(abar, sched.config.prediction_type, final)


WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def load_diffusers_model(cls, folder: Path, what: str):
    """``cls`` built from ``folder/config.json`` on the meta device, then its weights read with
    groundkit.safeload (no pickle beyond tensors) and assigned strictly: every key consumed, none missing.
    diffusers' ``from_pretrained`` is not used: it fills missing keys with random values and only logs it."""
    cfg_file = folder / "config.json"
    config = _read_json(cfg_file)
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


class DiffusersSDAdapter:
    name = "diffusers-sd"

    def __init__(self, vae, unet, text_encoder, tokenizer, schedule, image_size=512, scale_factor=0.18215,
                 device="cpu", dtype=torch.float32, max_length=77, pass_mask=True, null_attention_mask=False):
        self.device, self.dtype = torch.device(device), dtype
        self.vae = vae.to(self.device).eval() if vae is not None else None
        self.unet_model = unet.to(self.device).to(dtype).eval()
        self.text_encoder = text_encoder.to(self.device).eval()
        self.tokenizer, self.schedule = tokenizer, schedule
        self.image_size, self.scale_factor = image_size, scale_factor
        # never longer than the text encoder's position table (77 for CLIP and, forced, for CXR-BERT)
        positions = getattr(getattr(text_encoder, "config", None), "max_position_embeddings", None)
        self.max_length = min(max_length, int(positions)) if positions else max_length
        self.pass_mask = pass_mask
        self.null_attention_mask = null_attention_mask
        self.in_channels = int(self.unet_model.config.in_channels)
        down = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        self.latent_size = image_size // down
        self._layers = ordered_cross_attention(self.unet_model, self.latent_size, len(self.unet_model.config.block_out_channels))

    # ------------------------------------------------------------------ loading
    @classmethod
    def detect(cls, path: str | Path) -> bool:
        p = Path(path)
        return (p / "model_index.json").is_file() or (
            any((p / u / "config.json").is_file() for u in ("unet_ema", "unet")) and (p / "scheduler").is_dir()
        )

    @classmethod
    def from_entry(cls, entry: dict[str, Any], device="cpu", dtype=torch.float32) -> "DiffusersSDAdapter":
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()  # no "install accelerate" advice on every load
        root = Path(entry["path"])
        sub = entry.get("unet_subfolder")
        subs = [sub] if sub else ["unet_ema", "unet"]
        unet_dir = next((root / s for s in subs if (root / s / "config.json").is_file()), None)
        if unet_dir is None:
            raise FileNotFoundError(f"{root}: no U-Net folder ({' or '.join(s + '/config.json' for s in subs)}); {entry.get('source', '')}".rstrip("; "))
        unet = load_diffusers_model(UNet2DConditionModel, unet_dir, "U-Net")
        vae = None
        if entry.get("vae", "vae") != "identity" and (root / "vae").is_dir():
            vae = load_diffusers_model(AutoencoderKL, root / "vae", "VAE")
        schedule = schedule_from_diffusers(root / "scheduler")
        text_encoder, tokenizer, pass_mask = load_text_encoder(root, entry)
        scale = float(entry.get("scale_factor", getattr(vae.config, "scaling_factor", 0.18215) if vae is not None else 1.0))
        return cls(vae, unet, text_encoder, tokenizer, schedule, image_size=int(entry.get("image_size", 512)),
                   scale_factor=scale, device=device, dtype=dtype, max_length=int(entry.get("max_length", 77)), pass_mask=pass_mask,
                   null_attention_mask=bool(entry.get("null_attention_mask", False)))

    # ------------------------------------------------------------------ adapter protocol
    def preprocess(self, image) -> tuple[torch.Tensor, Any]:
        x, geo = square_crop(torch.as_tensor(image, dtype=torch.float32), self.image_size)
        channels = 3 if self.vae is not None else self.in_channels
        return (x * 2.0 - 1.0).expand(-1, channels, -1, -1).contiguous(), geo

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encode_posterior(pixels)[0]

    @torch.no_grad()
    def encode_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled mean and standard deviation of the VAE posterior (std 0 without a VAE)."""
        pixels = pixels.to(self.device, torch.float32)
        if self.vae is None:
            z = pixels * self.scale_factor
            return z, torch.zeros_like(z)
        dist = self.vae.encode(pixels).latent_dist
        return dist.mean * self.scale_factor, dist.std * self.scale_factor

    def encode_text(self, phrases: list[str]) -> TextBatch:
        return encode_with(self.tokenizer, self.text_encoder, phrases, self.max_length, pass_mask=self.pass_mask,
                           device=self.device, dtype=self.dtype)

    def encode_unconditional(self) -> torch.Tensor:
        """The empty prompt as the published pipeline encodes it for classifier-free guidance: diffusers'
        ``encode_prompt`` passes an attention mask only when the text encoder's config sets
        ``use_attention_mask`` (CXR-BERT's does not), so [CLS] [SEP] and every [PAD] are attended.
        ``null_attention_mask: true`` (checkpoint option) masks the padding instead, for models trained so."""
        return encode_with(self.tokenizer, self.text_encoder, [""], self.max_length,
                           pass_mask=self.pass_mask and self.null_attention_mask, device=self.device, dtype=self.dtype).embeddings

    def unet(self, z: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        t, context = match_batch(z, t, context)
        return self.unet_model(z.to(self.dtype), t, encoder_hidden_states=context.to(self.dtype)).sample

    def cross_attention_layers(self) -> list[LayerInfo]:
        return list(self._layers)

    @contextmanager
    def capture(self, recorder: Recorder):
        with diffusers_capture(self.unet_model, recorder):
            yield recorder


def load_text_encoder(root: Path, entry: dict[str, Any]):
    """(encoder, tokenizer, pass_attention_mask): BERT-family (CXR-BERT) or CLIP, by the config."""
    te_dir = Path(entry.get("text_encoder", root / "text_encoder"))
    tok_dir = Path(entry.get("tokenizer", root / "tokenizer"))
    cfg = _read_json(te_dir / "config.json")
    model_type = cfg.get("model_type", "")
    if model_type in ("bert", "cxr-bert") or "Bert" in " ".join(cfg.get("architectures", [])):
        from .cxrbert import load_cxrbert

        encoder, tokenizer = load_cxrbert(te_dir, tokenizer_folder=tok_dir if tok_dir.is_dir() else None)
        return encoder, tokenizer, True  # the tokenizer's attention mask goes to the text encoder (SPEC 2.2)
    if model_type in ("clip_text_model", "clip"):
        from transformers import CLIPTokenizerFast

        from .monai_ldm import load_clip_text_model

        # strict and safe, like every other component: every key present, none extra, shapes equal
        model = load_clip_text_model(te_dir)
        try:
            tokenizer = CLIPTokenizerFast.from_pretrained(str(tok_dir), local_files_only=True)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(f"{tok_dir}: no usable CLIP tokenizer (vocab.json + merges.txt): {str(e).splitlines()[0]}") from None
        return model, tokenizer, False
    raise ValueError(f"{te_dir / 'config.json'}: unsupported text encoder model_type {model_type!r} (expected bert, cxr-bert or clip_text_model)")
