"""Benchmark runner: ground every sample of a dataset with one or more checkpoints and score it.

Output folder layout (``out_dir``)::

    rows.jsonl          one JSON row per (checkpoint, sample): metrics, U-Net calls, seconds, recipe digest, error
    rows.rank{r}.jsonl  per-rank shards while a torchrun job is running (merged into rows.jsonl at the end)
    run.json            configs (checkpoint + resolved recipe + digest), dataset, versions, sessions
    tables.md, tables/*.csv, summary.json    (groundkit.bench.tables)
    benchmark.html, gallery/                 the benchmark page (groundkit.bench.page)

Rows are appended and flushed (fsync) one by one, so a crash or Ctrl-C loses at most the images in
flight (the cross-image batch in the U-Net and the one being post-processed, see ``groundkit.bench.schedule.schedule``). Resuming skips every
(checkpoint, sample_id, recipe digest) already written; a truncated last line (crash mid-write) is
cut off first. A failing sample (unreadable image, NaN map, ...) gets a row with its ``error`` and
NaN (null) metrics; it is counted and listed, and the run goes on.

Scale-out: under torchrun (``torch.distributed`` initialised, see ``init_distributed``) rank r takes
the images ``shard_samples`` assigns it (whole images, so the per-image caches still work), writes
``rows.rank{r}.jsonl``; after a barrier rank 0 merges every shard into ``rows.jsonl`` (sorted by
checkpoint order, then dataset order) and builds the tables and the benchmark page, while the other ranks wait at a
last barrier: every rank returns (and tears its process group down) after the merge, none before.
"""
from __future__ import annotations

import datetime as _dt
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from groundkit.bench.configs import Config, configs_with_rows, merge_configs
from groundkit.bench.distributed import barrier, cap_threads, dist_info, gather_counts, group_by_image, rank_device, shard_samples
from groundkit.bench.lock import folder_lock
from groundkit.bench.page import PAGE_FILE, build_gallery, write_page
from groundkit.bench.progress import Progress
from groundkit.bench.rows import RANK_FILE, ROWS_FILE, RUN_FILE, RowWriter, damaged_lines, read_dir_rows, row_files, row_key
from groundkit.bench.schedule import Plan, free_memory, schedule
from groundkit.core.outdir import check_target, ensure_dir, write_json, write_jsonl

__all__ = ["BenchmarkResult", "Config", "ResultFiles", "run_benchmark"]


class ResultFiles(dict):
    """{name: path} of what a run wrote. The benchmark page is ``"page"``; its old key ``"report"`` still answers
    (with a DeprecationWarning) so code written before the rename keeps working."""

    def __missing__(self, key: str) -> Path:
        if key == "report" and "page" in self:
            warnings.warn('BenchmarkResult.files["report"] is deprecated: use files["page"] (benchmark.html)',
                          DeprecationWarning, stacklevel=2)
            return self["page"]
        raise KeyError(key)


@dataclass
class BenchmarkResult:
    out_dir: Path
    configs: list[Config]
    rows: list[dict]  # rank 0: every merged row of the folder; other ranks: the rows of their shard
    new_rows: int  # rows written by this run (rank 0: all ranks; other ranks: their own)
    skipped: int  # samples found already done (resume), counted the same way
    errors: list[dict]  # rows with an error (rank 0: all of them)
    files: ResultFiles = field(default_factory=ResultFiles)  # files["page"]: the benchmark page, when written
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
# planning (no weights loaded)
# --------------------------------------------------------------------------------------------
def _resolve_recipe(entry, recipe, overrides: Mapping[str, Any]):
    """The recipe of a checkpoint that is not loaded yet (layer selectors resolve once it is)."""
    from groundkit.recipes import resolve_recipe

    return resolve_recipe(recipe, entry.default_recipe, dict(overrides), base_of_default=entry.recipe).recipe


