"""Reading JSON and YAML files, and what writing shares: :class:`WriteError` and :func:`clean_json`.

Files are written by :mod:`groundkit.core.outdir` (temporary file in the folder, then replace; never through
a symbolic link). Every OSError is re-raised as :class:`WriteError` naming the file, so a user reads
"could not write runs/x/rows.jsonl: No space left on device" instead of a bare ``[Errno 28]``.
"""
from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


class WriteError(OSError):
    """A file could not be written; the message names it and what is safe."""


def explain_os_error(path: Path, exc: OSError, append: bool = False) -> WriteError:
    why = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        msg = (f"could not write {path}: no space left on device; what was written before is complete and kept "
               "(row files hold every finished row): free some space and run the same command again to resume")
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        msg = f"cannot write to {path}: {why} (choose an output folder you can write to)"
    else:
        msg = f"could not write {path}: {why}"
    err = WriteError(exc.errno, msg)
    err.filename = str(path)
    return err


def clean_json(value: Any) -> Any:
    """JSON-ready: numpy scalars/arrays to Python, non-finite floats to None, tuples to lists, paths to str."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return clean_json(asdict(value))
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


# writing files (atomic replace, no symbolic links, append-only row files): groundkit.core.outdir


# ---------------------------------------------------------------------------------------------------
# reading: one rule for every JSON and YAML file groundkit reads


def _read(path: str | os.PathLike, what: str, kind: str, parse, errors: tuple[type[BaseException], ...]) -> Any:
    path = Path(path)
    suffix = f" ({what})" if what else ""
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing{suffix}") from None
    except (*errors, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid {kind}{suffix} ({e})") from None


def read_json(path: str | os.PathLike, what: str = "") -> Any:
    """Parse a JSON file; a missing or malformed file is an error that names it (and ``what`` it should be)."""
    return _read(path, what, "JSON", json.loads, (json.JSONDecodeError,))


def read_yaml(path: str | os.PathLike, what: str = "") -> Any:
    """Parse a YAML file with the safe loader only (no tags, no objects); errors name the file."""
    import yaml

    return _read(path, what, "YAML", yaml.safe_load, (yaml.YAMLError,))
