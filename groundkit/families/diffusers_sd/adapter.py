"""Stable Diffusion layout (diffusers folders) with a BERT-family or CLIP text encoder.

Nuetzel et al. fine-tune SD 1.5's U-Net with a frozen CXR-BERT-specialized encoder; the EMA
weights live in ``unet_ema/`` (``unet/`` accepted). CXR-BERT is loaded by groundkit's own class,
never with remote code; a CLIP encoder is loaded as strictly. A folder without ``vae/`` (or with
``vae: identity``) is a pixel-space model: the documented option the bundled demo checkpoint uses.

The same family serves every Stable-Diffusion-layout checkpoint whose parts are diffusers/transformers
folders: SD 1.x/2.x with CLIP (RoentGen; epsilon or v-prediction), the SD-1.5 U-Net with CXR-BERT
(Nuetzel et al.), RadEdit (its own U-Net, the SDXL VAE with scaling factor 0.13025, BioViL-T = a CXR-BERT
with its own weights, 128 tokens, and the DDIM scheduler its model card constructs in code, given inline
as the ``scheduler`` option). :meth:`DiffusersSDAdapter.from_components` wraps modules already in memory
(a ``StableDiffusionPipeline``'s) without copying a weight.
"""
from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch

from groundkit.core.adapter import AdapterBase, Component
from groundkit.core.geometry import Geometry, square_crop
from groundkit.core.io import read_json
from groundkit.core.safeload import component_folder, confined
from groundkit.core.text import encode_with
from groundkit.core.types import AttentionSink, LayerInfo, TextBatch
from groundkit.families.common import match_batch, ordered_cross_attention
from groundkit.families.diffusers_sd import loading
from groundkit.families.diffusers_sd.capture import diffusers_capture
from groundkit.families.text.encoders import (
    load_text_encoder,
    module_kind,
    require_fast_tokenizer,
    text_encoder_components,
    text_width,
    uses_mask,
)

UNET_HINT = "fine-tuned U-Net (unet_ema/ = EMA weights, or unet/)"
VAE_HINT = "vae/ of stable-diffusion-v1-5/stable-diffusion-v1-5"
SCHEDULER_HINT = "scheduler/ of stable-diffusion-v1-5/stable-diffusion-v1-5"
TEXT_HINT = "text_encoder/ (and tokenizer/) of microsoft/BiomedVLP-CXR-BERT-specialized"
HINTS = {"unet": UNET_HINT, "vae": VAE_HINT, "scheduler": SCHEDULER_HINT, "text_encoder": TEXT_HINT}


def hints(entry: Mapping[str, Any]) -> dict[str, str]:
    """Where each part comes from, for ``checkpoints verify``: the entry's ``hints`` over the SD-1.5 defaults."""
    given = entry.get("hints") or {}
    if not isinstance(given, Mapping) or set(given) - set(HINTS):
        raise ValueError(f"checkpoint option hints: expected a mapping with keys among {sorted(HINTS)}, got {given!r}")
    return {**HINTS, **{k: str(v) for k, v in given.items()}}


def unet_folders(root: Path, entry: Mapping[str, Any]) -> list[Path]:
    """Where the U-Net may be: the configured subfolder (confined to the checkpoint), else unet_ema/, unet/."""
    sub = entry.get("unet_subfolder")
    if sub:
        return [confined(root, str(sub), f"checkpoint option unet_subfolder of {root}")]
    return [root / "unet_ema", root / "unet"]


def _inside(root: Path, value: Any) -> Path:
    """A folder option: relative to the checkpoint folder (an absolute path as given)."""
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else root / p


def text_folders(root: Path, entry: Mapping[str, Any]) -> tuple[Path, Path]:
    te = _inside(root, entry.get("text_encoder", "text_encoder"))
    tok = _inside(root, entry.get("tokenizer", "tokenizer"))
    return te, tok


def vae_folder(root: Path, entry: Mapping[str, Any]) -> Path | None:
    """The autoencoder's folder: the ``vae`` option (a subfolder of the checkpoint), else ``vae/``;
    None for a pixel-space model (``vae: identity``)."""
    value = entry.get("vae")
    if value == "identity":
        return None
    if value is None or value == "vae":
        return root / "vae"
    return confined(root, str(value), f"checkpoint option vae of {root}")


