"""`groundkit run`: ground one phrase in one image (with no arguments: the bundled demo sample)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from groundkit.cli import common as C

DEMO_SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "demo" / "sample.png"


def _demo_defaults(text, category, box):
    """The bundled sample's phrase, and its category and boxes only for that phrase: another phrase on the
    demo image is not scored against the effusion's box."""
    meta = json.loads(DEMO_SAMPLE.with_suffix(".json").read_text())
    if text and text.strip() != meta["phrase"]:
        return text, category, box
    return (meta["phrase"], category or meta.get("category"),
            box or [",".join(str(v) for v in b) for b in meta.get("boxes", [])])


def _boxes(box: List[str]) -> list[tuple[float, ...]]:
    try:
        boxes = [tuple(float(v) for v in b.split(",")) for b in box]
        if any(len(b) != 4 for b in boxes):
            raise ValueError
    except ValueError:
        C.fail(f"--box expects x,y,w,h numbers in original pixels, got {box}")
    return boxes


def _check_out(out: Path) -> None:
    """A planted link named like an output is refused before the model loads (groundkit.core.outdir)."""
    from groundkit.core.outdir import UnsafeOutputError, check_targets
    from groundkit.grounding import OUTPUT_FILES

    try:
        check_targets(out, OUTPUT_FILES)
    except UnsafeOutputError as e:
        C.fail(str(e))


def run(
    image: Optional[str] = typer.Option(None, "--image", "-i", help="PNG/JPEG/DICOM; default: the bundled demo image"),
    text: Optional[str] = typer.Option(None, "--text", "-t", help="the phrase to ground; default: the demo image's phrase"),
    checkpoint: str = C.checkpoint_option(),
    recipe: Optional[str] = C.recipe_option(),
    layers: Optional[str] = C.layers_option(),
    steps: Optional[str] = C.steps_option(),
    mode: Optional[str] = C.mode_option(),
    tokens: Optional[str] = C.tokens_option(),
    threshold: Optional[str] = C.threshold_option(),
    bbm: Optional[str] = C.bbm_option(),
    category: Optional[str] = typer.Option(None, "--category", help="MS-CXR category (for --tokens disease)"),
    box: List[str] = typer.Option([], "--box", help="ground-truth box x,y,w,h in original pixels (repeatable): adds metrics"),
    seed: Optional[int] = C.seed_option(),
    device: Optional[str] = C.device_option(),
    dtype: str = C.dtype_option(),
    compile_: bool = C.compile_option(),
    token_maps: bool = typer.Option(False, "--token-maps", help="also write one map per word (tokens.png)"),
    set_: List[str] = C.set_option(),
    progress: bool = C.progress_option(),
    out: Path = typer.Option(Path("groundkit-out"), "--out", "-o", help="output folder"),
    checkpoints_file: Optional[Path] = C.checkpoints_file_option(),
):
    """Ground one phrase in one image; writes heatmap.npy, mask.png, overlay.png and result.json."""
    if image is None:
        image = str(DEMO_SAMPLE)
        text, category, box = _demo_defaults(text, category, box)
    if not text:
        C.fail("--text is required when --image is given")
    if not Path(image).exists():
        C.fail(f"--image {image}: no such file")
    boxes = _boxes(box)
    overrides = C.recipe_overrides(set_, layers=layers, steps=steps, mode=mode, tokens=tokens, threshold=threshold,
                                   bbm=bbm, seed=seed)
    _check_out(out)
    model = C.load_model(checkpoint, device, dtype, checkpoints_file, compile_)
    try:
        g = model.ground(image, text, recipe, category=category, token_maps=token_maps, progress=progress, **overrides)
    except (FileNotFoundError, ValueError) as e:
        C.fail(str(e))
    metrics = g.evaluate(boxes) if boxes else None  # recorded by save() and drawn on the overlay
    g.save(out)
    typer.echo(f"grounded {text!r} with {model.entry.name} / {g.recipe.name} in {g.info['timings']['total_seconds_batch']:.1f} s, "
               f"{g.info['unet_calls']:g} U-Net calls -> {out}/overlay.png")
    if metrics:
        typer.echo("metrics: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if not k.startswith("n_boxes")))
