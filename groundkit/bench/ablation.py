"""Layer x timestep window ablation from ONE capture per sample (issue 6).

Both papers chose their layers and timesteps by ablation (Vilouras Table II; Nuetzel's last-n-steps
curve). Grounding every window separately costs one full capture per window; here every sample is
captured once over the union of all windows, the per-(step, layer) token-aggregated maps are kept in
a compact on-disk store, and every (layer window x timestep window x post-processing) cell is then
evaluated from the store without calling the U-Net again.

    from groundkit.bench.ablation import run_ablation, sweep
    res = run_ablation(model, samples, "vilouras2024", layer_windows=[None, (2, 3, 4, 5, 6, 7)],
                       step_windows=[(0, 100), (40, 60)], posts=["none", "otsu"], out_dir="abl/")
    res = sweep(model, "cxr.png", "left pleural effusion", boxes=[(30, 40, 50, 60)],
                layer_windows=[None, (3, 4, 6, 7)], step_windows=[(40, 50), (45, 50)])
    print(res.to_markdown())

Store (``out_dir/store/``): one ``.npz`` per sample holding, per stored layer, the ``selected`` token
group's maps at the union of the windows' steps, plus its JSON meta (steps, layer infos, crop
geometry, recipe digest, capture key, U-Net calls) as a uint8 member of the same file, so an entry is
one file written atomically (temporary file + ``os.replace``): a crash never leaves a half entry.
Maps are stored as float16 *per map range-normalised* (each (step, layer) map stored as
(m - min) / (max - min) in float16 plus its float32 min and range): the quantisation error is at most
~2.4e-4 of each map's own range, where raw float16 would spend its precision on the map's offset
(attention probabilities sit around 1/77). ``store_dtype="float32"`` stores maps exactly (a window
then equals ``ground()`` to float32 round-off).

Cost accounting (SPEC section 7, the engine's own formula): one U-Net call per (timestep, batch item).
For one image with P phrases and a window [a, b):
gt-noised = P (b - a); ddim-inversion = (b - 1) unconditional inversion calls (shared by the image's
phrases, stopped at the window's end) + P (b - a) conditional calls. ``calls["made"]`` counts the
calls actually made by this run (fewer when entries are reused or the model's inversion cache hits);
``calls["one_capture"]`` is the formula for capturing every sample once over the union range;
``calls["rerun"]`` is the formula for grounding every (layer window x timestep window) cell
separately from scratch (post-processing variants never need a re-run, so they are not counted);
``calls["rerun_distinct_steps"]`` the same counting each distinct timestep window once.
The union of the windows is captured as one contiguous range [min start, max end): for disjoint
windows the steps in between are computed too (and counted), but not stored.
BBM recipes are not supported (the store keeps the selected-token group only): pass bbm=None.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..adapters.base import LayerInfo
from ..geometry import Geometry
from ..heatmap import make_heatmap
from ..maps import AttentionMaps
from ..protocols import CATEGORIES, Aggregate, aggregate, get_protocol
from ..recipes import THRESHOLDS, Recipe, parse_layers

__all__ = [
    "AblationStore", "AblationResult", "Cell", "run_ablation", "sweep", "parse_layers_grid",
    "parse_timesteps_grid", "last_n_windows", "window_cost", "vilouras_table2_grid", "vilouras_table2",
    "reference_file",
]

STORE_VERSION = 1
GROUP = "selected"
METRIC_ALIASES = {"miou_thresholds": "miou_thr", "miou_threshold": "miou_thr"}

# ================================================================================================
# windows
# ================================================================================================
def parse_layers_grid(text: str | Sequence) -> list[tuple[int, ...] | None]:
    """'all;3,4,6,7;2-7' -> [None, (3, 4, 6, 7), (2, ..., 7)] (a list of such items passes through)."""
    items = text.split(";") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        w = parse_layers(item) if isinstance(item, str) else (None if item is None else tuple(sorted(int(i) for i in item)))
        if w not in out:
            out.append(w)
    if not out:
        raise ValueError("layers grid: no window given")
    return out


def parse_timesteps_grid(text: str | Sequence) -> list[tuple[int, int]]:
    """'0:100;40:60;30:70' -> windows [start, end). An item 'a:b:k' expands to every contiguous window
    with start and end on the lattice a, a+k, ..., b (for the (start, end) plot)."""
    items = text.split(";") if isinstance(text, str) else list(text)
    out: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, str):
            parts = item.strip().split(":")
            try:
                nums = [int(p) for p in parts]
            except ValueError:
                raise ValueError(f"timesteps grid: expected START:END or START:END:STRIDE, got {item!r}") from None
            if len(nums) == 2:
                ws = [tuple(nums)]
            elif len(nums) == 3 and nums[2] > 0:
                lattice = list(range(nums[0], nums[1] + 1, nums[2]))
                ws = [(a, b) for a in lattice for b in lattice if a < b]
            else:
                raise ValueError(f"timesteps grid: expected START:END or START:END:STRIDE, got {item!r}")
        else:
            ws = [tuple(int(v) for v in item)]
        for w in ws:
            if len(w) != 2 or not 0 <= w[0] < w[1]:
                raise ValueError(f"timesteps grid: expected 0 <= start < end, got {w}")
            if w not in out:
                out.append(w)
    if not out:
        raise ValueError("timesteps grid: no window given")
    return out


def last_n_windows(ns: Sequence[int], n_grid: int) -> list[tuple[int, int]]:
    """Nuetzel's last-n-steps windows (n_grid - n, n_grid) of a sampling grid of n_grid steps."""
    out = []
    for n in ns:
        if not 1 <= int(n) <= n_grid:
            raise ValueError(f"last-n: n={n} outside 1..{n_grid} (the grid has {n_grid} steps)")
        out.append((n_grid - int(n), n_grid))
    return out


