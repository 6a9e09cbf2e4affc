"""Vilouras et al.'s Table II setups on our grid, with the published numbers beside ours."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from groundkit.bench.ablation.windows import Cell, layers_label, steps_label
from groundkit.evaluation.protocols import get_protocol

if TYPE_CHECKING:
    from groundkit.bench.ablation.result import AblationResult

import re
from pathlib import Path

from groundkit.bench.ablation.format import fmt, md_table
from groundkit.bench.references import reference_file as shipped_reference

_T2_FILE = "vilouras2024_table2.csv"


def reference_file(name: str = _T2_FILE) -> Path | None:
    """The published Table II CSV (same lookup rule as every reference table)."""
    return shipped_reference(name)


def t2_setup(setup: str, n_layers: int, n_grid: int) -> tuple[tuple | None, tuple[int, int], bool]:
    """'L=6, T=20, Otsu' -> (middle 6 layers, middle 20 of T_total=100 scaled to the grid, Otsu?)."""
    mL, mT = re.search(r"L\s*=\s*(\d+)", setup), re.search(r"T\s*=\s*(\d+)", setup)
    if not mL or not mT:
        raise ValueError(f"Table II setup {setup!r}: expected 'L=n, T=k[, Otsu]'")
    nl, t = int(mL.group(1)), int(mT.group(1))
    layers = None if nl >= n_layers else tuple(range((n_layers - nl) // 2, (n_layers - nl) // 2 + nl))
    k = max(1, round(t * n_grid / 100))
    a = (n_grid - k) // 2
    return layers, (a, a + k), "otsu" in setup.lower()


def vilouras_table2_grid(n_layers: int = 11, n_grid: int = 100) -> tuple[list, list[tuple[int, int]], list[str]]:
    """Windows and posts of Vilouras Table II (T_total = 100 inversion steps = grid 'stride:10'):
    layers [all, middle 6 = 2-7], steps [0:100, 40:60], posts [none, otsu]."""
    lws, sws = [], []
    for s in ("L=11, T=100", "L=6, T=20"):
        lw, sw, _ = t2_setup(s, n_layers, n_grid)
        lws.append(lw)
        sws.append(sw)
    return lws, sws, ["none", "otsu"]


def read_reference(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        lines = [ln for ln in f if not ln.lstrip().startswith("#") and ln.strip()]
    reader = csv.DictReader(lines)
    return list(reader.fieldnames or []), list(reader)


def vilouras_table2(result: AblationResult, reference: str | Path | None = None):
    """Our numbers beside Vilouras Table II's, for each published setup our grid holds.

    Returns (rows, markdown) or None when the protocol is not Vilouras', the reference is missing or
    no setup is in the grid. mIoU is shown in percent as published; cnr is the signed CNR."""
    if "vilouras2024_table2" not in get_protocol(result.protocol).paper_tables:
        return None
    path = Path(reference) if reference is not None else reference_file()
    if path is None or not path.is_file():
        return None
    header, ref = read_reference(path)
    cats = [h for h in header if h not in ("setup", "metric", "Avg")]
    rows, md_rows = [], []
    matched = 0
    for r in ref:
        lw, sw, otsu = t2_setup(r["setup"], result.n_layers, result.n_grid)
        post = next((p for p in (("otsu", "multiotsu") if otsu else ("none",)) if p in result.posts), None)
        metric = r["metric"]
        cell = Cell(norm_layers(lw, result.n_layers, result.layer_windows), sw, post) if post else None
        have = cell is not None and cell.key in result.aggregates and metric in result.metrics
        matched += have
        scale = 100.0 if metric.startswith("miou") else 1.0
        md = [r["setup"], metric, layers_label(lw), steps_label(sw), post or "-"]
        for c in cats + ["Avg"]:
            ours = math.nan
            if have:
                ours = result.value(cell, metric, "macro" if c == "Avg" else c) * scale
            pub = float(r[c]) if r.get(c) not in (None, "") else math.nan
            rows.append({"setup": r["setup"], "metric": metric, "category": c, "ours": ours, "published": pub,
                         "layers": layers_label(lw), "steps": steps_label(sw), "post": post or ""})
            md.append(f"{fmt(ours, 1 if scale > 1 else 2)} / {fmt(pub, 1 if scale > 1 else 2)}")
        md_rows.append(md)
    if not matched:
        return None
    text = ["## Vilouras et al. 2024, Table II (ours / published)", "",
            "Published setups: T_total = 100 DDIM-inversion steps (grid stride:10), T=20 = steps 40:60, "
            "L=6 = the middle 6 of the 11 cross-attention layers (2-7), 'Otsu' = Otsu post vs none. "
            "mIoU (miou_thr) in percent; cnr = signed CNR. Avg = macro mean over categories.", "",
            f"Ours: {result.checkpoint}, grid {result.recipe.grid} ({result.n_grid} steps), {result.n_layers} layers, "
            f"{result.n_samples} samples; cells not in the ablation grid read 'nan'."]
    if result.n_grid != 100 or result.n_layers != 11:
        text.append(f"Note: the published setups assume 100 steps and 11 layers; here windows are scaled to "
                    f"{result.n_grid} steps / {result.n_layers} layers, so the setups are analogues, not the same.")
    text += [""] + md_table(["setup", "metric", "layers", "steps", "post"] + cats + ["Avg"], md_rows)
    return rows, "\n".join(text) + "\n"


def norm_layers(lw, n_layers: int, windows: list):
    """Match 'all layers' whether the grid spells it None or 0..n-1."""
    if lw is None and tuple(range(n_layers)) in windows and None not in windows:
        return tuple(range(n_layers))
    return lw
