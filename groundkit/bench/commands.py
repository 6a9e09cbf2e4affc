"""CLI command of the benchmark runner (registered on the main typer app by groundkit.cli).

    groundkit benchmark --checkpoint A [--checkpoint B ...] [--recipe R] [--set field=value ...]
        (--dataset mscxr --csv PATH --images ROOT | --dataset synthetic --data DIR)
        [--split S] [--limit N] [--device D] --out DIR [--no-resume] [--retry-errors] [--no-report | --no-gallery]
    groundkit benchmark --compare DIR1 DIR2 [--checkpoint A [--checkpoint B]] [--bootstrap 2000] [--seed 0]

Under ``torchrun --nproc-per-node K -m groundkit benchmark ...`` the ranks shard the images and rank 0
merges (see groundkit.bench.runner).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import typer


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _check_inputs(dataset: str, csv: Optional[Path], images: Optional[Path], data: Optional[Path]) -> None:
    if dataset == "mscxr":
        if csv is None:
            _fail("--dataset mscxr needs --csv PATH (MS_CXR_Local_Alignment_v1.1.0.csv) and --images ROOT (the MIMIC-CXR-JPG root)")
        if not csv.is_file():
            _fail(f"--csv {csv}: no such file (the MS-CXR CSV from PhysioNet, e.g. MS_CXR_Local_Alignment_v1.1.0.csv)")
        if images is None:
            _fail("--dataset mscxr needs --images ROOT: the folder that the CSV's 'path' column is relative to")
        if not images.is_dir():
            _fail(f"--images {images}: no such folder")
    elif dataset == "synthetic":
        if data is None:
            _fail("--dataset synthetic needs --data DIR (create one with `groundkit demo-data --out DIR`)")
        if not data.is_dir():
            _fail(f"--data {data}: no such folder (create it with `groundkit demo-data --out {data}`)")
    else:
        _fail(f"--dataset {dataset!r}: expected mscxr or synthetic")


def benchmark(
    checkpoint: List[str] = typer.Option([], "--checkpoint", "-c", help="checkpoint name or folder (repeatable); with --compare: the config to take from DIR1 (and DIR2)"),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="vilouras2024 | nuetzel2025 | nuetzel2025-bbm (default: each checkpoint's own)"),
    set_: List[str] = typer.Option([], "--set", help="recipe override field=value (repeatable), e.g. --set tokens=disease --set bbm=linear"),
    dataset: str = typer.Option("mscxr", "--dataset", help="mscxr | synthetic"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="MS-CXR CSV (official v1.0.0/v1.1.0 or the pre-merged bboxxywh variant)"),
    images: Optional[Path] = typer.Option(None, "--images", help="root folder of the CSV's image paths (MIMIC-CXR-JPG)"),
    data: Optional[Path] = typer.Option(None, "--data", help="synthetic set folder (groundkit demo-data)"),
    split: Optional[str] = typer.Option(None, "--split", help="keep one split (train | val | test; needs the v1.1.0 CSV)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="first N samples only"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda | mps (default: best available; one GPU per rank under torchrun)"),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | float16 | bfloat16"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (rows.jsonl, run.json, tables, report.html)"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="skip rows already in --out (default) or start over"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start over: replace every row already in --out (same as --no-resume)"),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="on resume, re-run samples whose row holds an error"),
    report: bool = typer.Option(True, "--report/--no-report", help="write report.html"),
    gallery: bool = typer.Option(True, "--gallery/--no-gallery", help="re-ground best/median/worst samples for the report's overlays"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar"),
    checkpoints_file: Optional[Path] = typer.Option(None, "--checkpoints-file", help="a checkpoints.yaml of your own"),
    compare_dirs: Optional[Tuple[Path, Path]] = typer.Option(None, "--compare", help="compare two benchmark folders: DIR1 DIR2"),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=100, help="bootstrap resamples for --compare"),
    seed: int = typer.Option(0, "--seed", help="bootstrap seed for --compare"),
):
    """Benchmark checkpoints on MS-CXR (or the synthetic set) and write tables in both papers' layouts, or --compare two runs."""
    if compare_dirs:
        _compare(compare_dirs, checkpoint, bootstrap, seed, out)
        return
    if not checkpoint:
        _fail("--checkpoint is required (name from checkpoints.yaml or a checkpoint folder; repeatable)")
    if out is None:
        _fail("--out DIR is required")
    _check_inputs(dataset, csv, images, data)
    from ..cli import parse_sets
    from .datasets import load_dataset
    from .runner import dist_info, init_distributed, run_benchmark

    overrides = parse_sets(set_)
    if "tokens" in overrides and overrides["tokens"].startswith("word:"):
        overrides["tokens"] = "words:" + overrides["tokens"][5:]
    try:
        samples = load_dataset(dataset, csv=csv, images=images, data=data, split=split)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if len(samples) == 0:
        _fail(f"the dataset has no samples{' in split ' + repr(split) if split else ''}")
    selected = list(samples)[:limit] if limit else list(samples)
    present = sum(Path(s.image_path).is_file() for s in selected)
    if present == 0:
        _fail(f"none of the {len(selected)} images exists, e.g. {selected[0].image_path}: check --images"
              + (" / --data" if dataset == "synthetic" else ""))
    initialised = init_distributed(device)
    rank, world = dist_info()
    if rank == 0 and present < len(selected):
        typer.secho(f"warning: {len(selected) - present} of {len(selected)} images are missing; their rows will hold the error",
                    fg=typer.colors.YELLOW, err=True)
    desc = {"kind": dataset, "csv": str(csv) if csv else None, "images": str(images) if images else None,
            "data": str(data) if data else None, "split": split}
    try:
        result = run_benchmark(checkpoint, recipe, overrides, samples, out, resume=resume and not overwrite, retry_errors=retry_errors,
                               device=device, dtype=dtype, limit=limit, progress=progress, dataset=desc,
                               report=report, gallery=gallery, checkpoints_file=checkpoints_file)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    finally:
        if initialised:
            import torch.distributed as dist

            dist.destroy_process_group()
    if rank == 0:
        typer.echo(result.summary())
        if result.tables is not None:
            typer.echo("\n" + result.tables.markdown(published=False))


def _compare(dirs: Tuple[Path, Path], checkpoint: List[str], n_boot: int, seed: int, out: Optional[Path]) -> None:
    from .compare import compare

    if len(checkpoint) > 2:
        _fail("--compare takes at most two --checkpoint names (one per folder)")
    a = checkpoint[0] if checkpoint else None
    b = checkpoint[1] if len(checkpoint) > 1 else (a if dirs[0].resolve() != dirs[1].resolve() else None)
    for d in dirs:
        if not d.is_dir():
            _fail(f"--compare {d}: no such folder")
    try:
        cmp = compare(dirs[0], dirs[1], a, b, n_boot=n_boot, seed=seed)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    text = cmp.markdown()
    typer.echo(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(text)
        cmp.write_csv(out / "compare.csv")
        typer.echo(f"wrote {out / 'compare.md'} and {out / 'compare.csv'}")


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark)
