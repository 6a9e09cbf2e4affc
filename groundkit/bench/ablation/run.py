"""Running an ablation: capture each image once into the store, then evaluate every cell from it."""
from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from groundkit.bench.ablation.plan import Plan, make_plan
from groundkit.bench.ablation.result import AblationResult
from groundkit.bench.ablation.store import AblationStore
from groundkit.bench.ablation.windows import window_cost
from groundkit.bench.lock import folder_lock
from groundkit.core.categories import CATEGORIES
from groundkit.core.geometry import Geometry
from groundkit.core.io import clean_json
from groundkit.core.outdir import check_targets
from groundkit.engine.heatmap import make_heatmap
from groundkit.evaluation.protocols import aggregate, get_protocol
from groundkit.recipes import Recipe


OUTPUT_FILES = ("rows.jsonl", "table.csv", "best_windows.csv", "table.md", "ablation.json")  # and plots, last_n, Table II


def images_of(samples) -> list[tuple[str, list]]:
    groups: dict[str, list] = {}
    for s in samples:
        groups.setdefault(str(s.image_path), []).append(s)
    return list(groups.items())


def category_of(sample) -> str | None:
    """The MS-CXR category for token filters ('disease'); None for a sweep's unlabelled phrase."""
    return sample.category if sample.category in CATEGORIES else None


def capture(model, plan: Plan, store: AblationStore, groups, resume: bool, progress: bool) -> dict[str, float]:
    """Capture every sample whose entry is missing (or stale): one capture call per image with all of
    its missing phrases. Returns call counts."""
    from tqdm.auto import tqdm

    made = forwards = captured = reused = 0
    seconds = 0.0
    todo = []
    for image, samples in groups:
        missing = [s for s in samples if not (resume and store.covers(AblationStore.key(s), plan.capture_key,
                                                                        plan.stored_steps, plan.stored_layers))]
        reused += len(samples) - len(missing)
        if missing:
            todo.append((image, missing))
    for image, missing in tqdm(todo, desc="capture", disable=not progress or not todo):
        t = time.perf_counter()
        prep = model.prepare(image)
        cap = model.capture(prep, [s.phrase for s in missing], plan.capture, categories=[category_of(s) for s in missing])
        made += cap.calls
        forwards += cap.forwards
        for p, s in enumerate(missing):
            meta = {"sample_id": s.sample_id, "image_path": str(s.image_path), "phrase": s.phrase, "category": s.category,
                    "geometry": {"orig_h": prep.geometry.orig_h, "orig_w": prep.geometry.orig_w, "size": prep.geometry.size},
                    "image_sha1": prep.key, "checkpoint": model.entry.name, "capture_key": plan.capture_key,
                    "recipe_digest": plan.capture.digest(), "capture_recipe": plan.capture.to_dict(),
                    "unet_calls": cap.calls / len(missing), "phrases_in_capture": len(missing), "tokens": clean_json(cap.explained[p])}
            store.put(AblationStore.key(s), cap.maps[p], plan.stored_steps, meta)
        captured += len(missing)
        seconds += time.perf_counter() - t
    return {"made": made, "forwards": forwards, "captured_samples": captured, "reused_samples": reused,
            "capture_seconds": seconds}


def evaluate(model, plan: Plan, store: AblationStore, samples, progress: bool, keep_heatmaps: bool):
    from tqdm.auto import tqdm

    proto = get_protocol(plan.recipe.protocol)
    size = model.adapter.image_size
    rows: list[dict] = []
    heatmaps: dict | None = {} if keep_heatmaps else None
    recipes = {c.key: plan.recipe.override(steps=c.steps, layers=c.layers, threshold=c.post) for c in plan.cells}
    recorded = 0.0
    for s in tqdm(samples, desc="evaluate", disable=not progress):
        maps, meta = store.get(AblationStore.key(s))
        recorded += float(meta.get("unet_calls", 0.0))
        geo = Geometry(**meta["geometry"])
        for c in plan.cells:
            hm = make_heatmap(maps, recipes[c.key], size)
            res = proto.evaluate(hm.heatmap_crop, hm.mask_crop, geo, s.boxes)
            row = {"sample_id": s.sample_id, "image": str(s.image_path), "phrase": s.phrase, "category": s.category,
                   **c.to_dict()}
            row.update({m: res[m] for m in plan.metrics})
            row["n_boxes"], row["n_boxes_dropped"] = res.get("n_boxes"), res.get("n_boxes_dropped")
            rows.append(row)
            if heatmaps is not None:
                heatmaps[(s.sample_id, c.key)] = hm
    return rows, heatmaps, recorded


