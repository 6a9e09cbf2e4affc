"""A MONAI model-zoo bundle's ``configs/inference.json``, read as data.

The network and scheduler definitions are literal keyword arguments; ``$``/``@``/``%`` expressions
(devices, hub downloads, output folders) are refused, never evaluated, and a value where a number is
expected must be a number: a nested ``_target_`` mapping would be an instruction to build something.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from groundkit.core.io import read_json
from groundkit.core.types import NoiseSchedule

# old `generative` keyword -> MONAI core keyword
_RENAMED = {"num_channels": "channels"}


class ConfigError(ValueError):
    """A config file does not describe what groundkit expected."""


def read_bundle_config(path: Path) -> dict[str, Any]:
    try:
        cfg = read_json(path, "a MONAI bundle has configs/inference.json")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return cfg


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


def networks_on_meta(config_file: Path) -> dict[str, torch.nn.Module]:
    """``{"autoencoder": AutoencoderKL, "diffusion_model": DiffusionModelUNet}`` built from the bundle's
    config on the meta device (no memory): what the loader builds, for ``checkpoints verify``."""
    from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

    cfg = read_bundle_config(config_file)
    out = {}
    for label, key, cls in (("autoencoder", "autoencoder_def", AutoencoderKL),
                            ("diffusion_model", "diffusion_def", DiffusionModelUNet)):
        kw = network_kwargs(cfg, key, config_file)
        try:
            with torch.device("meta"):
                out[label] = cls(**kw)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ConfigError(f"{config_file}: {key} does not build a {cls.__name__}: {exc}") from None
    return out
