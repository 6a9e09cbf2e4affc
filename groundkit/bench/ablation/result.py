"""The result of an ablation: every cell's metrics, the best windows, Markdown/CSV/plots on disk."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groundkit.bench.ablation.format import csv_text, fmt, md_table, safe_name
from groundkit.bench.ablation.table2 import vilouras_table2
from groundkit.bench.ablation.windows import (
    Cell,
    layers_label,
    parse_layers_grid,
    parse_timesteps_grid,
    steps_label,
)
from groundkit.core.io import clean_json
from groundkit.core.outdir import ensure_dir, write_text
from groundkit.evaluation.protocols import Aggregate
from groundkit.recipes import Recipe


@dataclass
class AblationResult:
    checkpoint: str
    recipe: Recipe
    protocol: str
    metrics: tuple[str, ...]
    layer_windows: list
    step_windows: list[tuple[int, int]]
    posts: list[str]
    last_n: list[int]
    n_grid: int
    n_layers: int
    cells: list[Cell]
    rows: list[dict]
    aggregates: dict[str, Aggregate]  # by Cell.key
    calls: dict[str, float]
    timings: dict[str, float]
    n_samples: int
    heatmaps: dict[tuple[str, str], Any] | None = None  # (sample_id, Cell.key) -> Heatmap (sweep)
    notes: list[str] = field(default_factory=list)
    out_dir: Path | None = None
    files: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------- views
    def cell(self, layers, steps, post: str | None = None) -> Cell:
        lw = parse_layers_grid([layers])[0] if isinstance(layers, (str, list, tuple)) else layers
        sw = parse_timesteps_grid([steps])[0]
        return Cell(lw, sw, post or self.posts[0])

    def value(self, cell: Cell, metric: str | None = None, category: str = "macro") -> float:
        m = metric or self.metrics[0]
        agg = self.aggregates[cell.key]
        if category == "macro":
            return agg.macro.get(m, math.nan)
        return agg.per_category.get(category, {}).get(m, math.nan)

    def categories(self) -> tuple[str, ...]:
        seen: list[str] = []
        for agg in self.aggregates.values():
            for c in agg.categories:
                if c not in seen:
                    seen.append(c)
        return tuple(seen)

    def table(self, metric: str | None = None) -> list[dict]:
        """One dict per cell: layers, steps, post, macro, macro_std, per_sample, and every category."""
        m = metric or self.metrics[0]
        out = []
        for c in self.cells:
            agg = self.aggregates[c.key]
            row = dict(c.to_dict(), metric=m, macro=agg.macro[m], macro_std=agg.macro_std[m], per_sample=agg.per_sample[m])
            for cat in self.categories():
                row[cat] = agg.per_category.get(cat, {}).get(m, math.nan)
            out.append(row)
        return out

    def best(self, metric: str | None = None) -> dict[str, tuple[Cell, float]]:
        """Best cell per category (and 'macro') for a metric; every metric here is higher-is-better."""
        m = metric or self.metrics[0]
        out: dict[str, tuple[Cell, float]] = {}
        for cat in ("macro",) + self.categories():
            best = None
            for c in self.cells:
                v = self.value(c, m, cat)
                if not math.isnan(v) and (best is None or v > best[1]):
                    best = (c, v)
            if best is not None:
                out[cat] = best
        return out

    def grid_values(self, metric: str, post: str, category: str = "macro") -> np.ndarray:
        """(layer windows x timestep windows) values of one post-processing."""
        return np.array([[self.value(Cell(lw, sw, post), metric, category) for sw in self.step_windows]
                         for lw in self.layer_windows], dtype=float)

    def calls_line(self) -> str:
        c = self.calls
        ratio = c["rerun"] / c["one_capture"] if c["one_capture"] else math.nan
        return (f"U-Net calls: {c['made']:g} made by this run ({c['captured_samples']} samples captured, "
                f"{c['reused_samples']} reused from the store); one capture of every sample = {c['one_capture']:g}; "
                f"re-running each of the {len(self.layer_windows) * len(self.step_windows)} windows separately = "
                f"{c['rerun']:g} ({ratio:.1f}x one capture; {c['rerun_distinct_steps']:g} with one run per distinct timestep window)")

    def to_markdown(self) -> str:
        r = self.recipe
        lines = [f"# Window ablation: {self.checkpoint}, recipe {r.name} ({r.digest()}), protocol {self.protocol}",
                 "", f"{self.n_samples} samples; mode {r.mode}, grid {r.grid} ({self.n_grid} steps), tokens {r.tokens}; "
                 f"windows: steps = grid indices [start, end), layers = canonical cross-attention indices (of {self.n_layers}).",
                 "", self.calls_line(), ""]
        lines += [f"> {n}" for n in self.notes] + ([""] if self.notes else [])
        cats = self.categories()
        for m in self.metrics:
            lines += [f"## {m}", ""]
            head = ["layers", "steps", "post", "macro ± std", "per-sample"] + list(cats)
            rows = []
            for t in self.table(m):
                rows.append([t["layers"], t["steps"], t["post"], f"{fmt(t['macro'])} ± {fmt(t['macro_std'])}", fmt(t["per_sample"])]
                            + [fmt(t[c]) for c in cats])
            lines += md_table(head, rows) + [""]
        lines += ["## Best window per category", ""]
        rows = []
        for m in self.metrics:
            for cat, (c, v) in self.best(m).items():
                rows.append([m, cat, c.to_dict()["layers"], c.to_dict()["steps"], c.post, fmt(v)])
        lines += md_table(["metric", "category", "layers", "steps", "post", "value"], rows)
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()

    # ---------------------------------------------------------------- files
    def write(self, out_dir: str | Path, reference: str | Path | None = None) -> list[str]:
        """rows.jsonl, table.md/.csv, best_windows.csv, ablation.json, plots; Vilouras Table II
        side by side and the last-n curve where the grid holds them."""
        out = ensure_dir(out_dir)
        files: list[str] = []

        def put(name: str, text: str) -> None:
            write_text(out / name, text, out)  # never through a symbolic link
            files.append(name)

        put("rows.jsonl", "".join(json.dumps(clean_json(r)) + "\n" for r in self.rows))
        put("table.csv", csv_text(["layers", "steps", "post", "category", "n"] + list(self.metrics), self._table_rows()))
        best_rows = [[m, cat, c.to_dict()["layers"], c.to_dict()["steps"], c.post, v]
                     for m in self.metrics for cat, (c, v) in self.best(m).items()]
        put("best_windows.csv", csv_text(["metric", "category", "layers", "steps", "post", "value"], best_rows))
        files += self._plots(out)
        if self.last_n:
            rows, names = self._last_n(out)
            files += names
            put("last_n.csv", csv_text(["metric", "layers", "post", "n", "macro"], rows))
        md = self.to_markdown()
        t2 = vilouras_table2(self, reference)
        if t2 is not None:
            t2_rows, t2_md = t2
            put("vilouras_table2.csv", csv_text(list(t2_rows[0]), [list(r.values()) for r in t2_rows]))
            put("vilouras_table2.md", t2_md)
            md += "\n" + t2_md
        put("table.md", md)
        put("ablation.json", json.dumps(clean_json(self._summary()), indent=2))
        self.out_dir, self.files = out, files
        return files

    def _table_rows(self) -> list[list]:
        """Every cell x (category, macro, macro_std, per_sample, weighted_avg_sq) x metric."""
        rows = []
        for c in self.cells:
            agg = self.aggregates[c.key]
            d = c.to_dict()
            for cat in self.categories():
                rows.append([d["layers"], d["steps"], c.post, cat, agg.counts.get(cat, {}).get(self.metrics[0], 0)]
                            + [agg.per_category.get(cat, {}).get(m, math.nan) for m in self.metrics])
            n_cat = sum(1 for cat in agg.categories if agg.counts[cat][self.metrics[0]] > 0)
            for name, src in (("macro", agg.macro), ("macro_std", agg.macro_std), ("per_sample", agg.per_sample),
                              ("weighted_avg_sq", agg.weighted_avg_sq)):
                rows.append([d["layers"], d["steps"], c.post, name, n_cat] + [src[m] for m in self.metrics])
        return rows

    def _plots(self, out: Path) -> list[str]:
        """Macro metric over (layer window x timestep window), and over (start, end) when the grid spans a plane."""
        from groundkit import viz

        files = []
        for m in self.metrics:
            for p in self.posts:
                name = f"heatmap_{safe_name(m)}_{safe_name(p)}.png"
                viz.ablation_heatmap(self.grid_values(m, p), [layers_label(lw) for lw in self.layer_windows],
                                     [steps_label(sw) for sw in self.step_windows],
                                     title=f"{m} (macro), post={p}", path=out / name, xlabel="timestep window [start:end)",
                                     ylabel="layers")
                files.append(name)
        starts = sorted({a for a, _ in self.step_windows})
        ends = sorted({b for _, b in self.step_windows})
        if len(self.step_windows) < 3 or len(starts) < 2 or len(ends) < 2:  # a diagonal, not a (start, end) plane
            return files
        for m in self.metrics:
            for lw in self.layer_windows:
                for p in self.posts:
                    vals = np.full((len(starts), len(ends)), np.nan)
                    for a, b in self.step_windows:
                        vals[starts.index(a), ends.index(b)] = self.value(Cell(lw, (a, b), p), m)
                    name = f"start_end_{safe_name(m)}_L{safe_name(layers_label(lw))}_{safe_name(p)}.png"
                    viz.ablation_heatmap(vals, starts, ends, title=f"{m} (macro), layers {layers_label(lw)}, post={p}",
                                         path=out / name, xlabel="end", ylabel="start")
                    files.append(name)
        return files

    def _last_n(self, out: Path) -> tuple[list[list], list[str]]:
        """Nuetzel's last-n-steps curve: rows for last_n.csv and one plot per metric."""
        from groundkit import viz

        ns = sorted(set(self.last_n))
        rows, files = [], []
        for m in self.metrics:
            series = {}
            for lw in self.layer_windows:
                for p in self.posts:
                    ys = [self.value(Cell(lw, (self.n_grid - n, self.n_grid), p), m) for n in ns]
                    series[f"layers {layers_label(lw)}, {p}"] = ys
                    rows += [[m, layers_label(lw), p, n, y] for n, y in zip(ns, ys)]
            name = f"last_n_{safe_name(m)}.png"
            viz.curve(ns, series, xlabel=f"n (window = last n of {self.n_grid} steps)", ylabel=f"{m} (macro)",
                      path=out / name, title=f"last-n-steps curve (Nuetzel), {self.checkpoint}")
            files.append(name)
        return rows, files

    def _summary(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "recipe": self.recipe.to_dict(), "recipe_digest": self.recipe.digest(),
                "protocol": self.protocol, "metrics": list(self.metrics), "posts": self.posts,
                "layer_windows": [layers_label(w) for w in self.layer_windows],
                "step_windows": [steps_label(w) for w in self.step_windows], "last_n": self.last_n,
                "n_samples": self.n_samples, "calls": self.calls, "timings": self.timings, "notes": self.notes,
                "cells": {c.key: dict(c.to_dict(), **self.aggregates[c.key].to_dict()) for c in self.cells}}
