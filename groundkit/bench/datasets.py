"""Evaluation datasets as lists of MS-CXR `Sample`s, by name (groundkit.choices.DATASETS): the real MS-CXR CSV,
or groundkit's synthetic set (which is written in the same official format, so every downstream path is the
same). A third party's dataset is a loader registered under the ``groundkit.datasets`` entry point."""
from __future__ import annotations

from pathlib import Path

from groundkit.choices import get_dataset
from groundkit.data import mscxr

SYNTHETIC_CSV = "MS_CXR_Local_Alignment_synthetic.csv"


def load_mscxr(*, csv: str | Path | None = None, images: str | Path | None = None, split: str | None = None, **_) -> mscxr.MSCXR:
    """The official MS-CXR CSV (``csv``) and its image root (``images``)."""
    if csv is None:
        raise ValueError("--dataset mscxr needs --csv (MS_CXR_Local_Alignment_v1.x.0.csv) and --images (image root)")
    return mscxr.load(csv, images, split=split)


def load_synthetic(*, data: str | Path | None = None, split: str | None = None, **_) -> mscxr.MSCXR:
    """A folder written by ``groundkit demo-data`` (``data``)."""
    if data is None:
        raise ValueError("--dataset synthetic needs --data (a folder written by `groundkit demo-data`)")
    file = Path(data) / SYNTHETIC_CSV
    if not file.is_file():
        raise FileNotFoundError(f"{file}: missing; create it with `groundkit demo-data --out {data}`")
    return mscxr.load(file, data, split=split)


def load_dataset(kind: str, *, csv: str | Path | None = None, images: str | Path | None = None,
                 data: str | Path | None = None, split: str | None = None, limit: int | None = None) -> mscxr.MSCXR:
    """The registered dataset ``kind`` (``mscxr`` needs ``csv`` + ``images``; ``synthetic`` needs ``data``).
    ``limit`` keeps the first N samples (file order)."""
    ds = get_dataset(kind)(csv=csv, images=images, data=data, split=split)
    if limit is not None:
        ds = mscxr.MSCXR(list(ds)[:limit], ds.report)
    return ds
