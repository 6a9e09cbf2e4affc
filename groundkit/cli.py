"""The command line: a thin layer that parses arguments and calls the library."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Zero-shot phrase grounding from diffusion cross-attention.")
checkpoints_app = typer.Typer(no_args_is_help=True, help="List and verify named checkpoints.")
app.add_typer(checkpoints_app, name="checkpoints")

DEMO_IMAGE = "package:assets/demo/sample.png"
DEMO_PHRASE_FILE = "package:assets/demo/sample.json"


def _fail(message: str) -> None:
    """One ``error:`` line and exit 2; with --debug / GROUNDKIT_DEBUG=1 the traceback of the exception being
    handled (if any) comes first."""
    import os

    if os.environ.get("GROUNDKIT_DEBUG") and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def parse_sets(sets: List[str]) -> dict:
    """--set field=value pairs -> recipe overrides (values parsed by the Recipe)."""
    out = {}
    for item in sets or []:
        if "=" not in item:
            _fail(f"--set expects field=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def recipe_overrides(layers, timesteps, mode, tokens, threshold, bbm, seed, sets) -> dict:
    o = parse_sets(sets)
    for key, value in (("layers", layers), ("steps", timesteps), ("mode", mode), ("tokens", tokens),
                       ("threshold", threshold), ("seed", None if seed is None else str(seed))):
        if value is not None:
            o[key] = value
    if bbm:
        o["bbm"] = bbm
    if "tokens" in o and o["tokens"].startswith("word:"):
        o["tokens"] = "words:" + o["tokens"][5:]
    return o


@app.command()
def run(
    image: Optional[str] = typer.Option(None, "--image", "-i", help="PNG/JPEG/DICOM; default: the bundled demo image"),
    text: Optional[str] = typer.Option(None, "--text", "-t", help="the phrase to ground; default: the demo image's phrase"),
    checkpoint: str = typer.Option("demo", "--checkpoint", "-c", help="name from checkpoints.yaml or a checkpoint folder"),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="vilouras2024 | nuetzel2025 | nuetzel2025-bbm | ... (default: the checkpoint's)"),
    layers: Optional[str] = typer.Option(None, help="cross-attention layers, e.g. 3,4,6,7 or 2-7 or all"),
    timesteps: Optional[str] = typer.Option(None, help="window of grid steps START:END, e.g. 120:180"),
    mode: Optional[str] = typer.Option(None, help="gt-noised | ddim-inversion"),
    tokens: Optional[str] = typer.Option(None, help="all | lexical | disease | word:w1,w2"),
    threshold: Optional[str] = typer.Option(None, help="otsu | gmm | none"),
    bbm: Optional[str] = typer.Option(None, "--bbm", help="Bimodal Bias Merging variant: mixture | linear | quadratic"),
    category: Optional[str] = typer.Option(None, help="MS-CXR category (for --tokens disease)"),
    box: List[str] = typer.Option([], "--box", help="ground-truth box x,y,w,h in original pixels (repeatable): adds metrics"),
    seed: Optional[int] = typer.Option(None, help="random seed"),
    device: Optional[str] = typer.Option(None, help="cpu | cuda | mps (default: best available)"),
    dtype: str = typer.Option("float32", help="U-Net dtype: float32 | float16 | bfloat16"),
    token_maps: bool = typer.Option(False, "--token-maps", help="also write one map per word (tokens.png)"),
    set_: List[str] = typer.Option([], "--set", help="any recipe field, e.g. --set sigma=none"),
    out: Path = typer.Option(Path("groundkit-out"), "--out", "-o", help="output folder"),
    checkpoints_file: Optional[Path] = typer.Option(None, "--checkpoints-file", help="a checkpoints.yaml of your own"),
):
    """Ground one phrase in one image; writes heatmap.npy, mask.png, overlay.png and result.json."""
    from . import api
    from .registry import PACKAGE_DIR

    if image is None:
        image = str(PACKAGE_DIR / DEMO_IMAGE[len("package:"):])
        meta = json.loads((PACKAGE_DIR / DEMO_PHRASE_FILE[len("package:"):]).read_text())
        text = text or meta["phrase"]
        category = category or meta.get("category")
        box = box or [",".join(str(v) for v in b) for b in meta.get("boxes", [])]
    if not text:
        _fail("--text is required when --image is given")
    if not Path(image).exists():
        _fail(f"--image {image}: no such file")
    try:
        boxes = [tuple(float(v) for v in b.split(",")) for b in box]
        if any(len(b) != 4 for b in boxes):
            raise ValueError
    except ValueError:
        _fail(f"--box expects x,y,w,h numbers, got {box}")
    overrides = recipe_overrides(layers, timesteps, mode, tokens, threshold, bbm, seed, set_)
    try:
        model = api.load(checkpoint, device=device, dtype=dtype, checkpoints_file=checkpoints_file)
        g = model.ground(image, text, recipe, category=category, token_maps=token_maps, progress=True, **overrides)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    g.save(out, boxes=boxes or None)
    calls = g.info["unet_calls"]
    typer.echo(f"grounded {text!r} with {model.entry.name} / {g.recipe.name} in {g.info['timings']['total_seconds_batch']:.1f} s, "
               f"{calls:g} U-Net calls -> {out}/overlay.png")
    if boxes:
        typer.echo("metrics: " + ", ".join(f"{k}={v:.3f}" for k, v in g.evaluate(boxes).items() if not k.startswith("n_boxes")))


@checkpoints_app.command("list")
def checkpoints_list(checkpoints_file: Optional[Path] = typer.Option(None, "--checkpoints-file")):
    """Every checkpoint in checkpoints.yaml: adapter, recipe, files, source, and whether it is here."""
    from .registry import load_checkpoints

    try:
        entries = load_checkpoints(checkpoints_file)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    for e in entries.values():
        state = "present" if e.present else ("missing: " + ", ".join(e.missing_files() or [str(e.path)]))
        typer.echo(f"{e.name}\n  adapter: {e.adapter}\n  recipe:  {e.recipe}\n  path:    {e.path}\n  status:  {state}")
        if e.files:
            typer.echo(f"  files:   {', '.join(e.files)}")
        if e.source:
            typer.echo(f"  source:  {e.source}")


@app.command("demo-data")
def demo_data(
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    n: int = typer.Option(200, "--n", help="number of images"),
    seed: int = typer.Option(0, "--seed"),
    size: int = typer.Option(512, "--size", help="short side in pixels"),
    split: str = typer.Option("test", "--split"),
):
    """Write a synthetic chest X-ray set with an MS-CXR-format CSV."""
    from .data.synthetic import generate

    csv = generate(out, n=n, seed=seed, size=size, split=split)
    typer.echo(f"wrote {n} images and {csv}")


@checkpoints_app.command("verify")
def checkpoints_verify(name: str, checkpoints_file: Optional[Path] = typer.Option(None, "--checkpoints-file"),
                       deep: bool = typer.Option(True, help="also read every weights file and check its keys and shapes")):
    """Check a checkpoint's files: presence, sizes, sha256 (when recorded), key sets; say what to fetch."""
    from .verify import verify_checkpoint

    try:
        report = verify_checkpoint(name, checkpoints_file=checkpoints_file, deep=deep)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(report.text())
    if not report.ok:
        raise typer.Exit(1)


