"""MONAI chest X-ray LDM (model-zoo bundle ``cxr_image_synthesis_latent_diffusion_model``) + CLIP text.

Reads the bundle's ``configs/inference.json`` as data: the network and scheduler arguments are
literal keyword arguments, while its ``$`` expressions (devices, hub downloads) are never evaluated.
The shipped ``models/*.pth`` are state dicts of the OLD ``generative`` package; MONAI core >= 1.4
has the same networks and converts them with ``load_old_state_dict``.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..engine.capture import Recorder, monai_capture
from ..safeload import CheckpointMismatchError, load_into, load_state_dict
from .base import LayerInfo, NoiseSchedule, TextBatch, encode_with, match_batch, ordered_cross_attention, square_crop

SD21_HUB_ID = "stabilityai/stable-diffusion-2-1-base"
# old `generative` keyword -> MONAI core keyword
_RENAMED = {"num_channels": "channels"}


class ConfigError(ValueError):
    """A config file does not describe what groundkit expected."""


def read_bundle_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing; a MONAI bundle has configs/inference.json") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None


def network_kwargs(config: dict[str, Any], key: str, file: Path) -> dict[str, Any]:
    """Literal keyword arguments of one ``_target_`` definition; refuses expressions."""
    if key not in config or not isinstance(config[key], dict):
        raise ConfigError(f"{file}: no '{key}' network definition (expected a dict with _target_ and arguments)")
    out = {}
    for name, value in config[key].items():
        if name.startswith("_"):
            continue
        if isinstance(value, str) and value[:1] in ("$", "@", "%"):
            raise ConfigError(f"{file}: {key}.{name} is an expression ({value!r}); groundkit reads configs as data and never evaluates them")
        _check_literal(value, f"{file}: {key}.{name}")
        if name in NUMERIC_ARGS and not _numeric(value):
            raise ConfigError(f"{file}: {key}.{name}: expected a number (or a list of numbers), got {value!r}")
        out[_RENAMED.get(name, name)] = value
    return out


# arguments of the MONAI networks and scheduler that must be numbers (or lists of numbers)
NUMERIC_ARGS = frozenset({
    "spatial_dims", "in_channels", "out_channels", "latent_channels", "num_channels", "channels", "num_res_blocks",
    "norm_num_groups", "norm_eps", "num_head_channels", "transformer_num_layers", "cross_attention_dim",
    "num_train_timesteps", "beta_start", "beta_end", "num_class_embeds",
})


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(_numeric(v) for v in value)


def _check_literal(value: Any, where: str) -> None:
    """Network arguments are numbers, booleans, short strings or lists of them: a nested mapping (e.g. a
    ``_target_`` object definition) would be an instruction to build something, and is refused."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            if isinstance(v, (list, tuple, dict)):
                if isinstance(v, dict):
                    raise ConfigError(f"{where}[{i}]: expected a number, got a mapping {v!r}; network arguments must be literals")
                _check_literal(v, f"{where}[{i}]")
            else:
                _check_literal(v, f"{where}[{i}]")
        return
    raise ConfigError(f"{where}: expected a number, a boolean, a string or a list of them, got {type(value).__name__} {value!r}; "
                      "network arguments must be literals (groundkit never builds objects from a config)")


def schedule_from_kwargs(kw: dict[str, Any]) -> NoiseSchedule:
    n = int(kw.get("num_train_timesteps", 1000))
    b0, b1 = float(kw.get("beta_start", 1e-4)), float(kw.get("beta_end", 2e-2))
    kind = kw.get("schedule", kw.get("beta_schedule", "linear_beta"))
    if kind in ("scaled_linear_beta", "scaled_linear"):
        betas = torch.linspace(b0**0.5, b1**0.5, n, dtype=torch.float64) ** 2
    elif kind in ("linear_beta", "linear"):
        betas = torch.linspace(b0, b1, n, dtype=torch.float64)
    else:
        raise ConfigError(f"unsupported beta schedule {kind!r} (expected scaled_linear(_beta) or linear(_beta))")
    abar = torch.cumprod(1.0 - betas, dim=0)
    final = 1.0 if kw.get("set_alpha_to_one", True) else float(abar[0])
    return NoiseSchedule(abar, kw.get("prediction_type", "epsilon"), final)


