"""A benchmark folder's row files: one JSON row per (checkpoint, sample, recipe digest), appended and
fsynced as they are made, torn last lines repaired, rank shards merged and de-duplicated."""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from groundkit.core.outdir import AppendWriter, check_target

ROWS_FILE = "rows.jsonl"
RUN_FILE = "run.json"
RANK_FILE = re.compile(r"^rows\.rank(\d+)\.jsonl$")

__all__ = ["ROWS_FILE", "RUN_FILE", "RowWriter", "damaged_lines", "dedupe", "load_run", "metric_value", "read_dir_rows",
           "read_rows", "repair_tail", "row_files", "row_key", "scan_rows"]


def row_key(row: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(row["checkpoint"]), str(row["sample_id"]), str(row["recipe_digest"]))


def metric_value(row: Mapping[str, Any], metric: str) -> float:
    """A row's metric as float (null/missing -> NaN)."""
    v = row.get(metric)
    return math.nan if v is None else float(v)


def repair_tail(path: Path) -> int:
    """Cut a last line that a crash left without its newline; returns the bytes removed."""
    path = check_target(path)  # never truncate the file a planted link points to
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    with os.fdopen(os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0)), "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        pos, chunk = size, 4096
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            data = f.read(pos - start)
            i = data.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        else:
            keep = 0
        f.truncate(keep)
        return size - keep


def scan_rows(path: str | Path) -> tuple[list[dict], list[tuple[int, str]]]:
    """Rows of one JSONL file, and (line number, what is wrong) for each line that is not a row: a line
    cut off by a crash, or one damaged in the middle of the file. Such a line is skipped: its sample has
    no row, so a resumed run does it again, and the rest of the file is kept."""
    p = Path(path)
    if not p.is_file():
        return [], []
    rows, bad = [], []
    with open(p, encoding="utf-8", errors="replace", newline="\n") as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                bad.append((n, "not valid JSON" if raw.endswith("\n") else "cut off (no end of line: a crash while writing)"))
                continue
            if isinstance(row, dict) and {"checkpoint", "sample_id", "recipe_digest"} <= set(row):
                rows.append(row)
            else:
                bad.append((n, "not a row (no checkpoint, sample_id and recipe_digest)"))
    return rows, bad


def read_rows(path: str | Path) -> list[dict]:
    """Rows of one JSONL file; a truncated or unparsable line is skipped (it is re-run on resume)."""
    return scan_rows(path)[0]


def damaged_lines(out_dir: str | Path) -> list[str]:
    """One message per damaged line of the folder's row files (file, line number, what is wrong)."""
    return [f"{f}, line {n}: {why}; that row is dropped and its sample is run again"
            for f in row_files(Path(out_dir)) for n, why in scan_rows(f)[1]]


def row_files(out: Path) -> list[Path]:
    shards = sorted((p for p in out.glob("rows.rank*.jsonl") if RANK_FILE.match(p.name) and not p.is_symlink()),
                    key=lambda p: int(RANK_FILE.match(p.name).group(1)))
    return [out / ROWS_FILE] + shards


def dedupe(rows: Iterable[dict]) -> list[dict]:
    """One row per key: a successful row wins over an error row, otherwise the last one."""
    best: dict[tuple, dict] = {}
    for r in rows:
        k = row_key(r)
        old = best.get(k)
        if old is None or not r.get("error") or old.get("error"):
            best[k] = r
    return list(best.values())


def read_dir_rows(out_dir: str | Path) -> list[dict]:
    """Every row of a benchmark folder (rows.jsonl plus any unmerged rank shards), deduplicated."""
    out = Path(out_dir)
    rows: list[dict] = []
    for f in row_files(out):
        rows.extend(read_rows(f))
    return dedupe(rows)


def load_run(out_dir: str | Path) -> dict:
    p = Path(out_dir) / RUN_FILE
    if not p.is_file():
        raise FileNotFoundError(f"{p}: not a benchmark folder (no {RUN_FILE}); run `groundkit benchmark ... --out {out_dir}` first")
    return json.loads(p.read_text())


class RowWriter(AppendWriter):
    """Appends rows to a file after cutting a torn last line left by a crash."""

    def __init__(self, path: Path):
        repair_tail(path)
        super().__init__(path, path.parent)
