"""Benchmark progress a person can read, on a terminal and in a log.

On a terminal (or in a notebook) a tqdm bar per rank, at the rank's own position, with samples/s and the
ETA. Anywhere else (CI logs, SLURM output files, ``2> log``) a bar would be one endless line of carriage
returns, so instead each rank prints a plain line every ``interval`` seconds (default 30, or
GROUNDKIT_PROGRESS_SECONDS) and one at the end::

    [rank 0/2] 120/500 samples, 2.31 samples/s, ETA 2m44s, 1 failed
    [rank 0/2] 500/500 samples, 2.29 samples/s, done in 3m38s, 1 failed

(``stopped after`` instead of ``done in`` when the rank stopped early, e.g. on Ctrl-C.)

Lines are printed from ``update`` (no thread): a rank stuck inside one sample prints nothing until it
comes back.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, TextIO

__all__ = ["PROGRESS_SECONDS", "Progress", "format_duration"]

PROGRESS_SECONDS = 30.0


def format_duration(seconds: float) -> str:
    """12s, 2m44s, 1h02m."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _interval_from_env() -> float:
    try:
        value = float(os.environ.get("GROUNDKIT_PROGRESS_SECONDS", PROGRESS_SECONDS))
    except ValueError:
        return PROGRESS_SECONDS
    return value if value >= 0 else PROGRESS_SECONDS


def _interactive(stream: TextIO) -> bool:
    """A terminal, or a Jupyter kernel where tqdm.auto draws a widget."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):
        return False
    return stream is sys.stderr and "ipykernel" in sys.modules


class Progress:
    """Progress of one rank: ``begin()`` once the model is loaded, ``update(n, failed=k)`` after n samples (k of
    them failed), ``close()`` at the end. Samples/s and the ETA count from ``begin()``; "done in" from the start.

    enabled=False prints nothing at all; ``stream`` (default: sys.stderr at construction) decides between the
    tqdm bar (a terminal) and plain lines (anything else); ``clock`` is for tests."""

    def __init__(self, total: int, *, rank: int = 0, world: int = 1, enabled: bool = True, desc: str = "benchmark",
                 interval: float | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.done, self.failed = int(total), 0, 0
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.interval = _interval_from_env() if interval is None else float(interval)
        self.label = f"[rank {rank}/{world}]" if world > 1 else f"[{desc}]"
        self.start = self.last = self.t0 = clock()
        self.begun = False
        self.closed = False
        self.lines = enabled and not _interactive(self.stream)
        self.bar: Any = None
        if enabled and not self.lines:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=desc + (f" [rank {rank}/{world}]" if world > 1 else ""), unit="sample",
                            position=rank if world > 1 else None, dynamic_ncols=True, file=self.stream)

    def begin(self) -> None:
        """The work starts now (after loading the model): samples/s and the ETA count from here; the first call only."""
        if not self.begun:
            self.begun = True
            self.t0 = self.clock()
            if self.bar is not None:
                self.bar.reset(total=self.total)

    def update(self, n: int = 1, failed: int = 0) -> None:
        self.done += n
        self.failed += failed
        if self.bar is not None:
            self.bar.update(n)
            if failed:
                self.bar.set_postfix(failed=self.failed)
        elif self.lines:
            now = self.clock()
            if now - self.last >= self.interval:
                self.last = now
                self._print(self.line(now))

    def line(self, now: float | None = None, final: bool = False) -> str:
        """``[rank 0/2] 120/500 samples, 2.31 samples/s, ETA 2m44s, 1 failed``."""
        now = self.clock() if now is None else now
        working = now - self.t0
        rate = self.done / working if working > 0 else 0.0
        if final:
            when = f"{'done in' if self.done >= self.total else 'stopped after'} {format_duration(now - self.start)}"
        elif rate > 0:
            when = f"ETA {format_duration((self.total - self.done) / rate)}"
        else:
            when = "ETA ?"
        return f"{self.label} {self.done}/{self.total} samples, {rate:.2f} samples/s, {when}, {self.failed} failed"

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.lines:
            self._print(self.line(final=True))

    def _print(self, text: str) -> None:
        try:
            print(text, file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed or broken log must not fail the run
            pass

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
