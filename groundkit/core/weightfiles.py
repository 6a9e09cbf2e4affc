"""Weight files inspected without loading them: sha256, safetensors headers, key shapes on the meta device,
completeness of an interrupted download. What ``checkpoints verify`` reads; nothing is unpickled beyond
tensors (``weights_only``) and a safetensors file's data is never read."""
from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from groundkit.core.safeload import CheckpointError, load_state_dict, read_shard_index

_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def read_safetensors_header(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` from a safetensors header, without reading any tensor data.

    :mod:`safetensors` parses and validates the header (its 100 MB cap on the header length, a length that fits
    the file, tensors that tile the data exactly, a file size that matches); the file is memory-mapped, never
    read. Raises :class:`CheckpointError` naming the file when it is unreadable, not safetensors, or shorter
    (or longer) than its header says - an interrupted download.
    """
    path = Path(path)
    size = path.stat().st_size
    try:
        with safe_open(path, framework="pt") as fh:
            return {name: (sl.get_dtype(), tuple(sl.get_shape()))
                    for name in fh.offset_keys() for sl in (fh.get_slice(name),)}
    except SafetensorError as exc:
        raise CheckpointError(_header_problem(path, size, str(exc))) from None


def _header_problem(path: Path, size: int, reason: str) -> str:
    """The package's reason, said in terms of what the user should do."""
    if "header too small" in reason:
        return f"{path}: only {size} bytes, not a safetensors file (truncated download?)"
    if "not fully covered" in reason:
        return (f"{path}: truncated, or longer than its header says: {size} bytes on disk is not the size the "
                "safetensors header describes; download it again")
    return f"{path}: unreadable safetensors header ({reason}): corrupt or not a safetensors file; download it again"


def _meta(shape: Iterable[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device="meta")


def file_shapes(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The file's state dict as META tensors (name -> shape/dtype only).

    safetensors: from the header (no data read). ``.pth``/``.bin``: :func:`groundkit.core.safeload.load_state_dict`
    (``weights_only``, memory-mapped for zip files, so nothing is read into memory either). An index file
    (``*.index.json``, sharded checkpoints) is followed to its shards.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.name.endswith(".index.json"):
        out: dict[str, torch.Tensor] = {}
        for shard in read_shard_index(path):
            out.update(file_shapes(shard))
        return out
    if path.suffix == ".safetensors":
        return {
            k: _meta(shape, _SAFETENSORS_DTYPES.get(dt, torch.float32))
            for k, (dt, shape) in read_safetensors_header(path).items()
        }
    sd = load_state_dict(path)
    return {k: _meta(v.shape, v.dtype) for k, v in sd.items()}


LEGACY_NOTE = "not a zip archive: the legacy (pre-1.6) torch.save format, or corrupt; only the deep check reads it"


def weights_integrity(path: Path) -> str | None:
    """Cheap completeness check of one weights file (None = looks whole)."""
    try:
        if path.name.endswith(".index.json"):
            file_shapes(path)  # follows the shards; headers only for safetensors
        elif path.suffix == ".safetensors":
            read_safetensors_header(path)
        elif not zipfile.is_zipfile(path):
            with open(path, "rb") as fh:
                magic = fh.read(4)
            if magic == b"PK\x03\x04":
                raise CheckpointError(f"{path}: truncated zip archive (its central directory at the end is missing); "
                                      "download it again")
            return LEGACY_NOTE
    except CheckpointError as exc:
        return str(exc)
    return None
