"""Adapters by name (entry points, like timm's model registry) and checkpoints by name (checkpoints.yaml).

A third party ships an adapter class in its own package and declares it under the entry-point
group ``groundkit.adapters``; groundkit finds it without being edited. ``checkpoints.yaml`` is
data: which adapter serves a checkpoint, where its files are, which recipe it defaults to and
where a user gets the weights. The options a checkpoint may set are the ones its adapter declares
(``Adapter.options``); a checkpoint folder may carry its own ``groundkit.yaml`` with the same keys.
"""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from groundkit.core.io import read_yaml
from groundkit.core.registry import Registry
from groundkit.core.safeload import confined
from groundkit.recipes import RECIPES, Recipe, register_checkpoint_recipe

__all__ = ["ADAPTERS", "CheckpointConfigError", "CheckpointEntry", "adapter_names", "confined", "detect_adapter",
           "entry_for_verify", "folder_config", "get_adapter_class", "groundkit_home", "home_of", "load_checkpoints",
           "register_adapter", "resolve"]

PACKAGE_DIR = Path(__file__).resolve().parent
BUILTIN_CHECKPOINTS = PACKAGE_DIR / "checkpoints.yaml"
FOLDER_CONFIG = "groundkit.yaml"
_BUILTIN_ADAPTERS = {
    "monai-ldm": "groundkit.families.monai_ldm:MonaiLDMAdapter",
    "diffusers-sd": "groundkit.families.diffusers_sd:DiffusersSDAdapter",
}
# keys a checkpoint entry may have besides its adapter's options
ENTRY_FIELDS = {"adapter", "path", "recipe", "source", "description", "files", "sha256", "overrides", "paper"}
FOLDER_FIELDS = {"adapter", "recipe", "overrides", "description"}


class CheckpointConfigError(ValueError):
    """checkpoints.yaml is malformed; the message names the file and key."""


