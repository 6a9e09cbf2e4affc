"""`groundkit benchmark`: the papers' tables on MS-CXR (or the synthetic set), and --compare of two runs.

    groundkit benchmark --checkpoint A [--checkpoint B ...] [--recipe R] [--set field=value ...]
        (--dataset mscxr --csv PATH --images ROOT | --dataset synthetic --data DIR)
        [--split S] [--limit N] [--device D] [--threads N] --out DIR [--no-resume] [--retry-errors] [--no-page | --no-gallery]
    groundkit benchmark --compare DIR1 DIR2 [--checkpoint A [--checkpoint B]] [--bootstrap 2000] [--seed 0]

Under ``torchrun --nproc-per-node K -m groundkit benchmark ...`` the ranks shard the images and rank 0
merges (see groundkit.bench.runner); on CPU each rank keeps at most cores / ranks-per-node threads unless
--threads says otherwise. Progress: a bar per rank on a terminal, a line per rank every 30 s in a log
(GROUNDKIT_PROGRESS_SECONDS).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Tuple

import typer

from groundkit.cli import common as C


def benchmark(
    checkpoint: List[str] = C.checkpoint_option(multiple=True),
    recipe: Optional[str] = C.recipe_option(),
    set_: List[str] = C.set_option(),
    dataset: Optional[str] = C.dataset_option(),
    csv: Optional[Path] = C.csv_option(),
    images: Optional[Path] = C.images_option(),
    data: Optional[Path] = C.data_option(),
    split: Optional[str] = C.split_option(),
    limit: Optional[int] = C.limit_option(),
    device: Optional[str] = C.device_option(),
    dtype: str = C.dtype_option(),
    compile_: bool = C.compile_option(),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="output folder, required except with --compare (rows.jsonl, run.json, tables, benchmark.html)"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="skip rows already in --out (default) or start over"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start over: replace every row already in --out (same as --no-resume)"),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="on resume, re-run samples whose row holds an error"),
    page: bool = typer.Option(True, "--page/--no-page", help="write the benchmark page, benchmark.html"),
    gallery: bool = typer.Option(True, "--gallery/--no-gallery", help="re-ground best/median/worst samples for the page's overlays"),
    progress: bool = C.progress_option(),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="CPU threads per process (torch.set_num_threads). Default: torch's own, except under "
        "torchrun on CPU, where each rank is capped at cores / ranks per node whatever OMP_NUM_THREADS says"),
    checkpoints_file: Optional[Path] = C.checkpoints_file_option(),
    compare_dirs: Optional[Tuple[Path, Path]] = typer.Option(
        None, "--compare", help="compare two benchmark folders DIR1 DIR2 (compare.md, compare.csv into --out)"),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=100, help="bootstrap resamples for --compare"),
    seed: int = typer.Option(0, "--seed", help="bootstrap seed for --compare"),
    old_report: Optional[bool] = typer.Option(None, "--report/--no-report", hidden=True, help="deprecated: --page/--no-page"),
):
    """Benchmark checkpoints on MS-CXR (or the synthetic set) and write tables in both papers' layouts, or --compare two runs."""
    if compare_dirs:
        _compare(compare_dirs, checkpoint, bootstrap, seed, out)
        return
    page = _page_flag(page, old_report)
    checkpoint = checkpoint or [C.DEFAULT_CHECKPOINT]
    if out is None:
        C.fail("--out DIR is required")
    dataset = C.check_dataset(dataset, csv, images, data)
    from groundkit.bench.runner import run_benchmark

    overrides = C.parse_sets(set_)
    samples, n_selected, present = _load_samples(dataset, csv, images, data, split, limit)
    initialised, rank = _start(device, checkpoint, n_selected, present)
    desc = {"kind": dataset, "csv": str(csv) if csv else None, "images": str(images) if images else None,
            "data": str(data) if data else None, "split": split}
    try:
        result = run_benchmark(checkpoint, recipe, overrides, samples, out, resume=resume and not overwrite, retry_errors=retry_errors,
                               device=device, dtype=dtype, compile=compile_, limit=limit, progress=progress, dataset=desc,
                               page=page, gallery=gallery, checkpoints_file=checkpoints_file, threads=threads)
    except (FileNotFoundError, ValueError) as e:
        C.fail(str(e))
    finally:
        if initialised:
            import torch.distributed as dist

            dist.destroy_process_group()
    if rank == 0:
        _print_result(result)


