"""One run at a time per output folder: ``<out>/.groundkit.lock``.

Two processes appending rows to the same ``rows.jsonl`` would interleave them and each rewrite the other's
tables. A run that writes into a folder (``benchmark``, ``ablate``) first creates the lock file with
``O_CREAT | O_EXCL`` (atomic: exactly one process wins) holding its pid, host, process start time and
command, and removes it when it ends (also on an error or Ctrl-C). A second run on the same folder stops
with a message naming the folder and the other run's pid and host.

A lock left by a run that was killed (kill -9, a crash of the machine) is *stale* when its host is this
host and its pid is gone (or a zombie, or a new process that reuses the pid, told apart by its start
time): it is taken over with a note. A lock from another host is never taken over (its pid cannot be
checked from here); the message says which file to delete once that run is known to be gone.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import socket
import time
from pathlib import Path

from groundkit.core.outdir import check_target

__all__ = ["LOCK_FILE", "FolderBusyError", "FolderLock"]

LOCK_FILE = ".groundkit.lock"
_UNREADABLE_GRACE_S = 30.0  # a lock file still empty after this long was left by a process killed while writing it


class FolderBusyError(ValueError):
    """Another groundkit run is writing into the folder."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2:].split()[0] in ("Z", "X"):  # killed, not yet reaped
            return False
    except (OSError, ValueError, IndexError):
        pass
    now = _start_time(pid)
    return not (start and now and start != now)


class FolderLock:
    """``with FolderLock(out, "benchmark"):`` ... or ``acquire()`` / ``release()``."""

    def __init__(self, folder: str | os.PathLike, command: str = "groundkit"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.command = command
        self.held = False
        self.note: str | None = None  # set when a stale lock was taken over

    def _describe(self, info: dict) -> str:
        return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
                + (f", `groundkit {info['command']}`" if info.get("command") else "")
                + (f", since {info['started']}" if info.get("started") else ""))

    def _create(self) -> bool:
        check_target(self.path)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileExistsError:
            return False
        info = {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid()),
                "command": self.command, "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        try:
            os.write(fd, (json.dumps(info) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _holder(self) -> dict | None:
        """The lock's content; None when it is unreadable (being written, or left empty by a kill)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return info if isinstance(info, dict) else None
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return None

    def _stale(self, info: dict | None) -> bool:
        if info is None:
            try:
                return time.time() - self.path.lstat().st_mtime > _UNREADABLE_GRACE_S
            except FileNotFoundError:
                return True
        if not info:
            return True  # removed meanwhile
        if info.get("host") != socket.gethostname():
            return False
        try:
            pid = int(info.get("pid"))
        except (TypeError, ValueError):
            return True
        return not _alive(pid, info.get("start"))

    def acquire(self) -> "FolderLock":
        for _ in range(5):
            if self._create():
                self.held = True
                return self
            info = self._holder()
            if not self._stale(info):
                other = self._describe(info) if info else "a run that is starting"
                raise FolderBusyError(
                    f"{self.folder} is in use by another groundkit run ({other}): two runs writing into one folder would "
                    f"mix their rows; wait for it to finish or choose another --out (if that run is gone, delete {self.path})")
            if info:
                self.note = f"took over the lock of a run that is gone ({self._describe(info)})"
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        raise FolderBusyError(f"{self.folder}: could not take its lock file {self.path} (other runs keep starting)")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        info = self._holder()
        if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
            try:
                self.path.unlink()
            except OSError:
                pass

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
