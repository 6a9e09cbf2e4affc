"""`groundkit ablate`: layer x timestep window ablation from one capture per sample."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from groundkit.cli import common as C
from groundkit.recipes import THRESHOLDS

PRESETS = ("vilouras-table2",)


def ablate(
    checkpoint: str = C.checkpoint_option(),
    dataset: Optional[str] = C.dataset_option(),
    data: Optional[Path] = C.data_option(),
    csv: Optional[Path] = C.csv_option(),
    images: Optional[Path] = C.images_option(),
    split: Optional[str] = C.split_option(),
    limit: Optional[int] = C.limit_option(),
    recipe: Optional[str] = C.recipe_option(),
    set_: List[str] = C.set_option(),
    layers_grid: Optional[str] = typer.Option(
        None, "--layers-grid", help="';'-separated layer windows, e.g. \"all;3,4,6,7;2-7;16x16\" (default: the recipe's)"),
    timesteps_grid: Optional[str] = typer.Option(
        None, "--steps-grid", "--timesteps-grid",
        help=("';'-separated windows of grid steps START:END, e.g. \"0:100;40:60\"; an item with a stride, e.g. 0:50:10, "
              "adds every window with start and end on that lattice (default: the recipe's; --timesteps-grid: old spelling)")),
    post: Optional[str] = typer.Option(None, "--post", help=f"comma-separated thresholds: {','.join(THRESHOLDS)},recipe (default: the recipe's)"),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="comma-separated metrics of the recipe's protocol (default: all of them)"),
    last_n: Optional[str] = typer.Option(None, "--last-n", help="Nuetzel's last-n-steps windows, e.g. 1,5,10,20,40"),
    preset: Optional[str] = typer.Option(None, "--preset", help=("vilouras-table2: the windows/posts/metrics of Vilouras Table II and "
                                                                      "grid stride:10 (explicit options win)")),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="reuse captured samples in OUT/store"),
    store_dtype: str = typer.Option("float16", "--store-dtype", help="float16 (compact) | float32 (exact)"),
    device: Optional[str] = C.device_option(),
    dtype: str = C.dtype_option(),
    compile_: bool = C.compile_option(),
    checkpoints_file: Optional[Path] = C.checkpoints_file_option(),
    progress: bool = C.progress_option(),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (the store lives in OUT/store)"),
):
    """Layer x timestep window ablation from ONE capture per sample: table, plots, best windows."""
    from groundkit.bench import ablation as A
    from groundkit.bench.ablation.run import OUTPUT_FILES
    from groundkit.bench.datasets import load_dataset
    from groundkit.core.outdir import UnsafeOutputError, check_targets

    dataset = C.check_dataset(dataset, csv, images, data)
    overrides = C.parse_sets(set_)
    posts, ms, ns = _parse_lists(post, metrics, last_n, preset)
    try:
        samples = load_dataset(dataset, csv=csv, images=images, data=data, split=split, limit=limit)
        if not len(samples):
            C.fail("the dataset holds no samples")
        check_targets(out, OUTPUT_FILES)  # a planted link is refused before the model loads
        model = C.load_model(checkpoint, device, dtype, checkpoints_file, compile_)
        lws, sws = layers_grid, timesteps_grid
        if preset == "vilouras-table2":
            lws, sws, posts, ms = _vilouras_table2(model, recipe, overrides, lws, sws, posts, ms)
        res = A.run_ablation(model, samples, recipe, lws, sws, posts, ms, out, resume=resume, progress=progress,
                             last_n=ns, store_dtype=store_dtype, overrides=overrides)
    except (FileNotFoundError, ValueError, UnsafeOutputError) as e:
        C.fail(str(e))
    _print_summary(res, out)


def _parse_lists(post: str | None, metrics: str | None, last_n: str | None, preset: str | None
                 ) -> tuple[list[str] | None, list[str] | None, list[int] | None]:
    """(posts, metrics, last-n windows) from their comma-separated options; a bad --last-n or --preset fails."""
    posts = [p.strip() for p in post.split(",") if p.strip()] if post else None
    ms = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    try:
        ns = [int(n) for n in last_n.split(",") if n.strip()] if last_n else None
    except ValueError:
        C.fail(f"--last-n expects comma-separated integers, got {last_n!r}")
    if preset is not None and preset not in PRESETS:
        C.fail(f"--preset {preset!r}: expected one of {', '.join(PRESETS)}")
    return posts, ms, ns


def _vilouras_table2(model: Any, recipe: str | None, overrides: dict[str, Any], lws: Any, sws: Any,
                     posts: list[str] | None, ms: list[str] | None) -> tuple[Any, Any, list[str], list[str]]:
    """The windows, posts and metrics of Vilouras Table II (on grid stride:10); explicit options win."""
    from groundkit.bench import ablation as A

    overrides.setdefault("grid", "stride:10")
    r = model.recipe(recipe, **{**overrides, "steps": "0:1", "layers": "all"})  # only the grid is needed here
    n_grid = len(r.timesteps(model.adapter.schedule.num_train_timesteps))
    p_lws, p_sws, p_posts = A.vilouras_table2_grid(len(model.layers), n_grid)
    lws = lws if lws is not None else p_lws
    sws = sws if sws is not None else p_sws
    return lws, sws, posts or p_posts, ms or ["miou_thr", "cnr"]


def _print_summary(res: Any, out: Path) -> None:
    """The run in a few lines: its size, the table of the first metric, the best window, timings."""
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