def _plan(checkpoints: Sequence[Any], recipe, overrides: Mapping[str, Any], checkpoints_file) -> list[Plan]:
    from groundkit import registry
    from groundkit.api import GroundingModel
    from groundkit.evaluation.protocols import get_protocol

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
        # a config is the recipe as named (layer selector unresolved): the same digest whether the checkpoint is loaded
        # yet or not, so a run resumes and compares across both
        named = r if model is None else _resolve_recipe(entry, recipe, overrides)
        cfg = Config(label=entry.name, checkpoint=entry.name, path=path, adapter=entry.adapter, recipe=named.to_dict(),
                     recipe_digest=named.digest(), protocol=proto.name, metrics=tuple(proto.metrics))
        plans.append(Plan(cfg, r, c, model))
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


def _refuse_other_recipes(out: Path, old: Sequence[Mapping[str, Any]], plans: Sequence[Plan]) -> None:
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


def _dtype_name(dtype, device) -> str:
    """The U-Net dtype a run uses ("auto" resolved for its device), for run.json."""
    from groundkit.api import pick_device, resolve_dtype

    return str(resolve_dtype(dtype, pick_device(device))).replace("torch.", "")


def _load_model(plan: Plan, device, dtype, checkpoints_file, compile: bool = False):
    if plan.model is None:
        from groundkit.api import load

        plan.model = load(plan.source, device=device, dtype=dtype, checkpoints_file=checkpoints_file, compile=compile)
    return plan.model


def _release(plan: Plan) -> None:
    from groundkit.api import GroundingModel

    if plan.model is not None and not isinstance(plan.source, GroundingModel):
        plan.model = None
        free_memory()


def _dataset_info(samples: Sequence[Any], dataset: Mapping[str, Any] | None, limit: int | None,
                  load_report: Any = None) -> dict[str, Any]:
    info = dict(dataset or {})
    cats: dict[str, int] = {}
    for s in samples:
        cats[s.category] = cats.get(s.category, 0) + 1
    info.update({"limit": limit, "n_samples": len(samples), "n_images": len(group_by_image(samples)),
                 "n_boxes": sum(len(s.boxes) for s in samples), "categories": cats})
    if load_report is not None:
        info["load_report"] = str(load_report)
    return info


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class _Session:
    """What one invocation of ``run_benchmark`` knows about its folder and its share of the work."""

    out: Path
    plans: list[Plan]
    configs: list[Config]
    samples: list[Any]
    rank: int
    world: int
    device: str | None
    info: dict[str, Any]


def _start(checkpoints, recipe, overrides, samples, out_dir, resume, device, limit, dataset, checkpoints_file,
           threads: int | None = None) -> _Session:
    """Cap the CPU threads, plan the configs, clear the folder when not resuming, merge with earlier sessions,
    write run.json."""
    import torch

    from groundkit.api import versions

    rank, world = dist_info()
    device = rank_device(device, world)
    cap_threads(device, threads)  # before any model loads
    load_report = getattr(samples, "report", None)
    samples = list(samples)[:limit] if limit is not None else list(samples)
    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"duplicate sample_id(s) in the dataset: {dup}")
    out = ensure_dir(out_dir)
    for name in (RUN_FILE, ROWS_FILE, "tables.md", "summary.json", PAGE_FILE):
        check_target(out / name)  # a planted link is refused before any work
    plans = _plan(checkpoints, recipe, dict(overrides or {}), checkpoints_file)
    damaged = damaged_lines(out) if resume and rank == 0 else []
    for msg in damaged:
        print(f"warning: {msg}", file=sys.stderr, flush=True)
    if not resume:
        _start_over(out, rank, world)
    old_run = json.loads((out / RUN_FILE).read_text()) if resume and (out / RUN_FILE).is_file() else {}
    old_configs = configs_with_rows(old_run.get("configs", []), read_dir_rows(out) if resume else [])
    _refuse_other_recipes(out, old_configs, plans)
    configs = merge_configs(old_configs, [p.config for p in plans])
    for p in plans:  # plans share the merged labels
        p.config.label = next(c.label for c in configs if c.checkpoint == p.config.checkpoint
                              and c.recipe_digest == p.config.recipe_digest)
    started = _now()
    info = {"started": started, "finished": None, "world_size": world, "device": device, "threads": torch.get_num_threads(),
            "checkpoints": [p.config.label for p in plans], "dataset": _dataset_info(samples, dataset, limit, load_report)}
    if damaged:
        info["damaged_lines"] = damaged
    if rank == 0:
        write_json(out / RUN_FILE, {
            "groundkit_benchmark": 1, "configs": [c.to_dict() for c in configs], "dataset": info["dataset"],
            "versions": versions(), "started": old_run.get("started", started), "finished": None,
            "sessions": list(old_run.get("sessions", [])) + [info]})
    return _Session(out, plans, configs, samples, rank, world, device, info)


