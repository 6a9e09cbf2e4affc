"""MONAI chest X-ray LDM (model-zoo bundle ``cxr_image_synthesis_latent_diffusion_model``) + CLIP text.

Reads the bundle's ``configs/inference.json`` as data (``bundle.py``); the shipped ``models/*.pth`` are
state dicts of the OLD ``generative`` package, renamed to MONAI core's names and loaded strictly
(``keys.py``). The text encoder is SD-2.1-base's CLIP: a configured folder, the bundle's own
``text_encoder/``, or the user's local Hugging Face cache (never a download, never remote code).
"""
from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch

from groundkit.core.adapter import AdapterBase, Component
from groundkit.core.geometry import Geometry, square_crop
from groundkit.core.safeload import component_folder
from groundkit.core.text import encode_with
from groundkit.core.types import AttentionSink, LayerInfo, TextBatch
from groundkit.families.common import match_batch, ordered_cross_attention
from groundkit.families.monai_ldm import bundle, keys
from groundkit.families.monai_ldm.capture import monai_capture
from groundkit.families.text import clip
from groundkit.families.text.encoders import text_encoder_components

BUNDLE_HINT = "MONAI model zoo bundle cxr_image_synthesis_latent_diffusion_model"
CLIP_HINT = f"text_encoder/ and tokenizer/ of {clip.SD21_HUB_ID} (copy them into the bundle folder)"
NETWORKS = (("autoencoder", "autoencoder_def"), ("diffusion_model", "diffusion_def"))


def weight_candidates(root: Path, name: str) -> tuple[Path, ...]:
    return (root / "models" / f"{name}.pth", root / "models" / f"{name}.safetensors")


def clip_folders(root: Path, entry: Mapping[str, Any]) -> tuple[Path, Path, str] | None:
    """(text encoder folder, tokenizer folder, where it came from), or None when there is none: the
    configured folder, the bundle's own folders, then the local Hugging Face cache of SD-2.1-base."""
    te, tok = entry.get("text_encoder"), entry.get("tokenizer")
    if te and (Path(te).expanduser() / "config.json").is_file():
        return Path(te).expanduser(), Path(tok or te).expanduser(), "configured"
    if (root / "text_encoder" / "config.json").is_file():
        tok_dir = root / "tokenizer" if (root / "tokenizer").is_dir() else root / "text_encoder"
        return root / "text_encoder", tok_dir, "bundle"
    cached = clip.hf_cached_snapshot(te or clip.SD21_HUB_ID)
    if cached is not None:
        return cached / "text_encoder", cached / "tokenizer", f"local Hugging Face cache ({cached})"
    return None