def layers_label(w) -> str:
    """None -> 'all'; runs of 3+ consecutive indices as a-b: (2..7) -> '2-7', (3,4,6,7) -> '3,4,6,7'."""
    if w is None:
        return "all"
    w = sorted(w)
    parts, i = [], 0
    while i < len(w):
        j = i
        while j + 1 < len(w) and w[j + 1] == w[j] + 1:
            j += 1
        parts.append(f"{w[i]}-{w[j]}" if j - i >= 2 else ",".join(str(v) for v in w[i : j + 1]))
        i = j + 1
    return ",".join(parts)


def steps_label(w) -> str:
    return f"{w[0]}:{w[1]}"


def window_cost(mode: str, window: tuple[int, int], n_phrases: int) -> int:
    """U-Net calls to ground n_phrases of one image with grid window [a, b) from scratch (the engine's
    counting: gt-noised P(b-a); ddim-inversion (b-1) unconditional + P(b-a) conditional)."""
    a, b = window
    if mode == "gt-noised":
        return n_phrases * (b - a)
    if mode == "ddim-inversion":
        return (b - 1) + n_phrases * (b - a)
    raise ValueError(f"unknown mode {mode!r}")


@dataclass(frozen=True)
class Cell:
    """One evaluated combination: layer window x timestep window x post-processing (threshold)."""

    layers: tuple[int, ...] | None
    steps: tuple[int, int]
    post: str

    @property
    def key(self) -> str:
        return f"{layers_label(self.layers)}|{steps_label(self.steps)}|{self.post}"

    def to_dict(self) -> dict[str, str]:
        return {"layers": layers_label(self.layers), "steps": steps_label(self.steps), "post": self.post}


