"""Layer x timestep window ablation from ONE capture per sample .

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

Cost accounting (docs/protocols.md §7, the engine's own formula): one U-Net call per (timestep, batch item).
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

from groundkit.bench.ablation.plan import Plan, make_plan
from groundkit.bench.ablation.result import AblationResult
from groundkit.bench.ablation.run import run_ablation, sweep
from groundkit.bench.ablation.store import AblationStore
from groundkit.bench.ablation.table2 import (
    reference_file,
    vilouras_table2,
    vilouras_table2_grid,
)
from groundkit.bench.ablation.windows import (
    Cell,
    last_n_windows,
    layers_label,
    parse_layers_grid,
    parse_timesteps_grid,
    steps_label,
    window_cost,
)

__all__ = [
    "AblationStore", "AblationResult", "Cell", "Plan", "make_plan", "run_ablation", "sweep", "parse_layers_grid",
    "parse_timesteps_grid", "last_n_windows", "window_cost", "layers_label", "steps_label", "vilouras_table2_grid", "vilouras_table2",
    "reference_file",
]
