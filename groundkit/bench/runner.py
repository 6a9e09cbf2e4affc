"""Benchmark runner: ground every sample of a dataset with one or more checkpoints and score it.

Output folder layout (``out_dir``)::

    rows.jsonl          one JSON row per (checkpoint, sample): metrics, U-Net calls, seconds, recipe digest, error
    rows.rank{r}.jsonl  per-rank shards while a torchrun job is running (merged into rows.jsonl at the end)
    run.json            configs (checkpoint + resolved recipe + digest), dataset, versions, sessions
    tables.md, tables/*.csv, summary.json    (groundkit.bench.tables)
    report.html, gallery/                    (groundkit.bench.report)

Rows are appended and flushed (fsync) one by one, so a crash or Ctrl-C loses at most the image in
flight (its phrases are grounded in one batched ``ground_many`` call). Resuming skips every
(checkpoint, sample_id, recipe digest) already written; a truncated last line (crash mid-write) is
cut off first. A failing sample (unreadable image, NaN map, ...) gets a row with its ``error`` and
NaN (null) metrics; it is counted and listed, and the run goes on.

Scale-out: under torchrun (``torch.distributed`` initialised, see ``init_distributed``) rank r takes
the images ``shard_samples`` assigns it (whole images, so the per-image caches still work), writes
``rows.rank{r}.jsonl``; after a barrier rank 0 merges every shard into ``rows.jsonl`` (sorted by
checkpoint order, then dataset order) and builds the tables and the report.
"""
from __future__ import annotations

from ..core.io import AppendWriter, atomic_write_json, atomic_write_lines, ensure_dir
import datetime as _dt
import json
import math
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

ROWS_FILE = "rows.jsonl"
RUN_FILE = "run.json"
_RANK_FILE = re.compile(r"^rows\.rank(\d+)\.jsonl$")

__all__ = [
    "BenchmarkResult",
    "Config",
    "run_benchmark",
    "init_distributed",
    "dist_info",
    "shard_samples",
    "read_rows",
    "read_dir_rows",
    "load_run",
    "row_key",
    "metric_value",
]


# --------------------------------------------------------------------------------------------
# configs: one (checkpoint, resolved recipe) pair = one column of the tables
# --------------------------------------------------------------------------------------------
@dataclass
class Config:
    label: str  # how tables and compare name it: the checkpoint name (+ "@digest" when ambiguous)
    checkpoint: str  # registry entry name (folder name for a folder)
    path: str
    adapter: str
    recipe: dict[str, Any]
    recipe_digest: str
    protocol: str
    metrics: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "checkpoint": self.checkpoint, "path": self.path, "adapter": self.adapter,
                "recipe": self.recipe, "recipe_digest": self.recipe_digest, "protocol": self.protocol,
                "metrics": list(self.metrics)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        return cls(label=d["label"], checkpoint=d["checkpoint"], path=d.get("path", ""), adapter=d.get("adapter", ""),
                   recipe=dict(d.get("recipe") or {}), recipe_digest=d["recipe_digest"], protocol=d["protocol"],
                   metrics=tuple(d["metrics"]))

    def owns(self, row: Mapping[str, Any]) -> bool:
        return row.get("checkpoint") == self.checkpoint and row.get("recipe_digest") == self.recipe_digest


@dataclass
class _Plan:
    config: Config
    recipe: Any  # groundkit.recipes.Recipe
    source: Any  # checkpoint name/folder (str/Path) or a loaded GroundingModel
    model: Any = None


