"""Keeping every file groundkit reads for a checkpoint inside that checkpoint's folder.

A module of its own because it is about paths, not weights: a name a checkpoint's own files give (a shard
index entry, a config) and a component folder (``text_encoder/``, ``unet/``, ...) are refused when they
lead outside the folder, by ``..``, an absolute path or a symbolic link. Re-exported by
:mod:`groundkit.core.safeload`, where callers have always found these names.
"""
from __future__ import annotations

import os
from pathlib import Path

from groundkit.core.checkpoint_errors import CheckpointError

__all__ = ["confined", "escaping_link", "component_folder"]


def confined(root: str | os.PathLike, name: str, source: str) -> Path:
    """``root / name``, refused unless it resolves (symlinks followed) inside ``root``.

    Every file name that a checkpoint's own files name (shard indexes, configs) goes through here, so a
    crafted ``../../elsewhere.safetensors`` or an absolute path can never make groundkit read outside the
    checkpoint folder. ``source`` names the file and entry the name came from, for the error."""
    base = Path(root).resolve()
    if not isinstance(name, str) or not name or "\x00" in name:
        raise CheckpointError(f"{source}: expected a file name inside {base}, got {name!r}")
    target = (base / name).resolve()
    if Path(name).is_absolute() or not target.is_relative_to(base):
        raise CheckpointError(f"{source}: {name!r} points outside the checkpoint folder {base}; refused "
                              "(every file a checkpoint names must lie inside its folder)")
    return target


def _hf_blob(root: Path, target: Path) -> bool:
    """A Hugging Face cache snapshot links its files to the same repository's ``blobs/``: not an escape."""
    return root.parent.name == "snapshots" and target.is_relative_to(root.parent.parent / "blobs")


def escaping_link(root: str | os.PathLike, path: str | os.PathLike) -> tuple[Path, Path] | None:
    """``(link, where it points)`` when ``path`` - lexically inside the checkpoint folder ``root`` - is, or lies
    under, a symbolic link that leads outside ``root`` (links into a Hugging Face cache snapshot's own ``blobs/``
    excepted); None otherwise, and for a path that is not lexically under ``root`` (a folder the user configured)."""
    root, path = Path(root), Path(path)
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    base = root.resolve()
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            target = current.resolve()
            if not target.is_relative_to(base) and not _hf_blob(base, target):
                return current, target
    return None


def _escaping_file(root: str | os.PathLike, folder: str | os.PathLike, limit: int = 10_000) -> tuple[Path, Path] | None:
    """A file or folder *inside* the component folder that is a link leaving ``root`` (a weight file linked to
    /etc/..., say): transformers and diffusers open such files themselves, so they are checked before the load.
    Bounded: the first ``limit`` entries, three levels deep. None for a folder not lexically under ``root``."""
    root, folder = Path(root), Path(folder)
    try:
        folder.relative_to(root)
    except ValueError:
        return None
    if not folder.is_dir():
        return None
    base, seen, todo = root.resolve(), 0, [(folder, 0)]
    while todo:
        current, depth = todo.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > limit:
                return None
            path = Path(entry.path)
            if entry.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(base) and not _hf_blob(base, target):
                    return path, target
            elif depth < 2 and entry.is_dir(follow_symlinks=False):
                todo.append((path, depth + 1))
    return None


def component_folder(root: str | os.PathLike, folder: str | os.PathLike, what: str) -> Path:
    """``folder``, a component folder of the checkpoint ``root`` (text_encoder/, tokenizer/, unet/, vae/, models/),
    refused when it is a symbolic link that leads outside ``root``: a downloaded checkpoint cannot make groundkit
    read files elsewhere on the machine through a linked folder. A folder the user configured outside ``root``
    (checkpoints.yaml) is not the checkpoint's own, and is left alone."""
    hit = escaping_link(root, folder) or _escaping_file(root, folder)
    if hit is not None:
        link, target = hit
        raise CheckpointError(f"{what}: {link} is a symbolic link to {target}, outside the checkpoint folder "
                              f"{Path(root).resolve()}; refused (a checkpoint's components must lie inside its folder: "
                              "copy them in, or configure the folder's path in checkpoints.yaml)")
    return Path(folder)
