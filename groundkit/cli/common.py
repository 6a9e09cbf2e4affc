"""What every command shares: the `error:` line, `--set` parsing, and the options that must read the same
in `run`, `benchmark`, `ablate` and `report` (names, defaults and help written once, here)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from groundkit.choices import DATASETS
from groundkit.core.yamlfile import short as _short
from groundkit.recipes import BBM_VARIANTS, MODES, THRESHOLDS, list_recipes

DEFAULT_CHECKPOINT = "demo"
TOKEN_FILTERS = "all | lexical | disease | words:w1,w2 (or word:w1,w2)"
LAYER_HELP = ("cross-attention layers: all, indices (3,4,6,7 or 2-7), a resolution (16x16), a U-Net part "
              "(down, mid, up), an attention (attn2: what the published code hooks; attn1: text-attending self-attention "
              "slots) or several (up:16x16:attn2); see `groundkit checkpoints show NAME`")
STEPS_HELP = "window of grid steps START:END (indices into the recipe's timestep grid, not timesteps), e.g. 120:180"


def fail(message: str) -> None:
    """One ``error:`` line and exit 2; with --debug / GROUNDKIT_DEBUG=1 the traceback of the exception being
    handled (if any) comes first."""
    if os.environ.get("GROUNDKIT_DEBUG") and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def say(message: str) -> None:
    """A status line on stderr (stdout stays for results), e.g. before a long silence."""
    typer.secho(message, err=True)


def recipe_help() -> str:
    return f"recipe: {' | '.join(list_recipes())} (default: the checkpoint's own default recipe)"


def parse_sets(sets: List[str]) -> dict:
    """--set field=value pairs -> recipe overrides, each checked against its field's type and range
    (groundkit.recipes.FIELDS) before anything is loaded."""
    out = {}
    for item in sets or []:
        if "=" not in item:
            fail(f"--set expects field=value, got {_short(item)}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    if "tokens" in out and out["tokens"].startswith("word:"):
        out["tokens"] = "words:" + out["tokens"][5:]
    return check_sets(out)


def check_sets(overrides: dict) -> dict:
    """One ``error:`` line naming the field, the value and the allowed range, for the first bad override."""
    from groundkit.recipes import check_overrides

    try:
        return check_overrides(overrides)
    except ValueError as e:
        fail(str(e))


def recipe_overrides(sets: List[str], **named: Optional[str]) -> dict:
    """--set pairs plus the named recipe options that were given (named options win)."""
    o = parse_sets(sets)
    for key, value in named.items():
        if value is not None:
            o[key] = str(value)
    if o.get("tokens", "").startswith("word:"):
        o["tokens"] = "words:" + o["tokens"][5:]
    return check_sets(o)


# ---------------------------------------------------------------------------------------------------
# shared options (one definition each)
def checkpoint_option(multiple: bool = False):
    help_ = "checkpoint name from checkpoints.yaml or a checkpoint folder" + (" (repeatable)" if multiple else "")
    # a list option's default is empty, so that --compare can tell "not given"; the command applies "demo"
    return typer.Option([] if multiple else DEFAULT_CHECKPOINT, "--checkpoint", "-c", show_default=not multiple,
                        help=help_ + f"; default: {DEFAULT_CHECKPOINT}")


def recipe_option():
    return typer.Option(None, "--recipe", "-r", help=recipe_help())


def set_option():
    return typer.Option([], "--set", help="any recipe field=value (repeatable), e.g. --set sigma=none --set tokens=disease")


def layers_option():
    return typer.Option(None, "--layers", help=LAYER_HELP)


def steps_option():
    return typer.Option(None, "--steps", "--timesteps", help=STEPS_HELP + " (--timesteps is the old spelling)")


def mode_option():
    return typer.Option(None, "--mode", help=" | ".join(MODES))


def tokens_option():
    return typer.Option(None, "--tokens", help=f"token filter: {TOKEN_FILTERS}")


def threshold_option():
    return typer.Option(None, "--threshold", help=f"post-processing threshold: {' | '.join(THRESHOLDS)}")


def bbm_option():
    return typer.Option(None, "--bbm", help=f"Bimodal Bias Merging variant: {' | '.join(BBM_VARIANTS)} (gt-noised mode only)")




def seed_option():
    return typer.Option(None, "--seed", help="random seed of the recipe (noise, GMM)")


def device_option():
    return typer.Option(None, "--device", help="cpu | cuda | cuda:N | mps (default: the best available)")


def dtype_option():
    return typer.Option("auto", "--dtype", help="U-Net dtype: auto (CUDA: bfloat16 with TF32, float16 without bfloat16 "
                        "support; CPU/MPS: float32) | float32 | bfloat16 | float16. Capture and post-processing are float32")


def compile_option():
    return typer.Option(False, "--compile/--no-compile", help="run the U-Net through torch.compile (same maps; the first "
                        "forwards pay the compilation, worth it for long runs on a GPU)")


def progress_option():
    return typer.Option(True, "--progress/--no-progress", help="progress bars (on by default)")


def checkpoints_file_option():
    return typer.Option(None, "--checkpoints-file", help="a checkpoints.yaml of your own (default: $GROUNDKIT_CHECKPOINTS or the shipped one)")


def dataset_option():
    return typer.Option(None, "--dataset", help=f"{' | '.join(DATASETS)} (default: mscxr when --csv is given, synthetic when --data is)")


def data_option():
    return typer.Option(None, "--data", help="synthetic set folder (written by `groundkit demo-data`)")


def csv_option():
    return typer.Option(None, "--csv", help="MS-CXR CSV (official v1.0.0/v1.1.0 or the pre-merged bboxxywh variant)")


def images_option():
    return typer.Option(None, "--images", help="root folder of the CSV's image paths (MIMIC-CXR-JPG)")


def split_option():
    return typer.Option(None, "--split", help="keep one split (train | val | test; needs the v1.1.0 CSV)")


def limit_option():
    return typer.Option(None, "--limit", min=1, help="first N samples only")


def check_dataset(dataset: Optional[str], csv: Optional[Path], images: Optional[Path], data: Optional[Path]) -> str:
    """The dataset kind (given, or implied by --csv / --data); says exactly what it needs before anything loads."""
    if dataset is None:
        if csv is not None and data is None:
            dataset = "mscxr"
        elif data is not None and csv is None:
            dataset = "synthetic"
        else:
            fail("say which data: --dataset mscxr --csv PATH --images ROOT, or --dataset synthetic --data DIR "
                 "(`groundkit demo-data --out DIR` writes a synthetic set)")
    if dataset == "mscxr":
        if csv is None:
            fail("--dataset mscxr needs --csv PATH (MS_CXR_Local_Alignment_v1.1.0.csv) and --images ROOT (the MIMIC-CXR-JPG root)")
        if not csv.is_file():
            fail(f"--csv {csv}: no such file (the MS-CXR CSV from PhysioNet, e.g. MS_CXR_Local_Alignment_v1.1.0.csv)")
        if images is None:
            fail("--dataset mscxr needs --images ROOT: the folder that the CSV's 'path' column is relative to")
        if not images.is_dir():
            fail(f"--images {images}: no such folder")
    elif dataset == "synthetic":
        if data is None:
            fail("--dataset synthetic needs --data DIR (create one with `groundkit demo-data --out DIR`)")
        if not data.is_dir():
            fail(f"--data {data}: no such folder (create it with `groundkit demo-data --out {data}`)")
    elif dataset not in DATASETS:  # a registered third-party dataset checks its own arguments when it loads
        fail(f"--dataset {dataset!r}: unknown dataset; known: {', '.join(DATASETS)}")
    return dataset


def load_model(checkpoint: str, device: Optional[str], dtype: str, checkpoints_file: Optional[Path], compile: bool = False):
    """Load with a status line first: a real checkpoint takes seconds to minutes to read."""
    from groundkit import api

    say(f"loading {checkpoint} ...")
    try:
        return api.load(checkpoint, device=device, dtype=dtype, checkpoints_file=checkpoints_file, compile=compile)
    except (FileNotFoundError, ValueError, NotImplementedError) as e:  # NotImplementedError: --compile on a family without it
        fail(str(e))
