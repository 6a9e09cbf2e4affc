"""Macro metrics of several quality.py runs side by side (the README's faithful-vs-fast figure).

    python benchmarks/demo/plot_recipes.py --protocol nuetzel --out docs/fast_nuetzel.png \
        "nuetzel2025 (40 calls)=runs/demo-quality-nuetzel-faithful" "nuetzel2025-fast (5 calls)=runs/demo-quality-nuetzel-fast"

Each LABEL=DIR names a folder written by quality.py; its summary.json holds the macro means. The
centre-prior baseline of the first run is drawn as a hollow marker for scale.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from groundkit import viz


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="LABEL=DIR (a quality.py output folder)")
    ap.add_argument("--protocol", required=True, choices=["vilouras", "nuetzel"])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    table: dict[str, dict[str, float]] = {}
    centre: dict[str, float] = {}
    for item in args.runs:
        label, _, folder = item.partition("=")
        summary = json.loads((Path(folder) / "summary.json").read_text())
        for key, value in summary.items():
            proto, model, metric = key.split("/")
            if proto != args.protocol:
                continue
            if model == "demo":
                table.setdefault(metric, {})[label] = value
            elif model == "centre":
                centre.setdefault(metric, value)
    if not table:
        sys.exit(f"no {args.protocol} results in {', '.join(args.runs)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viz.category_bars(table, "macro mean", args.out, reference=centre, reference_label="centre prior",
                      title=f"demo checkpoint, held-out synthetic split: {args.protocol} protocol")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