def uses_vae(root: Path, entry: Mapping[str, Any]) -> bool:
    """An explicit ``vae`` folder must be there; without the option a folder lacking vae/ is pixel space."""
    folder = vae_folder(root, entry)
    if folder is None:
        return False
    return folder.is_dir() or entry.get("vae") not in (None, "vae")


def scheduler_source(root: Path, entry: Mapping[str, Any]) -> tuple[Path | None, Mapping[str, Any] | None]:
    """(scheduler_config.json, None) or (None, the settings given inline in the checkpoint entry)."""
    value = entry.get("scheduler")
    if isinstance(value, Mapping):
        return None, value
    folder = confined(root, str(value), f"checkpoint option scheduler of {root}") if value else root / "scheduler"
    return folder / "scheduler_config.json", None


def _schedule(root: Path, entry: Mapping[str, Any]):
    file, inline = scheduler_source(root, entry)
    if inline is not None:
        return loading.schedule_from_config(inline, f"checkpoint option scheduler of {root}")
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: a checkpoint without a scheduler folder (RadEdit's model card builds "
                                "its DDIMScheduler in code) needs the scheduler's settings in the option `scheduler`")
    return loading.schedule_from_config(read_json(file, "scheduler config"), str(file))


def _unet_check(unet_cfg: Path, te_dir: Path):
    """verify: the U-Net needs nothing but text states and t, of the width the text encoder gives."""
    def check() -> str | None:
        cfg = read_json(unet_cfg, "U-Net config")
        loading.check_text_width(cfg, text_width(te_dir), str(unet_cfg), str(te_dir))
        return None
    return check


MAX_IMAGE_SIZE = 4096
MAX_TOKENS = 4096


def _kind(value: Any) -> str:
    return "None" if value is None else f"{type(value).__name__}" + (f" {value!r}" if isinstance(value, (int, float, str)) and len(repr(value)) < 40 else "")


def _config(module: Any) -> Any:
    return getattr(module, "config", None) if isinstance(module, torch.nn.Module) else None


def _cfg_get(cfg: Any, key: str) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key)
    return getattr(cfg, key, None)