# ================================================================================================
# store
# ================================================================================================
class AblationStore:
    """Per-sample captured maps, on disk (``root``) or in memory (``root=None``).

    Entry = one ``<sample>-<hash>.npz``: members ``L<layer>`` (steps, h, w) (+ ``L<layer>_lo`` and
    ``L<layer>_scale`` in float16 mode) and ``meta`` (UTF-8 JSON as uint8). Written to a hidden
    temporary file and renamed into place, so an entry either exists whole or not at all; leftover
    temporary files (``.*.tmp``) are never read as entries."""

    def __init__(self, root: str | Path | None, dtype: str = "float16"):
        if dtype not in ("float16", "float32"):
            raise ValueError(f"store dtype: expected float16 or float32, got {dtype!r}")
        self.root = None if root is None else Path(root)
        self.dtype = dtype
        self._mem: dict[str, dict[str, np.ndarray]] = {}
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(sample) -> str:
        """File-safe, unique per (sample id, image, phrase, category)."""
        ident = json.dumps([sample.sample_id, str(sample.image_path), sample.phrase, sample.category])
        h = hashlib.sha1(ident.encode()).hexdigest()[:10]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(sample.sample_id))[:60].lstrip(".") or "sample"
        return f"{safe}-{h}"

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / f"{key}.npz"

    def keys(self) -> list[str]:
        if self.root is None:
            return sorted(self._mem)
        return sorted(p.stem for p in self.root.glob("*.npz") if not p.name.startswith("."))

    def __len__(self) -> int:
        return len(self.keys())

    def meta(self, key: str) -> dict | None:
        """The entry's meta, or None when absent or unreadable (then it is captured again)."""
        try:
            if self.root is None:
                if key not in self._mem:
                    return None
                return json.loads(bytes(self._mem[key]["meta"]).decode())
            p = self.path(key)
            if not p.is_file():
                return None
            with np.load(p, allow_pickle=False) as z:
                return json.loads(bytes(z["meta"]).decode())
        except Exception:  # noqa: BLE001 - a damaged entry is treated as missing
            return None

    def covers(self, key: str, capture_key: str, steps: Sequence[int], layers: Sequence[int]) -> bool:
        """True when the entry exists, was captured with the same capture settings and holds every
        step and layer needed (an entry captured for a wider grid is reused)."""
        m = self.meta(key)
        if m is None or m.get("version") != STORE_VERSION or m.get("capture_key") != capture_key:
            return False
        if m.get("store_dtype") != self.dtype:
            return False
        have_layers = {info["index"] for info in m["layers"]}
        return set(steps) <= set(m["steps"]) and set(layers) <= have_layers

    def put(self, key: str, maps: AttentionMaps, steps: Sequence[int], meta: dict) -> None:
        gi = maps.groups.index(GROUP)
        pos = {s: i for i, s in enumerate(maps.steps)}
        idx = torch.tensor([pos[s] for s in steps])
        arrays: dict[str, np.ndarray] = {}
        for info in maps.layers:
            m = maps.maps[info.index][idx, gi].float()  # (S, h, w)
            if self.dtype == "float32":
                arrays[f"L{info.index}"] = m.numpy().astype(np.float32)
            else:
                lo = m.amin(dim=(1, 2))
                scale = m.amax(dim=(1, 2)) - lo
                scale = torch.where(scale > 0, scale, torch.ones_like(scale))
                q = (m - lo[:, None, None]) / scale[:, None, None]
                arrays[f"L{info.index}"] = q.numpy().astype(np.float16)
                arrays[f"L{info.index}_lo"] = lo.numpy().astype(np.float32)
                arrays[f"L{info.index}_scale"] = scale.numpy().astype(np.float32)
        meta = dict(meta, version=STORE_VERSION, store_dtype=self.dtype, steps=[int(s) for s in steps],
                    layers=[{"index": i.index, "name": i.name, "resolution": i.resolution} for i in maps.layers])
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        if self.root is None:
            self._mem[key] = arrays
            return
        final = self.path(key)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()

    def get(self, key: str) -> tuple[AttentionMaps, dict]:
        if self.root is None:
            z = self._mem[key]
            return self._decode(z)
        with np.load(self.path(key), allow_pickle=False) as z:
            return self._decode({k: z[k] for k in z.files})

    @staticmethod
    def _decode(z: dict[str, np.ndarray]) -> tuple[AttentionMaps, dict]:
        meta = json.loads(bytes(z["meta"]).decode())
        layers = [LayerInfo(d["index"], d["name"], d["resolution"]) for d in meta["layers"]]
        maps = {}
        for info in layers:
            a = torch.from_numpy(np.asarray(z[f"L{info.index}"]).astype(np.float32))
            if meta["store_dtype"] == "float16":
                lo = torch.from_numpy(np.asarray(z[f"L{info.index}_lo"]))
                scale = torch.from_numpy(np.asarray(z[f"L{info.index}_scale"]))
                a = lo[:, None, None] + a * scale[:, None, None]
            maps[info.index] = a[:, None]  # (S, 1 group, h, w)
        return AttentionMaps(layers, list(meta["steps"]), [GROUP], maps), meta


# ================================================================================================
# plan
# ================================================================================================
@dataclass
class _Plan:
    recipe: Recipe  # base recipe (post-processing, protocol, seed, tokens ...)
    capture: Recipe  # the union capture: steps = [min start, max end), layers = union
    layer_windows: list
    step_windows: list[tuple[int, int]]
    posts: list[str]
    metrics: tuple[str, ...]
    last_n: list[int]
    n_grid: int
    stored_steps: list[int]
    stored_layers: list[int]
    capture_key: str

    @property
    def cells(self) -> list[Cell]:
        return [Cell(lw, sw, p) for lw in self.layer_windows for sw in self.step_windows for p in self.posts]


