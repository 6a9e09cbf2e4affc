"""Adapters by name (entry points, like timm's model registry) and checkpoints by name (checkpoints.yaml).

A third party ships an adapter class in its own package and declares it under the entry-point
group ``groundkit.adapters``; groundkit finds it without being edited. ``checkpoints.yaml`` is
data: which adapter serves a checkpoint, where its files are, which recipe it defaults to and
where a user gets the weights.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from .recipes import RECIPES

PACKAGE_DIR = Path(__file__).resolve().parent
BUILTIN_CHECKPOINTS = PACKAGE_DIR / "checkpoints.yaml"
_BUILTIN_ADAPTERS = {
    "monai-ldm": "groundkit.adapters.monai_ldm:MonaiLDMAdapter",
    "diffusers-sd": "groundkit.adapters.diffusers_sd:DiffusersSDAdapter",
}
_extra_adapters: dict[str, type] = {}

# keys a checkpoint entry may have; everything not consumed here is passed to the adapter
ENTRY_FIELDS = {"adapter", "path", "recipe", "source", "description", "files", "sha256", "overrides", "paper"}
ADAPTER_OPTIONS = {"image_size", "scale_factor", "text_encoder", "tokenizer", "unet_subfolder", "vae", "max_length", "null_attention_mask"}


class CheckpointConfigError(ValueError):
    """checkpoints.yaml is malformed; the message names the file and key."""


def register_adapter(name: str, cls: type) -> None:
    """Register an adapter class at run time (the entry point is the way for installed packages)."""
    _extra_adapters[name] = cls


def adapter_names() -> list[str]:
    names = set(_BUILTIN_ADAPTERS) | set(_extra_adapters)
    names |= {ep.name for ep in metadata.entry_points(group="groundkit.adapters")}
    return sorted(names)


def get_adapter_class(name: str) -> type:
    if name in _extra_adapters:
        return _extra_adapters[name]
    for ep in metadata.entry_points(group="groundkit.adapters"):
        if ep.name == name:
            return ep.load()
    if name in _BUILTIN_ADAPTERS:
        module, _, attr = _BUILTIN_ADAPTERS[name].partition(":")
        import importlib

        return getattr(importlib.import_module(module), attr)
    raise ValueError(f"unknown adapter {name!r}; installed adapters: {', '.join(adapter_names())}")


def groundkit_home(config_home: str | None = None) -> Path:
    """Where weights live: $GROUNDKIT_HOME, else the file's ``home`` key, else ~/.cache/groundkit."""
    home = os.environ.get("GROUNDKIT_HOME") or config_home or "~/.cache/groundkit"
    return Path(home).expanduser()


@dataclass
class CheckpointEntry:
    name: str
    adapter: str
    path: Path
    recipe: str
    source: str = ""
    description: str = ""
    files: list[str] = field(default_factory=list)
    sha256: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def adapter_entry(self) -> dict[str, Any]:
        return {"path": str(self.path), "source": self.source, **self.options}

    def missing_files(self) -> list[str]:
        return [f for f in self.files if not (self.path / f).exists()]

    @property
    def present(self) -> bool:
        return self.path.exists() and not self.missing_files()


def _resolve_path(raw: str, home: Path) -> Path:
    if raw.startswith("package:"):
        return PACKAGE_DIR / raw[len("package:"):]
    p = Path(raw).expanduser()
    return p if p.is_absolute() else home / p


