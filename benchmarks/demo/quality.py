"""Does the demo checkpoint visibly ground?  Every acceptance figure, on a held-out synthetic split.

    python benchmarks/demo/quality.py --n 240 --seed 2026 --out runs/demo-quality
    python benchmarks/demo/quality.py --n 240 --published-n 48      # published recipes on 48 only (~25 min)

The held-out split uses a seed that neither training (1000 + step) nor any choice (validation: 77) saw.
Baselines use no model: a uniform map and a centre-prior Gaussian, thresholded like the recipe's maps and
scored on the same samples. Printed, and written to ``--out`` as ``quality.md`` + ``summary.json``:

1. default recipe (the checkpoint's own, ``demo-default``): Nuetzel-protocol fg/bg mIoU >= 1.25x and CNR
   >= 1.5x the centre prior's, Top-1 >= 0.6; Vilouras-protocol mIoU@thr >= 1.5x the centre prior's, CNR >= 1.3;
2. the published recipes as named (``vilouras2024``, ``nuetzel2025``) beat the centre prior on mIoU and CNR;
3. no category with CNR < 0.5 (default recipe, both protocols);
4. side swap >= 95% (one-sided findings: the correct side's phrase puts more heatmap mass on that side than
   the swapped phrase) and an unrelated phrase on the same image drops CNR by >= 50%;
5. ``groundkit run`` with no arguments: heatmap peak inside the box, mask IoU with the box >= 0.3;
6. shipped folder <= 20 MB, ``gk.load("demo")`` < 5 s and ``groundkit run`` < 15 s (fresh processes, wall
   clock), no absolute path of the build machine in any shipped file;
7. TRAINING.md carries the validation-vs-steps plot.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "demo"))

from validate import LATERAL, side_mass, side_of, swap_side

import groundkit as gk
from groundkit.core.categories import CATEGORIES
from groundkit.data import synthetic
from groundkit.bench.baselines import baseline_row
from groundkit.evaluation.protocols import aggregate

DEMO = ROOT / "groundkit" / "assets" / "demo"
METRICS = {"vilouras": ["miou_thr", "cnr", "cnr_abs", "auroc_binned5"], "nuetzel": ["miou_fgbg", "cnr", "top1", "auroc"]}
MIOU = {"vilouras": "miou_thr", "nuetzel": "miou_fgbg"}
# (label, recipe name or None for the checkpoint's default, protocol scored)
RUNS = [("default", None, "nuetzel"), ("default", None, "vilouras"),
        ("nuetzel2025", "nuetzel2025", "nuetzel"), ("vilouras2024", "vilouras2024", "vilouras")]


UNRELATED = {c: ("enlarged cardiac silhouette" if c != "Cardiomegaly" else "left apical pneumothorax") for c in CATEGORIES}


def unrelated_phrases(samples) -> list[str]:
    """For each sample, the report phrase of the next sample (cyclically) whose category differs: a real
    phrase about another finding, typed without a category as a user would."""
    out = []
    for i, (_, _, cat, _) in enumerate(samples):
        j = next(k % len(samples) for k in range(i + 1, i + 1 + len(samples)) if samples[k % len(samples)][2] != cat)
        out.append(samples[j][1])
    return out


def score_split(model, samples, published_n: int) -> tuple[dict, dict]:
    """Rows per (run label, protocol, model|uniform|centre), plus side-swap and unrelated-phrase counts. The
    published recipes (slow: 180 inversion steps, 40 GT-noised steps) are scored on the first ``published_n``."""
    rows: dict = {}
    text = {"swap_wins": 0, "swap_n": 0, "cnr_true": [], "cnr_other": [], "cnr_finding": []}
    t0 = time.time()
    unrelated = unrelated_phrases(samples)
    for i, (img, phrase, cat, boxes) in enumerate(samples):
        cache = {}
        for label, rname, proto in [r for r in RUNS if i < published_n or not r[1]]:
            if rname not in cache:
                cache[rname] = model.ground(img, phrase, rname, category=cat)
            g = cache[rname]
            rows.setdefault((label, proto, "model"), []).append({"category": cat, **g.evaluate(boxes, protocol=proto)})
            scored = g.recipe.override(protocol=proto)
            for kind in ("uniform", "centre"):
                rows.setdefault((label, proto, kind), []).append({"category": cat, **baseline_row(kind, scored, g.geometry, boxes)})
        default = cache[None]
        text["cnr_true"].append(default.evaluate(boxes)["cnr"])
        text["cnr_other"].append(model.ground(img, UNRELATED[cat], None).evaluate(boxes)["cnr"])
        text["cnr_finding"].append(model.ground(img, unrelated[i], None).evaluate(boxes)["cnr"])  # another finding's phrase
        side = side_of(phrase)
        if cat in LATERAL and side:
            wrong = model.ground(img, swap_side(phrase), None, category=cat)
            text["swap_wins"] += side_mass(default.heatmap_crop, side) > side_mass(wrong.heatmap_crop, side)
            text["swap_n"] += 1
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{len(samples)} samples, {time.time() - t0:.0f} s", flush=True)
    return rows, text


def bundled_sample_check(tmp: Path) -> dict:
    """Criterion 5 and the run half of 6: `groundkit run` with no arguments, in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "groundkit", "run", "--out", str(tmp), "--device", "cpu"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        return {"run_error": proc.stderr[-500:], "run_seconds": seconds}
    heat = np.load(tmp / "heatmap.npy")
    from PIL import Image

    mask = np.asarray(Image.open(tmp / "mask.png")) > 0
    box = json.loads((DEMO / "sample.json").read_text())["boxes"][0]
    x, y, w, h = (int(round(v)) for v in box)
    inside = np.zeros_like(mask)
    inside[y:y + h, x:x + w] = True
    peak = np.unravel_index(np.nanargmax(heat), heat.shape)
    iou = float((mask & inside).sum() / max((mask | inside).sum(), 1))
    return {"run_seconds": seconds, "peak_in_box": bool(inside[peak]), "mask_box_iou": iou}