def _plan(model, base_recipe, layer_windows, step_windows, posts, metrics, last_n, overrides) -> _Plan:
    lws = parse_layers_grid(layer_windows) if layer_windows is not None else None
    sws = parse_timesteps_grid(step_windows) if step_windows is not None else None
    last_n = [int(n) for n in (last_n or [])]
    n_layers = len(model.layers)
    pre = dict(overrides or {})
    # the grids replace the recipe's own window, which must not fail validation first (e.g.
    # vilouras2024's 120:180 on a 100-step grid): resolve with the first window of each grid
    if lws:
        pre["layers"] = lws[0] if lws[0] is None or max(lws[0]) < n_layers else None
    if sws:
        pre["steps"] = sws[0]
    elif last_n:
        pre.pop("steps", None)
    try:
        r = model.recipe(base_recipe, **pre)
    except ValueError:
        if not (sws or last_n):
            raise
        pre["steps"] = (0, 1)  # validated per window below, with a clearer message
        r = model.recipe(base_recipe, **pre)
    if r.bbm is not None:
        raise ValueError("ablation: BBM recipes are not supported (the store keeps the selected-token maps only); "
                         "pass bbm=None (CLI: --set bbm=none)")
    n_grid = len(r.timesteps(model.adapter.schedule.num_train_timesteps))
    lws = lws if lws is not None else [r.layers]
    sws = sws if sws is not None else ([] if last_n else [tuple(r.steps)])
    for w in last_n_windows(last_n, n_grid):
        if w not in sws:
            sws.append(w)
    for lw in lws:
        if lw is not None and (min(lw) < 0 or max(lw) >= n_layers):
            raise ValueError(f"layer window {layers_label(lw)}: {model.entry.name} has {n_layers} cross-attention layers (0..{n_layers - 1})")
    for sw in sws:
        if sw[1] > n_grid:
            raise ValueError(f"timestep window {steps_label(sw)} exceeds the grid {r.grid} ({n_grid} steps)")
    posts = [r.threshold if p == "recipe" else p for p in (posts or [r.threshold])]
    posts = list(dict.fromkeys(posts))
    for p in posts:
        if p not in THRESHOLDS:
            raise ValueError(f"post {p!r}: expected one of {THRESHOLDS} or 'recipe'")
    proto = get_protocol(r.protocol)
    ms = tuple(METRIC_ALIASES.get(m, m) for m in (metrics or proto.metrics))
    bad = [m for m in ms if m not in proto.metrics]
    if bad:
        raise ValueError(f"metrics {bad} are not computed by the {proto.name} protocol (it has {list(proto.metrics)})")
    union_layers = None if any(lw is None for lw in lws) else tuple(sorted({i for lw in lws for i in lw}))
    stored_steps = sorted({s for a, b in sws for s in range(a, b)})
    capture = model.recipe(r, steps=(min(a for a, _ in sws), max(b for _, b in sws)), layers=union_layers)
    key_fields = {"checkpoint": model.entry.name, "adapter": model.adapter.name,
                  "dtype": str(model.adapter.dtype), "mode": r.mode, "grid": r.grid, "tokens": r.tokens, "seed": r.seed}
    capture_key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
    stored_layers = list(range(n_layers)) if union_layers is None else list(union_layers)
    return _Plan(r, capture, lws, sws, posts, ms, last_n, n_grid, stored_steps, stored_layers, capture_key)


