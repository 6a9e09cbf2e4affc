"""Start-up time as a user meets it: whole processes, median of N runs, on one thread.

    python benchmarks/startup.py            # 5 runs each
    python benchmarks/startup.py --runs 9

Prints, per step, the median wall time and the heavy modules it imported (torch, diffusers, transformers):
`groundkit --help`, `python -c "import groundkit"`, `gk.load("demo")` measured inside a process after the
import, and `groundkit run` with no arguments (the bundled demo grounded end to end, in a temporary folder).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HEAVY = ("torch", "diffusers", "transformers", "monai", "spacy", "sklearn", "skimage", "matplotlib")
_PROBE = "import sys; print('HEAVY=' + ','.join(m for m in {heavy!r} if m in sys.modules))"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _timed(cmd: list[str], cwd: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    return dt, p.stdout


def _groundkit_cli() -> list[str]:
    exe = shutil.which("groundkit")
    return [exe] if exe else [sys.executable, "-m", "groundkit"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    probe = _PROBE.format(heavy=HEAVY)
    load_code = ("import time, groundkit as gk; t = time.perf_counter(); gk.load('demo', device='cpu'); "
                 "print('LOAD=%.4f' % (time.perf_counter() - t)); " + probe)
    help_probe = ("import sys; sys.argv = ['groundkit', '--help']\nimport groundkit.cli as c\ntry:\n c.main()\n"
                  "except SystemExit:\n pass\n" + probe)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        steps = [
            ("groundkit --help", _groundkit_cli() + ["--help"]),
            ('python -c "import groundkit"', [sys.executable, "-c", "import groundkit"]),
            ("groundkit run (no arguments)", _groundkit_cli() + ["run", "--out", os.path.join(tmp, "out")]),
        ]
        for name, cmd in steps:
            times = [_timed(cmd, tmp)[0] for _ in range(args.runs)]
            rows.append((name, statistics.median(times), min(times)))
        loads = []
        for _ in range(args.runs):
            _, out = _timed([sys.executable, "-c", load_code], tmp)
            loads.append(float(out.split("LOAD=")[1].split()[0]))
        rows.append(('gk.load("demo") after import', statistics.median(loads), min(loads)))
        heavy_import = _timed([sys.executable, "-c", "import groundkit; " + probe], tmp)[1].split("HEAVY=")[1].strip()
        heavy_help = _timed([sys.executable, "-c", help_probe], tmp)[1].split("HEAVY=")[1].strip()
    print(f"start-up, whole processes, one thread, median of {args.runs} (min in brackets):")
    for name, med, lo in rows:
        print(f"  {name:<34} {med:6.2f} s  ({lo:.2f} s)")
    print(f"  heavy modules after `import groundkit`: {heavy_import or 'none'}")
    print(f"  heavy modules after `groundkit --help`: {heavy_help or 'none'}")


if __name__ == "__main__":
    main()
