"""Evaluation datasets as lists of MS-CXR `Sample`s: the real MS-CXR CSV, or groundkit's synthetic set
(which is written in the same official format, so every downstream path is the same)."""
from __future__ import annotations

from pathlib import Path

from groundkit.data import mscxr

SYNTHETIC_CSV = "MS_CXR_Local_Alignment_synthetic.csv"


def load_dataset(kind: str, *, csv: str | Path | None = None, images: str | Path | None = None,
                 data: str | Path | None = None, split: str | None = None, limit: int | None = None) -> mscxr.MSCXR:
    """``kind='mscxr'`` needs ``csv`` (+ ``images`` root); ``kind='synthetic'`` needs ``data`` (a folder
    written by `groundkit demo-data`). ``limit`` keeps the first N samples (file order)."""
    if kind == "mscxr":
        if csv is None:
            raise ValueError("--dataset mscxr needs --csv (MS_CXR_Local_Alignment_v1.x.0.csv) and --images (image root)")
        ds = mscxr.load(csv, images, split=split)
    elif kind == "synthetic":
        if data is None:
            raise ValueError("--dataset synthetic needs --data (a folder written by `groundkit demo-data`)")
        file = Path(data) / SYNTHETIC_CSV
        if not file.is_file():
            raise FileNotFoundError(f"{file}: missing; create it with `groundkit demo-data --out {data}`")
        ds = mscxr.load(file, data, split=split)
    else:
        raise ValueError(f"unknown dataset {kind!r} (expected mscxr or synthetic)")
    if limit is not None:
        ds = mscxr.MSCXR(list(ds)[:limit], ds.report)
    return ds