def _start_over(out: Path, rank: int, world: int) -> None:
    if rank == 0:
        for f in row_files(out):
            if f.exists() and (f.name == ROWS_FILE or int(RANK_FILE.match(f.name).group(1)) >= world):
                f.unlink()
        (out / RUN_FILE).unlink(missing_ok=True)
    own = out / (ROWS_FILE if world == 1 else f"rows.rank{rank}.jsonl")
    if own.exists():
        own.unlink()
    barrier()


def _work(s: _Session, resume: bool, retry_errors: bool, dtype: str, progress: bool, checkpoints_file,
          on_row: Callable[[dict], None] | None) -> tuple[list[dict], int]:
    """Ground this rank's share; rows are written as they come. Returns (rows written, samples skipped)."""
    done = {row_key(r) for r in read_dir_rows(s.out) if not (retry_errors and r.get("error"))} if resume else set()
    mine = shard_samples(s.samples, s.rank, s.world)
    todo = [(p, [x for x in mine if (p.config.checkpoint, x.sample_id, p.config.recipe_digest) not in done]) for p in s.plans]
    skipped = sum(len(mine) - len(t) for _, t in todo)
    bar = Progress(sum(len(t) for _, t in todo), rank=s.rank, world=s.world, enabled=progress)
    written: list[dict] = []
    writer = RowWriter(s.out / (ROWS_FILE if s.world == 1 else f"rows.rank{s.rank}.jsonl"))
    try:
        for plan, pending in todo:
            if not pending:
                continue
            model = _load_model(plan, s.device, dtype, checkpoints_file, bool(s.info.get("compile")))
            model.recipe(plan.recipe)  # a recipe that does not fit the model fails the run, not every sample
            bar.begin()
            for rows in schedule(model, plan, list(group_by_image(pending).values()), s.info):
                for row in rows:
                    writer.write(row)
                    written.append(row)
                    if on_row is not None:
                        on_row(row)
                    bar.update(1, failed=int(bool(row["error"])))
            if plan is not todo[-1][0]:
                _release(plan)
    finally:
        writer.close()
        bar.close()
    return written, skipped


def _finish(s: _Session, result: BenchmarkResult, tables: bool, page: bool, gallery: bool, reference_dir,
            dtype: str, checkpoints_file) -> None:
    """Rank 0: merge the shards into rows.jsonl (deterministic order), then tables, the benchmark page and run.json."""
    rows = read_dir_rows(s.out)
    cfg_index = {(c.checkpoint, c.recipe_digest): i for i, c in enumerate(s.configs)}
    sample_index = {x.sample_id: i for i, x in enumerate(s.samples)}
    big = len(s.samples) + len(s.configs) + 1
    rows.sort(key=lambda r: (cfg_index.get((r["checkpoint"], r["recipe_digest"]), big), r["checkpoint"],
                             r["recipe_digest"], sample_index.get(r["sample_id"], big), r["sample_id"]))
    write_jsonl(s.out / ROWS_FILE, rows)
    for f in row_files(s.out)[1:]:
        f.unlink(missing_ok=True)
    result.rows, result.errors = rows, [r for r in rows if r.get("error")]
    result.files["rows"] = s.out / ROWS_FILE
    if tables:
        from groundkit.bench.tables import build_tables, write_tables

        t = result.tables = build_tables(rows, s.configs, reference_dir=reference_dir,
                                         dataset=str(s.info["dataset"].get("kind") or "unknown"))
        result.files.update(write_tables(t, s.out))
        if page:
            items = build_gallery(s.out, rows, s.plans, lambda p: _load_model(p, s.device, dtype, checkpoints_file)) if gallery else []
            result.files["page"] = write_page(s.out, t, rows, s.configs, items,
                                              run_info=json.loads((s.out / RUN_FILE).read_text()))
    s.info.update({"finished": _now(), "new_rows": result.new_rows, "skipped": result.skipped,
                   "rows": len(rows), "errors": len(result.errors)})
    run = json.loads((s.out / RUN_FILE).read_text())
    run["sessions"][-1] = s.info
    run["finished"] = s.info["finished"]
    write_json(s.out / RUN_FILE, run)
    result.files["run"] = s.out / RUN_FILE