# ================================================================================================
# result
# ================================================================================================
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
                rows.append([t["layers"], t["steps"], t["post"], f"{_f(t['macro'])} ± {_f(t['macro_std'])}", _f(t["per_sample"])]
                            + [_f(t[c]) for c in cats])
            lines += _md(head, rows) + [""]
        lines += ["## Best window per category", ""]
        rows = []
        for m in self.metrics:
            for cat, (c, v) in self.best(m).items():
                rows.append([m, cat, c.to_dict()["layers"], c.to_dict()["steps"], c.post, _f(v)])
        lines += _md(["metric", "category", "layers", "steps", "post", "value"], rows)
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()

    # ---------------------------------------------------------------- files
    def write(self, out_dir: str | Path, reference: str | Path | None = None) -> list[str]:
        """rows.jsonl, table.md/.csv, best_windows.csv, ablation.json, plots; Vilouras Table II
        side by side and the last-n curve where the grid holds them."""
        from .. import viz

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files: list[str] = []

        def put(name: str, text: str) -> None:
            _atomic_text(out / name, text)
            files.append(name)

        put("rows.jsonl", "".join(json.dumps(_clean(r)) + "\n" for r in self.rows))
        # window x metric, per category and macro
        cats = self.categories()
        head = ["layers", "steps", "post", "category", "n"] + list(self.metrics)
        csv_rows = []
        for c in self.cells:
            agg = self.aggregates[c.key]
            d = c.to_dict()
            for cat in cats:
                csv_rows.append([d["layers"], d["steps"], c.post, cat, agg.counts.get(cat, {}).get(self.metrics[0], 0)]
                                + [agg.per_category.get(cat, {}).get(m, math.nan) for m in self.metrics])
            n_cat = sum(1 for cat in agg.categories if agg.counts[cat][self.metrics[0]] > 0)
            for name, src in (("macro", agg.macro), ("macro_std", agg.macro_std), ("per_sample", agg.per_sample),
                              ("weighted_avg_sq", agg.weighted_avg_sq)):
                csv_rows.append([d["layers"], d["steps"], c.post, name, n_cat] + [src[m] for m in self.metrics])
        put("table.csv", _csv(head, csv_rows))
        best_rows = [[m, cat, c.to_dict()["layers"], c.to_dict()["steps"], c.post, v]
                     for m in self.metrics for cat, (c, v) in self.best(m).items()]
        put("best_windows.csv", _csv(["metric", "category", "layers", "steps", "post", "value"], best_rows))
        # plots: macro metric over (layer window, timestep window); (start, end); last-n
        for m in self.metrics:
            for p in self.posts:
                name = f"heatmap_{_safe(m)}_{_safe(p)}.png"
                viz.ablation_heatmap(self.grid_values(m, p), [layers_label(lw) for lw in self.layer_windows],
                                     [steps_label(sw) for sw in self.step_windows],
                                     title=f"{m} (macro), post={p}", path=out / name, xlabel="timestep window [start:end)",
                                     ylabel="layers")
                files.append(name)
        starts = sorted({a for a, _ in self.step_windows})
        ends = sorted({b for _, b in self.step_windows})
        if len(self.step_windows) >= 3 and len(starts) > 1 and len(ends) > 1:  # a (start, end) plane, not a diagonal
            for m in self.metrics:
                for lw in self.layer_windows:
                    for p in self.posts:
                        vals = np.full((len(starts), len(ends)), np.nan)
                        for a, b in self.step_windows:
                            vals[starts.index(a), ends.index(b)] = self.value(Cell(lw, (a, b), p), m)
                        name = f"start_end_{_safe(m)}_L{_safe(layers_label(lw))}_{_safe(p)}.png"
                        viz.ablation_heatmap(vals, starts, ends, title=f"{m} (macro), layers {layers_label(lw)}, post={p}",
                                             path=out / name, xlabel="end", ylabel="start")
                        files.append(name)
        if self.last_n:
            ns = sorted(set(self.last_n))
            rows = []
            for m in self.metrics:
                series = {}
                for lw in self.layer_windows:
                    for p in self.posts:
                        ys = [self.value(Cell(lw, (self.n_grid - n, self.n_grid), p), m) for n in ns]
                        series[f"layers {layers_label(lw)}, {p}"] = ys
                        rows += [[m, layers_label(lw), p, n, y] for n, y in zip(ns, ys)]
                name = f"last_n_{_safe(m)}.png"
                viz.curve(ns, series, xlabel=f"n (window = last n of {self.n_grid} steps)", ylabel=f"{m} (macro)",
                          path=out / name, title=f"last-n-steps curve (Nuetzel), {self.checkpoint}")
                files.append(name)
            put("last_n.csv", _csv(["metric", "layers", "post", "n", "macro"], rows))
        md = self.to_markdown()
        t2 = vilouras_table2(self, reference)
        if t2 is not None:
            t2_rows, t2_md = t2
            put("vilouras_table2.csv", _csv(list(t2_rows[0]), [list(r.values()) for r in t2_rows]))
            put("vilouras_table2.md", t2_md)
            md += "\n" + t2_md
        put("table.md", md)
        summary = {"checkpoint": self.checkpoint, "recipe": self.recipe.to_dict(), "recipe_digest": self.recipe.digest(),
                   "protocol": self.protocol, "metrics": list(self.metrics), "posts": self.posts,
                   "layer_windows": [layers_label(w) for w in self.layer_windows],
                   "step_windows": [steps_label(w) for w in self.step_windows], "last_n": self.last_n,
                   "n_samples": self.n_samples, "calls": self.calls, "timings": self.timings, "notes": self.notes,
                   "cells": {c.key: dict(c.to_dict(), **self.aggregates[c.key].to_dict()) for c in self.cells}}
        put("ablation.json", json.dumps(_clean(summary), indent=2))
        self.out_dir, self.files = out, files
        return files


