"""CLI command of the window ablation (registered on the main typer app)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

PRESETS = ("vilouras-table2",)


def register(app: typer.Typer) -> None:
    app.command("ablate")(ablate)


def ablate(
    checkpoint: str = typer.Option("demo", "--checkpoint", "-c", help="name from checkpoints.yaml or a checkpoint folder"),
    dataset: str = typer.Option(..., "--dataset", help="synthetic | mscxr"),
    data: Optional[Path] = typer.Option(None, "--data", help="synthetic: folder written by `groundkit demo-data`"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="mscxr: MS_CXR_Local_Alignment_v1.x.0.csv"),
    images: Optional[Path] = typer.Option(None, "--images", help="mscxr: image root the CSV paths are relative to"),
    split: Optional[str] = typer.Option(None, "--split", help="keep one split (v1.1.0: train | val | test)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="first N samples only"),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="base recipe (default: the checkpoint's)"),
    set_: List[str] = typer.Option([], "--set", help="recipe field override, e.g. --set grid=stride:10 (repeatable)"),
    layers_grid: Optional[str] = typer.Option(None, "--layers-grid", help="';'-separated layer windows, e.g. \"all;3,4,6,7;2-7\" (default: the recipe's)"),
    timesteps_grid: Optional[str] = typer.Option(None, "--timesteps-grid", help="';'-separated grid windows START:END, e.g. \"0:100;40:60\"; an item with a stride, e.g. 0:50:10, adds every window with start and end on that lattice (default: the recipe's)"),
    post: Optional[str] = typer.Option(None, "--post", help="comma-separated thresholds: otsu,multiotsu,gmm,none,recipe (default: the recipe's)"),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="comma-separated metrics of the recipe's protocol (default: all of them)"),
    last_n: Optional[str] = typer.Option(None, "--last-n", help="Nuetzel's last-n-steps windows, e.g. 1,5,10,20,40"),
    preset: Optional[str] = typer.Option(None, "--preset", help="vilouras-table2: the windows/posts/metrics of Vilouras Table II and grid stride:10 (explicit options win)"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="reuse captured samples in OUT/store"),
    store_dtype: str = typer.Option("float16", "--store-dtype", help="float16 (compact) | float32 (exact)"),
    device: Optional[str] = typer.Option(None, help="cpu | cuda | mps (default: best available)"),
    dtype: str = typer.Option("float32", help="U-Net dtype: float32 | float16 | bfloat16"),
    checkpoints_file: Optional[Path] = typer.Option(None, "--checkpoints-file", help="a checkpoints.yaml of your own"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (the store lives in OUT/store)"),
):
    """Layer x timestep window ablation from ONE capture per sample: table, plots, best windows."""
    from .. import api
    from ..cli import _fail, parse_sets
    from . import ablation as A
    from .datasets import load_dataset

    overrides = parse_sets(set_)
    posts = [p.strip() for p in post.split(",") if p.strip()] if post else None
    ms = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    try:
        ns = [int(n) for n in last_n.split(",") if n.strip()] if last_n else None
    except ValueError:
        _fail(f"--last-n expects comma-separated integers, got {last_n!r}")
    if preset is not None and preset not in PRESETS:
        _fail(f"--preset {preset!r}: expected one of {', '.join(PRESETS)}")
    try:
        samples = load_dataset(dataset, csv=csv, images=images, data=data, split=split, limit=limit)
        if not len(samples):
            _fail("the dataset holds no samples")
        model = api.load(checkpoint, device=device, dtype=dtype, checkpoints_file=checkpoints_file)
        lws, sws = layers_grid, timesteps_grid
        if preset == "vilouras-table2":
            overrides.setdefault("grid", "stride:10")
            r = model.recipe(recipe, **{**overrides, "steps": "0:1", "layers": "all"})  # only the grid is needed here
            n_grid = len(r.timesteps(model.adapter.schedule.num_train_timesteps))
            p_lws, p_sws, p_posts = A.vilouras_table2_grid(len(model.layers), n_grid)
            lws = lws if lws is not None else p_lws
            sws = sws if sws is not None else p_sws
            posts = posts or p_posts
            ms = ms or ["miou_thr", "cnr"]
        res = A.run_ablation(model, samples, recipe, lws, sws, posts, ms, out, resume=resume, progress=not quiet,
                             last_n=ns, store_dtype=store_dtype, overrides=overrides)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    m = res.metrics[0]
    typer.echo(f"{res.n_samples} samples, {len(res.cells)} cells ({len(res.layer_windows)} layer x "
               f"{len(res.step_windows)} timestep windows x {len(res.posts)} posts), protocol {res.protocol}")
    typer.echo(f"{m} (macro) by window:")
    for t in res.table(m):
        typer.echo(f"  layers {t['layers']:<12} steps {t['steps']:<9} post {t['post']:<9} {t['macro']:.4f} ± {t['macro_std']:.4f}")
    best = res.best(m)
    if "macro" in best:
        c, v = best["macro"]
        typer.echo(f"best window ({m}, macro): layers {c.to_dict()['layers']}, steps {c.to_dict()['steps']}, post {c.post} = {v:.4f}")
    typer.echo(res.calls_line())
    typer.echo(f"capture {res.timings['capture_seconds']:.1f} s, evaluation {res.timings['evaluate_seconds']:.1f} s -> "
               f"{out}/table.md" + (" (+ vilouras_table2.md)" if "vilouras_table2.md" in res.files else ""))
