"""Calibrating a checkpoint's confidence on labelled data (`groundkit calibrate`), and measuring it.

``collect`` grounds labelled samples and keeps, per sample, the signals, the confidence (if any) and the IoU
of the returned mask with the true boxes; ``calibrate`` fits groundkit.evaluation.calibration's logistic
model on them and stores it, with its provenance, where groundkit.engine.confidence finds it.
"""
from __future__ import annotations

import datetime
import math
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from groundkit.core.outdir import make_dirs, write_json
from groundkit.engine import confidence as conf
from groundkit.evaluation import calibration as cal


def collect(model, samples: Sequence, recipe: str | None = None, *, on_row: Callable[[int, dict], None] | None = None,
            **overrides: Any) -> list[dict]:
    """One row per sample: {sample_id, category, iou, signals, confidence}; samples whose boxes the crop
    removed are skipped."""
    rows = []
    for k, s in enumerate(samples):
        g = model.ground(s.image_path, s.phrase, recipe, category=s.category, **overrides)
        iou = cal.mask_iou(g, s.boxes)
        if math.isnan(iou):
            continue
        rows.append({"sample_id": s.sample_id, "category": s.category, "iou": iou, "signals": g.signals,
                     "confidence": g.confidence, "recipe": g.recipe.name, "recipe_digest": g.recipe.digest()})
        if on_row is not None:
            on_row(k, rows[-1])
    return rows


def fit(rows: Sequence[dict], *, checkpoint: str, recipe: str, recipe_digest: str, data: str, C: float = 1.0) -> dict:
    """The calibration document: the model, its provenance and how it scores on the data it was fitted on."""
    from groundkit.core.version import __version__

    signals, ious = [r["signals"] for r in rows], [r["iou"] for r in rows]
    model = cal.fit_logistic(signals, ious, C=C)
    probs = [conf.predict({"model": model}, s) for s in signals]
    fitted = cal.summary(probs, ious)
    return {"format": conf.FORMAT, "checkpoint": checkpoint, "recipe": recipe, "recipe_digest": recipe_digest,
            "target": f"P(IoU of the returned mask with the true boxes >= {cal.IOU_THRESHOLD})", "data": data,
            "n": len(rows), "positives": int(sum(i >= cal.IOU_THRESHOLD for i in ious)),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "fitted_metric": {k: round(float(v), 4) for k, v in fitted.items()},
            "groundkit": __version__, "model": model}


def store(doc: dict, checkpoint_dir: str | Path) -> Path:
    """Write the calibration at <checkpoint folder>/calibration/<recipe>.json (the safe writer, confined)."""
    root = Path(checkpoint_dir)
    path = conf.calibration_path(root, doc["recipe"])
    make_dirs(path.parent, root)
    write_json(path, doc, root=root)
    return path


def calibrate(model, samples: Sequence, recipe: str | None, *, data: str, out_dir: str | Path | None = None,
              progress: Callable[[str], None] | None = None, **overrides: Any) -> tuple[dict, Path]:
    """Ground ``samples``, fit, store next to the checkpoint (or in ``out_dir``); (document, path)."""
    t0 = time.perf_counter()
    r = model.recipe(recipe, **overrides)
    say = progress or (lambda _m: None)
    rows = collect(model, samples, r, on_row=lambda k, row: say(f"{k + 1}/{len(samples)} IoU {row['iou']:.3f}"))
    doc = fit(rows, checkpoint=model.entry.name, recipe=r.name, recipe_digest=r.digest(), data=data)
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    return doc, store(doc, out_dir if out_dir is not None else model.entry.path)


def describe_data(kind: str, source: str | Path, samples: Sequence) -> str:
    """The calibration's ``data`` provenance: what the samples were, not only where they lay (a folder under /tmp
    says nothing a week later). Synthetic sets name their generator, seed (from the ids ``synth-<seed>-...``)
    and image size, so the set can be written again."""
    splits = "/".join(sorted({s.split or "-" for s in samples}))
    ids = f"{len(samples)} samples, split {splits}, ids {samples[0].sample_id} .. {samples[-1].sample_id}"
    if kind != "synthetic":
        return f"{kind} ({source}): {ids}"
    seeds = {m.group(1) for m in (re.match(r"synth-(\d+)-", str(s.sample_id)) for s in samples) if m}
    try:
        from PIL import Image

        with Image.open(samples[0].image_path) as im:
            size = min(im.size)
    except OSError:
        size = None
    images = _images_in(Path(source))  # the generator's --n matters: it shuffles the categories over all n
    if len(seeds) == 1 and size and images:
        made = f"`groundkit demo-data --n {images} --seed {seeds.pop()} --size {size} --split {splits}`, first"
    else:
        made = f"synthetic, {size or '?'} px,"
    return f"synthetic chest X-rays, {made} {ids} (folder {source})"


def _images_in(folder: Path) -> int | None:
    """How many images a synthetic folder's CSV lists (None when it cannot be read)."""
    import csv

    from groundkit.data.synthetic import CSV_NAME

    try:
        with open(folder / CSV_NAME, newline="") as f:
            return len({row["dicom_id"] for row in csv.DictReader(f)})
    except (OSError, KeyError, csv.Error):
        return None


def row_fields(g, boxes) -> dict:
    """What a benchmark row records about the confidence: every signal, the confidence (None uncalibrated) and
    the IoU of the returned mask, for risk-coverage curves and reliability diagrams of a run's rows."""
    iou = cal.mask_iou(g, boxes)
    return {"confidence": g.confidence, "signals": {k: round(v, 6) for k, v in g.signals.items()},
            "mask_iou": None if math.isnan(iou) else round(iou, 6)}


def confidence_table(data: dict) -> tuple[str, list[str], list[list[str]], list[str]] | None:
    """The benchmark tables' confidence section from each config's successful rows ({label: (rows, errors)}):
    per config with a calibrated confidence, Spearman with the mask IoU, mean IoU of all vs the most confident
    half, AURC next to random and oracle, ECE. None when no row has a confidence."""
    body = []
    for label, (ok, _) in data.items():
        rs = [r for r in ok if r.get("confidence") is not None and r.get("mask_iou") is not None]
        if len(rs) < 2:
            continue
        s = cal.summary([r["confidence"] for r in rs], [r["mask_iou"] for r in rs])
        body.append([label, str(len(rs)), f"{s['spearman']:.3f}", f"{s['mean_iou']:.3f}", f"{s['mean_iou_top50']:.3f}",
                     f"{s['aurc']:.3f}", f"{s['aurc_random']:.3f}", f"{s['aurc_oracle']:.3f}", f"{s['ece']:.3f}"])
    if not body:
        return None
    return ("Confidence (risk = 1 - IoU of the returned mask)",
            ["Config", "n", "Spearman", "mean IoU", "top-50% IoU", "AURC", "random", "oracle", "ECE"], body,
            ["Calibrated confidence as P(IoU >= 0.3) (docs/confidence.md); AURC: lower is better; uncalibrated configs "
             "are not listed."])