def _page_flag(page: bool, old_report: Optional[bool]) -> bool:
    """--page/--no-page, or the deprecated --report/--no-report (hidden; it named the benchmark page before
    "report" was kept for the radiology report alone): still obeyed, with a one-line warning."""
    if old_report is None:
        return page
    old, new = ("--report", "--page") if old_report else ("--no-report", "--no-page")
    typer.secho(f"warning: {old} is deprecated, use {new} (the benchmark page is now benchmark.html)",
                fg=typer.colors.YELLOW, err=True)
    return old_report


def _load_samples(dataset: str, csv: Optional[Path], images: Optional[Path], data: Optional[Path], split: Optional[str],
                  limit: Optional[int]) -> tuple[Any, int, int]:
    """(the dataset's samples, how many --limit selects, how many of those images exist); fails when there is
    nothing to run (no dataset, no samples, not one image on disk)."""
    from groundkit.bench.datasets import load_dataset

    try:
        samples = load_dataset(dataset, csv=csv, images=images, data=data, split=split)
    except (FileNotFoundError, ValueError) as e:
        C.fail(str(e))
    if len(samples) == 0:
        C.fail(f"the dataset has no samples{' in split ' + repr(split) if split else ''}")
    selected = list(samples)[:limit] if limit else list(samples)
    present = sum(Path(s.image_path).is_file() for s in selected)
    if present == 0:
        C.fail(f"none of the {len(selected)} images exists, e.g. {selected[0].image_path}: check --images"
              + (" / --data" if dataset == "synthetic" else ""))
    return samples, len(selected), present


def _start(device: Optional[str], checkpoint: List[str], n_selected: int, present: int) -> tuple[bool, int]:
    """(whether this call started torch.distributed, this process's rank); rank 0 warns of missing images."""
    from groundkit.bench.distributed import dist_info, init_distributed

    initialised = init_distributed(device)
    C.say(f"loading {', '.join(checkpoint)} ...")
    rank, world = dist_info()
    if rank == 0 and present < n_selected:
        typer.secho(f"warning: {n_selected - present} of {n_selected} images are missing; their rows will hold the error",
                    fg=typer.colors.YELLOW, err=True)
    return initialised, rank


def _print_result(result: Any) -> None:
    """The run's summary and its tables (rank 0 only)."""
    typer.echo(result.summary())
    if result.tables is not None:
        typer.echo("\n" + result.tables.markdown(published=False))


def _compare(dirs: Tuple[Path, Path], checkpoint: List[str], n_boot: int, seed: int, out: Optional[Path]) -> None:
    from groundkit.bench.compare import compare

    if len(checkpoint) > 2:
        C.fail("--compare takes at most two --checkpoint names (one per folder)")
    a = checkpoint[0] if checkpoint else None
    b = checkpoint[1] if len(checkpoint) > 1 else (a if dirs[0].resolve() != dirs[1].resolve() else None)
    for d in dirs:
        if not d.is_dir():
            C.fail(f"--compare {d}: no such folder")
    try:
        cmp = compare(dirs[0], dirs[1], a, b, n_boot=n_boot, seed=seed)
    except (FileNotFoundError, ValueError) as e:
        C.fail(str(e))
    text = cmp.markdown()
    typer.echo(text)
    if out is not None:
        from groundkit.core.outdir import check_target, ensure_dir, write_text

        ensure_dir(out)
        check_target(out / "compare.csv")  # refused before compare.md is written
        write_text(out / "compare.md", text)
        cmp.write_csv(out / "compare.csv")
        typer.echo(f"wrote {out / 'compare.md'} and {out / 'compare.csv'}")
