"""Writing benchmark tables to disk: tables.md, one CSV per table, summary.json.

Why apart from groundkit.bench.tables: building the tables is about the papers' layouts; writing them is about
files (JSON-safe values, CSV cells, the output-folder writer), and each changes for its own reasons.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from groundkit.core.outdir import make_dirs, write_csv, write_text

if TYPE_CHECKING:
    from groundkit.bench.tables import Tables

__all__ = ["csv_value", "json_safe", "write_tables"]


def csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return "" if v is None else v


def json_safe(v: Any) -> Any:
    """JSON-safe copy: NaN/inf -> null."""
    if isinstance(v, Mapping):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def write_tables(t: Tables, out_dir: str | Path) -> dict[str, Path]:
    """tables.md, tables/<name>.csv and summary.json under ``out_dir``; returns the paths."""
    out = Path(out_dir)
    make_dirs(out / "tables", out)
    files = {"tables.md": write_text(out / "tables.md", t.markdown(), out)}
    for name, rows in t.csvs.items():
        fields: list[str] = []
        for r in rows:
            fields += [k for k in r if k not in fields]
        p = write_csv(out / "tables" / f"{name}.csv", fields, [{k: csv_value(v) for k, v in r.items()} for r in rows], out)
        files[f"tables/{name}.csv"] = p
    files["summary.json"] = write_text(out / "summary.json", json.dumps(json_safe(t.summary), indent=2, allow_nan=False), out)
    return files