def load_checkpoints(file: str | Path | None = None) -> dict[str, CheckpointEntry]:
    """Read and validate a checkpoints.yaml (default: the one shipped with groundkit, or
    $GROUNDKIT_CHECKPOINTS); every error names the file and the offending key."""
    file = Path(file or os.environ.get("GROUNDKIT_CHECKPOINTS") or BUILTIN_CHECKPOINTS)
    try:
        data = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{file}: checkpoints file not found") from None
    except yaml.YAMLError as e:
        raise CheckpointConfigError(f"{file}: not valid YAML ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), dict):
        raise CheckpointConfigError(f"{file}: expected a mapping with a 'checkpoints' key")
    home = groundkit_home(data.get("home"))
    adapters = adapter_names()
    out = {}
    for name, raw in data["checkpoints"].items():
        where = f"{file}: checkpoints.{name}"
        if not isinstance(raw, dict):
            raise CheckpointConfigError(f"{where}: expected a mapping")
        for key in ("adapter", "path", "recipe"):
            if key not in raw:
                raise CheckpointConfigError(f"{where}: missing required key '{key}'")
        if raw["adapter"] not in adapters:
            raise CheckpointConfigError(f"{where}.adapter: unknown adapter {raw['adapter']!r} (installed: {', '.join(adapters)})")
        if raw["recipe"] not in RECIPES:
            raise CheckpointConfigError(f"{where}.recipe: unknown recipe {raw['recipe']!r} (known: {', '.join(RECIPES)})")
        unknown = set(raw) - ENTRY_FIELDS - ADAPTER_OPTIONS
        if unknown:
            raise CheckpointConfigError(f"{where}: unknown keys {sorted(unknown)} (allowed: {', '.join(sorted(ENTRY_FIELDS | ADAPTER_OPTIONS))})")
        if not isinstance(raw["path"], str) or not raw["path"].strip():
            raise CheckpointConfigError(f"{where}.path: expected a folder path, got {raw['path']!r}")
        files = raw.get("files") or []
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise CheckpointConfigError(f"{where}.files: expected a list of file paths relative to the folder, got {files!r}")
        sha = raw.get("sha256") or {}
        if not isinstance(sha, dict) or not all(isinstance(k, str) and isinstance(v, str) and re.fullmatch(r"[0-9a-fA-F]{64}", v)
                                                for k, v in sha.items()):
            raise CheckpointConfigError(f"{where}.sha256: expected a mapping {{relative file: 64 hex digits}}, got {sha!r}")
        overrides = raw.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise CheckpointConfigError(f"{where}.overrides: expected a mapping of recipe fields, got {overrides!r}")
        if overrides:
            try:
                RECIPES[raw["recipe"]].override(**overrides)
            except (ValueError, TypeError) as e:
                raise CheckpointConfigError(f"{where}.overrides: {e}") from None
        out[name] = CheckpointEntry(
            name=name, adapter=raw["adapter"], path=_resolve_path(str(raw["path"]), home), recipe=raw["recipe"],
            source=str(raw.get("source", "")).strip(), description=str(raw.get("description", "")).strip(),
            files=list(raw.get("files") or []), sha256=dict(raw.get("sha256") or {}), overrides=dict(overrides),
            options={k: v for k, v in raw.items() if k in ADAPTER_OPTIONS},
        )
    return out


FOLDER_CONFIG = "groundkit.yaml"


def folder_config(path: Path) -> dict[str, Any]:
    """Optional ``groundkit.yaml`` inside a checkpoint folder: recipe, overrides and adapter options
    that travel with the weights (e.g. a pixel-space model's input size)."""
    file = Path(path) / FOLDER_CONFIG
    if not file.is_file():
        return {}
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as e:
        raise CheckpointConfigError(f"{file}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointConfigError(f"{file}: expected a mapping")
    unknown = set(data) - {"adapter", "recipe", "overrides", "description"} - ADAPTER_OPTIONS
    if unknown:
        raise CheckpointConfigError(f"{file}: unknown keys {sorted(unknown)}")
    if "recipe" in data and data["recipe"] not in RECIPES:
        raise CheckpointConfigError(f"{file}: recipe: unknown recipe {data['recipe']!r} (known: {', '.join(RECIPES)})")
    return data


def detect_adapter(path: str | Path) -> str:
    """Which adapter serves a folder, from its layout."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such checkpoint folder")
    hits = [name for name in adapter_names() if get_adapter_class(name).detect(p)]
    if not hits:
        raise ValueError(
            f"{p}: not a known checkpoint layout (MONAI bundle: configs/inference.json + models/; "
            "diffusers: model_index.json or unet*/ + scheduler/)"
        )
    return hits[0]


def resolve(checkpoint: str | Path, checkpoints_file: str | Path | None = None) -> CheckpointEntry:
    """A name from checkpoints.yaml, or a folder laid out as published."""
    entries = load_checkpoints(checkpoints_file)
    if isinstance(checkpoint, str) and checkpoint in entries:
        entry = entries[checkpoint]
        if not entry.path.exists():
            raise FileNotFoundError(f"checkpoint {entry.name!r}: folder {entry.path} not found. {entry.source}".strip())
        missing = entry.missing_files()
        if missing:
            raise FileNotFoundError(f"checkpoint {entry.name!r}: missing file {entry.path / missing[0]}. {entry.source}".strip())
        cfg = folder_config(entry.path)
        entry.options = {**{k: v for k, v in cfg.items() if k in ADAPTER_OPTIONS}, **entry.options}
        entry.overrides = {**dict(cfg.get("overrides") or {}), **entry.overrides}
        return entry
    p = Path(checkpoint)
    if not p.exists():
        raise ValueError(f"{checkpoint!r} is neither a checkpoint name ({', '.join(entries)}) nor an existing folder")
    cfg = folder_config(p)
    adapter = cfg.get("adapter") or detect_adapter(p)
    recipe = cfg.get("recipe") or ("vilouras2024" if adapter == "monai-ldm" else "nuetzel2025")
    return CheckpointEntry(name=p.name, adapter=adapter, path=p.resolve(), recipe=recipe,
                           description=str(cfg.get("description", "")), overrides=dict(cfg.get("overrides") or {}),
                           options={k: v for k, v in cfg.items() if k in ADAPTER_OPTIONS})