@dataclass
class BenchmarkResult:
    out_dir: Path
    configs: list[Config]
    rows: list[dict]  # rank 0: every merged row of the folder; other ranks: the rows of their shard
    new_rows: int  # rows written by this run (rank 0: all ranks; other ranks: their own)
    skipped: int  # samples found already done (resume), counted the same way
    errors: list[dict]  # rows with an error (rank 0: all of them)
    files: dict[str, Path] = field(default_factory=dict)
    tables: Any = None  # groundkit.bench.tables.Tables (rank 0, when built)
    rank: int = 0
    world_size: int = 1

    def summary(self) -> str:
        n_ok = sum(1 for r in self.rows if not r.get("error"))
        lines = [f"{len(self.rows)} rows ({n_ok} ok, {len(self.errors)} failed) in {self.out_dir}; "
                 f"{self.new_rows} new, {self.skipped} already done"]
        if self.errors:
            lines.append(f"{len(self.errors)} sample(s) failed:")
            lines += [f"  {e['checkpoint']} {e['sample_id']} ({e.get('image', '')}): {e['error']}" for e in self.errors]
        for name, path in self.files.items():
            lines.append(f"{name}: {path}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# torch.distributed
# --------------------------------------------------------------------------------------------
def dist_info() -> tuple[int, int]:
    """(rank, world size) of the initialised default process group, else (0, 1)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch built without distributed
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str | None = None) -> bool:
    """Initialise the default process group from torchrun's environment when WORLD_SIZE > 1 and
    nothing is initialised yet: nccl when the ranks use CUDA, gloo otherwise. Returns True when it
    initialised the group (the caller then destroys it). The timeout (GROUNDKIT_DIST_TIMEOUT seconds,
    default 24 h) bounds how long ranks wait for the slowest shard at the final barrier."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = _dt.timedelta(seconds=float(os.environ.get("GROUNDKIT_DIST_TIMEOUT", 24 * 3600)))
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    return True


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _gather_counts(*counts: int) -> list[int]:
    """Sum small integer counters over the ranks (and wait for every rank: a barrier)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return list(counts)
    got: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(got, list(counts))
    return [sum(g[i] for g in got) for i in range(len(counts))]


def _rank_device(device: str | None, world: int) -> str | None:
    """Under torchrun each rank takes the GPU of its LOCAL_RANK."""
    import torch

    if world > 1 and torch.cuda.is_available() and (device is None or device == "cuda"):
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def shard_samples(samples: Sequence[Any], rank: int, world: int) -> list[Any]:
    """The samples of ``rank``: whole images (all phrases of one image stay on one rank, so the
    per-image caches work), assigned in dataset order to the rank with the fewest samples so far
    (ties: lowest rank). Deterministic; the shards are disjoint and cover every sample."""
    if world <= 1:
        return list(samples)
    groups = _group_by_image(samples)
    load = [0] * world
    mine: list[Any] = []
    for group in groups.values():
        r = min(range(world), key=lambda k: (load[k], k))
        load[r] += len(group)
        if r == rank:
            mine.extend(group)
    return mine


def _group_by_image(samples: Iterable[Any]) -> "OrderedDict[str, list[Any]]":
    groups: OrderedDict[str, list[Any]] = OrderedDict()
    for s in samples:
        groups.setdefault(str(s.image_path), []).append(s)
    return groups


# --------------------------------------------------------------------------------------------
# rows files
# --------------------------------------------------------------------------------------------
def row_key(row: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(row["checkpoint"]), str(row["sample_id"]), str(row["recipe_digest"]))


def metric_value(row: Mapping[str, Any], metric: str) -> float:
    """A row's metric as float (null/missing -> NaN)."""
    v = row.get(metric)
    return math.nan if v is None else float(v)


def _clean(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _repair_tail(path: Path) -> int:
    """Cut a last line that a crash left without its newline; returns the bytes removed."""
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as f:
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


def read_rows(path: str | Path) -> list[dict]:
    """Rows of one JSONL file; a truncated or unparsable line is skipped (it is re-run on resume)."""
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    with open(p, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and {"checkpoint", "sample_id", "recipe_digest"} <= set(row):
                rows.append(row)
    return rows


def _row_files(out: Path) -> list[Path]:
    shards = sorted((p for p in out.glob("rows.rank*.jsonl") if _RANK_FILE.match(p.name)),
                    key=lambda p: int(_RANK_FILE.match(p.name).group(1)))
    return [out / ROWS_FILE] + shards


def _dedupe(rows: Iterable[dict]) -> list[dict]:
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
    for f in _row_files(out):
        rows.extend(read_rows(f))
    return _dedupe(rows)


def load_run(out_dir: str | Path) -> dict:
    p = Path(out_dir) / RUN_FILE
    if not p.is_file():
        raise FileNotFoundError(f"{p}: not a benchmark folder (no {RUN_FILE}); run `groundkit benchmark ... --out {out_dir}` first")
    return json.loads(p.read_text())


def _write_json_atomic(path: Path, data: Any) -> None:
    atomic_write_json(path, data)


def _write_rows_atomic(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_lines(path, rows)


class _RowWriter(AppendWriter):
    def __init__(self, path: Path):
        _repair_tail(path)
        super().__init__(path)


# --------------------------------------------------------------------------------------------
# planning (no weights loaded)
# --------------------------------------------------------------------------------------------
def _resolve_recipe(entry, recipe, overrides: Mapping[str, Any]):
    """Same resolution as GroundingModel.recipe, without loading the weights."""
    from ..recipes import get_recipe

    base = get_recipe(recipe or entry.recipe)
    if recipe is None or (isinstance(recipe, str) and recipe == entry.recipe):
        base = base.override(**entry.overrides) if entry.overrides else base
    return base.override(**overrides) if overrides else base


def _plan(checkpoints: Sequence[Any], recipe, overrides: Mapping[str, Any], checkpoints_file) -> list[_Plan]:
    from .. import registry
    from ..api import GroundingModel
    from ..protocols import get_protocol

    plans = []
    for c in checkpoints:
        if isinstance(c, GroundingModel):
            entry, r, model = c.entry, c.recipe(recipe, **overrides), c
            path = str(entry.path)
        else:
            entry, model = registry.resolve(c, checkpoints_file), None
            r = _resolve_recipe(entry, recipe, overrides)
            path = str(entry.path)
        proto = get_protocol(r.protocol)
        cfg = Config(label=entry.name, checkpoint=entry.name, path=path, adapter=entry.adapter, recipe=r.to_dict(),
                     recipe_digest=r.digest(), protocol=proto.name, metrics=tuple(proto.metrics))
        plans.append(_Plan(cfg, r, c, model))
    seen: dict[tuple[str, str], str] = {}
    for p in plans:
        k = (p.config.checkpoint, p.config.recipe_digest)
        if k in seen:
            if seen[k] == p.config.path:
                raise ValueError(f"checkpoint {p.config.checkpoint!r} is given twice")
            raise ValueError(f"two checkpoints are both named {p.config.checkpoint!r} ({seen[k]} and {p.config.path}); "
                             "rows are keyed by name: rename one folder")
        seen[k] = p.config.path
    return plans


def _configs_with_rows(old: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A configuration of an earlier session that never produced a row (e.g. a run that stopped on a bad
    recipe) is forgotten: it must not linger in the tables as "no successful rows yet"."""
    have = {(r.get("checkpoint"), r.get("recipe_digest")) for r in rows}
    return [c for c in old if (c.get("checkpoint"), c.get("recipe_digest")) in have]


def _refuse_other_recipes(out: Path, old: Sequence[Mapping[str, Any]], plans: Sequence[_Plan]) -> None:
    """Rows of the same checkpoint under another recipe would be labelled by digest and mixed into one
    folder's tables: say so instead of doing it silently."""
    for p in plans:
        for c in old:
            if c.get("checkpoint") == p.config.checkpoint and c.get("recipe_digest") != p.config.recipe_digest:
                name = (c.get("recipe") or {}).get("name", "?")
                raise ValueError(
                    f"{out} already holds rows of {p.config.checkpoint} under another recipe ({name}, digest "
                    f"{c.get('recipe_digest')}; now {p.recipe.name}, digest {p.config.recipe_digest}): write to another "
                    "--out, or pass --overwrite to replace the old rows")


def _merge_configs(old: Sequence[Mapping[str, Any]], new: Sequence[Config]) -> list[Config]:
    """Union of the configs of every session of a folder (first seen first), labels made unique."""
    out: list[Config] = []
    for c in [Config.from_dict(d) for d in old] + list(new):
        if not any(o.checkpoint == c.checkpoint and o.recipe_digest == c.recipe_digest for o in out):
            out.append(c)
    names = [c.checkpoint for c in out]
    for c in out:
        c.label = c.checkpoint if names.count(c.checkpoint) == 1 else f"{c.checkpoint}@{c.recipe_digest}"
    return out


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
        row.update({"error": None, "dropped": DROPPED_EMPTY, "unet_calls": _clean(g.info.get("unet_calls"))})
        return row
    heat = np.asarray(g.heatmap_crop)
    if not np.isfinite(heat).all():
        raise ValueError(f"heatmap has {int((~np.isfinite(heat)).sum())} NaN/inf values")
    metrics = g.evaluate(sample.boxes, cfg.protocol)
    row = _base_row(sample, cfg)
    row.update({m: _clean(float(metrics[m])) for m in cfg.metrics})
    row.update({"n_boxes": int(metrics.get("n_boxes", 0)), "n_boxes_dropped": int(metrics.get("n_boxes_dropped", 0)),
                "unet_calls": _clean(g.info.get("unet_calls")), "seconds": round(seconds, 4),
                "recipe_digest": cfg.recipe_digest, "error": None})
    return row


def _ground_group(model, plan: _Plan, group: list) -> list[dict]:
    """Ground all phrases of one image in one call; when that fails, one by one to isolate the culprit."""
    cfg = plan.config
    t0 = time.perf_counter()
    try:
        gs = model.ground_many(group[0].image_path, [s.phrase for s in group], plan.recipe,
                               categories=[s.category for s in group])
    except Exception as e:  # noqa: BLE001 - recorded in the row; KeyboardInterrupt still stops the run
        _free_memory()
        if len(group) == 1:
            return [_error_row(group[0], cfg, e, time.perf_counter() - t0)]
        return [row for s in group for row in _ground_group(model, plan, [s])]
    seconds = (time.perf_counter() - t0) / len(group)
    rows = []
    for s, g in zip(group, gs):
        try:
            rows.append(_score(s, cfg, g, seconds))
        except Exception as e:  # noqa: BLE001
            rows.append(_error_row(s, cfg, e, seconds))
    return rows


def _free_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _load_model(plan: _Plan, device, dtype, checkpoints_file):
    if plan.model is None:
        from ..api import load

        plan.model = load(plan.source, device=device, dtype=dtype, checkpoints_file=checkpoints_file)
        digest = plan.model.recipe(plan.recipe).digest()
        if digest != plan.config.recipe_digest:  # pragma: no cover - guards _resolve_recipe against drift
            raise RuntimeError(f"{plan.config.checkpoint}: recipe digest {digest} != planned {plan.config.recipe_digest}")
    return plan.model


def _release(plan: _Plan) -> None:
    from ..api import GroundingModel

    if plan.model is not None and not isinstance(plan.source, GroundingModel):
        plan.model = None
        _free_memory()


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _dataset_info(samples: Sequence[Any], dataset: Mapping[str, Any] | None, limit: int | None,
                  load_report: Any = None) -> dict[str, Any]:
    info = dict(dataset or {})
    cats: dict[str, int] = {}
    for s in samples:
        cats[s.category] = cats.get(s.category, 0) + 1
    info.update({"limit": limit, "n_samples": len(samples), "n_images": len(_group_by_image(samples)),
                 "n_boxes": sum(len(s.boxes) for s in samples), "categories": cats})
    if load_report is not None:
        info["load_report"] = str(load_report)
    return info


def run_benchmark(
    checkpoints: Sequence[Any],
    recipe: Any = None,
    overrides: Mapping[str, Any] | None = None,
    samples: Sequence[Any] = (),
    out_dir: str | Path = "groundkit-benchmark",
    *,
    resume: bool = True,
    retry_errors: bool = False,
    device: str | None = None,
    dtype: str = "float32",
    limit: int | None = None,
    progress: bool = True,
    dataset: Mapping[str, Any] | None = None,
    tables: bool = True,
    report: bool = True,
    gallery: bool = True,
    reference_dir: str | Path | None = None,
    checkpoints_file: str | Path | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> BenchmarkResult:
    """Ground and score every sample with every checkpoint; see the module docstring.

    checkpoints: names from checkpoints.yaml, checkpoint folders, or loaded ``GroundingModel``s.
    recipe / overrides: as ``GroundingModel.recipe`` (None = each checkpoint's own recipe).
    samples: ``Sample``s (``groundkit.bench.datasets.load_dataset``); ``limit`` keeps the first N.
    resume: skip (checkpoint, sample_id, recipe digest) rows already in ``out_dir`` (False: start over);
    retry_errors: also re-run the samples whose row holds an error.
    dataset: a description recorded in run.json (kind, csv, images, split ...).
    tables / report / gallery: what rank 0 builds at the end (gallery = re-grounding the best, median
    and worst sample per category and config, for the overlays of the HTML report).
    """
    from tqdm.auto import tqdm

    from ..api import versions

    overrides = dict(overrides or {})
    rank, world = dist_info()
    device = _rank_device(device, world)
    load_report = getattr(samples, "report", None)
    samples = list(samples)[:limit] if limit is not None else list(samples)
    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"duplicate sample_id(s) in the dataset: {dup}")
    out = Path(out_dir)
    ensure_dir(out)
    plans = _plan(checkpoints, recipe, overrides, checkpoints_file)
    own_file = out / (ROWS_FILE if world == 1 else f"rows.rank{rank}.jsonl")

    if not resume:
        if rank == 0:
            for f in _row_files(out):
                if f.exists() and (f.name == ROWS_FILE or int(_RANK_FILE.match(f.name).group(1)) >= world):
                    f.unlink()
            (out / RUN_FILE).unlink(missing_ok=True)
        if own_file.exists():
            own_file.unlink()
        _barrier()
    old_run = {}
    if resume and (out / RUN_FILE).is_file():
        old_run = json.loads((out / RUN_FILE).read_text())
    old_configs = _configs_with_rows(old_run.get("configs", []), read_dir_rows(out) if resume else [])
    _refuse_other_recipes(out, old_configs, plans)
    configs = _merge_configs(old_configs, [p.config for p in plans])
    for p in plans:  # plans share the merged labels
        p.config.label = next(c.label for c in configs if c.checkpoint == p.config.checkpoint
                              and c.recipe_digest == p.config.recipe_digest)
    started = _now()
    session = {"started": started, "finished": None, "world_size": world, "device": device, "dtype": dtype,
               "checkpoints": [p.config.label for p in plans], "dataset": _dataset_info(samples, dataset, limit, load_report)}
    if rank == 0:
        run = {"groundkit_benchmark": 1, "configs": [c.to_dict() for c in configs], "dataset": session["dataset"],
               "versions": versions(), "started": old_run.get("started", started), "finished": None,
               "sessions": list(old_run.get("sessions", [])) + [session]}
        _write_json_atomic(out / RUN_FILE, run)

    done: set[tuple] = set()
    if resume:
        for r in read_dir_rows(out):
            if not (retry_errors and r.get("error")):
                done.add(row_key(r))
    mine = shard_samples(samples, rank, world)
    todo = [(p, [s for s in mine if (p.config.checkpoint, s.sample_id, p.config.recipe_digest) not in done])
            for p in plans]
    skipped = sum(len(mine) - len(t) for _, t in todo)
    total = sum(len(t) for _, t in todo)
    desc = "benchmark" + (f" [rank {rank}/{world}]" if world > 1 else "")
    bar = tqdm(total=total, desc=desc, unit="sample", disable=not progress, position=rank if world > 1 else None,
               dynamic_ncols=True)
    new_rows, my_rows, n_err = 0, [], 0
    writer = _RowWriter(own_file)
    try:
        for plan, pending in todo:
            if not pending:
                continue
            model = _load_model(plan, device, dtype, checkpoints_file)
            model.recipe(plan.recipe)  # a recipe that does not fit the model fails the run, not every sample
            for group in _group_by_image(pending).values():
                for row in _ground_group(model, plan, group):
                    writer.write(row)
                    my_rows.append(row)
                    new_rows += 1
                    n_err += bool(row["error"])
                    if on_row is not None:
                        on_row(row)
                    bar.update(1)
                if n_err:
                    bar.set_postfix(failed=n_err)
            if plan is not todo[-1][0]:
                _release(plan)
    finally:
        writer.close()
        bar.close()

    total_new, total_skipped = _gather_counts(new_rows, skipped)  # also the barrier before merging
    result = BenchmarkResult(out, configs, my_rows, new_rows, skipped, [r for r in my_rows if r["error"]],
                             rank=rank, world_size=world)
    if rank != 0:
        return result
    result.new_rows, result.skipped = total_new, total_skipped

    # rank 0: merge shards -> rows.jsonl (deterministic order), then tables and report
    rows = read_dir_rows(out)
    cfg_index = {(c.checkpoint, c.recipe_digest): i for i, c in enumerate(configs)}
    sample_index = {s.sample_id: i for i, s in enumerate(samples)}
    big = len(samples) + len(configs) + 1
    rows.sort(key=lambda r: (cfg_index.get((r["checkpoint"], r["recipe_digest"]), big), r["checkpoint"],
                             r["recipe_digest"], sample_index.get(r["sample_id"], big), r["sample_id"]))
    _write_rows_atomic(out / ROWS_FILE, rows)
    for f in _row_files(out)[1:]:
        f.unlink(missing_ok=True)
    result.rows = rows
    result.errors = [r for r in rows if r.get("error")]
    result.files["rows"] = out / ROWS_FILE
    if tables:
        from .tables import build_tables, write_tables

        t = result.tables = build_tables(rows, configs, reference_dir=reference_dir)
        result.files.update(write_tables(t, out))
        if report:
            from .report import build_gallery, write_report

            items = []
            if gallery:
                items = build_gallery(out, rows, plans, lambda p: _load_model(p, device, dtype, checkpoints_file))
            result.files["report"] = write_report(out, t, rows, configs, items, run_info=json.loads((out / RUN_FILE).read_text()))
    session.update({"finished": _now(), "new_rows": total_new, "skipped": total_skipped,
                    "rows": len(rows), "errors": len(result.errors)})
    run = json.loads((out / RUN_FILE).read_text())
    run["sessions"][-1] = session
    run["finished"] = session["finished"]
    _write_json_atomic(out / RUN_FILE, run)
    result.files["run"] = out / RUN_FILE
    return result