def shipping_check() -> dict:
    """Criterion 6 (size, load time, absolute paths) and 7 (validation plot referenced by TRAINING.md)."""
    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    code = "import time, groundkit as gk; t = time.perf_counter(); gk.load('demo', device='cpu'); print(time.perf_counter() - t)"
    load = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1])
    leaks = [str(p.relative_to(DEMO)) for p in DEMO.rglob("*") if p.is_file() and p.suffix in (".json", ".yaml", ".txt", ".md", ".csv")
             and re.search(r"(/root/|/home/|/work/|/tmp/|[A-Z]:\\\\)", p.read_text(errors="replace"))]
    training = (DEMO / "TRAINING.md").read_text() if (DEMO / "TRAINING.md").is_file() else ""
    return {"size_mb": size / 1e6, "load_seconds": load, "absolute_paths_in": leaks,
            "training_plot": "validation.png" in training and (DEMO / "validation.png").is_file()}


def criteria(agg: dict, text: dict, run: dict, ship: dict) -> list[tuple[str, str, bool]]:
    """(criterion, measured, met) lines."""
    out = []

    def ratio(label, proto, metric):
        return agg[(label, proto, "model")].macro[metric], agg[(label, proto, "centre")].macro[metric]

    m, c = ratio("default", "nuetzel", "miou_fgbg")
    out.append(("1 default, Nuetzel fg/bg mIoU >= 1.25x centre", f"{m:.3f} vs {c:.3f} (x{m / c:.2f})", m >= 1.25 * c))
    m, c = ratio("default", "nuetzel", "cnr")
    out.append(("1 default, Nuetzel CNR >= 1.5x centre", f"{m:.3f} vs {c:.3f} (x{m / c:.2f})", m >= 1.5 * c))
    m, c = ratio("default", "nuetzel", "top1")
    out.append(("1 default, Top-1 >= 0.6", f"{m:.3f} (centre {c:.3f})", m >= 0.6))
    m, c = ratio("default", "vilouras", "miou_thr")
    out.append(("1 default, Vilouras mIoU@thr >= 1.5x centre", f"{m:.3f} vs {c:.3f} (x{m / c:.2f})", m >= 1.5 * c))
    m, c = ratio("default", "vilouras", "cnr")
    out.append(("1 default, Vilouras CNR >= 1.3", f"{m:.3f} (centre {c:.3f})", m >= 1.3))
    for label, proto in (("nuetzel2025", "nuetzel"), ("vilouras2024", "vilouras")):
        if (label, proto, "model") in agg:
            (mi, ci), (mc, cc) = ratio(label, proto, MIOU[proto]), ratio(label, proto, "cnr")
            out.append((f"2 {label} as published beats centre on mIoU and CNR",
                        f"mIoU {mi:.3f} vs {ci:.3f}, CNR {mc:.3f} vs {cc:.3f}", mi > ci and mc > cc))
    for proto in ("nuetzel", "vilouras"):
        per = agg[("default", proto, "model")].per_category
        worst = min(per, key=lambda k: per[k]["cnr"])
        out.append((f"3 default, {proto}: every category CNR >= 0.5", f"lowest {worst} {per[worst]['cnr']:.3f}", per[worst]["cnr"] >= 0.5))
    swap = text["swap_wins"] / max(text["swap_n"], 1)
    out.append(("4 side swap >= 95%", f"{swap:.1%} of {text['swap_n']}", swap >= 0.95))
    t, o = float(np.mean(text["cnr_true"])), float(np.mean(text["cnr_other"]))
    drop = 1 - o / t if t > 0 else float("nan")
    out.append(("4 unrelated phrase drops CNR >= 50%", f"{t:.3f} -> {o:.3f} ({drop:.0%} drop)", drop >= 0.5))
    f = float(np.mean(text["cnr_finding"]))
    out.append(("4 (also) another finding's phrase drops CNR", f"{t:.3f} -> {f:.3f} ({1 - f / t:.0%} drop)", f < t))
    if "run_error" in run:
        out.append(("5 groundkit run (no arguments)", run["run_error"], False))
    else:
        out.append(("5 run: peak inside the box", str(run["peak_in_box"]), run["peak_in_box"]))
        out.append(("5 run: mask IoU with the box >= 0.3", f"{run['mask_box_iou']:.3f}", run["mask_box_iou"] >= 0.3))
    out.append(("6 shipped size <= 20 MB", f"{ship['size_mb']:.1f} MB", ship["size_mb"] <= 20))
    out.append(("6 gk.load('demo') < 5 s", f"{ship['load_seconds']:.2f} s", ship["load_seconds"] < 5))
    out.append(("6 groundkit run < 15 s", f"{run['run_seconds']:.1f} s", run["run_seconds"] < 15))
    out.append(("6 no absolute paths in shipped files", ", ".join(ship["absolute_paths_in"]) or "none", not ship["absolute_paths_in"]))
    out.append(("7 TRAINING.md shows validation vs steps", str(ship["training_plot"]), ship["training_plot"]))
    return out


