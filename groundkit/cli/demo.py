"""`groundkit demo-data`: the synthetic chest X-ray set the demo checkpoint was trained and measured on."""
from __future__ import annotations

from pathlib import Path

import typer


def demo_data(
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    n: int = typer.Option(200, "--n", min=1, help="number of images"),
    seed: int = typer.Option(0, "--seed", help="random seed (the demo was trained on 1000+, chosen on 77, measured on 2026)"),
    size: int = typer.Option(512, "--size", min=32, help="short side in pixels"),
    split: str = typer.Option("test", "--split", help="value of the CSV's split column"),
    reports: bool = typer.Option(False, "--reports", help="images with 1-3 findings each and a whole report per image "
                                 "(reports/<id>.txt) with the ground truth of every mention (reports/<id>.json)"),
):
    """Write a synthetic chest X-ray set with an MS-CXR-format CSV (and, with --reports, whole reports)."""
    if reports:
        from groundkit.data.synthetic_reports import generate_reports

        csv = generate_reports(out, n=n, seed=seed, size=size, split=split)
        typer.echo(f"wrote {n} images, {n} reports under {out}/reports/ and {csv}")
        return
    from groundkit.data.synthetic import generate

    csv = generate(out, n=n, seed=seed, size=size, split=split)
    typer.echo(f"wrote {n} images and {csv}")
