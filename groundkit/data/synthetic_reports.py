"""Synthetic chest X-rays with whole reports: 1-3 drawn findings per image, a report that states them (and
negates 1-2 others, sometimes repeating a finding in the IMPRESSION), and the ground truth of every mention
(span, category, negation, boxes). What `groundkit demo-data --reports` writes and the report-grounding
benchmark measures: extraction precision/recall, negation accuracy, and grounding per positive mention.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from groundkit.core.categories import CATEGORIES
from groundkit.data.synthetic import COLUMNS, CSV_NAME, render_many
from groundkit.reports import synthetic_report

REPORTS_DIR = "reports"


def iter_report_samples(n: int, seed: int, size: int = 256) -> Iterator[tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]]:
    """(image, positive findings [{category, phrase, boxes}], report {text, mentions}) for n images."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        k = int(rng.integers(1, 4))
        cats = [str(c) for c in rng.choice(CATEGORIES, size=k, replace=False)]
        img, drawn = render_many(rng, size, cats)
        findings = [{"category": f.category, "phrase": f.phrase, "boxes": [list(map(float, b)) for b in f.boxes]}
                    for f in drawn if f.boxes]
        if not findings:
            continue
        yield img, findings, synthetic_report(rng, findings)


def generate_reports(out_dir: str | Path, n: int, seed: int, size: int = 256, split: str = "test") -> Path:
    """Images, one report per image (``reports/<id>.txt`` and its ground truth ``reports/<id>.json``), and the
    MS-CXR-format CSV of every positive finding (one row per box); returns the CSV path."""
    from groundkit.core.outdir import check_target, ensure_dir, make_dirs, write_csv, write_text
    from groundkit.data.images import save_png

    out = ensure_dir(out_dir)
    make_dirs(out / "images", out)
    make_dirs(out / REPORTS_DIR, out)
    csv_path = check_target(out / CSV_NAME)  # refused before any image is drawn
    rows = []
    for i, (img, findings, report) in enumerate(iter_report_samples(n, seed, size)):
        dicom_id = f"synth-report-{seed}-{i:05d}"
        rel = f"images/{dicom_id}.png"
        save_png(out / rel, img, root=out)
        write_text(out / REPORTS_DIR / f"{dicom_id}.txt", report["text"] + "\n", root=out)
        truth = {"image": rel, "findings": findings, "mentions": report["mentions"]}
        write_text(out / REPORTS_DIR / f"{dicom_id}.json", json.dumps(truth, indent=2), root=out)
        for f in findings:
            for (x, y, w, h) in f["boxes"]:
                rows.append([dicom_id, f["category"], f["phrase"], rel, round(x, 1), round(y, 1), round(w, 1), round(h, 1),
                             img.shape[1], img.shape[0], split])
    write_csv(csv_path, COLUMNS, rows)  # cells neutralised against spreadsheet formulas
    return csv_path
