"""Weight files inspected without loading them: sha256, safetensors headers, key shapes on the meta device,
completeness of an interrupted download. What ``checkpoints verify`` reads; nothing is unpickled beyond
tensors (``weights_only``) and a safetensors file's data is never read."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path

import torch

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

    Raises :class:`CheckpointError` naming the file when the header is unreadable or the file is shorter
    (or longer) than the header says - an interrupted download.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: only {size} bytes, not a safetensors file (truncated download?)")
        (n,) = struct.unpack("<Q", head)
        if n <= 0 or 8 + n > size:
            raise CheckpointError(
                f"{path}: safetensors header of {n} bytes does not fit in the file's {size} bytes "
                "(truncated or not a safetensors file); download it again"
            )
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: unreadable safetensors header ({exc}); download it again") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: unreadable safetensors header (not a JSON object)")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (_, b) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: malformed safetensors header entry {name!r}") from None
        end = max(end, int(b))
        out[name] = (str(dtype), shape)
    expected = 8 + n + end
    if expected != size:
        what = "truncated" if size < expected else "longer than its header says"
        raise CheckpointError(
            f"{path}: {what}: {size} bytes on disk, the header describes {expected} bytes; download it again"
        )
    return out


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
