"""Adapters by name (entry points, like timm's model registry) and checkpoints by name (checkpoints.yaml).

A third party ships an adapter class in its own package and declares it under the entry-point
group ``groundkit.adapters``; groundkit finds it without being edited. ``checkpoints.yaml`` is
data: which adapter serves a checkpoint, where its files are, which recipe it defaults to and
where a user gets the weights. The options a checkpoint may set are the ones its adapter declares
(``Adapter.options``); a checkpoint folder may carry its own ``groundkit.yaml`` with the same keys.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from groundkit.core.bounds import option_problem
from groundkit.core.registry import PluginError, PluginWarning, Registry, package_of, reason
from groundkit.core.safeload import confined, escaping_link
from groundkit.core.yamlfile import read_yaml, short
from groundkit.recipes import RECIPES, check_overrides, register_checkpoint_recipe

__all__ = ["ADAPTERS", "CheckpointConfigError", "CheckpointEntry", "PluginError", "PluginWarning", "adapter_names",
           "confined", "detect_adapter", "entry_for_verify", "folder_config", "get_adapter", "get_adapter_class", "groundkit_home",
           "home_of", "list_adapters", "list_recipes", "load_checkpoints", "plugin_status", "register_adapter", "resolve"]

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


def plugin_status() -> list[dict[str, str]]:
    """Every installed third-party ``groundkit.adapters`` plugin: name, package, target and ``error`` ('' when it
    imports and its ``detect()`` answers on an empty folder). Used by ``groundkit checkpoints list``."""
    try:
        eps = list(metadata.entry_points(group="groundkit.adapters"))
    except Exception as exc:  # noqa: BLE001
        return [{"name": "<entry points>", "package": "?", "target": "", "error": reason(exc)}]
    out = []
    with tempfile.TemporaryDirectory(prefix="groundkit-probe-") as empty:
        for ep in eps:
            ADAPTERS.packages.setdefault(ep.name, package_of(ep))
            if package_of(ep) == "groundkit":  # the built-in families' own entry points
                continue
            row = {"name": ep.name, "package": package_of(ep), "target": ep.value, "error": ""}
            try:
                cls = ep.load()
            except (Exception, SystemExit) as exc:  # noqa: BLE001
                row["error"] = f"fails to import ({reason(exc)})"
            else:
                try:
                    cls.detect(Path(empty))
                except Exception as exc:  # noqa: BLE001
                    row["error"] = f"detect() raises ({reason(exc)})"
            if not row["error"] and ep.name in ADAPTERS.broken:
                row["error"] = ADAPTERS.broken[ep.name].split(f"(package {row['package']}) ", 1)[-1]
            out.append(row)
    return out


# built-ins, then entry points (an installed package may replace a built-in; a broken one does not)
ADAPTERS: Registry[type] = Registry("adapter", builtins=_BUILTIN_ADAPTERS, group="groundkit.adapters")


def register_adapter(name: str, cls: type) -> type:
    """Register an adapter class at run time (the entry point is the way for installed packages)."""
    return ADAPTERS.register(name, cls)


def list_adapters() -> list[str]:
    return ADAPTERS.names()


def get_adapter(name: str) -> type:
    """The adapter class registered under ``name`` (imported on first use)."""
    return ADAPTERS.get(name)


adapter_names = list_adapters  # the older names, kept working
get_adapter_class = get_adapter


def adapter_options(name: str) -> dict[str, str]:
    return dict(getattr(get_adapter_class(name), "options", {}) or {})


def groundkit_home(config_home: str | None = None) -> Path:
    """Where weights live: $GROUNDKIT_HOME, else the file's ``home`` key, else ~/.cache/groundkit."""
    home = os.environ.get("GROUNDKIT_HOME") or config_home or "~/.cache/groundkit"
    return Path(home).expanduser()


def home_of(file: str | Path | None = None) -> Path:
    """The resolved home folder of a checkpoints.yaml (default: the shipped one)."""
    file = _checkpoints_file(file)
    try:
        data = read_yaml(file, "checkpoints file") or {}
    except ValueError as e:
        raise CheckpointConfigError(str(e)) from None
    return groundkit_home(_home_value(file, data) if isinstance(data, dict) else None)