def _page_flag(page: bool, report: bool | None) -> bool:
    """``page``, or the deprecated ``report=`` keyword when a caller still passes it (it named the benchmark page
    before "report" was kept for the radiology report alone)."""
    if report is None:
        return page
    warnings.warn("run_benchmark(report=...) is deprecated: pass page=... (the benchmark page, benchmark.html)",
                  DeprecationWarning, stacklevel=3)
    return bool(report)


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
    dtype: str = "auto",
    compile: bool = False,
    limit: int | None = None,
    progress: bool = True,
    dataset: Mapping[str, Any] | None = None,
    tables: bool = True,
    page: bool = True,
    gallery: bool = True,
    reference_dir: str | Path | None = None,
    checkpoints_file: str | Path | None = None,
    on_row: Callable[[dict], None] | None = None,
    threads: int | None = None,
    cross_image: bool | None = None,
    workers: int | None = None,
    report: bool | None = None,
) -> BenchmarkResult:
    """Ground and score every sample with every checkpoint; see the module docstring.

    checkpoints: names from checkpoints.yaml, checkpoint folders, or loaded ``GroundingModel``s.
    recipe / overrides: as ``GroundingModel.recipe`` (None = each checkpoint's own default recipe).
    samples: ``Sample``s (``groundkit.bench.datasets.load_dataset``); ``limit`` keeps the first N; dataset: recorded in run.json.
    resume: skip (checkpoint, sample_id, recipe digest) rows already in ``out_dir`` (False: start over); retry_errors: also re-run
    the samples whose row holds an error.
    progress: a tqdm bar on a terminal, else a plain line every 30 s (groundkit.bench.progress); False: silent.
    dtype: the U-Net's ("auto": bfloat16 on CUDA, float32 elsewhere); compile: torch.compile the U-Net.
    threads: CPU threads (torch.set_num_threads); None: torch's own, except under a multi-rank launch on CPU,
    where each rank is capped at cores // local ranks (``groundkit.bench.distributed.cap_threads``).
    cross_image: run the U-Net passes of up to batch-size images together (same maps; None: on, or GROUNDKIT_CROSS_IMAGE);
    workers: post-processing threads overlapping the U-Net (None: 1, or GROUNDKIT_WORKERS; 0: in the main thread), see groundkit.bench.schedule.
    tables / page / gallery: what rank 0 builds at the end (page: the benchmark page, benchmark.html; its old keyword ``report``
    warns but works; gallery: the best, median and worst sample per category and config, re-grounded for the page).
    """
    page = _page_flag(page, report)
    with folder_lock(out_dir, "benchmark"):
        s = _start(checkpoints, recipe, overrides, samples, out_dir, resume, device, limit, dataset, checkpoints_file, threads)
        s.info["dtype"], s.info["compile"] = _dtype_name(dtype, s.device), compile
        s.info["cross_image"], s.info["workers"] = cross_image, workers
        written, skipped = _work(s, resume, retry_errors, dtype, progress, checkpoints_file, on_row)
        total_new, total_skipped = gather_counts(len(written), skipped)  # also the barrier before merging
        result = BenchmarkResult(s.out, s.configs, written, len(written), skipped, [r for r in written if r["error"]],
                                 rank=s.rank, world_size=s.world)
        if s.rank != 0:
            barrier()  # rank 0's merge and tables: every rank leaves (and tears its process group down) together
            return result
        result.new_rows, result.skipped = total_new, total_skipped
        try:
            _finish(s, result, tables, page, gallery, reference_dir, dtype, checkpoints_file)
        finally:
            barrier()
    return result
