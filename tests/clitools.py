"""Running the real command line in a subprocess, and checking that a refusal is one ``error:`` line.

Why shared: the hardening and validation suites assert the same contract (exit status 2, no traceback,
exactly one ``error:`` line), so it is written once.
"""
from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    """``python -m groundkit ARGS`` with one thread and without GROUNDKIT_DEBUG (which would show tracebacks)."""
    e = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    e.pop("GROUNDKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "groundkit", *args], capture_output=True, text=True, env=e, cwd=cwd,
                          timeout=600)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a refused command (exit status 2, no traceback)."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]
