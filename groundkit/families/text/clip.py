"""CLIP text encoders (SD 2.x / RoentGen style), read with groundkit's safe loader and loaded strictly.

``CLIPTextModel.from_pretrained`` is never used: transformers fills missing keys with random values and a
refused pickle surfaces without the file's name. Here the module is built from ``config.json`` and every
key must be present, none extra, shapes equal; errors name the file and the key.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from groundkit.core.io import read_json
from groundkit.core.safeload import load_into, load_state_dict
from groundkit.families.common import quiet_transformers

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SD21_HUB_ID = "stabilityai/stable-diffusion-2-1-base"


def normalize_clip_keys(state: Mapping[str, Any], own: Iterable[str]) -> tuple[dict[str, Any], int, list[str]]:
    """A CLIP text-encoder file's keys as transformers 5's ``CLIPTextModel`` names them.

    Files saved by transformers 4 (SD-2.1-base's ``text_encoder/model.safetensors``) prefix every key with
    ``text_model.`` and carry the ``embeddings.position_ids`` buffer; transformers 5's module has neither.
    Returns ``(renamed dict, n renamed, dropped keys)``; anything else is left for a strict check to report.
    """
    own = set(own)
    out: dict[str, Any] = {}
    dropped: list[str] = []
    n = 0
    strip = any(k.startswith("text_model.") for k in state) and not any(k.startswith("text_model.") for k in own)
    for k, v in state.items():
        key = k[len("text_model."):] if strip and k.startswith("text_model.") else k
        if key.endswith("embeddings.position_ids") and key not in own:
            dropped.append(k)  # a buffer transformers 4 saved; rebuilt by the module
            continue
        n += key != k
        out[key] = v
    return out, n, dropped


def normalize(model: torch.nn.Module, sd: Mapping[str, Any]) -> tuple[dict[str, Any], int, list[str]]:
    """The loader's renames, in the shape ``checkpoints verify`` expects."""
    return normalize_clip_keys(sd, model.state_dict().keys())


def clip_config(folder: Path):
    from transformers import CLIPTextConfig

    quiet_transformers()
    cfg = read_json(folder / "config.json")
    try:
        return CLIPTextConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{folder / 'config.json'}: does not build a CLIPTextModel: {exc}") from None


def clip_on_meta(folder: Path) -> torch.nn.Module:
    """The CLIPTextModel that ``folder/config.json`` describes, on the meta device (no memory)."""
    from transformers import CLIPTextModel

    config = clip_config(folder)
    with torch.device("meta"):
        return CLIPTextModel(config)


def weights_file(folder: Path) -> Path:
    file = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if file is None:
        raise FileNotFoundError(f"{folder}: no CLIP text encoder weights ({' or '.join(WEIGHT_FILES)})")
    return file


def load_clip_text_model(folder: Path) -> torch.nn.Module:
    """Build from config.json, read the weights safely, load strictly."""
    from transformers import CLIPTextModel

    config = clip_config(folder)
    file = weights_file(folder)
    sd = load_state_dict(file)
    model = CLIPTextModel(config)
    sd, _, _ = normalize_clip_keys(sd, model.state_dict().keys())
    load_into(model, sd, file, what="the CLIPTextModel that its config.json describes")
    return model.eval()


def load_clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizerFast

    try:
        return CLIPTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{folder}: no usable CLIP tokenizer (vocab.json + merges.txt): {str(e).splitlines()[0]}") from None


def hf_cached_snapshot(repo_id: str) -> Path | None:
    """The snapshot folder of a hub repository in the user's local cache (never a download), if its
    ``text_encoder/`` is there."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "text_encoder/config.json")
    except Exception:
        return None
    return Path(hit).parent.parent if isinstance(hit, str) else None