# ================================================================================================
# running
# ================================================================================================
def _group_by_image(samples) -> list[tuple[str, list]]:
    groups: dict[str, list] = {}
    for s in samples:
        groups.setdefault(str(s.image_path), []).append(s)
    return list(groups.items())


def _category(sample) -> str | None:
    """The MS-CXR category for token filters ('disease'); None for a sweep's unlabelled phrase."""
    return sample.category if sample.category in CATEGORIES else None


def _capture(model, plan: _Plan, store: AblationStore, groups, resume: bool, progress: bool) -> dict[str, float]:
    """Capture every sample whose entry is missing (or stale): one capture call per image with all of
    its missing phrases. Returns call counts."""
    from tqdm.auto import tqdm

    made = forwards = captured = reused = 0
    seconds = 0.0
    todo = []
    for image, samples in groups:
        missing = [s for s in samples if not (resume and store.covers(AblationStore.key(s), plan.capture_key,
                                                                        plan.stored_steps, plan.stored_layers))]
        reused += len(samples) - len(missing)
        if missing:
            todo.append((image, missing))
    for image, missing in tqdm(todo, desc="capture", disable=not progress or not todo):
        t = time.perf_counter()
        prep = model.prepare(image)
        cap = model.capture(prep, [s.phrase for s in missing], plan.capture, categories=[_category(s) for s in missing])
        made += cap.calls
        forwards += cap.forwards
        for p, s in enumerate(missing):
            meta = {"sample_id": s.sample_id, "image_path": str(s.image_path), "phrase": s.phrase, "category": s.category,
                    "geometry": {"orig_h": prep.geometry.orig_h, "orig_w": prep.geometry.orig_w, "size": prep.geometry.size},
                    "image_sha1": prep.key, "checkpoint": model.entry.name, "capture_key": plan.capture_key,
                    "recipe_digest": plan.capture.digest(), "capture_recipe": plan.capture.to_dict(),
                    "unet_calls": cap.calls / len(missing), "phrases_in_capture": len(missing), "tokens": _clean(cap.explained[p])}
            store.put(AblationStore.key(s), cap.maps[p], plan.stored_steps, meta)
        captured += len(missing)
        seconds += time.perf_counter() - t
    return {"made": made, "forwards": forwards, "captured_samples": captured, "reused_samples": reused,
            "capture_seconds": seconds}


def _evaluate(model, plan: _Plan, store: AblationStore, samples, progress: bool, keep_heatmaps: bool):
    from tqdm.auto import tqdm

    proto = get_protocol(plan.recipe.protocol)
    size = model.adapter.image_size
    rows: list[dict] = []
    heatmaps: dict | None = {} if keep_heatmaps else None
    recipes = {c.key: plan.recipe.override(steps=c.steps, layers=c.layers, threshold=c.post) for c in plan.cells}
    recorded = 0.0
    for s in tqdm(samples, desc="evaluate", disable=not progress):
        maps, meta = store.get(AblationStore.key(s))
        recorded += float(meta.get("unet_calls", 0.0))
        geo = Geometry(**meta["geometry"])
        for c in plan.cells:
            hm = make_heatmap(maps, recipes[c.key], size)
            res = proto.evaluate(hm.heatmap, hm.mask, geo, s.boxes)
            row = {"sample_id": s.sample_id, "image": str(s.image_path), "phrase": s.phrase, "category": s.category,
                   **c.to_dict()}
            row.update({m: res[m] for m in plan.metrics})
            row["n_boxes"], row["n_boxes_dropped"] = res.get("n_boxes"), res.get("n_boxes_dropped")
            rows.append(row)
            if heatmaps is not None:
                heatmaps[(s.sample_id, c.key)] = hm
    return rows, heatmaps, recorded