def _import(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _discovered() -> dict[str, Any]:
    """Entry points first (an installed package may replace a built-in), then the built-ins."""
    found: dict[str, Any] = {name: (lambda t=target: _import(t)) for name, target in _BUILTIN_ADAPTERS.items()}
    for ep in metadata.entry_points(group="groundkit.adapters"):
        found[ep.name] = ep.load
    return found


ADAPTERS: Registry[type] = Registry("adapter", loader=_discovered)


def register_adapter(name: str, cls: type) -> type:
    """Register an adapter class at run time (the entry point is the way for installed packages)."""
    return ADAPTERS.register(name, cls)


def adapter_names() -> list[str]:
    return ADAPTERS.names()


def get_adapter_class(name: str) -> type:
    return ADAPTERS.get(name)


def adapter_options(name: str) -> dict[str, str]:
    return dict(getattr(get_adapter_class(name), "options", {}) or {})


def groundkit_home(config_home: str | None = None) -> Path:
    """Where weights live: $GROUNDKIT_HOME, else the file's ``home`` key, else ~/.cache/groundkit."""
    home = os.environ.get("GROUNDKIT_HOME") or config_home or "~/.cache/groundkit"
    return Path(home).expanduser()


def home_of(file: str | Path | None = None) -> Path:
    """The resolved home folder of a checkpoints.yaml (default: the shipped one)."""
    data = read_yaml(_checkpoints_file(file), "checkpoints file") or {}
    return groundkit_home(data.get("home") if isinstance(data, dict) else None)


@dataclass
class CheckpointEntry:
    name: str
    adapter: str
    path: Path
    recipe: str  # the base recipe; with overrides the default recipe is "<name>-default"
    source: str = ""
    description: str = ""
    files: list[str] = field(default_factory=list)
    sha256: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    paper: str = ""

    def adapter_entry(self) -> dict[str, Any]:
        return {"path": str(self.path), "source": self.source, **self.options}

    def missing_files(self) -> list[str]:
        return [f for f in self.files if not (self.path / f).exists()]

    @property
    def present(self) -> bool:
        return self.path.exists() and not self.missing_files()

    @property
    def default_recipe(self) -> str:
        """The recipe this checkpoint runs when none is named: its base recipe, or - when the checkpoint
        sets overrides - ``<name>-default`` (the base recipe with them), so that a published recipe name
        always means the published settings."""
        if not self.overrides:
            return self.recipe
        return register_checkpoint_recipe(f"{self.name}-default", self.recipe, self.overrides).name


def _checkpoints_file(file: str | Path | None) -> Path:
    return Path(file or os.environ.get("GROUNDKIT_CHECKPOINTS") or BUILTIN_CHECKPOINTS)


def _resolve_path(raw: str, home: Path) -> Path:
    if raw.startswith("package:"):
        return PACKAGE_DIR / raw[len("package:"):]
    p = Path(raw).expanduser()
    return p if p.is_absolute() else home / p


def _check_overrides(where: str, recipe: str, overrides: Any) -> dict[str, Any]:
    if not isinstance(overrides, dict):
        raise CheckpointConfigError(f"{where}.overrides: expected a mapping of recipe fields, got {overrides!r}")
    if overrides:
        try:
            RECIPES.get(recipe).override(**overrides)
        except (ValueError, TypeError) as e:
            raise CheckpointConfigError(f"{where}.overrides: {e}") from None
    return dict(overrides)


def _entry(file: Path, name: str, raw: Any, home: Path, adapters: list[str]) -> CheckpointEntry:
    where = f"{file}: checkpoints.{name}"
    if not isinstance(raw, dict):
        raise CheckpointConfigError(f"{where}: expected a mapping")
    for key in ("adapter", "path", "recipe"):
        if key not in raw:
            raise CheckpointConfigError(f"{where}: missing required key '{key}'")
    if raw["adapter"] not in adapters:
        raise CheckpointConfigError(f"{where}.adapter: unknown adapter {raw['adapter']!r} (installed: {', '.join(adapters)})")
    if raw["recipe"] not in RECIPES:
        raise CheckpointConfigError(f"{where}.recipe: unknown recipe {raw['recipe']!r} (known: {', '.join(RECIPES.names())})")
    options = adapter_options(raw["adapter"])
    unknown = set(raw) - ENTRY_FIELDS - set(options)
    if unknown:
        raise CheckpointConfigError(f"{where}: unknown keys {sorted(unknown)} (allowed: {', '.join(sorted(ENTRY_FIELDS | set(options)))})")
    if not isinstance(raw["path"], str) or not raw["path"].strip():
        raise CheckpointConfigError(f"{where}.path: expected a folder path, got {raw['path']!r}")
    files = raw.get("files") or []
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise CheckpointConfigError(f"{where}.files: expected a list of file paths relative to the folder, got {files!r}")
    for f in files:
        if Path(f).is_absolute() or ".." in Path(f).parts:
            raise CheckpointConfigError(f"{where}.files: {f!r} is not a path inside the checkpoint folder")
    sha = raw.get("sha256") or {}
    if not isinstance(sha, dict) or not all(isinstance(k, str) and isinstance(v, str) and re.fullmatch(r"[0-9a-fA-F]{64}", v)
                                            for k, v in sha.items()):
        raise CheckpointConfigError(f"{where}.sha256: expected a mapping {{relative file: 64 hex digits}}, got {sha!r}")
    path = _resolve_path(str(raw["path"]), home)
    source = str(raw.get("source", "")).strip().replace("$GROUNDKIT_HOME", str(home)).replace("${GROUNDKIT_HOME}", str(home))
    return CheckpointEntry(
        name=name, adapter=raw["adapter"], path=path, recipe=raw["recipe"], source=source,
        description=str(raw.get("description", "")).strip(), files=list(files), sha256=dict(sha),
        overrides=_check_overrides(where, raw["recipe"], raw.get("overrides") or {}),
        options={k: v for k, v in raw.items() if k in options}, paper=str(raw.get("paper", "")).strip())


def load_checkpoints(file: str | Path | None = None) -> dict[str, CheckpointEntry]:
    """Read and validate a checkpoints.yaml (default: the one shipped with groundkit, or
    $GROUNDKIT_CHECKPOINTS); every error names the file and the offending key."""
    file = _checkpoints_file(file)
    try:
        data = read_yaml(file, "checkpoints file")
    except ValueError as e:
        raise CheckpointConfigError(str(e)) from None
    if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), dict):
        raise CheckpointConfigError(f"{file}: expected a mapping with a 'checkpoints' key")
    home = groundkit_home(data.get("home"))
    adapters = adapter_names()
    return {name: _entry(file, name, raw, home, adapters) for name, raw in data["checkpoints"].items()}


