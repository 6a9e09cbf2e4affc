"""`groundkit report`: ground every finding of a radiology report in one image (no arguments: the bundled
demo image and report) and write report.html, findings.json and one heatmap/mask per finding."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from groundkit.cli import common as C
from groundkit.core.outdir import UnsafeOutputError, check_targets

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


def report(
    image: Optional[str] = typer.Option(None, "--image", "-i", help="PNG/JPEG/DICOM; default: the bundled demo image"),
    report_file: Optional[Path] = typer.Option(None, "--report", help="a text file with the report (FINDINGS / IMPRESSION sections welcome)"),
    text: Optional[str] = typer.Option(None, "--text", "-t", help="the report itself, instead of --report"),
    checkpoint: str = C.checkpoint_option(),
    recipe: Optional[str] = C.recipe_option(),
    set_: List[str] = C.set_option(),
    device: Optional[str] = C.device_option(),
    dtype: str = C.dtype_option(),
    compile_: bool = C.compile_option(),
    progress: bool = C.progress_option(),
    out: Path = typer.Option(Path("groundkit-report"), "--out", "-o", help="output folder (report.html, findings.json, ...)"),
    contrast: str = typer.Option("findings", "--contrast",
                                 help="findings: each finding's map computed against the report's other findings "
                                      "(default; one finding: its own map); none: each finding on its own"),
    side_prior: bool = typer.Option(True, "--side-prior/--no-side-prior",
                                    help="weight each finding's map towards the side and zone its report names (left/right, "
                                         "upper/middle/lower; patient's right = image left); on by default"),
    min_confidence: Optional[float] = typer.Option(None, "--min-confidence", min=0.0, max=1.0,
                                                   help="findings whose calibrated confidence is below this are listed as "
                                                        "not localised, no region drawn (needs `groundkit calibrate`)"),
    checkpoints_file: Optional[Path] = C.checkpoints_file_option(),
):
    """Ground a whole report: findings extracted, negations respected, all positive findings in one shared pass."""
    image, text = _inputs(image, report_file, text, contrast)
    try:  # a planted link named like an output is refused before the model loads (groundkit.core.outdir)
        check_targets(out, ("overlay.png", "findings.json", "report.html"), ("finding_*",))
    except UnsafeOutputError as e:
        C.fail(str(e))
    overrides = C.parse_sets(set_)  # bounds checked before the model loads (groundkit.core.bounds)
    model = C.load_model(checkpoint, device, dtype, checkpoints_file, compile_)
    try:
        rg = model.ground_report(image, text, recipe, contrast=contrast, side_prior=side_prior, progress=progress,
                                 min_confidence=min_confidence, **overrides)
    except (FileNotFoundError, ValueError) as e:
        C.fail(str(e))
    rg.save(out)
    _print_summary(rg, out, side_prior)


def _inputs(image: Optional[str], report_file: Optional[Path], text: Optional[str], contrast: str) -> tuple[str, str]:
    """The image and the report text, checked before anything loads (the bundled sample when neither is given)."""
    if image is None and report_file is None and text is None:
        image, report_file = str(DEMO / "sample_report.png"), DEMO / "sample_report.txt"
    if image is None:
        C.fail("--image is required when a report is given")
    if not Path(image).exists():
        C.fail(f"--image {image}: no such file")
    if (report_file is None) == (text is None):
        C.fail("give the report with --report FILE or --text \"...\" (one of them)")
    if report_file is not None:
        if not report_file.is_file():
            C.fail(f"--report {report_file}: no such file")
        text = report_file.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        C.fail("the report is empty")
    if contrast.strip().lower() not in ("findings", "none"):
        C.fail(f"--contrast {contrast}: expected findings or none")
    return image, text


def _print_summary(rg, out: Path, side_prior: bool) -> None:
    """One line per finding (grounded, not localised or negated), then the totals."""
    for f in rg.findings:
        g = f.grounding
        conf = "" if g is None or g.confidence is None else f", confidence {g.confidence:.2f}"
        state = ("negated, not grounded" if f.negated else f"not localised{conf}" if not g.localised
                 else f"grounded ({g.info['unet_calls']:g} U-Net calls{conf})")
        typer.echo(f"  {f.finding.category:<18} {f.finding.phrase!r}: {state}" + ("  [uncertain]" if f.finding.uncertain else ""))
    typer.echo(f"{len(rg.positive)} finding(s) grounded, {len(rg.negated)} negated, in {rg.info['seconds']:.1f} s "
               f"({rg.info['unet_calls_total']:g} U-Net calls in all, contrast: {rg.info['contrast']['mode']}, "
               f"side prior: {'on' if side_prior else 'off'}) -> {out}/report.html")