def _run(model, plan: _Plan, groups, store: AblationStore, *, resume: bool, progress: bool, keep_heatmaps: bool) -> AblationResult:
    t0 = time.perf_counter()
    calls = _capture(model, plan, store, groups, resume, progress)
    t1 = time.perf_counter()
    samples = [s for _, ss in groups for s in ss]
    if len({AblationStore.key(s) for s in samples}) != len(samples):
        raise ValueError("ablation: duplicate samples (same id, image, phrase and category)")
    rows, heatmaps, recorded = _evaluate(model, plan, store, samples, progress, keep_heatmaps)
    t2 = time.perf_counter()
    mode = plan.recipe.mode
    cap_window = tuple(plan.capture.steps)
    distinct = list(dict.fromkeys(plan.step_windows))
    calls.update(
        one_capture=sum(window_cost(mode, cap_window, len(ss)) for _, ss in groups),
        recorded_capture=recorded,  # the calls the stored entries cost when they were captured
        rerun=sum(window_cost(mode, sw, len(ss)) for _, ss in groups for _ in plan.layer_windows for sw in plan.step_windows),
        rerun_distinct_steps=sum(window_cost(mode, sw, len(ss)) for _, ss in groups for sw in distinct),
    )
    by_cell: dict[str, list[dict]] = {c.key: [] for c in plan.cells}
    for r in rows:
        by_cell[f"{r['layers']}|{r['steps']}|{r['post']}"].append(r)
    aggs = {k: aggregate(v, plan.metrics) for k, v in by_cell.items()}
    notes = []
    gaps = sorted(set(range(*cap_window)) - set(plan.stored_steps))
    if gaps:
        notes.append(f"the windows are not contiguous: steps {gaps[0]}..{gaps[-1]} ({len(gaps)}) were computed by the "
                     "capture (one contiguous range) but not stored")
    return AblationResult(
        checkpoint=model.entry.name, recipe=plan.recipe, protocol=get_protocol(plan.recipe.protocol).name,
        metrics=plan.metrics, layer_windows=plan.layer_windows, step_windows=plan.step_windows, posts=plan.posts,
        last_n=plan.last_n, n_grid=plan.n_grid, n_layers=len(model.layers), cells=plan.cells, rows=rows, aggregates=aggs,
        calls=calls, timings={"capture_seconds": t1 - t0, "evaluate_seconds": t2 - t1, "total_seconds": t2 - t0},
        n_samples=len(samples), heatmaps=heatmaps, notes=notes)


def run_ablation(model, samples, base_recipe: str | Recipe | None = None, layer_windows=None, step_windows=None,
                 posts: Sequence[str] | None = None, metrics: Sequence[str] | None = None, out_dir: str | Path | None = None,
                 *, resume: bool = True, progress: bool = True, last_n: Sequence[int] | None = None,
                 store_dtype: str = "float16", overrides: dict | None = None, reference: str | Path | None = None,
                 keep_heatmaps: bool = False) -> AblationResult:
    """Capture each sample once over the union of the windows, then evaluate every
    (layer window x timestep window x post) cell from the store.

    samples: MS-CXR ``Sample``s (``groundkit.bench.datasets.load_dataset``); samples of one image are
    captured by one call. layer_windows: list of index tuples or None (= all), or a string
    'all;3,4,6,7;2-7'. step_windows: list of (start, end) grid windows or '0:100;40:60'. posts:
    thresholds ('otsu', 'multiotsu', 'gmm', 'none', 'recipe'); default the recipe's. metrics: default
    the protocol's. last_n: adds Nuetzel's windows (n_grid - n, n_grid). out_dir: the store lives in
    out_dir/store and the outputs are written there (None: in-memory store, nothing written).
    resume: reuse store entries captured with the same settings and covering the windows.
    """
    plan = _plan(model, base_recipe, layer_windows, step_windows, posts, metrics, last_n, overrides)
    store = AblationStore(None if out_dir is None else Path(out_dir) / "store", store_dtype)
    result = _run(model, plan, _group_by_image(samples), store, resume=resume, progress=progress, keep_heatmaps=keep_heatmaps)
    if out_dir is not None:
        result.write(out_dir, reference)
    return result