def _home_value(file: Path, data: dict) -> str | None:
    home = data.get("home")
    if home is not None and (not isinstance(home, str) or not home.strip() or "\x00" in home):
        raise CheckpointConfigError(f"{file}: home: expected a folder path (text), got {short(home)}")
    return home


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


def _check_overrides(label: str, recipe: str | None, overrides: Any) -> dict[str, Any]:
    """Recipe overrides from a config file: a mapping of known fields, each of its field's type and range (and,
    with the base recipe known, valid together with it); the message names the file and the field."""
    if not isinstance(overrides, dict):
        raise CheckpointConfigError(f"{label}: expected a mapping of recipe fields (field: value), got {short(overrides)}")
    if overrides:
        try:
            check_overrides(overrides)
            if recipe is not None:
                RECIPES.get(recipe).override(**overrides)
        except (ValueError, TypeError) as e:
            raise CheckpointConfigError(f"{label}: {e}") from None
    return dict(overrides)


def _check_options(where: str, options: dict[str, Any], sep: str = ".") -> None:
    """Shared checkpoint options (image_size, max_length, ...): type and range, with the file and key named."""
    for key, value in options.items():
        problem = option_problem(key, value)
        if problem:
            raise CheckpointConfigError(f"{where}{sep}{key}: {problem}")


