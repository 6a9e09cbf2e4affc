"""Stable Diffusion layout (diffusers folders) with a BERT-family or CLIP text encoder.

Nuetzel et al. fine-tune SD 1.5's U-Net with a frozen CXR-BERT-specialized encoder; the EMA
weights live in ``unet_ema/`` (``unet/`` accepted). CXR-BERT is loaded by groundkit's own class,
never with remote code; a CLIP encoder is loaded as strictly. A folder without ``vae/`` (or with
``vae: identity``) is a pixel-space model: the documented option the bundled demo checkpoint uses.
"""
from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch

from groundkit.core.adapter import Component
from groundkit.core.geometry import Geometry, square_crop
from groundkit.core.io import read_json
from groundkit.core.safeload import confined
from groundkit.core.text import encode_with
from groundkit.core.types import AttentionSink, LayerInfo, TextBatch
from groundkit.families.common import match_batch, ordered_cross_attention
from groundkit.families.diffusers_sd import loading
from groundkit.families.diffusers_sd.capture import diffusers_capture
from groundkit.families.text.encoders import load_text_encoder, text_encoder_components

UNET_HINT = "fine-tuned U-Net (unet_ema/ = EMA weights, or unet/)"
VAE_HINT = "vae/ of stable-diffusion-v1-5/stable-diffusion-v1-5"
SCHEDULER_HINT = "scheduler/ of stable-diffusion-v1-5/stable-diffusion-v1-5"
TEXT_HINT = "text_encoder/ (and tokenizer/) of microsoft/BiomedVLP-CXR-BERT-specialized"


def unet_folders(root: Path, entry: Mapping[str, Any]) -> list[Path]:
    """Where the U-Net may be: the configured subfolder (confined to the checkpoint), else unet_ema/, unet/."""
    sub = entry.get("unet_subfolder")
    if sub:
        return [confined(root, str(sub), f"checkpoint option unet_subfolder of {root}")]
    return [root / "unet_ema", root / "unet"]


def text_folders(root: Path, entry: Mapping[str, Any]) -> tuple[Path, Path]:
    te = Path(entry.get("text_encoder", root / "text_encoder")).expanduser()
    tok = Path(entry.get("tokenizer", root / "tokenizer")).expanduser()
    return te, tok


def uses_vae(root: Path, entry: Mapping[str, Any]) -> bool:
    return entry.get("vae", "vae") != "identity" and (root / "vae").is_dir()


class DiffusersSDAdapter:
    name: ClassVar[str] = "diffusers-sd"
    default_recipe: ClassVar[str] = "nuetzel2025"
    options: ClassVar[Mapping[str, str]] = {
        "image_size": "side of the square model input in pixels (SD 1.5: 512)",
        "scale_factor": "latent scaling factor (default: the VAE config's scaling_factor, 0.18215 for SD 1.5)",
        "text_encoder": "folder of the text encoder, instead of text_encoder/",
        "tokenizer": "folder of its tokenizer, instead of tokenizer/",
        "unet_subfolder": "U-Net subfolder (default: unet_ema/, then unet/)",
        "vae": "'identity' for a pixel-space model without an autoencoder",
        "max_length": "tokens per phrase (77 for SD; never more than the text encoder's positions)",
        "null_attention_mask": "mask the padding of the empty prompt (only for models trained so; published: no)",
    }

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
        self.latent_channels = int(self.unet_model.config.in_channels)
        down = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        self.latent_size = image_size // down
        self._layers = ordered_cross_attention(self.unet_model, self.latent_size, len(self.unet_model.config.block_out_channels))

    # ------------------------------------------------------------------ declarations (nothing loaded)
    @classmethod
    def detect(cls, path: str | Path) -> bool:
        p = Path(path)
        return (p / "model_index.json").is_file() or (
            any((p / u / "config.json").is_file() for u in ("unet_ema", "unet")) and (p / "scheduler").is_dir()
        )

    @classmethod
    def components(cls, entry: Mapping[str, Any]) -> list[Component]:
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

        root = Path(entry["path"])
        folders = unet_folders(root, entry)
        unet_dir = next((f for f in folders if (f / "config.json").is_file()), folders[0])
        out = [Component("U-Net config", (unet_dir / "config.json",), "config", UNET_HINT),
               Component("U-Net", loading.weight_candidates(unet_dir), "weights", UNET_HINT,
                         build=lambda keys: loading.on_meta(UNet2DConditionModel, unet_dir / "config.json"),
                         normalize=loading.normalize)]
        if entry.get("vae", "vae") == "identity":
            out.append(Component("VAE", (), note="pixel-space model (vae: identity): no autoencoder"))
        else:
            vae = root / "vae"
            out += [Component("VAE config", (vae / "config.json",), "config", VAE_HINT),
                    Component("VAE", loading.weight_candidates(vae), "weights", VAE_HINT,
                              build=lambda keys: loading.on_meta(AutoencoderKL, vae / "config.json"), normalize=loading.normalize)]
        sched = root / "scheduler" / "scheduler_config.json"
        out.append(Component("scheduler config", (sched,), "config", SCHEDULER_HINT,
                             check=lambda: (DDIMScheduler.from_config(read_json(sched)), None)[1]))
        te_dir, tok_dir = text_folders(root, entry)
        return out + text_encoder_components(te_dir, tok_dir, TEXT_HINT)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], device="cpu", dtype=torch.float32) -> DiffusersSDAdapter:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()  # no "install accelerate" advice on every load
        root = Path(entry["path"])
        folders = unet_folders(root, entry)
        unet_dir = next((f for f in folders if (f / "config.json").is_file()), None)
        if unet_dir is None:
            looked = " or ".join(str(f.relative_to(root) / "config.json") for f in folders)
            raise FileNotFoundError(f"{root}: no U-Net folder ({looked}); {entry.get('source', '')}".rstrip("; "))
        unet = loading.load_diffusers_model(UNet2DConditionModel, unet_dir, "U-Net")
        vae = loading.load_diffusers_model(AutoencoderKL, root / "vae", "VAE") if uses_vae(root, entry) else None
        schedule = loading.schedule_from_diffusers(root / "scheduler")
        text_encoder, tokenizer, pass_mask = load_text_encoder(*text_folders(root, entry))
        scale = float(entry.get("scale_factor", getattr(vae.config, "scaling_factor", 0.18215) if vae is not None else 1.0))
        return cls(vae, unet, text_encoder, tokenizer, schedule, image_size=int(entry.get("image_size", 512)),
                   scale_factor=scale, device=device, dtype=dtype, max_length=int(entry.get("max_length", 77)),
                   pass_mask=pass_mask, null_attention_mask=bool(entry.get("null_attention_mask", False)))

    # ------------------------------------------------------------------ adapter protocol
    def preprocess(self, image) -> tuple[torch.Tensor, Geometry]:
        x, geo = square_crop(torch.as_tensor(image, dtype=torch.float32), self.image_size)
        channels = 3 if self.vae is not None else self.latent_channels
        return (x * 2.0 - 1.0).expand(-1, channels, -1, -1).contiguous(), geo

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encode_posterior(pixels)[0]

    @torch.no_grad()
    def encode_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scaled mean and standard deviation of the VAE posterior (None without a VAE: deterministic)."""
        pixels = pixels.to(self.device, torch.float32)
        if self.vae is None:
            return pixels * self.scale_factor, None
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
    def capture(self, sink: AttentionSink):
        with diffusers_capture(self.unet_model, sink):
            yield sink
