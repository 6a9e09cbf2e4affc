"""Number and table formatting for the ablation's Markdown and CSV outputs."""
from __future__ import annotations

import math
import re


def fmt(v, digits: int = 3) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "nan" if math.isnan(v) else f"{v:.{digits}f}"


def md_table(head: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def csv_text(head: list[str], rows: list[list]) -> str:
    """Floats as %.6g (NaN: empty); text cells neutralised against spreadsheet formulas (groundkit.core.outdir)."""
    from groundkit.core.outdir import csv_text as safe_csv_text

    return safe_csv_text(head, [["" if isinstance(v, float) and math.isnan(v) else (f"{v:.6g}" if isinstance(v, float) else v)
                                 for v in r] for r in rows])


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)
