"""What an ablation captures once (the union of its windows) and which cells it evaluates from it."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from groundkit.bench.ablation.windows import (
    METRIC_ALIASES,
    Cell,
    last_n_windows,
    layers_label,
    parse_layers_grid,
    parse_timesteps_grid,
    steps_label,
)
from groundkit.evaluation.protocols import get_protocol
from groundkit.recipes import THRESHOLDS, Recipe, resolve_layers


@dataclass
class Plan:
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


def make_plan(model, base_recipe, layer_windows, step_windows, posts, metrics, last_n, overrides) -> Plan:
    lws = parse_layers_grid(layer_windows) if layer_windows is not None else None
    if lws:  # selectors ("16x16", "up:16x16") become this model's indices
        lws = list(dict.fromkeys(resolve_layers(lw, model.layers, model.entry.name) if isinstance(lw, str) else lw for lw in lws))
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
            raise ValueError(f"post {p!r}: expected a registered threshold ({', '.join(THRESHOLDS)}) or 'recipe'")
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
    return Plan(r, capture, lws, sws, posts, ms, last_n, n_grid, stored_steps, stored_layers, capture_key)