def _register_bench_commands() -> None:
    """`benchmark` and `ablate` live with the benchmark code (groundkit.bench)."""
    from .bench import ablation_cli, commands

    commands.register(app)
    ablation_cli.register(app)


_register_bench_commands()


DEBUG_HINT = "(run with --debug, or set GROUNDKIT_DEBUG=1, for the traceback)"


def describe_error(exc: BaseException) -> str:
    """One line a user can act on, for any exception that reaches the command line."""
    import errno

    from .core.io import WriteError, _explain

    if isinstance(exc, WriteError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM) and exc.filename:
        return str(_explain(Path(exc.filename), exc, append=False))
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (ValueError, FileNotFoundError, LookupError)):
        return text
    return f"{type(exc).__name__}: {text}"


def main(argv: list[str] | None = None) -> None:  # console script
    """Run the CLI; an exception becomes one ``error:`` line (exit 2), its traceback only with --debug."""
    import os

    args = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get("GROUNDKIT_DEBUG"))
    if "--debug" in args:
        args.remove("--debug")
        debug = True
        os.environ["GROUNDKIT_DEBUG"] = "1"  # for the commands' own error paths (_fail)
    try:
        app(args=args, prog_name="groundkit")
    except KeyboardInterrupt:
        typer.secho("interrupted: results written so far are kept; run the same command again to resume", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place every error becomes a line
        if debug:
            raise
        typer.secho(f"error: {describe_error(exc)}", fg=typer.colors.RED, err=True)
        typer.secho(DEBUG_HINT, err=True)
        sys.exit(2)


if __name__ == "__main__":
    sys.exit(main())
