"""The one writer for output folders: every file groundkit writes goes through here.

A whole file is written to a hidden temporary file in the same folder (created with ``O_EXCL`` and
``O_NOFOLLOW``), fsynced, then renamed over the destination with ``os.replace`` (atomic on POSIX): a
crash, a kill or a full disk never leaves a half-written file, and a rename replaces a link itself, never
the file it points to. Before that, the destination is checked:

* an existing symbolic link is refused ("refusing to write out/mask.png: it is a symbolic link (to ...)"),
  even one that points inside the folder: a link planted under the name of an output would otherwise be
  written *through* and clobber another file;
* a destination that resolves outside the output folder (``root``; default: the file's own folder) is
  refused: ``../x``, or a subfolder (``gallery/``, ``tables/``) that is a link leaving the folder.

Append-only row files are opened with ``O_NOFOLLOW`` and the same checks, and flushed and fsynced row by
row. Every OSError becomes a :class:`WriteError` naming the file. CSV cells are neutralised against
spreadsheet formula injection (see :func:`csv_safe`).
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from groundkit.core.io import WriteError, clean_json, explain_os_error

__all__ = ["AppendWriter", "UnsafeOutputError", "atomic_write_json", "atomic_write_lines", "atomic_write_text",
           "check_target", "check_targets", "csv_safe", "csv_text", "ensure_dir", "make_dirs", "open_append", "write_bytes", "write_csv",
           "write_figure", "write_json", "write_jsonl", "write_npy", "write_npz", "write_png", "write_text"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafeOutputError(WriteError):
    """A destination that groundkit refuses to write: a symbolic link, or a path leaving the output folder."""

    def __init__(self, path: str | os.PathLike, why: str):
        super().__init__(errno.EPERM, f"refusing to write {path}: {why}")
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.strerror)


# ---------------------------------------------------------------------------------------------------
# where a file may go


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def _link_text(path: Path) -> str:
    try:
        return f"to {os.readlink(path)}"
    except OSError:
        return "a link"


def check_target(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """The destination ``path`` if groundkit may write it: not an existing symbolic link, and its folder
    inside ``root`` once every link is resolved (``root`` defaults to the file's own folder). Raises
    :class:`UnsafeOutputError` naming the file and why."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise UnsafeOutputError(path, "not a file name")
    root = Path(root) if root is not None else path.parent
    root_real = os.path.realpath(root)
    parent_real = os.path.realpath(path.parent)
    if not _inside(parent_real, root_real):
        raise UnsafeOutputError(path, f"it resolves to {os.path.join(parent_real, path.name)}, outside the output folder "
                                      f"{root} (a folder on the way is a symbolic link, or the name leaves the folder)")
    if os.path.islink(path):
        raise UnsafeOutputError(path, f"it is a symbolic link ({_link_text(path)}); groundkit never writes through a "
                                      "link in an output folder: remove the link or choose another output folder")
    return path


def check_targets(folder: str | os.PathLike, names: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
    """Refuse up front, before any work: every file ``names`` in ``folder`` (see :func:`check_target`) and
    every existing entry matching a glob of ``patterns`` (e.g. ``finding_*``) that is a symbolic link."""
    folder = Path(folder)
    for name in names:
        check_target(folder / name, folder)
    for pattern in patterns:
        for p in sorted(folder.glob(pattern)) if folder.is_dir() else ():
            check_target(p, folder)


def make_dirs(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Create the subfolder ``path`` of the output folder ``root``; refuse one that resolves outside it
    (a planted link named ``gallery`` or ``tables``)."""
    path = Path(path)
    root_real = os.path.realpath(root)
    if not _inside(os.path.realpath(path), root_real):
        why = f"it is a symbolic link ({_link_text(path)})" if os.path.islink(path) else "it is outside the output folder"
        raise UnsafeOutputError(path, f"{why}, leaving the output folder {root}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise explain_os_error(path, exc) from None
    if not _inside(os.path.realpath(path), root_real):  # created through a link planted meanwhile
        raise UnsafeOutputError(path, f"it resolves outside the output folder {root}")
    return path


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create an output folder, or say clearly why it cannot be (the probe file goes through the writer)."""
    path = Path(path)
    probe = path / f".groundkit-write-test{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        write_bytes(probe, b"")
        probe.unlink()
    except UnsafeOutputError:
        raise
    except OSError as exc:  # the folder, not the probe, is what the user named
        raise explain_os_error(path, OSError(exc.errno, os.strerror(exc.errno)) if exc.errno else exc) from None
    return path


# ---------------------------------------------------------------------------------------------------
# whole files: temporary file in the folder, fsync, replace


def write_bytes(path: str | os.PathLike, data: bytes, root: str | os.PathLike | None = None) -> Path:
    """Write ``data`` to ``path`` atomically, after :func:`check_target`."""
    path = check_target(path, root)
    tmp = path.with_name(f".{path.name[:150]}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise explain_os_error(path, exc, append=False) from None
    return path


def write_text(path: str | os.PathLike, text: str, root: str | os.PathLike | None = None) -> Path:
    return write_bytes(path, text.encode("utf-8"), root)


def write_json(path: str | os.PathLike, data: Any, root: str | os.PathLike | None = None, indent: int | None = 2) -> Path:
    """JSON of :func:`clean_json` (NaN/inf as null, numpy as Python)."""
    return write_text(path, json.dumps(clean_json(data), indent=indent, allow_nan=False, default=str) + "\n", root)


def write_jsonl(path: str | os.PathLike, rows: Iterable[Mapping], root: str | os.PathLike | None = None) -> Path:
    return write_text(path, "".join(json.dumps(clean_json(r), allow_nan=False) + "\n" for r in rows), root)


# the older names (groundkit.core.io had them)
atomic_write_text, atomic_write_json, atomic_write_lines = write_text, write_json, write_jsonl


def write_png(path: str | os.PathLike, image: Any, root: str | os.PathLike | None = None, **save_kwargs: Any) -> Path:
    """A PIL image, or an array PIL accepts (``Image.fromarray``), encoded as PNG in memory, then written."""
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    img.save(buf, format="PNG", **save_kwargs)
    return write_bytes(path, buf.getvalue(), root)


def write_npy(path: str | os.PathLike, array: Any, root: str | os.PathLike | None = None) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return write_bytes(path, buf.getvalue(), root)


def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any], root: str | os.PathLike | None = None) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return write_bytes(path, buf.getvalue(), root)


def write_figure(path: str | os.PathLike, fig: Any, root: str | os.PathLike | None = None, **savefig_kwargs: Any) -> Path:
    """A matplotlib figure: ``savefig`` into memory (format from the file's suffix unless given), then written."""
    savefig_kwargs.setdefault("format", Path(path).suffix.lstrip(".") or "png")
    buf = io.BytesIO()
    fig.savefig(buf, **savefig_kwargs)
    return write_bytes(path, buf.getvalue(), root)


# ---------------------------------------------------------------------------------------------------
# CSV: spreadsheet formula injection

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # and their full-width forms
_PLAIN_NUMBER = re.compile(r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|inf|nan)\Z", re.IGNORECASE)


def csv_safe(value: Any) -> Any:
    """One CSV cell, safe to open in a spreadsheet.

    Only text is changed: a string that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
    (or the full-width ``＝＋－＠``) gets a leading ``'``, so that Excel, LibreOffice or Google Sheets show it
    as text instead of evaluating it as a formula. Numbers (int, float, numpy) are never changed, nor is a
    string that is entirely one plain decimal number (``-0.5``, ``+3``, ``-1e-05``, ``-inf``): a spreadsheet
    reads it as that number, and it cannot hold a formula. ``None`` becomes an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def csv_text(header: Sequence[Any], rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> str:
    """CSV text of a header and rows (lists, or dicts keyed by the header), every cell through :func:`csv_safe`.
    Lines end in CRLF (RFC 4180), so that a cell holding a lone carriage return is quoted too: with ``\\n``
    line ends Python's writer leaves it bare, and a spreadsheet would start a new row (and a formula) there."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([csv_safe(h) for h in header])
    for r in rows:
        cells = [r.get(k) for k in header] if isinstance(r, Mapping) else r
        w.writerow([csv_safe(v) for v in cells])
    return buf.getvalue()


def write_csv(path: str | os.PathLike, header: Sequence[Any], rows: Iterable[Sequence[Any] | Mapping[str, Any]],
              root: str | os.PathLike | None = None) -> Path:
    return write_text(path, csv_text(header, rows), root)


# ---------------------------------------------------------------------------------------------------
# append-only row files


def open_append(path: str | os.PathLike, root: str | os.PathLike | None = None):
    """A text file opened for appending (created if missing) that is not a link and stays in the folder."""
    path = check_target(path, root)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeOutputError(path, "it is a symbolic link (planted while groundkit was checking it)") from None
        raise explain_os_error(path, exc, append=True) from None
    return os.fdopen(fd, "a", encoding="utf-8")


class AppendWriter:
    """One JSON object per line, flushed and fsynced per row: a crash loses at most the row being written
    (a torn last line is repaired by the reader)."""

    def __init__(self, path: str | os.PathLike, root: str | os.PathLike | None = None):
        self.path = Path(path)
        self.fh = open_append(self.path, root)

    def write(self, row: dict) -> None:
        try:
            self.fh.write(json.dumps(clean_json(row), allow_nan=False) + "\n")
            self.fh.flush()
            os.fsync(self.fh.fileno())
        except OSError as exc:
            raise explain_os_error(self.path, exc, append=True) from None

    def close(self) -> None:
        try:
            self.fh.close()
        except OSError:
            pass