class MonaiLDMAdapter(AdapterBase):
    name: ClassVar[str] = "monai-ldm"
    default_recipe: ClassVar[str] = "vilouras2024"
    options: ClassVar[Mapping[str, str]] = {
        "image_size": "side of the square model input in pixels (published: 512)",
        "scale_factor": "latent scaling factor (published: 0.3; default: the bundle's)",
        "text_encoder": "folder of a CLIP text encoder, instead of the bundle's text_encoder/",
        "tokenizer": "folder of its tokenizer (default: beside the text encoder)",
    }

    def __init__(self, autoencoder, unet, text_encoder, tokenizer, schedule, image_size=512, scale_factor=0.3,
                 device="cpu", dtype=torch.float32, max_length=77):
        self.device, self.dtype = torch.device(device), dtype
        self.autoencoder = autoencoder.to(self.device).eval() if autoencoder is not None else None
        self.unet_model = unet.to(self.device, dtype).eval()
        self.text_encoder = text_encoder.to(self.device).eval()
        self.tokenizer, self.schedule = tokenizer, schedule
        self.image_size, self.scale_factor, self.max_length = image_size, scale_factor, max_length
        down = 2 ** (len(autoencoder.encoder.channels) - 1) if autoencoder is not None else 1
        self.latent_size = image_size // down
        self.latent_channels = int(self.unet_model.in_channels)
        self._layers = ordered_cross_attention(self.unet_model, self.latent_size, len(self.unet_model.block_out_channels))

    # ------------------------------------------------------------------ declarations (nothing loaded)
    @classmethod
    def detect(cls, path: str | Path) -> bool:
        p = Path(path)
        return (p / "configs" / "inference.json").is_file() and (p / "models").is_dir()

    @classmethod
    def components(cls, entry: Mapping[str, Any]) -> list[Component]:
        root = Path(entry["path"])
        cfg_file = root / "configs" / "inference.json"
        nets: dict[str, torch.nn.Module] = {}

        def read_config() -> str:
            nets.update(bundle.networks_on_meta(cfg_file))
            return "autoencoder_def, diffusion_def read as data (no expressions evaluated)"

        out = [Component("bundle config", (cfg_file,), "config", BUNDLE_HINT, check=read_config if cfg_file.is_file() else None)]
        for name, _ in NETWORKS:
            out.append(Component(name.replace("_", " "), weight_candidates(root, name), "weights", BUNDLE_HINT,
                                 build=lambda k, n=name: nets.get(n), normalize=keys.normalize))
        found = clip_folders(root, entry)
        if found is None:
            te = entry.get("text_encoder") or clip.SD21_HUB_ID
            return out + [Component("CLIP text encoder", (root / "text_encoder" / "config.json",), "config", CLIP_HINT,
                                    note=f"not in {root}, not configured, and {te} is not in the local Hugging Face cache"),
                          Component("CLIP tokenizer", (root / "tokenizer" / "vocab.json",), "file", CLIP_HINT)]
        te_dir, tok_dir, where = found
        note = [] if where in ("bundle", "configured") else [Component("text encoder", (), note=f"from the {where}")]
        return out + note + text_encoder_components(te_dir, tok_dir, CLIP_HINT)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], device="cpu", dtype=torch.float32) -> MonaiLDMAdapter:
        from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

        root = Path(entry["path"])
        for sub in ("configs", "models", "text_encoder", "tokenizer"):
            component_folder(root, root / sub, f"{root.name}: the bundle's {sub}/ folder")
        cfg_file = root / "configs" / "inference.json"
        cfg = bundle.read_bundle_config(cfg_file)
        files = {}
        for name, _ in NETWORKS:
            files[name] = next((f for f in weight_candidates(root, name) if f.is_file()), None)
            if files[name] is None:
                raise FileNotFoundError(f"{weight_candidates(root, name)[0]}: missing {name} weights; "
                                        f"{entry.get('source') or 'see checkpoints.yaml for where to get them'}")
        ae = AutoencoderKL(**bundle.network_kwargs(cfg, "autoencoder_def", cfg_file))
        keys.load_monai_weights(ae, files["autoencoder"])
        unet = DiffusionModelUNet(**bundle.network_kwargs(cfg, "diffusion_def", cfg_file))
        keys.load_monai_weights(unet, files["diffusion_model"])
        schedule = bundle.schedule_from_kwargs(bundle.network_kwargs(cfg, "scheduler", cfg_file))
        found = clip_folders(root, entry)
        if found is None:
            raise FileNotFoundError(
                f"CLIP text encoder not found ({entry.get('text_encoder') or 'no text_encoder configured'}, no {root}/text_encoder/, "
                f"and {clip.SD21_HUB_ID} is not in the local Hugging Face cache). Put SD-2.1-base's text_encoder/ and "
                f"tokenizer/ folders in {root} or set 'text_encoder' in checkpoints.yaml")
        text_encoder, tokenizer = clip.load_clip_text_model(found[0]), clip.load_clip_tokenizer(found[1])
        scale = entry.get("scale_factor", cfg.get("scale_factor", 0.3))
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise bundle.ConfigError(f"{cfg_file}: scale_factor must be a number, got {scale!r}")
        return cls(ae, unet, text_encoder, tokenizer, schedule, image_size=int(entry.get("image_size", 512)),
                   scale_factor=float(scale), device=device, dtype=dtype)

    # ------------------------------------------------------------------ adapter protocol
    def preprocess(self, image) -> tuple[torch.Tensor, Geometry]:
        img = torch.as_tensor(image, dtype=torch.float32)
        return square_crop(img, self.image_size)  # intensities stay in [0, 1], one channel

    @torch.no_grad()
    def encode_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled mean and standard deviation of the autoencoder's posterior."""
        z_mu, z_sigma = self.autoencoder.encode(pixels.to(self.device, torch.float32))
        return z_mu * self.scale_factor, z_sigma * self.scale_factor

    def encode_text(self, phrases: list[str]) -> TextBatch:
        return encode_with(self.tokenizer, self.text_encoder, phrases, self.max_length, pass_mask=False,
                           device=self.device, dtype=self.dtype)

    def unet(self, z: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        t, context = match_batch(z, t, context)
        return self.unet_model(z.to(self.dtype), timesteps=t.long(), context=context.to(self.dtype))

    def cross_attention_layers(self) -> list[LayerInfo]:
        return list(self._layers)

    @contextmanager
    def capture(self, sink: AttentionSink):
        with monai_capture(self.unet_model, sink):
            yield sink

    def compile(self, **options: Any) -> None:
        self.unet_model.compile(**options)

    def networks(self) -> dict[str, torch.nn.Module]:
        nets = {"unet": self.unet_model, "text_encoder": self.text_encoder}
        return nets if self.autoencoder is None else {**nets, "autoencoder": self.autoencoder}
