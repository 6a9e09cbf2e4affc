"""This family's tiny checkpoint for the adapter contract suite (``groundkit.testing``): the MONAI model-zoo
bundle with old-format state dicts and a CLIP text encoder, served at 64 px (groundkit.yaml)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from groundkit.families.monai_ldm.testing import build_monai_bundle


def _bundle(root: Path) -> Path:
    folder = build_monai_bundle(root, tiny=True)
    (folder / "groundkit.yaml").write_text("image_size: 64\n")
    return folder


def tiny_checkpoints() -> dict[str, Callable[[Path], Path]]:
    """Layout name -> builder(root folder) -> a tiny checkpoint folder, with random weights."""
    return {"bundle": _bundle}
