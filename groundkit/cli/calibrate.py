"""`groundkit calibrate`: fit a checkpoint's confidence for one recipe on labelled validation data and store it
next to the checkpoint's config (<checkpoint folder>/calibration/<recipe>.json, docs/confidence.md)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from groundkit.cli import common as C


def calibrate(
    checkpoint: str = C.checkpoint_option(),
    recipe: Optional[str] = C.recipe_option(),
    set_: List[str] = C.set_option(),
    dataset: Optional[str] = C.dataset_option(),
    data: Optional[Path] = C.data_option(),
    csv: Optional[Path] = C.csv_option(),
    images: Optional[Path] = C.images_option(),
    split: Optional[str] = typer.Option(None, "--split", help="keep one split (MS-CXR: default val); never test"),
    n: Optional[int] = typer.Option(None, "--n", min=10, help="first N samples only (default: all)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder to write calibration/<recipe>.json in "
                                                                 "(default: the checkpoint's folder)"),
    device: Optional[str] = C.device_option(),
    dtype: str = C.dtype_option(),
    progress: bool = C.progress_option(),
    checkpoints_file: Optional[Path] = C.checkpoints_file_option(),
):
    """Fit P(IoU of the returned mask >= 0.3) from label-free signals (logistic regression) on validation data."""
    from groundkit.bench.confidence import calibrate as fit_and_store
    from groundkit.bench.confidence import describe_data
    from groundkit.bench.datasets import load_dataset

    kind = C.check_dataset(dataset, csv, images, data)
    if split is None and kind == "mscxr":
        split = "val"
    if split is not None and split.strip().lower() == "test":
        C.fail("--split test: a calibration is never fitted on the test split (use the validation split)")
    try:
        ds = load_dataset(kind, csv=csv, images=images, data=data, split=split, limit=n)
    except (FileNotFoundError, ValueError) as e:
        C.fail(str(e))
    samples = list(ds)
    tests = sum(1 for s in samples if (s.split or "").lower() == "test")
    if tests:
        C.fail(f"{tests} of {len(samples)} samples are labelled split 'test': calibrate on validation data "
               "(`groundkit demo-data --out DIR --seed 77 --split val` writes the demo's validation split)")
    if not samples:
        C.fail("no samples to calibrate on")
    model = C.load_model(checkpoint, device, dtype, checkpoints_file)
    where = describe_data(kind, data if kind == "synthetic" else csv, samples)
    say = (lambda m: typer.echo(f"\r  {m}", nl=False, err=True)) if progress else None
    try:
        doc, path = fit_and_store(model, samples, recipe, data=where, out_dir=out, progress=say, **C.parse_sets(set_))
    except ValueError as e:
        C.fail(str(e))
    if progress:
        typer.echo("", err=True)
    fm = doc["fitted_metric"]
    typer.echo(f"calibrated {doc['checkpoint']} / {doc['recipe']} on {doc['n']} groundings ({doc['positives']} with "
               f"IoU >= 0.3) in {doc['seconds']:.0f} s: Spearman {fm['spearman']:.3f}, ECE {fm['ece']:.3f}, AURC "
               f"{fm['aurc']:.3f} (random {fm['aurc_random']:.3f}, oracle {fm['aurc_oracle']:.3f}) on the fitting data -> {path}")
