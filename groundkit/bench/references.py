"""The published numbers (both papers' tables, as CSV) and which published column a recipe compares with.

One lookup rule for every reader: ``GROUNDKIT_REFERENCE_DIR`` when set, else the CSVs shipped in the
package (``groundkit/assets/reference``). Lines starting with '#' are comments; numbers become floats.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "reference"

__all__ = ["default_reference_dir", "load_references", "nuetzel_reference_columns", "read_reference_csv",
           "recipe_differences", "reference_file"]


def default_reference_dir() -> Path | None:
    """GROUNDKIT_REFERENCE_DIR, else the CSVs shipped in the package."""
    env = os.environ.get("GROUNDKIT_REFERENCE_DIR")
    if env:
        return Path(env)
    return SHIPPED if SHIPPED.is_dir() else None


def reference_file(name: str, reference_dir: str | Path | None = None) -> Path | None:
    """One reference CSV by file name, looked up by the same rule as :func:`load_references`."""
    d = Path(reference_dir) if reference_dir is not None else default_reference_dir()
    p = d / name if d is not None else None
    return p if p is not None and p.is_file() else None


def _num(v: str) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def read_reference_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a reference CSV; lines starting with '#' are comments; numbers become floats."""
    lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if not ln.lstrip().startswith("#")]
    return [{k.strip(): _num(v.strip()) for k, v in row.items()} for row in csv.DictReader(io.StringIO("\n".join(lines)))]


def load_references(reference_dir: str | Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """{file stem: rows} of every CSV in the reference folder ({} when there is none)."""
    d = Path(reference_dir) if reference_dir is not None else default_reference_dir()
    if d is None or not d.is_dir():
        return {}
    return {p.stem: read_reference_csv(p) for p in sorted(d.glob("*.csv"))}


def recipe_differences(recipe: Mapping[str, Any], published: str, ignore: Sequence[str] = ()) -> list[str]:
    """Fields (``name=value``) where a resolved recipe differs from a published recipe."""
    from groundkit.recipes import get_recipe

    ref = get_recipe(published).to_dict()
    skip = {"name", "batch_size", "seed", *ignore}
    out = []
    for k, v in recipe.items():
        if k in skip or k not in ref:
            continue
        a = list(v) if isinstance(v, (list, tuple)) else v
        b = list(ref[k]) if isinstance(ref[k], (list, tuple)) else ref[k]
        if a != b:
            if k == "layers":
                from groundkit.recipes import describe_layers

                out.append(f"layers={describe_layers(v)} (published {describe_layers(ref[k])})")
            else:
                out.append(f"{k}={_fmt_field(v)} (published {_fmt_field(ref[k])})")
    return out


def _fmt_field(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) if len(v) != 2 else f"{v[0]}:{v[1]}"
    return str(v)


def nuetzel_reference_columns(recipe: Mapping[str, Any]) -> dict[str, tuple[str, bool, str]]:
    """Which published column a Nützel-protocol recipe is compared with:
    {"nuetzel2025_table1" | "nuetzel2025_table3": (column prefix, exact match?, note)}."""
    bbm, tokens = recipe.get("bbm"), recipe.get("tokens")
    out: dict[str, tuple[str, bool, str]] = {}
    if bbm is None:
        out["nuetzel2025_table1"] = ("CXR-BERT_LDM", tokens == "lexical",
                                     "" if tokens == "lexical" else f"published uses tokens=lexical, this recipe tokens={tokens}")
        if tokens in ("disease", "lexical"):
            out["nuetzel2025_table3"] = (f"{tokens}_filter", True, "")
        else:
            out["nuetzel2025_table3"] = ("lexical_filter", False, f"no published column for tokens={tokens}")
    else:
        note = [] if tokens == "lexical" else [f"published uses tokens=lexical, this recipe tokens={tokens}"]
        t1_note = note + ([] if bbm == "mixture" else [f"Table 1's BBM is the mixture variant, this recipe bbm={bbm}"])
        out["nuetzel2025_table1"] = ("CXR-BERT_LDM+BBM", not t1_note, "; ".join(t1_note))
        out["nuetzel2025_table3"] = (f"bbm_{bbm}", not note, "; ".join(note))
    return out