def check_components(unet, vae, text_encoder, tokenizer, scheduler, image_size=None, max_length=None,
                     attention_mask=None) -> None:
    """``from_components`` / ``gk.from_diffusers`` arguments checked before anything is built: each wrong one
    is a TypeError / ValueError that names the argument, what it got and what it expects."""
    ucfg = _config(unet)
    if ucfg is None or _cfg_get(ucfg, "in_channels") is None or not _cfg_get(ucfg, "block_out_channels"):
        raise TypeError(f"from_diffusers: unet: expected a diffusers UNet2DConditionModel (a torch module whose config has "
                        f"in_channels, block_out_channels and cross_attention_dim), got {_kind(unet)}")
    if next(unet.parameters(), None) is None:
        raise TypeError(f"from_diffusers: unet: {type(unet).__name__} has no parameters")
    blocks = [str(b) for b in (_cfg_get(ucfg, "down_block_types") or ()) + (_cfg_get(ucfg, "up_block_types") or ())] + \
             [str(_cfg_get(ucfg, "mid_block_type") or "")]
    if _cfg_get(ucfg, "cross_attention_dim") is None or not any("CrossAttn" in b for b in blocks):
        raise ValueError(f"from_diffusers: unet: this {type(unet).__name__} has no cross-attention layers (no cross_attention_dim "
                         "or no CrossAttn blocks in its config): groundkit reads its maps from the U-Net's cross-attention "
                         "to the text, so it needs a text-conditioned U-Net (UNet2DConditionModel)")
    if vae is not None:
        vcfg = _config(vae)
        if vcfg is None or not _cfg_get(vcfg, "block_out_channels") or not callable(getattr(vae, "encode", None)):
            raise TypeError(f"from_diffusers: vae: expected a diffusers AutoencoderKL (a torch module with encode() and a "
                            f"config with block_out_channels), or None for a pixel-space model, got {_kind(vae)}")
    tcfg = _config(text_encoder)
    if tcfg is None or not isinstance(_cfg_get(tcfg, "hidden_size"), int) or _cfg_get(tcfg, "in_channels") is not None:
        raise TypeError(f"from_diffusers: text_encoder: expected a transformers text model (CLIPTextModel, a BERT-family "
                        f"model: a torch module whose config has hidden_size), got {_kind(text_encoder)}")
    if getattr(tokenizer, "is_fast", None) is False:
        require_fast_tokenizer(tokenizer)  # says that a slow tokenizer will not do, and which fast one will
    if isinstance(tokenizer, (str, bytes, int, float, torch.nn.Module)) or not callable(tokenizer) \
            or not hasattr(tokenizer, "convert_ids_to_tokens"):
        raise TypeError(f"from_diffusers: tokenizer: expected a Hugging Face fast tokenizer (e.g. CLIPTokenizerFast, "
                        f"BertTokenizerFast), got {_kind(tokenizer)}")
    if isinstance(scheduler, (str, bytes, int, float, torch.nn.Module)) or not isinstance(getattr(scheduler, "config", None), Mapping):
        raise TypeError(f"from_diffusers: scheduler: expected a diffusers scheduler (DDIMScheduler, PNDMScheduler, ...: an "
                        f"object with a .config of beta settings), got {_kind(scheduler)}")
    if image_size is not None:
        down = 2 ** (len(_cfg_get(_config(vae), "block_out_channels")) - 1) if vae is not None else 1
        if not isinstance(image_size, int) or isinstance(image_size, bool) or not 0 < image_size <= MAX_IMAGE_SIZE \
                or image_size % down:
            raise ValueError(f"from_diffusers: image_size={_kind(image_size).split(' ', 1)[-1]}: expected a positive integer "
                             f"<= {MAX_IMAGE_SIZE}, a multiple of {down} (the VAE's downsampling), or None for the "
                             "pipeline's default (unet.config.sample_size x the VAE's downsampling)")
    if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool)
                                   or not 0 < max_length <= MAX_TOKENS):
        raise ValueError(f"from_diffusers: max_length={_kind(max_length).split(' ', 1)[-1]}: expected an integer 1..{MAX_TOKENS} "
                         "(tokens per phrase), or None for the tokenizer's model_max_length")
    if attention_mask is not None and not isinstance(attention_mask, bool):
        raise TypeError(f"from_diffusers: attention_mask: expected True, False or None, got {_kind(attention_mask)}")


