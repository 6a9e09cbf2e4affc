"""MS-CXR phrase-grounding annotations -> ``Sample`` records (docs/protocols.md §6).

Reads three CSV layouts and tells them apart by their header:

- official ``MS_CXR_Local_Alignment_v1.0.0.csv`` (dicom_id, category_name, label_text, path,
  x, y, w, h, image_width, image_height) and ``v1.1.0`` (same + split): one row per box. Rows with
  the same (path, label_text) are merged into one sample with k boxes, in file order.
- the pre-merged variant used by Nuetzel et al. (``paths``, ``bboxxywh`` = "x-y-w-h|x-y-w-h",
  category_name, label_text, image_width/height when present): one row per sample. Its label_text
  may hold several phrases joined by "|": the first one is the phrase, as in their evaluation.

Every row is validated; a bad value raises ValueError naming the file, the CSV line and the field.
Boxes are (x, y, w, h) floats in original pixels. ``MSCXR.report`` counts what was read, merged
and skipped (and why). Only the standard library's ``csv`` module is used.
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from groundkit.core.categories import CATEGORIES, ordered
from groundkit.core.geometry import Geometry

__all__ = ["Sample", "LoadReport", "MSCXR", "load", "drop_cropped_boxes", "CATEGORIES"]

Box = tuple[float, float, float, float]

OFFICIAL_COLUMNS = ("category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height")
MERGED_COLUMNS = ("paths", "bboxxywh", "category_name", "label_text")
_CATEGORY_BY_KEY = {c.lower(): c for c in CATEGORIES}


@dataclass(frozen=True)
class Sample:
    """One phrase on one image with the union of its boxes as the target."""

    sample_id: str
    image_path: str
    phrase: str
    category: str
    boxes: tuple[Box, ...]
    image_width: int | None
    image_height: int | None
    split: str | None = None

    def geometry(self, size: int) -> Geometry:
        """The resize + center-crop geometry of this image for a model input of ``size``."""
        if self.image_width is None or self.image_height is None:
            raise ValueError(f"sample {self.sample_id}: image size unknown (no image_width/height column)")
        return Geometry(orig_h=self.image_height, orig_w=self.image_width, size=size)


@dataclass
class LoadReport:
    """What ``load`` did with a file."""

    file: str
    format: str  # "official" or "merged"
    rows_read: int = 0
    samples: int = 0
    boxes: int = 0
    rows_merged: int = 0  # official rows folded into a sample that already existed
    boxes_clipped: int = 0
    multi_phrase_rows: int = 0  # merged rows whose label_text held several "|"-joined phrases
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (boxes or rows)

    def _skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def __str__(self) -> str:
        skipped = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())) or "none"
        return (f"{self.file} ({self.format}): {self.rows_read} rows read -> {self.samples} samples with "
                f"{self.boxes} boxes; {self.rows_merged} rows merged; {self.boxes_clipped} boxes clipped; "
                f"{self.multi_phrase_rows} multi-phrase rows; skipped: {skipped}")


class MSCXR(Sequence):
    """A read-only list of ``Sample`` with the ``LoadReport`` of the file it came from."""

    def __init__(self, samples: Sequence[Sample], report: LoadReport):
        self.samples: tuple[Sample, ...] = tuple(samples)
        self.report = report

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def categories(self) -> tuple[str, ...]:
        present = {s.category for s in self.samples}
        return tuple(ordered(present))

    def by_category(self, category: str) -> list[Sample]:
        return [s for s in self.samples if s.category == category]

    def __repr__(self) -> str:
        return f"MSCXR({len(self)} samples from {self.report.file})"


# --------------------------------------------------------------------------------------------
# parsing helpers
# --------------------------------------------------------------------------------------------
class _Row:
    """One CSV row with its location, for error messages."""

    def __init__(self, file: str, line: int, data: dict[str, str]):
        self.file, self.line, self.data = file, line, data

    def error(self, field_name: str, msg: str) -> ValueError:
        return ValueError(f"{self.file}: row {self.line}: field '{field_name}': {msg}")

    def text(self, name: str, required: bool = True) -> str:
        v = (self.data.get(name) or "").strip()
        if required and not v:
            raise self.error(name, "missing value")
        return v

    def number(self, name: str, value: str | None = None) -> float:
        raw = self.text(name) if value is None else value.strip()
        try:
            v = float(raw)
        except ValueError:
            raise self.error(name, f"not a number: {raw!r}") from None
        if not math.isfinite(v):
            raise self.error(name, f"not a finite number: {raw!r}")
        return v

    def size(self, name: str) -> int:
        v = self.number(name)
        if v <= 0 or v != int(v):
            raise self.error(name, f"image size must be a positive integer, got {self.text(name)!r}")
        return int(v)

    def category(self) -> str:
        raw = self.text("category_name")
        cat = _CATEGORY_BY_KEY.get(" ".join(raw.split()).lower())
        if cat is None:
            raise self.error("category_name", f"unknown category {raw!r}; expected one of {list(CATEGORIES)}")
        return cat


def _check_box(row: _Row, field_name: str, box: Box, width: int | None, height: int | None,
               clip: bool) -> tuple[Box | None, str | None, bool]:
    """Validate one box -> (box or None, reason it is skipped or None, whether it was clipped)."""
    x, y, w, h = box
    if x < 0 or y < 0 or w < 0 or h < 0:
        raise row.error(field_name, f"negative box value in (x={x:g}, y={y:g}, w={w:g}, h={h:g})")
    if w == 0 or h == 0:
        return None, "zero-area box", False
    if width is not None and height is not None and (x + w > width or y + h > height):
        if not clip:
            raise row.error(field_name, f"box (x={x:g}, y={y:g}, w={w:g}, h={h:g}) extends outside the "
                                        f"{width}x{height} image (pass clip_boxes=True to clip it)")
        if x >= width or y >= height:
            return None, "box outside image", False
        return (x, y, min(w, width - x), min(h, height - y)), None, True
    return (x, y, w, h), None, False


def _add_box(boxes: list[Box], checked: tuple[Box | None, str | None, bool], report: LoadReport) -> None:
    box, reason, clipped = checked
    if box is None:
        report._skip(reason)
    elif box in boxes:
        report._skip("duplicate box")
    else:
        report.boxes_clipped += int(clipped)
        boxes.append(box)


def _image_path(image_root, rel: str) -> str:
    return rel if image_root is None else os.path.join(os.fspath(image_root), rel)


# --------------------------------------------------------------------------------------------
# the two layouts
# --------------------------------------------------------------------------------------------
def _load_official(rows: list[_Row], has_split: bool, has_dicom: bool, image_root, clip: bool,
                   split_filter: str | None, report: LoadReport) -> list[Sample]:
    groups: dict[tuple[str, str], dict] = {}
    per_dicom: dict[str, int] = {}
    for row in rows:
        path = row.text("path")
        info = {"category_name": row.category(), "image_width": row.size("image_width"),
                "image_height": row.size("image_height"), "split": row.text("split") if has_split else None,
                "dicom_id": row.text("dicom_id") if has_dicom else Path(path).stem}
        phrase = row.text("label_text")
        box = tuple(row.number(k) for k in ("x", "y", "w", "h"))
        checked = _check_box(row, "x/y/w/h", box, info["image_width"], info["image_height"], clip)
        key = (path, phrase)
        g = groups.get(key)
        if g is None:
            k = per_dicom.get(info["dicom_id"], 0)
            per_dicom[info["dicom_id"]] = k + 1
            groups[key] = g = {"first": row, "path": path, "phrase": phrase, "info": info, "k": k, "boxes": []}
        else:
            report.rows_merged += 1
            for name, val in info.items():
                ref = g["info"][name]
                if val != ref:
                    raise row.error(name, f"{val!r} differs from {ref!r} in row {g['first'].line} "
                                          f"(same path and label_text)")
        if split_filter is not None and info["split"] != split_filter:
            report._skip(f"split != {split_filter}")
            continue
        _add_box(g["boxes"], checked, report)
    samples = []
    for g in groups.values():
        info = g["info"]
        if split_filter is not None and info["split"] != split_filter:
            continue
        if not g["boxes"]:
            report._skip("sample without valid boxes")
            continue
        samples.append(Sample(sample_id=f"{info['dicom_id']}-{g['k']}", image_path=_image_path(image_root, g["path"]),
                              phrase=g["phrase"], category=info["category_name"], boxes=tuple(g["boxes"]),
                              image_width=info["image_width"], image_height=info["image_height"],
                              split=info["split"]))
    return samples


def _parse_bboxxywh(row: _Row, raw: str) -> list[Box]:
    boxes = []
    for j, part in enumerate(raw.split("|")):
        vals = part.strip().split("-")
        if len(vals) != 4 or any(not v.strip() for v in vals):
            raise row.error("bboxxywh", f"box {j} {part!r} is not 'x-y-w-h' (non-negative numbers)")
        boxes.append(tuple(row.number("bboxxywh", v) for v in vals))
    return boxes


def _load_merged(rows: list[_Row], header: set[str], image_root, clip: bool, split_filter: str | None,
                 report: LoadReport) -> list[Sample]:
    has_size = "image_width" in header and "image_height" in header
    has_split = "split" in header
    has_dicom = "dicom_id" in header
    samples = []
    per_dicom: dict[str, int] = {}
    for row in rows:
        path = row.text("paths")
        label = row.text("label_text")
        phrases = [p.strip() for p in label.split("|")]
        if len(phrases) > 1:
            report.multi_phrase_rows += 1
        phrase = phrases[0]
        if not phrase:
            raise row.error("label_text", f"empty first phrase in {label!r}")
        category = row.category()
        width, height = (row.size("image_width"), row.size("image_height")) if has_size else (None, None)
        split = row.text("split") if has_split else None
        dicom = row.text("dicom_id") if has_dicom else Path(path).stem
        parsed = [_check_box(row, "bboxxywh", b, width, height, clip)
                  for b in _parse_bboxxywh(row, row.text("bboxxywh"))]
        k = per_dicom.get(dicom, 0)
        per_dicom[dicom] = k + 1
        if split_filter is not None and split != split_filter:
            report._skip(f"split != {split_filter}")
            continue
        boxes: list[Box] = []
        for checked in parsed:
            _add_box(boxes, checked, report)
        if not boxes:
            report._skip("sample without valid boxes")
            continue
        samples.append(Sample(sample_id=f"{dicom}-{k}", image_path=_image_path(image_root, path), phrase=phrase,
                              category=category, boxes=tuple(boxes), image_width=width, image_height=height,
                              split=split))
    return samples


def load(csv_path, image_root=None, *, split: str | None = None, clip_boxes: bool = False) -> MSCXR:
    """Load an MS-CXR CSV (official v1.0.0 / v1.1.0, or the pre-merged ``bboxxywh`` variant).

    image_root: joined in front of the CSV's relative image path (None keeps the path as is).
    split: keep only rows of this split (needs a ``split`` column; v1.1.0 has "train"/"val"/"test").
    clip_boxes: clip boxes that extend past the image border instead of raising (counted in the
    report; boxes that start outside the image are then skipped and counted).
    sample_id = "<dicom_id>-<k>", k = index of the phrase among that image's samples in file order
    (counted before any split filter, so ids do not depend on it); the path stem replaces the
    dicom_id when the file has no such column.
    """
    file = os.fspath(csv_path)
    with open(file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise ValueError(f"{file}: empty file (no header)")
        header = {h.strip() for h in reader.fieldnames if h is not None}
        reader.fieldnames = [h.strip() if h is not None else h for h in reader.fieldnames]
        if "bboxxywh" in header:
            fmt, required = "merged", MERGED_COLUMNS
        else:
            fmt, required = "official", OFFICIAL_COLUMNS
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{file}: missing column(s) {missing} for the {fmt} MS-CXR layout "
                             f"(header: {sorted(header)})")
        if split is not None and "split" not in header:
            raise ValueError(f"{file}: split={split!r} requested but the file has no 'split' column")
        rows = []
        for data in reader:
            if None in data:
                raise ValueError(f"{file}: row {reader.line_num}: more values than header columns")
            if all(not (v or "").strip() for v in data.values()):
                continue  # blank line
            rows.append(_Row(file, reader.line_num, data))
    report = LoadReport(file=file, format=fmt, rows_read=len(rows))
    if fmt == "official":
        samples = _load_official(rows, "split" in header, "dicom_id" in header, image_root, clip_boxes, split,
                                 report)
    else:
        samples = _load_merged(rows, header, image_root, clip_boxes, split, report)
    report.samples = len(samples)
    report.boxes = sum(len(s.boxes) for s in samples)
    return MSCXR(samples, report)


def drop_cropped_boxes(sample: Sample, geometry: Geometry) -> tuple[tuple[Box, ...], int]:
    """(boxes that survive the center crop, number dropped): a box is dropped when the crop
    removes it entirely (``geometry.box_to_crop`` is None). Boxes stay in original pixels."""
    kept = tuple(b for b in sample.boxes if geometry.box_to_crop(b) is not None)
    return kept, len(sample.boxes) - len(kept)