def sweep(model, image, phrases: str | Sequence[str], boxes, layer_windows=None, step_windows=None,
          posts: Sequence[str] | None = None, metrics: Sequence[str] | None = None, recipe: str | Recipe | None = None,
          *, categories: str | Sequence[str | None] | None = None, last_n: Sequence[int] | None = None,
          keep_heatmaps: bool = True, progress: bool = False, **overrides: Any) -> AblationResult:
    """Notebook sweep on one image: one capture, every window evaluated in memory.

    phrases: one phrase (then ``boxes`` = its [x, y, w, h] boxes) or a list (then one box list per
    phrase). ``result.table()`` lists the cells, ``result.heatmaps[(phrase, cell.key)]`` holds the
    maps (crop space) for display. Recipe fields can be overridden as in ``ground()``."""
    from ..data.images import load_image
    from ..data.mscxr import Sample

    single = isinstance(phrases, str)
    phrases = [phrases] if single else list(phrases)
    box_lists = [boxes] if single else list(boxes)
    if len(box_lists) != len(phrases):
        raise ValueError(f"sweep: {len(phrases)} phrases but {len(box_lists)} box lists")
    cats = [categories] * len(phrases) if categories is None or isinstance(categories, str) else list(categories)
    img = load_image(image)
    h, w = img.shape[:2]
    name = str(image) if isinstance(image, (str, Path)) else "<image>"
    samples = [Sample(sample_id=p, image_path=name, phrase=p, category=c or "unknown",
                      boxes=tuple(tuple(float(v) for v in b) for b in bl), image_width=w, image_height=h)
               for p, c, bl in zip(phrases, cats, box_lists)]
    plan = _plan(model, recipe, layer_windows, step_windows, posts, metrics, last_n, overrides)
    if any(c is None for c in cats) and plan.recipe.tokens == "disease":
        raise ValueError("sweep: tokens='disease' needs categories=")
    groups = [(img, samples)]
    store = AblationStore(None)
    return _run(model, plan, groups, store, resume=False, progress=progress, keep_heatmaps=keep_heatmaps)


# ================================================================================================
# Vilouras Table II
# ================================================================================================
_T2_FILE = "vilouras2024_table2.csv"


def reference_file(name: str = _T2_FILE) -> Path | None:
    """benchmarks/reference/<name> of the source tree if present, else ../shared/reference/<name>."""
    repo = Path(__file__).resolve().parents[2]
    for p in (repo / "benchmarks" / "reference" / name, repo.parent / "shared" / "reference" / name,
              Path.cwd() / "benchmarks" / "reference" / name):
        if p.is_file():
            return p
    return None


def _t2_setup(setup: str, n_layers: int, n_grid: int) -> tuple[tuple | None, tuple[int, int], bool]:
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
        lw, sw, _ = _t2_setup(s, n_layers, n_grid)
        lws.append(lw)
        sws.append(sw)
    return lws, sws, ["none", "otsu"]


def _read_reference(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        lines = [ln for ln in f if not ln.lstrip().startswith("#") and ln.strip()]
    reader = csv.DictReader(lines)
    return list(reader.fieldnames or []), list(reader)


def vilouras_table2(result: AblationResult, reference: str | Path | None = None):
    """Our numbers beside Vilouras Table II's, for each published setup our grid holds.

    Returns (rows, markdown) or None when the protocol is not Vilouras', the reference is missing or
    no setup is in the grid. mIoU is shown in percent as published; cnr is the signed CNR."""
    if result.protocol != "vilouras":
        return None
    path = Path(reference) if reference is not None else reference_file()
    if path is None or not path.is_file():
        return None
    header, ref = _read_reference(path)
    cats = [h for h in header if h not in ("setup", "metric", "Avg")]
    rows, md_rows = [], []
    matched = 0
    for r in ref:
        lw, sw, otsu = _t2_setup(r["setup"], result.n_layers, result.n_grid)
        post = next((p for p in (("otsu", "multiotsu") if otsu else ("none",)) if p in result.posts), None)
        metric = r["metric"]
        cell = Cell(_norm_layers(lw, result.n_layers, result.layer_windows), sw, post) if post else None
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
            md.append(f"{_f(ours, 1 if scale > 1 else 2)} / {_f(pub, 1 if scale > 1 else 2)}")
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
    text += [""] + _md(["setup", "metric", "layers", "steps", "post"] + cats + ["Avg"], md_rows)
    return rows, "\n".join(text) + "\n"


def _norm_layers(lw, n_layers: int, windows: list):
    """Match 'all layers' whether the grid spells it None or 0..n-1."""
    if lw is None and tuple(range(n_layers)) in windows and None not in windows:
        return tuple(range(n_layers))
    return lw


# ================================================================================================
# small helpers
# ================================================================================================
def _f(v, digits: int = 3) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "nan" if math.isnan(v) else f"{v:.{digits}f}"


def _md(head: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _csv(head: list[str], rows: list[list]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for r in rows:
        w.writerow(["" if isinstance(v, float) and math.isnan(v) else (f"{v:.6g}" if isinstance(v, float) else v) for v in r])
    return buf.getvalue()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)


def _clean(obj):
    """JSON-safe: NaN -> None, numpy scalars -> Python, tuples -> lists, dataclasses -> dicts."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(obj, np.integer):
        return int(obj)
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return _clean(asdict(obj))
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