def run(model, plan: Plan, groups, store: AblationStore, *, resume: bool, progress: bool, keep_heatmaps: bool) -> AblationResult:
    t0 = time.perf_counter()
    calls = capture(model, plan, store, groups, resume, progress)
    t1 = time.perf_counter()
    samples = [s for _, ss in groups for s in ss]
    if len({AblationStore.key(s) for s in samples}) != len(samples):
        raise ValueError("ablation: duplicate samples (same id, image, phrase and category)")
    rows, heatmaps, recorded = evaluate(model, plan, store, samples, progress, keep_heatmaps)
    t2 = time.perf_counter()
    mode = plan.recipe.mode
    cap_window = tuple(plan.capture.steps)
    distinct = list(dict.fromkeys(plan.step_windows))
    calls.update(
        one_capture=sum(window_cost(mode, cap_window, len(ss)) for _, ss in groups),
        recorded_capture=recorded,  # the calls the stored entries cost when they were captured
        rerun=sum(window_cost(mode, sw, len(ss)) for _, ss in groups for _ in plan.layer_windows for sw in plan.step_windows),
        rerun_distinct_steps=sum(window_cost(mode, sw, len(ss)) for _, ss in groups for sw in distinct),
    )
    by_cell: dict[str, list[dict]] = {c.key: [] for c in plan.cells}
    for r in rows:
        by_cell[f"{r['layers']}|{r['steps']}|{r['post']}"].append(r)
    aggs = {k: aggregate(v, plan.metrics) for k, v in by_cell.items()}
    notes = []
    gaps = sorted(set(range(*cap_window)) - set(plan.stored_steps))
    if gaps:
        notes.append(f"the windows are not contiguous: steps {gaps[0]}..{gaps[-1]} ({len(gaps)}) were computed by the "
                     "capture (one contiguous range) but not stored")
    return AblationResult(
        checkpoint=model.entry.name, recipe=plan.recipe, protocol=get_protocol(plan.recipe.protocol).name,
        metrics=plan.metrics, layer_windows=plan.layer_windows, step_windows=plan.step_windows, posts=plan.posts,
        last_n=plan.last_n, n_grid=plan.n_grid, n_layers=len(model.layers), cells=plan.cells, rows=rows, aggregates=aggs,
        calls=calls, timings={"capture_seconds": t1 - t0, "evaluate_seconds": t2 - t1, "total_seconds": t2 - t0},
        n_samples=len(samples), heatmaps=heatmaps, notes=notes)


def run_ablation(model, samples, base_recipe: str | Recipe | None = None, layer_windows=None, step_windows=None,
                 posts: Sequence[str] | None = None, metrics: Sequence[str] | None = None, out_dir: str | Path | None = None,
                 *, resume: bool = True, progress: bool = True, last_n: Sequence[int] | None = None,
                 store_dtype: str = "float16", overrides: dict | None = None, reference: str | Path | None = None,
                 keep_heatmaps: bool = False) -> AblationResult:
    """Capture each sample once over the union of the windows, then evaluate every
    (layer window x timestep window x post) cell from the store.

    samples: MS-CXR ``Sample``s (``groundkit.bench.datasets.load_dataset``); samples of one image are
    captured by one call. layer_windows: list of index tuples or None (= all), or a string
    'all;3,4,6,7;2-7'. step_windows: list of (start, end) grid windows or '0:100;40:60'. posts:
    thresholds ('otsu', 'multiotsu', 'gmm', 'none', 'recipe'); default the recipe's. metrics: default
    the protocol's. last_n: adds Nuetzel's windows (n_grid - n, n_grid). out_dir: the store lives in
    out_dir/store and the outputs are written there (None: in-memory store, nothing written).
    resume: reuse store entries captured with the same settings and covering the windows.
    """
    plan = make_plan(model, base_recipe, layer_windows, step_windows, posts, metrics, last_n, overrides)
    with folder_lock(out_dir, "ablate") if out_dir is not None else nullcontext():  # one run per folder at a time
        if out_dir is not None:
            check_targets(out_dir, OUTPUT_FILES)  # a planted link is refused before the capture
        store = AblationStore(None if out_dir is None else Path(out_dir) / "store", store_dtype)
        result = run(model, plan, images_of(samples), store, resume=resume, progress=progress, keep_heatmaps=keep_heatmaps)
        if out_dir is not None:
            result.write(out_dir, reference)
    return result


def sweep(model, image, phrases: str | Sequence[str], boxes, layer_windows=None, step_windows=None,
          posts: Sequence[str] | None = None, metrics: Sequence[str] | None = None, recipe: str | Recipe | None = None,
          *, categories: str | Sequence[str | None] | None = None, last_n: Sequence[int] | None = None,
          keep_heatmaps: bool = True, progress: bool = False, **overrides: Any) -> AblationResult:
    """Notebook sweep on one image: one capture, every window evaluated in memory.

    phrases: one phrase (then ``boxes`` = its [x, y, w, h] boxes) or a list (then one box list per
    phrase). ``result.table()`` lists the cells, ``result.heatmaps[(phrase, cell.key)]`` holds the
    maps (crop space) for display. Recipe fields can be overridden as in ``ground()``."""
    from groundkit.data.images import load_image
    from groundkit.data.mscxr import Sample

    single = isinstance(phrases, str)
    phrases = [phrases] if single else list(phrases)
    box_lists = [boxes] if single else list(boxes)
    if len(box_lists) != len(phrases):
        raise ValueError(f"sweep: {len(phrases)} phrases but {len(box_lists)} box lists")
    cats = [categories] * len(phrases) if categories is None or isinstance(categories, str) else list(categories)
    img = load_image(image)
    h, w = img.shape[:2]
    name = str(image) if isinstance(image, (str, Path)) else "<image>"
    samples = [Sample(sample_id=p, image_path=name, phrase=p, category=c or "unknown",
                      boxes=tuple(tuple(float(v) for v in b) for b in bl), image_width=w, image_height=h)
               for p, c, bl in zip(phrases, cats, box_lists)]
    plan = make_plan(model, recipe, layer_windows, step_windows, posts, metrics, last_n, overrides)
    if any(c is None for c in cats) and plan.recipe.tokens == "disease":
        raise ValueError("sweep: tokens='disease' needs categories=")
    groups = [(img, samples)]
    store = AblationStore(None)
    return run(model, plan, groups, store, resume=False, progress=progress, keep_heatmaps=keep_heatmaps)
