"""Benchmark runner: rows, resume, tables with the published numbers, the benchmark page, paired bootstrap,
torchrun sharding and the MS-CXR official-CSV path through the CLI.

Speed: one tiny SD/CXR-BERT checkpoint served at a 64x64 input (groundkit.yaml image_size: 64, so the
latent is 8x8) with a 2-step window: each image costs one U-Net forward.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import groundkit as gk
from groundkit.bench.compare import compare
from groundkit.bench.configs import Config
from groundkit.bench.datasets import load_dataset
from groundkit.bench.distributed import shard_samples
from groundkit.bench.references import load_references, nuetzel_reference_columns, read_reference_csv
from groundkit.bench.rows import read_rows, row_key
from groundkit.bench.runner import run_benchmark
from groundkit.bench.tables import build_tables

RECIPE = "nuetzel2025"
FAST = {"steps": "48:50", "tokens": "all"}  # 2 gt-noised steps; "all" tokens: no spaCy in the loop
FAST_SETS = ["--set", "steps=48:50", "--set", "tokens=all"]
METRICS = ("miou_fgbg", "cnr", "top1", "auroc")
REPO = Path(__file__).resolve().parents[1]

# (dicom_id, W, H, [(category, phrase, [boxes])]); "bad" is not an image
IMAGES = [
    ("d-a", 64, 80, [("Pleural Effusion", "left pleural effusion", [(36, 40, 20, 24)]),
                     ("Cardiomegaly", "cardiomegaly", [(16, 30, 30, 24), (20, 56, 20, 10)])]),
    ("d-b", 64, 64, [("Consolidation", "right lower lobe consolidation", [(4, 36, 24, 20)])]),
    ("d-bad", 64, 64, [("Edema", "mild pulmonary edema", [(0, 0, 60, 60)])]),
    # landscape: the center crop removes 12 px on each side -> the second box is dropped
    ("d-c", 96, 72, [("Pneumothorax", "small left pneumothorax", [(60, 4, 24, 16), (0, 50, 8, 10)]),
                     ("Pleural Effusion", "bilateral pleural effusions", [(8, 44, 80, 20)])]),
]
COLUMNS = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height", "split"]


def write_mscxr(root: Path) -> Path:
    """MS-CXR v1.1.0 layout: one CSV row per box, JPEGs under files/pXX/pXXXXXXXX/sXXXXXXXX/."""
    rng = np.random.default_rng(0)
    rows = []
    for dicom, w, h, findings in IMAGES:
        rel = f"files/p10/p10000001/s5{len(rows):07d}/{dicom}.jpg"
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        if dicom == "d-bad":
            f.write_bytes(b"this is not a JPEG")
        else:
            img = rng.random((h, w)) * 0.3
            for _, _, boxes in findings:
                x, y, bw, bh = boxes[0]
                img[y:y + bh, x:x + bw] += 0.6
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(f, quality=95)
        for cat, phrase, boxes in findings:
            for x, y, bw, bh in boxes:
                rows.append([dicom, cat, phrase, rel, x, y, bw, bh, w, h, "test"])
    path = root / "MS_CXR_Local_Alignment_v1.1.0.csv"
    with open(path, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(COLUMNS)
        wr.writerows(rows)
    return path


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tiny_sd_cxrbert, tmp_path_factory):
    """The tiny SD checkpoint served at 64x64 (a copy: the session fixture stays untouched)."""
    dst = tmp_path_factory.mktemp("bench_ckpt") / "tinycxr"
    shutil.copytree(tiny_sd_cxrbert, dst)
    (dst / "groundkit.yaml").write_text("image_size: 64\n")
    return str(dst)


@pytest.fixture(scope="module")
def mscxr(tmp_path_factory):
    root = tmp_path_factory.mktemp("mscxr")
    return write_mscxr(root), root


@pytest.fixture(scope="module")
def samples(mscxr):
    return load_dataset("mscxr", csv=mscxr[0], images=mscxr[1])


@pytest.fixture(scope="module")
def e2e(ckpt, samples, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    return run_benchmark([ckpt], RECIPE, FAST, samples, out, progress=False, dataset={"kind": "mscxr"})


def _metrics(rows):
    return [(row_key(r), r["category"], [r[m] for m in METRICS], r["error"]) for r in rows]


# ------------------------------------------------------------------------------------------------
def test_end_to_end_rows(e2e, samples, ckpt):
    rows = read_rows(e2e.out_dir / "rows.jsonl")
    assert [r["sample_id"] for r in rows] == ["d-a-0", "d-a-1", "d-b-0", "d-bad-0", "d-c-0", "d-c-1"]
    assert rows == e2e.rows and not list(e2e.out_dir.glob("rows.rank*.jsonl"))
    assert len({row_key(r) for r in rows}) == len(rows)
    digest = gk.get_recipe(RECIPE).override(**FAST).digest()  # the recipe as named: its layer selector unresolved
    bad = [r for r in rows if r["error"]]
    assert [r["sample_id"] for r in bad] == ["d-bad-0"] and [r["sample_id"] for r in e2e.errors] == ["d-bad-0"]
    assert all(bad[0][m] is None for m in METRICS) and "d-bad-0" in e2e.summary()
    for r in rows:
        assert r["checkpoint"] == "tinycxr" and r["recipe_digest"] == digest and r["protocol"] == "nuetzel"
        assert r["phrase"] and r["category"] and r["seconds"] >= 0
        if not r["error"]:
            assert all(isinstance(r[m], float) and math.isfinite(r[m]) for m in METRICS)
            assert r["unet_calls"] == 2
    by_id = {r["sample_id"]: r for r in rows}
    assert by_id["d-a-1"]["n_boxes"] == 2  # two official rows merged into one sample
    assert by_id["d-c-0"]["n_boxes"] == 1 and by_id["d-c-0"]["n_boxes_dropped"] == 1
    run = json.loads((e2e.out_dir / "run.json").read_text())
    assert run["configs"][0]["recipe_digest"] == digest and run["configs"][0]["recipe"]["steps"] == [48, 50]
    assert run["versions"]["groundkit"] and run["started"] and run["finished"]
    assert run["dataset"]["n_samples"] == 6 and run["dataset"]["n_images"] == 4
    assert run["sessions"][-1]["errors"] == 1 and run["sessions"][-1]["new_rows"] == 6
    # the rows agree with grounding the sample directly
    m = gk.load(ckpt, device="cpu")
    s = samples[2]
    g = m.ground(s.image_path, s.phrase, RECIPE, category=s.category, **FAST)
    assert g.evaluate(s.boxes)["miou_fgbg"] == pytest.approx(by_id[s.sample_id]["miou_fgbg"], abs=1e-9)


def test_tables_and_page(e2e):
    out = e2e.out_dir
    md = (out / "tables.md").read_text()
    assert "Nuetzel et al. 2025, Table 1 layout (Nützel protocol): tinycxr" in md
    assert "Nuetzel et al. 2025, Table 3 layout" in md
    for label in ("Weighted Avg. (squared counts)", "Per-sample mean", "Macro mean"):
        assert label in md
    # tokens=all, steps 48:50: nearest published column, and the differences are named
    assert "nearest published" in md and "steps=48:50 (published 10:50)" in md
    t1 = list(csv.DictReader(open(out / "tables" / "nuetzel_table1.csv")))
    pe = next(r for r in t1 if r["category"] == "Pleural Effusion")
    assert float(pe["miou_fgbg_published"]) == 0.55 and float(pe["cnr_published"]) == 1.65
    assert float(pe["miou_fgbg_diff"]) == pytest.approx(float(pe["miou_fgbg"]) - 0.55, abs=1e-5)
    assert int(pe["n"]) == 2
    wa = next(r for r in t1 if r["category"] == "Weighted Avg. (squared counts)")
    assert float(wa["miou_fgbg_published"]) == 0.54
    summary = json.loads((out / "summary.json").read_text())["tinycxr"]
    assert summary["errors"] == 1 and set(summary["per_category"]) == {"Cardiomegaly", "Consolidation", "Pleural Effusion", "Pneumothorax"}
    assert e2e.files["page"] == out / "benchmark.html" and not (out / "report.html").exists()  # report.html: radiology only
    html = (out / "benchmark.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 + 5  # 4 metric charts + 5 gallery overlays
    assert "Gallery" in html and "d-bad-0" in html and "Table 1 layout" in html
    gallery = sorted(p.name for p in (out / "gallery" / "tinycxr").glob("*.png"))
    assert len(gallery) == 5 and any(n.startswith("Pleural_Effusion_best") for n in gallery)
    assert (out / "figures" / "nuetzel_miou_fgbg.png").is_file()


def _fake_rows(cfg: Config, n_per_cat: int, seed: int, shift: float = 0.0, cats=("Pneumonia", "Edema", "Cardiomegaly")):
    rng = np.random.default_rng(seed)
    rows = []
    for c in cats:
        for i in range(n_per_cat):
            r = {"sample_id": f"{c[:3]}-{i}", "checkpoint": cfg.checkpoint, "category": c, "phrase": "p",
                 "recipe_digest": cfg.recipe_digest, "error": None}
            base = np.random.default_rng(hash((c, i)) % 2**32).random(len(cfg.metrics))
            r.update({m: float(v + shift + 0.02 * rng.standard_normal()) for m, v in zip(cfg.metrics, base)})
            rows.append(r)
    return rows


def _config(name, protocol, **recipe_over):
    from groundkit.evaluation.protocols import get_protocol
    from groundkit.recipes import get_recipe

    r = get_recipe("vilouras2024" if protocol == "vilouras" else "nuetzel2025").override(**recipe_over)
    return Config(name, name, f"/x/{name}", "a", r.to_dict(), r.digest(), protocol, get_protocol(protocol).metrics)


def test_tables_reference_numbers():
    refs = load_references()  # the CSVs shipped in the package
    assert set(refs) >= {"vilouras2024_table1", "nuetzel2025_table1", "nuetzel2025_table3"}
    assert read_reference_csv(REPO / "groundkit" / "assets" / "reference" / "nuetzel2025_table1.csv")[0]["category"] == "Atelectasis"
    vil, nue = _config("monai", "vilouras"), _config("sd", "nuetzel", bbm="linear", tokens="lexical")
    rows = _fake_rows(vil, 3, 0) + _fake_rows(nue, 3, 1) + [
        {"sample_id": "x", "checkpoint": "sd", "category": "Edema", "recipe_digest": nue.recipe_digest, "error": "boom",
         **{m: None for m in nue.metrics}}]
    t = build_tables(rows, [vil, nue])
    md = t.markdown()
    assert "Vilouras et al. 2024, Table I layout (Vilouras protocol)" in md
    assert "Vilouras2024 (MONAI LDM zero-shot) (published)" in md and "BioViL-T (published)" in md
    assert "| 37.1 |" in md  # Cardiomegaly mIoU (%) as published
    assert "Δ monai − published" in md
    v = next(r for r in t.csvs["vilouras_table1"] if r["source"] == "groundkit" and r["metric"] == "miou_thr")
    assert v["Edema"] == pytest.approx(100 * t.aggregates["monai"].per_category["Edema"]["miou_thr"])
    assert v["Avg"] == pytest.approx(100 * t.aggregates["monai"].macro["miou_thr"])
    d = next(r for r in t.csvs["vilouras_table1"] if r["source"] == "difference" and r["metric"] == "cnr")
    assert d["Edema"] == pytest.approx(t.aggregates["monai"].per_category["Edema"]["cnr"] - 0.70)
    # Nützel: bbm=linear -> Table 3 bbm_linear exactly, Table 1 +BBM (mixture) as nearest; the failed row is left out
    assert nuetzel_reference_columns(nue.recipe)["nuetzel2025_table3"] == ("bbm_linear", True, "")
    t3 = next(r for r in t.csvs["nuetzel_table3"] if r["category"] == "Edema")
    assert (t3["published_column"], t3["miou_fgbg_published"], t3["cnr_published"], t3["n"]) == ("bbm_linear", 0.556, 1.38, 3)
    t1 = next(r for r in t.csvs["nuetzel_table1"] if r["category"] == "Weighted Avg. (squared counts)")
    assert t1["published_column"] == "CXR-BERT_LDM+BBM" and t1["miou_fgbg_published"] == 0.53
    assert t1["miou_fgbg"] == pytest.approx(t.aggregates["sd"].weighted_avg_sq["miou_fgbg"])
    assert "1 failed (left out)" in md and "Table 1's BBM is the mixture variant" in md


def _fake_dir(path: Path, cfg: Config, rows):
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"configs": [cfg.to_dict()]}))
    with open(path / "rows.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_compare_paired_bootstrap(tmp_path, e2e):
    a_cfg, b_cfg = _config("base", "nuetzel"), _config("better", "nuetzel", bbm="mixture")
    _fake_dir(tmp_path / "A", a_cfg, _fake_rows(a_cfg, 30, 0))
    _fake_dir(tmp_path / "B", b_cfg, _fake_rows(b_cfg, 30, 1, shift=0.1))
    c = compare(tmp_path / "A", tmp_path / "B", n_boot=1000, seed=3)
    assert c.protocol == "nuetzel" and c.metrics == METRICS
    for r in c.rows:
        assert r["lo"] < r["diff"] < r["hi"] and r["lo"] > 0.05 and r["hi"] < 0.15, r
        assert r["diff"] == pytest.approx(0.1, abs=0.03)
    cats = {r["category"] for r in c.rows}
    assert cats == {"Edema", "Cardiomegaly", "Pneumonia", "Macro mean", "Weighted Avg. (squared counts)", "Per-sample mean"}
    assert compare(tmp_path / "A", tmp_path / "B", n_boot=1000, seed=3).rows == c.rows  # seeded
    assert "95% CI" in c.markdown() and "*" in c.markdown()
    v_cfg = _config("vil", "vilouras")
    _fake_dir(tmp_path / "V", v_cfg, _fake_rows(v_cfg, 5, 0))
    with pytest.raises(ValueError, match="protocols"):
        compare(tmp_path / "A", tmp_path / "V")
    # a real run against itself: zero difference, degenerate interval
    same = tmp_path / "E"
    shutil.copytree(e2e.out_dir, same)
    c = compare(e2e.out_dir, same, n_boot=200)
    assert all(r["diff"] == 0 and r["lo"] == 0 == r["hi"] for r in c.rows)
    assert {r["n"] for r in c.rows if r["category"] == "Per-sample mean"} == {5}  # the failed sample is unpaired


def test_resume_after_interruption(ckpt, samples, e2e, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    model = gk.load(ckpt, device="cpu")
    first = run_benchmark([model], RECIPE, FAST, samples, out, limit=2, progress=False, tables=False)
    assert first.new_rows == 2 and [r["sample_id"] for r in first.rows] == ["d-a-0", "d-a-1"]

    real = model.ground_many

    def crash_on_c(image, phrases, *a, **k):
        if "d-c" in str(image):
            raise KeyboardInterrupt
        return real(image, phrases, *a, **k)

    monkeypatch.setattr(model, "ground_many", crash_on_c)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark([model], RECIPE, FAST, samples, out, progress=False, tables=False)
    monkeypatch.setattr(model, "ground_many", real)
    assert [r["sample_id"] for r in read_rows(out / "rows.jsonl")] == ["d-a-0", "d-a-1", "d-b-0", "d-bad-0"]
    with open(out / "rows.jsonl", "a") as f:  # a crash in the middle of writing a row
        f.write('{"sample_id": "d-c-0", "checkpoint": "tinyc')
    final = run_benchmark([model], RECIPE, FAST, samples, out, progress=False, page=False)
    assert final.new_rows == 2 and final.skipped == 4
    rows = read_rows(out / "rows.jsonl")
    assert len(rows) == 6 == len({row_key(r) for r in rows})
    assert _metrics(rows) == _metrics(e2e.rows)  # identical to the uninterrupted run
    assert len((out / "rows.jsonl").read_text().splitlines()) == 6
    run = json.loads((out / "run.json").read_text())
    assert len(run["sessions"]) == 3 and len(run["configs"]) == 1
    # nothing left to do: a resumed run loads no weights and adds nothing
    again = run_benchmark([ckpt], RECIPE, FAST, samples, out, progress=False, tables=False)
    assert again.new_rows == 0 and again.skipped == 6 and len(read_rows(out / "rows.jsonl")) == 6
    retry = run_benchmark([model], RECIPE, FAST, samples, out, progress=False, tables=False, retry_errors=True)
    assert retry.new_rows == 1 and [r["sample_id"] for r in retry.errors] == ["d-bad-0"]
    assert _metrics(read_rows(out / "rows.jsonl")) == _metrics(e2e.rows)  # still one row per sample


def test_shards_are_disjoint_whole_images(samples):
    shards = [shard_samples(samples, r, 3) for r in range(3)]
    ids = [s.sample_id for sh in shards for s in sh]
    assert sorted(ids) == sorted(s.sample_id for s in samples)
    images = [{s.image_path for s in sh} for sh in shards]
    assert all(not (images[i] & images[j]) for i in range(3) for j in range(i + 1, 3))
    assert [s.sample_id for s in shard_samples(samples, 0, 1)] == [s.sample_id for s in samples]


def test_torchrun_two_ranks_equal_one_process(ckpt, mscxr, e2e, tmp_path):
    out = tmp_path / "dist"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "groundkit",
           "benchmark", "--checkpoint", ckpt, "--recipe", RECIPE, *FAST_SETS, "--dataset", "mscxr",
           "--csv", str(mscxr[0]), "--images", str(mscxr[1]), "--out", str(out), "--no-page", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_rows(out / "rows.jsonl")
    assert not list(out.glob("rows.rank*.jsonl"))
    assert [row_key(r) for r in rows] == [row_key(r) for r in e2e.rows]
    for r, ref in zip(rows, e2e.rows):
        assert r["error"] == ref["error"] or (r["error"] and ref["error"])
        for m in METRICS:
            assert (r[m] is None and ref[m] is None) or r[m] == pytest.approx(ref[m], rel=1e-6, abs=1e-9), (r["sample_id"], m)
    run = json.loads((out / "run.json").read_text())
    session = run["sessions"][-1]
    assert (session["world_size"], session["rows"], session["new_rows"], session["errors"]) == (2, 6, 6, 1)
    assert (out / "tables.md").is_file() and "6 rows (5 ok, 1 failed)" in proc.stdout and "6 new" in proc.stdout


def test_cli_mscxr_official_csv(ckpt, mscxr, e2e, tmp_path):
    from typer.testing import CliRunner

    from groundkit.cli import app

    cli = CliRunner()
    out = tmp_path / "cli"
    args = ["benchmark", "--checkpoint", ckpt, "--recipe", RECIPE, *FAST_SETS, "--dataset", "mscxr",
            "--csv", str(mscxr[0]), "--images", str(mscxr[1]), "--split", "test", "--limit", "2", "--out", str(out),
            "--no-gallery", "--no-progress"]
    res = cli.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = read_rows(out / "rows.jsonl")
    assert [r["sample_id"] for r in rows] == ["d-a-0", "d-a-1"]
    assert _metrics(rows) == _metrics(e2e.rows[:2])
    assert "Nuetzel et al. 2025, Table 1 layout" in res.output and (out / "benchmark.html").is_file()
    # clear errors
    missing = tmp_path / "MS_CXR_Local_Alignment_v1.1.0_missing.csv"
    res = cli.invoke(app, ["benchmark", "--checkpoint", ckpt, "--csv", str(missing), "--images", str(mscxr[1]), "--out", str(out)])
    assert res.exit_code == 2 and str(missing) in res.output
    res = cli.invoke(app, ["benchmark", "--checkpoint", ckpt, "--csv", str(mscxr[0]), "--images", str(tmp_path / "nope"), "--out", str(out)])
    assert res.exit_code == 2 and "nope" in res.output
    res = cli.invoke(app, ["benchmark", "--checkpoint", ckpt, "--dataset", "synthetic", "--data", str(tmp_path / "none"), "--out", str(out)])
    assert res.exit_code == 2 and "demo-data" in res.output
    # the synthetic set goes through the same path
    from groundkit.data.synthetic import generate

    generate(tmp_path / "syn", n=2, seed=0, size=64)
    res = cli.invoke(app, ["benchmark", "-c", ckpt, "-r", RECIPE, *FAST_SETS, "--dataset", "synthetic", "--data",
                           str(tmp_path / "syn"), "--out", str(tmp_path / "synout"), "--no-page", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert len(read_rows(tmp_path / "synout" / "rows.jsonl")) == 2 and "2 rows (2 ok, 0 failed)" in res.output
    # --compare through the CLI: the first two samples of the e2e run vs this run
    res = cli.invoke(app, ["benchmark", "--compare", str(e2e.out_dir), str(out), "--bootstrap", "500", "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert "95% CI" in res.output and (tmp_path / "cmp" / "compare.csv").is_file()


def test_report_keyword_is_a_deprecated_alias_of_page(ckpt, samples, tmp_path):
    """A folder an older groundkit wrote (its benchmark page was report.html) resumes: the old ``report=`` keyword
    still works with a DeprecationWarning, the page is written as benchmark.html and the old file is left alone."""
    out = tmp_path / "old"
    run_benchmark([ckpt], RECIPE, FAST, samples, out, limit=2, progress=False, tables=False)
    (out / "report.html").write_text("an old benchmark page")
    with pytest.warns(DeprecationWarning, match=r"report=.*page="):
        off = run_benchmark([ckpt], RECIPE, FAST, samples, out, limit=2, progress=False, report=False)
    assert "page" not in off.files and not (out / "benchmark.html").exists() and (out / "tables.md").is_file()
    with pytest.warns(DeprecationWarning, match=r"report=.*page="):
        on = run_benchmark([ckpt], RECIPE, FAST, samples, out, limit=2, progress=False, report=True, gallery=False)
    assert on.new_rows == 0 and on.skipped == 2
    assert on.files["page"] == out / "benchmark.html" and "groundkit benchmark" in on.files["page"].read_text()
    assert (out / "report.html").read_text() == "an old benchmark page"
    with pytest.warns(DeprecationWarning, match=r'files\["page"\]'):
        assert on.files["report"] == on.files["page"]  # the old key of the result still answers
    assert "page: " in on.summary() and "report: " not in on.summary()
    with pytest.raises(KeyError):
        off.files["report"]  # no page written: the old key is missing too
    c = compare(out, shutil.copytree(out, tmp_path / "same"), n_boot=100)  # --compare reads rows, whatever html is there
    assert all(r["diff"] == 0 for r in c.rows)


def test_cli_page_flag_and_the_deprecated_report_flag(ckpt, tmp_path):
    from typer.testing import CliRunner

    from groundkit.cli import app
    from groundkit.data.synthetic import generate

    generate(tmp_path / "syn", n=2, seed=0, size=64)
    base = ["benchmark", "-c", ckpt, "-r", RECIPE, *FAST_SETS, "--dataset", "synthetic", "--data", str(tmp_path / "syn"),
            "--no-gallery", "--no-progress"]
    cli = CliRunner()
    help_text = cli.invoke(app, ["benchmark", "--help"], terminal_width=200).output
    assert "--no-page" in help_text and "benchmark.html" in help_text and "--report" not in help_text
    res = cli.invoke(app, [*base, "--out", str(tmp_path / "new")])
    assert res.exit_code == 0 and "deprecated" not in res.output, res.output
    assert (tmp_path / "new" / "benchmark.html").is_file() and not (tmp_path / "new" / "report.html").exists()
    res = cli.invoke(app, [*base, "--no-page", "--out", str(tmp_path / "none")])
    assert res.exit_code == 0 and not (tmp_path / "none" / "benchmark.html").exists(), res.output
    assert (tmp_path / "none" / "tables.md").is_file()
    for flag, written in (("--no-report", False), ("--report", True)):  # still obeyed, with one warning line
        out = tmp_path / flag.strip("-")
        res = cli.invoke(app, [*base, flag, "--out", str(out)])
        assert res.exit_code == 0, res.output
        warned = [line for line in res.stderr.splitlines() if "deprecated" in line]
        assert warned == [f"warning: {flag} is deprecated, use {flag.replace('report', 'page')} "
                          "(the benchmark page is now benchmark.html)"]
        assert (out / "benchmark.html").is_file() is written and not (out / "report.html").exists()


def test_faithful_recipe_drops_samples_without_selected_token(ckpt, samples, tmp_path):
    """nuetzel2025 (drop_empty): a phrase whose lexical filter selects nothing is left out and counted, as the
    published code's NaN map leaves it out of the averages; with drop_empty off it is grounded on all tokens."""
    from dataclasses import replace

    real = samples[2]
    empty = replace(real, sample_id="empty-0", phrase="the")
    res = run_benchmark([ckpt], RECIPE, {"steps": "48:50"}, [real, empty], tmp_path / "a", progress=False)
    rows = {r["sample_id"]: r for r in res.rows}
    assert rows["empty-0"]["dropped"] and rows["empty-0"]["error"] is None and rows["empty-0"]["miou_fgbg"] is None
    assert not rows[real.sample_id].get("dropped") and rows[real.sample_id]["miou_fgbg"] is not None
    tables = build_tables(res.rows, res.configs)
    label = res.configs[0].label
    assert tables.summary[label]["dropped"] == 1 and tables.summary[label]["errors"] == 0
    assert sum(tables.aggregates[label].counts[real.category].values()) == len(METRICS)
    assert any("1 sample(s) dropped" in n for n in tables.sections[0].notes)
    kept = run_benchmark([ckpt], RECIPE, {"steps": "48:50", "drop_empty": False}, [real, empty], tmp_path / "b", progress=False)
    assert all(not r.get("dropped") and r["miou_fgbg"] is not None for r in kept.rows)
