"""The lock of a benchmark or ablation output folder, taken once per run (also under torchrun)."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from groundkit.bench.distributed import dist_info, gather_counts
from groundkit.core.lock import FolderLock
from groundkit.core.outdir import ensure_dir

__all__ = ["folder_lock"]


@contextmanager
def folder_lock(out_dir: str | Path, command: str):
    """Rank 0 holds ``<out>/.groundkit.lock`` for the whole run (groundkit.core.lock): a second run on the
    same folder stops with a clear message instead of interleaving rows. Under torchrun every rank learns
    whether rank 0 got it, so that no rank waits forever at a barrier."""
    rank, world = dist_info()
    lock, failure = None, None
    if rank == 0:
        try:
            lock = FolderLock(ensure_dir(out_dir), command).acquire()
        except Exception as e:  # noqa: BLE001 - re-raised below, after the other ranks know
            failure = e
    if world > 1 and gather_counts(int(failure is not None))[0]:
        if failure is None:
            raise ValueError(f"{out_dir}: rank 0 could not start the run (see its error)")
    if failure is not None:
        raise failure
    if lock is not None and lock.note:
        print(f"warning: {out_dir}: {lock.note}", file=sys.stderr, flush=True)
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
