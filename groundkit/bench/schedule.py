"""Grounding and scoring one image's samples, and the schedule that runs many images.

Why a module of its own: the runner (``groundkit.bench.runner``) owns the folder, resume and merge; this
module owns the hot loop: cross-image batches of U-Net passes, post-processing overlapped on worker threads,
and the per-sample rows (metrics, confidence signals, errors) that loop produces.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from groundkit.bench.confidence import row_fields as confidence_fields
from groundkit.bench.configs import Config
from groundkit.core.io import clean_json


@dataclass
class Plan:
    """One checkpoint of a run: its config row, resolved recipe and the model (loaded lazily)."""

    config: Config
    recipe: Any  # groundkit.recipes.Recipe
    source: Any  # checkpoint name/folder (str/Path) or a loaded GroundingModel
    model: Any = None


# --------------------------------------------------------------------------------------------
# grounding one image's samples
# --------------------------------------------------------------------------------------------
def _base_row(sample, cfg: Config) -> dict[str, Any]:
    return {"sample_id": sample.sample_id, "checkpoint": cfg.checkpoint, "category": sample.category,
            "phrase": sample.phrase, "image": str(sample.image_path), "protocol": cfg.protocol,
            "boxes": [list(map(float, b)) for b in sample.boxes]}


def _error_row(sample, cfg: Config, err: BaseException | str, seconds: float) -> dict[str, Any]:
    row = _base_row(sample, cfg)
    row.update({m: None for m in cfg.metrics})
    row.update({"n_boxes": None, "n_boxes_dropped": None, "unet_calls": None, "seconds": round(seconds, 4),
                "recipe_digest": cfg.recipe_digest,
                "error": err if isinstance(err, str) else f"{type(err).__name__}: {err}"})
    return row


DROPPED_EMPTY = "no selected token: the published code gives a NaN map and leaves the sample out"


def _score(sample, cfg: Config, g, seconds: float) -> dict[str, Any]:
    if cfg.recipe.get("drop_empty") and g.info.get("empty_selection"):
        row = _error_row(sample, cfg, "", seconds)
        row.update({"error": None, "dropped": DROPPED_EMPTY, "unet_calls": clean_json(g.info.get("unet_calls"))})
        return row
    heat = np.asarray(g.heatmap_crop)
    if not np.isfinite(heat).all():
        raise ValueError(f"heatmap has {int((~np.isfinite(heat)).sum())} NaN/inf values")
    metrics = g.evaluate(sample.boxes, cfg.protocol)
    row = _base_row(sample, cfg)
    row.update({m: clean_json(float(metrics[m])) for m in cfg.metrics})
    row.update({"n_boxes": int(metrics.get("n_boxes", 0)), "n_boxes_dropped": int(metrics.get("n_boxes_dropped", 0)),
                "unet_calls": clean_json(g.info.get("unet_calls")), "seconds": round(seconds, 4),
                "recipe_digest": cfg.recipe_digest, "error": None})
    row.update(confidence_fields(g, sample.boxes))  # signals, confidence, mask IoU (groundkit.bench.confidence)
    return row


def _ground_group(model, plan: Plan, group: list, extra_seconds: float = 0.0) -> list[dict]:
    """Ground all phrases of one image in one call; when that fails, one by one to isolate the culprit.
    ``extra_seconds``: this image's share of U-Net work done before (a cross-image batch), added to its rows."""
    cfg = plan.config
    t0 = time.perf_counter() - extra_seconds
    try:
        gs = model.ground_many(group[0].image_path, [s.phrase for s in group], plan.recipe,
                               categories=[s.category for s in group])
    except Exception as e:
        free_memory()
        if len(group) == 1:
            return [_error_row(group[0], cfg, e, time.perf_counter() - t0)]
        return [row for s in group for row in _ground_group(model, plan, [s])]
    seconds = (time.perf_counter() - t0) / len(group)
    rows = []
    for s, g in zip(group, gs):
        try:
            rows.append(_score(s, cfg, g, seconds))
        except Exception as e:
            rows.append(_error_row(s, cfg, e, seconds))
    return rows


# --------------------------------------------------------------------------------------------
# scheduling: cross-image batches and overlapped post-processing
# --------------------------------------------------------------------------------------------
def _env_int(name: str, default: int) -> int:
    import os

    v = os.environ.get(name, "").strip()
    return int(v) if v else default


def _prepare_chunk(model, chunk: list) -> list:
    """Load and encode the images of a chunk (each group is one image): Prepared, or None when it fails
    (the image's ground_many then fails the same way and makes its error rows)."""
    out = []
    for group in chunk:
        try:
            out.append(model.prepare(group[0].image_path))
        except Exception:
            out.append(None)
    return out