def folder_config(path: Path, adapter: str | None = None) -> dict[str, Any]:
    """Optional ``groundkit.yaml`` inside a checkpoint folder: recipe, overrides and adapter options that
    travel with the weights (e.g. a pixel-space model's input size). A file path it names must lie inside
    the folder."""
    file = Path(path) / FOLDER_CONFIG
    if not file.is_file():
        return {}
    try:
        data = read_yaml(file) or {}
    except ValueError as e:
        raise CheckpointConfigError(str(e)) from None
    if not isinstance(data, dict):
        raise CheckpointConfigError(f"{file}: expected a mapping")
    adapter = data.get("adapter") or adapter or detect_adapter(path)
    options = adapter_options(adapter) if adapter in adapter_names() else {}
    unknown = set(data) - FOLDER_FIELDS - set(options)
    if unknown:
        raise CheckpointConfigError(f"{file}: unknown keys {sorted(unknown)} (allowed: {', '.join(sorted(FOLDER_FIELDS | set(options)))})")
    if "recipe" in data and data["recipe"] not in RECIPES:
        raise CheckpointConfigError(f"{file}: recipe: unknown recipe {data['recipe']!r} (known: {', '.join(RECIPES.names())})")
    for key in ("text_encoder", "tokenizer", "unet_subfolder"):
        if key in data:  # a folder's own config never points outside the folder
            data[key] = str(confined(path, str(data[key]), f"{file}: {key}"))
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


def with_folder_config(entry: CheckpointEntry) -> CheckpointEntry:
    cfg = folder_config(entry.path, entry.adapter)
    options = adapter_options(entry.adapter)
    entry.options = {**{k: v for k, v in cfg.items() if k in options}, **entry.options}
    entry.overrides = {**dict(cfg.get("overrides") or {}), **entry.overrides}
    return entry


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
        return with_folder_config(entry)
    p = Path(checkpoint)
    if not p.exists():
        raise ValueError(f"{checkpoint!r} is neither a checkpoint name ({', '.join(entries)}) nor an existing folder")
    return _folder_entry(p)


def _folder_entry(p: Path) -> CheckpointEntry:
    cfg = folder_config(p)
    adapter = cfg.get("adapter") or detect_adapter(p)
    options = adapter_options(adapter)
    recipe = cfg.get("recipe") or getattr(get_adapter_class(adapter), "default_recipe", "nuetzel2025")
    return CheckpointEntry(name=p.name, adapter=adapter, path=p.resolve(), recipe=recipe,
                           description=str(cfg.get("description", "")), overrides=dict(cfg.get("overrides") or {}),
                           options={k: v for k, v in cfg.items() if k in options})


def entry_for_verify(name_or_path: str | os.PathLike, checkpoints_file: str | Path | None = None) -> CheckpointEntry:
    """The entry ``checkpoints verify`` checks: a name (its folder may be missing) or an existing folder."""
    entries = load_checkpoints(checkpoints_file)
    if isinstance(name_or_path, str) and name_or_path in entries:
        entry = entries[name_or_path]
        return with_folder_config(entry) if entry.path.is_dir() else entry
    p = Path(name_or_path).expanduser()
    if not p.exists():
        raise ValueError(f"{str(name_or_path)!r} is neither a checkpoint name ({', '.join(entries)}) nor an existing folder")
    return _folder_entry(p)


def register_checkpoint_recipes(checkpoints_file: str | Path | None = None) -> list[str]:
    """Register the own default recipe (``<name>-default``) of every checkpoint that has one and is here, so
    that listings and lookups by name find it before the checkpoint is first loaded. Returns their names."""
    names = []
    for entry in load_checkpoints(checkpoints_file).values():
        if entry.path.is_dir():
            try:
                entry = with_folder_config(entry)
            except (OSError, ValueError):  # a broken folder config is reported when that checkpoint is used
                continue
        if entry.overrides:
            names.append(entry.default_recipe)
    return names


def recipe_of(entry: CheckpointEntry) -> Recipe:
    return RECIPES.get(entry.default_recipe)
