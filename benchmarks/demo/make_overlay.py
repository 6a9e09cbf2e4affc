"""Regenerate docs/demo_overlay.png from the shipped demo checkpoint, so the README shows what
`groundkit run` (no arguments) really draws today.

    python benchmarks/demo/make_overlay.py
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from typer.testing import CliRunner

from groundkit.cli import app


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        res = CliRunner().invoke(app, ["run", "--out", tmp, "--device", "cpu"])
        print(res.output.strip())
        if res.exit_code:
            return res.exit_code
        shutil.copy2(Path(tmp) / "overlay.png", ROOT / "docs" / "demo_overlay.png")
    print(f"wrote {ROOT / 'docs' / 'demo_overlay.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