class DiffusersSDAdapter(AdapterBase):
    name: ClassVar[str] = "diffusers-sd"
    default_recipe: ClassVar[str] = "nuetzel2025"
    options: ClassVar[Mapping[str, str]] = {
        "image_size": "side of the square model input in pixels (SD 1.5: 512)",
        "scale_factor": "latent scaling factor (default: the VAE config's scaling_factor, 0.18215 for SD 1.5)",
        "text_encoder": "folder of the text encoder, instead of text_encoder/",
        "tokenizer": "folder of its tokenizer, instead of tokenizer/",
        "unet_subfolder": "U-Net subfolder (default: unet_ema/, then unet/)",
        "vae": "the autoencoder's subfolder (default vae/; RadEdit: the SDXL VAE), or 'identity' for a pixel-space model",
        "scheduler": "scheduler subfolder (default scheduler/), or its settings inline as a mapping (RadEdit's model "
                     "card constructs DDIMScheduler(...) in code)",
        "max_length": "tokens per phrase (77 for SD; 128 for RadEdit; never more than the text encoder's positions)",
        "attention_mask": "pass the tokenizer's attention mask with the phrases (default: yes for BERT-family "
                          "encoders, no for CLIP; diffusers' pipeline passes none unless the encoder's config says so)",
        "null_attention_mask": "mask the padding of the empty prompt (only for models trained so; published: no)",
        "hints": "where each part comes from (keys unet, vae, scheduler, text_encoder), for checkpoints verify",
    }

    def __init__(self, vae, unet, text_encoder, tokenizer, schedule, image_size=512, scale_factor=0.18215,
                 device="cpu", dtype=torch.float32, max_length=77, pass_mask=True, null_attention_mask=False):
        self.device, self.dtype = torch.device(device), dtype
        self.vae = vae.to(self.device).eval() if vae is not None else None
        unet = unet.to(self.device)
        self.unet_model = (unet if unet.dtype == dtype else unet.to(dtype)).eval()
        self.text_encoder = text_encoder.to(self.device).eval()
        self.tokenizer, self.schedule = tokenizer, schedule
        self.image_size, self.scale_factor = image_size, scale_factor
        # never longer than the text encoder's position table (77 for CLIP and, forced, for CXR-BERT)
        positions = getattr(getattr(text_encoder, "config", None), "max_position_embeddings", None)
        self.max_length = min(max_length, int(positions)) if positions else max_length
        self.pass_mask = pass_mask
        self.null_attention_mask = null_attention_mask
        width = getattr(getattr(text_encoder, "config", None), "hidden_size", None)
        loading.check_text_width(self.unet_model.config, width, "U-Net", type(text_encoder).__name__)
        self.latent_channels = int(self.unet_model.config.in_channels)
        down = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        self.latent_size = image_size // down
        self._layers = ordered_cross_attention(self.unet_model, self.latent_size, len(self.unet_model.config.block_out_channels))
        if not self._layers:
            raise ValueError(f"the U-Net ({type(self.unet_model).__name__}) has no cross-attention layers: groundkit reads its "
                             "maps from the U-Net's cross-attention to the text")

    # ------------------------------------------------------------------ declarations (nothing loaded)
    @classmethod
    def detect(cls, path: str | Path) -> bool:
        p = Path(path)
        return (p / "model_index.json").is_file() or (
            any((p / u / "config.json").is_file() for u in ("unet_ema", "unet"))
            and ((p / "scheduler").is_dir() or (p / "text_encoder" / "config.json").is_file())
        )

    @classmethod
    def components(cls, entry: Mapping[str, Any]) -> list[Component]:
        from diffusers import AutoencoderKL, UNet2DConditionModel

        root = Path(entry["path"])
        folders = unet_folders(root, entry)
        unet_dir = next((f for f in folders if (f / "config.json").is_file()), folders[0])
        te_dir, tok_dir = text_folders(root, entry)
        hint = hints(entry)
        out = [Component("U-Net config", (unet_dir / "config.json",), "config", hint["unet"],
                         check=_unet_check(unet_dir / "config.json", te_dir)),
               Component("U-Net", loading.weight_candidates(unet_dir), "weights", hint["unet"],
                         build=lambda keys: loading.on_meta(UNet2DConditionModel, unet_dir / "config.json"),
                         normalize=loading.normalize)]
        vae = vae_folder(root, entry)
        if vae is None:
            out.append(Component("VAE", (), note="pixel-space model (vae: identity): no autoencoder"))
        else:
            out += [Component("VAE config", (vae / "config.json",), "config", hint["vae"]),
                    Component("VAE", loading.weight_candidates(vae), "weights", hint["vae"],
                              build=lambda keys: loading.on_meta(AutoencoderKL, vae / "config.json"), normalize=loading.normalize)]
        file, inline = scheduler_source(root, entry)
        if inline is not None:
            loading.schedule_from_config(inline, f"checkpoint option scheduler of {root}")  # raises if unusable
            settings = ", ".join(f"{k}={v}" for k, v in inline.items() if not str(k).startswith("_"))
            out.append(Component("scheduler", (), note=f"given in the checkpoint entry: DDIMScheduler({settings})"))
        else:
            out.append(Component("scheduler config", (file,), "config", hint["scheduler"],
                                 check=lambda: (loading.schedule_from_config(read_json(file), str(file)), None)[1]))
        return out + text_encoder_components(te_dir, tok_dir, hint["text_encoder"])

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], device="cpu", dtype=torch.float32) -> DiffusersSDAdapter:
        from diffusers import UNet2DConditionModel  # AutoencoderKL only with a VAE: its package imports every VAE (~1.5 s)
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()  # no "install accelerate" advice on every load
        root = Path(entry["path"])
        folders = unet_folders(root, entry)
        unet_dir = next((f for f in folders if (f / "config.json").is_file()), None)
        if unet_dir is None:
            looked = " or ".join(str(f.relative_to(root) / "config.json") for f in folders)
            raise FileNotFoundError(f"{root}: no U-Net folder ({looked}); {entry.get('source', '')}".rstrip("; "))
        te_dir, tok_dir = text_folders(root, entry)
        vae_dir = vae_folder(root, entry)
        sched_file, _ = scheduler_source(root, entry)
        for what, folder in (("U-Net", unet_dir), ("text encoder", te_dir), ("tokenizer", tok_dir), ("VAE", vae_dir),
                             ("scheduler", sched_file.parent if sched_file is not None else None)):
            if folder is not None:
                component_folder(root, folder, f"{root.name}: the {what} folder")
        # conditioning groundkit cannot feed is refused before gigabytes are read; the text width is compared
        # once the weights are in (a config that disagrees with its own weights is named by the strict load)
        loading.unet_context_dim(read_json(unet_dir / "config.json", "U-Net config"), str(unet_dir / "config.json"))
        unet = loading.load_diffusers_model(UNet2DConditionModel, unet_dir, "U-Net")
        loading.check_text_width(unet.config, text_width(te_dir), str(unet_dir / "config.json"), str(te_dir))
        vae = _load_vae(vae_folder(root, entry)) if uses_vae(root, entry) else None
        schedule = _schedule(root, entry)
        text_encoder, tokenizer, pass_mask = load_text_encoder(te_dir, tok_dir)
        if entry.get("attention_mask") is not None:
            pass_mask = bool(entry["attention_mask"])
        scale = float(entry.get("scale_factor", getattr(vae.config, "scaling_factor", 0.18215) if vae is not None else 1.0))
        return cls(vae, unet, text_encoder, tokenizer, schedule, image_size=int(entry.get("image_size", 512)),
                   scale_factor=scale, device=device, dtype=dtype, max_length=int(entry.get("max_length", 77)),
                   pass_mask=pass_mask, null_attention_mask=bool(entry.get("null_attention_mask", False)))

    @classmethod
    def from_components(cls, unet, vae=None, text_encoder=None, tokenizer=None, scheduler=None, *,
                        image_size: int | None = None, max_length: int | None = None,
                        attention_mask: bool | None = None, null_attention_mask: bool = False) -> DiffusersSDAdapter:
        """An adapter around modules already in memory (a diffusers ``StableDiffusionPipeline``'s parts), on
        the U-Net's device and dtype: nothing is copied or converted (only ``eval()`` is set). Defaults follow
        the pipeline: image side = ``unet.config.sample_size`` x the VAE's downsampling, max_length =
        ``tokenizer.model_max_length``, scale factor and schedule from the VAE's and scheduler's configs."""
        if text_encoder is None or tokenizer is None or scheduler is None:
            raise ValueError("from_components needs the U-Net, the text encoder, its tokenizer and the scheduler")
        check_components(unet, vae, text_encoder, tokenizer, scheduler, image_size, max_length, attention_mask)
        param = next(unet.parameters())
        kind = module_kind(text_encoder)
        down = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        size = int(image_size) if image_size is not None else int(unet.config.sample_size) * down
        tok_len = getattr(tokenizer, "model_max_length", None)
        length = int(max_length) if max_length is not None else (int(tok_len) if isinstance(tok_len, int) and tok_len < 100_000 else 77)
        scale = float(getattr(vae.config, "scaling_factor", None) or 0.18215) if vae is not None else 1.0
        schedule = loading.schedule_from_config(dict(scheduler.config), f"{type(scheduler).__name__}.config")
        return cls(vae, unet, text_encoder, require_fast_tokenizer(tokenizer), schedule, image_size=size,
                   scale_factor=scale, device=param.device, dtype=param.dtype, max_length=length,
                   pass_mask=uses_mask(kind) if attention_mask is None else bool(attention_mask),
                   null_attention_mask=null_attention_mask)

    # ------------------------------------------------------------------ adapter protocol
    def preprocess(self, image) -> tuple[torch.Tensor, Geometry]:
        x, geo = square_crop(torch.as_tensor(image, dtype=torch.float32), self.image_size)
        channels = 3 if self.vae is not None else self.latent_channels
        return (x * 2.0 - 1.0).expand(-1, channels, -1, -1).contiguous(), geo

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

    def compile(self, **options: Any) -> None:
        self.unet_model.compile(**options)  # nn.Module.compile: in place, module names and processors kept

    def networks(self) -> dict[str, torch.nn.Module]:
        nets = {"unet": self.unet_model, "text_encoder": self.text_encoder}
        return nets if self.vae is None else {**nets, "autoencoder": self.vae}


def _load_vae(folder: Path) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    return loading.load_diffusers_model(AutoencoderKL, folder, "VAE")
