"""This family's tiny checkpoints for the adapter contract suite (``groundkit.testing``), one per published
layout it serves: Nuetzel's SD-1.5 + CXR-BERT, RadEdit's U-Net + SDXL VAE + BioViL-T, RoentGen's SD 1.x + CLIP
and SD 2.x v-prediction + CLIP. Each builder writes its checkpoint options into the folder's groundkit.yaml,
as a checkpoints.yaml entry would set them."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from groundkit.families.diffusers_sd.testing import build_sd_cxrbert
from groundkit.families.diffusers_sd.testing_radedit import build_radedit, radedit_entry
from groundkit.families.diffusers_sd.testing_roentgen import build_sd_clip


def _options(folder: Path, options: dict) -> Path:
    (folder / "groundkit.yaml").write_text(yaml.safe_dump(options))
    return folder


def _nuetzel(root: Path) -> Path:
    return _options(build_sd_cxrbert(root, tiny=True), {"image_size": 64})


def _radedit(root: Path) -> Path:
    folder = build_radedit(root, tiny=True)
    return _options(folder, {k: v for k, v in radedit_entry(folder, image_size=64).items() if k != "path"})


def _clip(variant: str, name: str) -> Callable[[Path], Path]:
    return lambda root: _options(build_sd_clip(root, tiny=True, variant=variant, name=name), {"image_size": 64})


def tiny_checkpoints() -> dict[str, Callable[[Path], Path]]:
    """Layout name -> builder(root folder) -> a tiny checkpoint folder of that layout, with random weights."""
    return {"sd15-cxrbert": _nuetzel, "radedit": _radedit, "roentgen": _clip("sd1", "roentgen"),
            "sd2-v": _clip("sd2-v", "sd2-v")}