def load_monai_weights(net: torch.nn.Module, file: Path) -> None:
    """Strictly load a new- or old-format (``generative``) state dict, naming the file on mismatch.

    The old -> new renames are applied by name only (groundkit.verify.convert_old_monai_keys); MONAI's own
    ``load_old_state_dict`` is not used: it keeps random initial values for keys a file lacks."""
    from ..verify import convert_old_monai_keys

    sd = load_state_dict(file)
    own = net.state_dict()
    if set(sd) != set(own):
        sd, _ = convert_old_monai_keys(sd, own)
    load_into(net, sd, file, what=f"the {type(net).__name__} that configs/inference.json describes")


class MonaiLDMAdapter:
    name = "monai-ldm"

    def __init__(self, autoencoder, unet, text_encoder, tokenizer, schedule, image_size=512, scale_factor=0.3,
                 device="cpu", dtype=torch.float32, max_length=77):
        from monai.networks.nets import DiffusionModelUNet  # noqa: F401  (import check: monai installed)

        self.device, self.dtype = torch.device(device), dtype
        self.autoencoder = autoencoder.to(self.device).eval() if autoencoder is not None else None
        self.unet_model = unet.to(self.device, dtype).eval()
        self.text_encoder = text_encoder.to(self.device).eval()
        self.tokenizer, self.schedule = tokenizer, schedule
        self.image_size, self.scale_factor, self.max_length = image_size, scale_factor, max_length
        down = 2 ** (len(autoencoder.encoder.channels) - 1) if autoencoder is not None else 1
        self.latent_size = image_size // down
        self._layers = ordered_cross_attention(self.unet_model, self.latent_size, len(self.unet_model.block_out_channels))

    # ------------------------------------------------------------------ loading
    @classmethod
    def detect(cls, path: str | Path) -> bool:
        p = Path(path)
        return (p / "configs" / "inference.json").is_file() and (p / "models").is_dir()

    @classmethod
    def from_entry(cls, entry: dict[str, Any], device="cpu", dtype=torch.float32) -> "MonaiLDMAdapter":
        from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

        root = Path(entry["path"])
        cfg_file = root / "configs" / "inference.json"
        cfg = read_bundle_config(cfg_file)
        files = {"autoencoder": root / "models" / "autoencoder.pth", "diffusion_model": root / "models" / "diffusion_model.pth"}
        for label, f in files.items():
            if not f.is_file():
                alt = f.with_suffix(".safetensors")
                if alt.is_file():
                    files[label] = alt
                else:
                    raise FileNotFoundError(f"{f}: missing {label} weights; {entry.get('source') or 'see checkpoints.yaml for where to get them'}")
        ae = AutoencoderKL(**network_kwargs(cfg, "autoencoder_def", cfg_file))
        load_monai_weights(ae, files["autoencoder"])
        unet = DiffusionModelUNet(**network_kwargs(cfg, "diffusion_def", cfg_file))
        load_monai_weights(unet, files["diffusion_model"])
        schedule = schedule_from_kwargs(network_kwargs(cfg, "scheduler", cfg_file))
        text_encoder, tokenizer = load_clip(root, entry)
        scale = entry.get("scale_factor", cfg.get("scale_factor", 0.3))
        if not isinstance(scale, (int, float)):
            raise ConfigError(f"{cfg_file}: scale_factor must be a number, got {scale!r}")
        return cls(ae, unet, text_encoder, tokenizer, schedule, image_size=int(entry.get("image_size", 512)),
                   scale_factor=float(scale), device=device, dtype=dtype)

    # ------------------------------------------------------------------ adapter protocol
    def preprocess(self, image) -> tuple[torch.Tensor, Any]:
        img = torch.as_tensor(image, dtype=torch.float32)
        return square_crop(img, self.image_size)  # intensities stay in [0, 1], one channel

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encode_posterior(pixels)[0]

    @torch.no_grad()
    def encode_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled mean and standard deviation of the autoencoder's posterior."""
        z_mu, z_sigma = self.autoencoder.encode(pixels.to(self.device, torch.float32))
        return z_mu * self.scale_factor, z_sigma * self.scale_factor

    def encode_unconditional(self) -> torch.Tensor:
        """The empty prompt for the unconditional half (CLIP: no attention mask, as published)."""
        return self.encode_text([""]).embeddings

    def encode_text(self, phrases: list[str]) -> TextBatch:
        return encode_with(self.tokenizer, self.text_encoder, phrases, self.max_length, pass_mask=False,
                           device=self.device, dtype=self.dtype)

    def unet(self, z: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        t, context = match_batch(z, t, context)
        return self.unet_model(z.to(self.dtype), timesteps=t.long(), context=context.to(self.dtype))

    def cross_attention_layers(self) -> list[LayerInfo]:
        return list(self._layers)

    @contextmanager
    def capture(self, recorder: Recorder):
        with monai_capture(self.unet_model, recorder):
            yield recorder


def load_clip(root: Path, entry: dict[str, Any]):
    """CLIP text encoder + tokenizer: a configured folder, the bundle's own folders, or the user's
    local Hugging Face cache for SD-2.1-base (never a download, never remote code). The weights are read
    with groundkit.safeload and loaded strictly (transformers would fill missing keys with random values)."""
    from transformers import CLIPTokenizerFast

    candidates = []
    te, tok = entry.get("text_encoder"), entry.get("tokenizer")
    if te:
        candidates.append((Path(te).expanduser(), Path(tok or te).expanduser()))
    if (root / "text_encoder").is_dir():
        candidates.append((root / "text_encoder", root / "tokenizer" if (root / "tokenizer").is_dir() else root / "text_encoder"))
    cached = _hf_cached_snapshot(SD21_HUB_ID)
    if cached is not None:
        candidates.append((cached / "text_encoder", cached / "tokenizer"))
    for te_dir, tok_dir in candidates:
        if (te_dir / "config.json").is_file():  # the first folder that exists is used; its errors are raised
            model = load_clip_text_model(te_dir)
            try:
                tokenizer = CLIPTokenizerFast.from_pretrained(str(tok_dir), local_files_only=True)
            except (OSError, ValueError) as e:
                raise FileNotFoundError(f"{tok_dir}: no usable CLIP tokenizer (vocab.json + merges.txt): {str(e).splitlines()[0]}") from None
            return model, tokenizer
    tried = ", ".join(str(t) for t, _ in candidates) or "nothing configured"
    raise FileNotFoundError(
        f"CLIP text encoder not found (tried {tried}, and {SD21_HUB_ID} is not in the local Hugging Face cache). "
        f"Put SD-2.1-base's text_encoder/ and tokenizer/ folders in {root} or set 'text_encoder' in checkpoints.yaml"
    )


def _hf_cached_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "text_encoder/config.json")
    except Exception:  # noqa: BLE001 - not cached
        return None
    return Path(hit).parent.parent if isinstance(hit, str) else None


def load_clip_text_model(folder: Path):
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..verify import normalize_clip_keys

    config = CLIPTextConfig.from_pretrained(str(folder), local_files_only=True)
    file = next((folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()), None)
    if file is None:
        raise FileNotFoundError(f"{folder}: no CLIP text encoder weights (model.safetensors or pytorch_model.bin)")
    sd = load_state_dict(file)
    model = CLIPTextModel(config)
    sd, _, _ = normalize_clip_keys(sd, model.state_dict().keys())
    load_into(model, sd, file, what="the CLIPTextModel that its config.json describes")
    return model.eval()