def tables(model, agg: dict) -> list[str]:
    lines = []
    for (label, proto, kind) in [k for k in agg if k[2] == "model"]:
        recipe = model.recipe(None if label == "default" else label)
        shown = {k: v for k, v in recipe.to_dict().items() if k in ("mode", "grid", "steps", "layers", "tokens", "threshold")}
        lines += [f"## {label} ({recipe.name}: {json.dumps(shown)}), {proto} protocol", ""]
        per = agg[(label, proto, "model")].per_category
        cats = [c for c in CATEGORIES if c in per]
        lines.append("| map | metric | " + " | ".join(cats) + " | macro |")
        lines.append("|---" * (len(cats) + 3) + "|")
        for name in ("model", "uniform", "centre"):
            a = agg[(label, proto, name)]
            for metric in METRICS[proto]:
                vals = " | ".join(f"{a.per_category[c][metric]:.3f}" for c in cats)
                lines.append(f"| {'demo' if name == 'model' else name} | {metric} | {vals} | **{a.macro[metric]:.3f}** |")
        lines.append("")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="demo")
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--size", type=int, default=256, help="short side of the generated images")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "demo-quality")
    ap.add_argument("--published-n", type=int, default=None, help="score the published recipes (criterion 2, the slow part: "
                    "~17 s per sample on one CPU core) on the first N samples only (default: all; 0: off)")
    args = ap.parse_args()
    model = gk.load(args.checkpoint, device="cpu")
    samples = list(synthetic.iter_samples(args.n, args.seed, args.size))
    t0 = time.time()
    published_n = len(samples) if args.published_n is None else args.published_n
    rows, text = score_split(model, samples, published_n)
    seconds = time.time() - t0
    agg = {key: aggregate(r, METRICS[key[1]]) for key, r in rows.items()}
    with tempfile.TemporaryDirectory() as tmp:
        run = bundled_sample_check(Path(tmp))
    ship = shipping_check()
    lines = [f"# demo checkpoint quality: held-out synthetic split (seed {args.seed}, n={len(samples)}, {args.size} px)", "",
             "| criterion | measured | met |", "|---|---|---|"]
    crit = criteria(agg, text, run, ship)
    lines += [f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in crit]
    lines += ["", f"{len(samples)} samples scored in {seconds:.0f} s on CPU (published recipes on the first {published_n}).", ""]
    lines += tables(model, agg)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.md").write_text("\n".join(lines) + "\n")
    summary = {f"{label}/{proto}/{kind}/{m}": a.macro[m] for (label, proto, kind), a in agg.items() for m in METRICS[proto]}
    summary.update({"criteria": [{"criterion": n, "measured": v, "met": ok} for n, v, ok in crit], **run, **ship})
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