def _entry(file: Path, name: str, raw: Any, home: Path, adapters: list[str]) -> CheckpointEntry:
    where = f"{file}: checkpoints.{short(name, 60) if not isinstance(name, str) else name[:80]}"
    if not isinstance(name, str):
        raise CheckpointConfigError(f"{where}: a checkpoint name must be text")
    if not isinstance(raw, dict):
        raise CheckpointConfigError(f"{where}: expected a mapping")
    for key in ("adapter", "path", "recipe"):
        if key not in raw:
            raise CheckpointConfigError(f"{where}: missing required key '{key}'")
    if not isinstance(raw["adapter"], str) or raw["adapter"] not in adapters:
        raise CheckpointConfigError(f"{where}.adapter: unknown adapter {short(raw['adapter'])} (installed: {', '.join(adapters)})")
    if not isinstance(raw["recipe"], str) or raw["recipe"] not in RECIPES:
        raise CheckpointConfigError(f"{where}.recipe: unknown recipe {short(raw['recipe'])} (known: {', '.join(RECIPES.names())})")
    try:
        options = adapter_options(raw["adapter"])
    except PluginError:  # a broken plugin: this entry fails when used (with the plugin's error), the others load
        options = {k: "" for k in set(raw) - ENTRY_FIELDS}
    unknown = set(raw) - ENTRY_FIELDS - set(options)
    if unknown:
        raise CheckpointConfigError(f"{where}: unknown keys {short(sorted(unknown, key=str))} (allowed: {', '.join(sorted(ENTRY_FIELDS | set(options)))})")
    if not isinstance(raw["path"], str) or not raw["path"].strip() or "\x00" in raw["path"]:
        raise CheckpointConfigError(f"{where}.path: expected a folder path, got {short(raw['path'])}")
    files = raw.get("files") or []
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise CheckpointConfigError(f"{where}.files: expected a list of file paths relative to the folder, got {short(files)}")
    for f in files:
        if Path(f).is_absolute() or ".." in Path(f).parts:
            raise CheckpointConfigError(f"{where}.files: {short(f)} is not a path inside the checkpoint folder")
    sha = raw.get("sha256") or {}
    if not isinstance(sha, dict) or not all(isinstance(k, str) and isinstance(v, str) and re.fullmatch(r"[0-9a-fA-F]{64}", v)
                                            for k, v in sha.items()):
        raise CheckpointConfigError(f"{where}.sha256: expected a mapping {{relative file: 64 hex digits}}, got {short(sha)}")
    for key in ("source", "description", "paper"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise CheckpointConfigError(f"{where}.{key}: expected text, got {short(raw[key])}")
    _check_options(where, {k: v for k, v in raw.items() if k in options})
    path = _resolve_path(str(raw["path"]), home)
    source = str(raw.get("source", "")).strip().replace("$GROUNDKIT_HOME", str(home)).replace("${GROUNDKIT_HOME}", str(home))
    return CheckpointEntry(
        name=name, adapter=raw["adapter"], path=path, recipe=raw["recipe"], source=source,
        description=str(raw.get("description", "")).strip(), files=list(files), sha256=dict(sha),
        overrides=_check_overrides(f"{where}.overrides", raw["recipe"], raw.get("overrides") or {}),
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
    home = groundkit_home(_home_value(file, data))
    adapters = adapter_names()
    return {name: _entry(file, name, raw, home, adapters) for name, raw in data["checkpoints"].items()}


def folder_config(path: Path, adapter: str | None = None) -> dict[str, Any]:
    """Optional ``groundkit.yaml`` inside a checkpoint folder: recipe, overrides and adapter options that
    travel with the weights (e.g. a pixel-space model's input size). A file path it names must lie inside
    the folder."""
    file = Path(path) / FOLDER_CONFIG
    if not file.is_file():
        return {}
    if escaping_link(path, file) is not None:
        raise CheckpointConfigError(f"{file}: a symbolic link to {file.resolve()}, outside the checkpoint folder; refused")
    try:
        data = read_yaml(file) or {}
    except ValueError as e:
        raise CheckpointConfigError(str(e)) from None
    if not isinstance(data, dict):
        raise CheckpointConfigError(f"{file}: expected a mapping, got {short(data)}")
    if not all(isinstance(k, str) for k in data):
        raise CheckpointConfigError(f"{file}: keys must be text, got {short([k for k in data if not isinstance(k, str)])}")
    if data.get("adapter") is not None and (not isinstance(data["adapter"], str) or data["adapter"] not in adapter_names()):
        raise CheckpointConfigError(f"{file}: adapter: unknown adapter {short(data['adapter'])} (installed: {', '.join(adapter_names())})")
    adapter = data.get("adapter") or adapter or detect_adapter(path)
    try:
        options = adapter_options(adapter) if adapter in adapter_names() else {}
    except PluginError as e:
        raise CheckpointConfigError(f"{file}: {e}") from None
    unknown = set(data) - FOLDER_FIELDS - set(options)
    if unknown:
        raise CheckpointConfigError(f"{file}: unknown keys {short(sorted(unknown))} (allowed: {', '.join(sorted(FOLDER_FIELDS | set(options)))})")
    if "recipe" in data and (not isinstance(data["recipe"], str) or data["recipe"] not in RECIPES):
        raise CheckpointConfigError(f"{file}: recipe: unknown recipe {short(data['recipe'])} (known: {', '.join(RECIPES.names())})")
    if data.get("description") is not None and not isinstance(data["description"], str):
        raise CheckpointConfigError(f"{file}: description: expected text, got {short(data['description'])}")
    if "overrides" in data:
        data["overrides"] = _check_overrides(f"{file}: overrides", data.get("recipe") if isinstance(data.get("recipe"), str) else None,
                                             data["overrides"] if data["overrides"] is not None else {})
    _check_options(f"{file}:", {k: v for k, v in data.items() if k in options}, sep=" ")
    for key in ("text_encoder", "tokenizer", "unet_subfolder"):
        if key in data:  # a folder's own config never points outside the folder
            data[key] = str(confined(path, str(data[key]), f"{file}: {key}"))
    return data


def detect_adapter(path: str | Path) -> str:
    """Which adapter serves a folder, from its layout."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such checkpoint folder")
    hits = []
    for name in adapter_names():
        try:
            cls = get_adapter_class(name)
        except PluginError:  # warned once already; the other families still answer
            continue
        try:
            found = bool(cls.detect(p))
        except Exception as exc:  # noqa: BLE001 - a third party's detect() may raise anything
            if ADAPTERS.is_builtin(name):
                raise  # a built-in family's own bug is not a plugin to skip
            ADAPTERS.mark_broken(name, f"raises in detect() ({reason(exc)})")
            continue
        if found:
            hits.append(name)
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


def list_recipes(checkpoints: bool = False) -> list[str]:
    """Every registered recipe name: the published and fast ones, yours and the entry points'. Reads no file
    unless asked: ``checkpoints=True`` first registers each present checkpoint's own default (``<name>-default``,
    from checkpoints.yaml and the folders' groundkit.yaml)."""
    if checkpoints:
        register_checkpoint_recipes()
    return RECIPES.names()