def _precapture(model, plan: Plan, chunk: list, preps: list) -> list[float]:
    """The U-Net passes of a chunk of images in shared forwards (``GroundingModel.precapture``); seconds per
    image. A chunk that fails is left to its images' own ground_many calls (one by one, as without batching)."""
    ok = [i for i, p in enumerate(preps) if p is not None]
    secs = [0.0] * len(chunk)
    if not ok:
        return secs
    t0 = time.perf_counter()
    try:
        caps = model.precapture([(preps[i], [x.phrase for x in chunk[i]]) for i in ok], plan.recipe,
                                categories=[[x.category for x in chunk[i]] for i in ok])
    except Exception:
        free_memory()
        return secs
    total = time.perf_counter() - t0
    weight = [max(float(c.calls), 1.0) for c in caps]
    for i, w in zip(ok, weight):
        secs[i] = total * w / sum(weight)
    return secs


def schedule(model, plan: Plan, groups: list, info: dict):
    """Yield each image's rows, in dataset order, as ``_ground_group`` would one image after the other.

    Cross-image batching (``info["cross_image"]``, default on when the model offers ``precapture``): up to
    ``images_per_batch`` images (the U-Net batch size) run their U-Net passes together in this thread. The
    overlap (``info["workers"]`` post-processing threads, default 1; 0: none): while this thread runs the
    U-Net passes of the next chunk, the worker threads post-process and score the chunk before (heat maps,
    thresholds, metrics), and one loader thread loads and encodes the chunk after. At most two chunks are in
    flight, so memory stays bounded; rows still come out in order and a failing image still becomes its error
    rows. Stage seconds (``info["stages"]``): ``unet`` (this thread's passes), ``post`` (summed over the
    workers), ``prefetch``, ``wall``."""
    workers, cross = _settings(model, info)
    stages = info.setdefault("stages", {"unet": 0.0, "post": 0.0, "prefetch": 0.0, "wall": 0.0})
    t_wall = time.perf_counter()
    if not cross and workers <= 0:  # the plain sequential loop
        yield from _sequential(model, plan, groups, stages, t_wall)
        return
    yield from _overlapped(model, plan, groups, workers, cross, stages, t_wall)


def _settings(model, info: dict) -> tuple[int, bool]:
    """(post-processing workers, cross-image batching on?) from ``info``, else GROUNDKIT_WORKERS /
    GROUNDKIT_CROSS_IMAGE; batching needs a model that offers ``precapture``."""
    workers = int(info.get("workers") if info.get("workers") is not None else _env_int("GROUNDKIT_WORKERS", 1))
    cross = info.get("cross_image")
    cross = bool(_env_int("GROUNDKIT_CROSS_IMAGE", 1)) if cross is None else bool(cross)
    return workers, cross and hasattr(model, "precapture")


def _sequential(model, plan: Plan, groups: list, stages: dict, t_wall: float):
    """One image after the other in this thread: no batching, no overlap."""
    for group in groups:
        t = time.perf_counter()
        rows = _ground_group(model, plan, group)
        stages["post"] += time.perf_counter() - t
        yield rows
    stages["wall"] += time.perf_counter() - t_wall


def _overlapped(model, plan: Plan, groups: list, workers: int, cross: bool, stages: dict, t_wall: float):
    """Chunks of ``images_per_batch`` images: U-Net passes here, post-processing on ``workers`` threads,
    the next chunk loaded on one more (see :func:`schedule`)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    k = max(1, model.images_per_batch(plan.recipe)) if cross else 1
    if cross:
        model.reserve_cache(3 * k + 8)
    chunks = [groups[i : i + k] for i in range(0, len(groups), k)]

    def post(group, extra):
        t = time.perf_counter()
        rows = _ground_group(model, plan, group, extra)
        return rows, time.perf_counter() - t

    def load(chunk):
        t = time.perf_counter()
        preps = _prepare_chunk(model, chunk) if cross else [None] * len(chunk)
        return preps, time.perf_counter() - t

    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="groundkit-post") if workers > 0 else None
    loader = ThreadPoolExecutor(1, thread_name_prefix="groundkit-load")
    pending: deque = deque()
    try:
        nxt = loader.submit(load, chunks[0]) if chunks else None
        for ci, chunk in enumerate(chunks):
            preps, t_load = nxt.result()
            stages["prefetch"] += t_load
            nxt = loader.submit(load, chunks[ci + 1]) if ci + 1 < len(chunks) else None
            t = time.perf_counter()
            extra = _precapture(model, plan, chunk, preps) if cross else [0.0] * len(chunk)
            stages["unet"] += time.perf_counter() - t
            for group, e in zip(chunk, extra):
                if pool is None:
                    rows, dt = post(group, e)
                    stages["post"] += dt
                    yield rows
                else:
                    pending.append(pool.submit(post, group, e))
            while pending and (pending[0].done() or len(pending) > len(chunk)):  # the previous chunk, at most
                rows, dt = pending.popleft().result()
                stages["post"] += dt
                yield rows
        while pending:
            rows, dt = pending.popleft().result()
            stages["post"] += dt
            yield rows
    finally:
        for f in pending:
            f.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        loader.shutdown(wait=True, cancel_futures=True)
        stages["wall"] += time.perf_counter() - t_wall


def free_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
