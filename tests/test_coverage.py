"""Selective prediction in the benchmark (groundkit.bench.coverage, groundkit.bench.svg): risk-coverage curves in the
tables, the report's reliability diagram and risk-coverage chart (checked against the rows and in a headless
browser), and compare's ranking at equal coverage."""
from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from groundkit.bench.compare import compare
from groundkit.bench.configs import Config
from groundkit.bench.coverage import COVERAGES, curve, rank_at_coverage, reliability_bins, scored_rows
from groundkit.bench.page import write_page
from groundkit.bench.tables import build_tables, write_tables
from groundkit.evaluation import calibration as cal
from groundkit.evaluation.protocols import get_protocol
from groundkit.recipes import get_recipe

CATS = ("Pneumonia", "Edema", "Cardiomegaly")


def _config(name: str, **over) -> Config:
    r = get_recipe("nuetzel2025").override(**over)
    return Config(name, name, f"/x/{name}", "a", r.to_dict(), r.digest(), "nuetzel", get_protocol("nuetzel").metrics)


def _rows(cfg: Config, n: int, seed: int, noise: float = 0.15, calibrated: bool = True, level: float = 0.0) -> list[dict]:
    """Rows whose mask IoU and main metric rise with a hidden quality; the confidence is that quality plus noise."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        q = float(rng.random())
        iou = float(np.clip(q + level + 0.05 * rng.standard_normal(), 0, 1))
        r = {"sample_id": f"s{i}", "checkpoint": cfg.checkpoint, "recipe_digest": cfg.recipe_digest,
             "category": CATS[i % 3], "phrase": "p", "error": None, "mask_iou": iou,
             "confidence": float(np.clip(q + noise * rng.standard_normal(), 0, 1)) if calibrated else None}
        r.update({m: float(iou if m == "miou_fgbg" else rng.random()) for m in cfg.metrics})
        out.append(r)
    return out


def _top(conf, values, k):
    return np.asarray(values)[np.argsort(-np.asarray(conf), kind="stable")[:k]]


def test_curve_is_the_calibration_module_risk():
    cfg = _config("c")
    s = scored_rows(_rows(cfg, 57, 0), cfg.main_metric)
    pts = curve(s)
    assert [p["coverage"] for p in pts] == list(COVERAGES) and pts[-1]["n_kept"] == 57
    for p in pts:
        k = p["n_kept"]
        assert k == max(1, round(p["coverage"] * 57))
        assert p["risk"] == pytest.approx(np.mean(1 - _top(s.confidence, s.iou, k)))
        assert p["risk_oracle"] == pytest.approx(np.mean(1 - np.sort(s.iou)[::-1][:k])) and p["risk_oracle"] <= p["risk"] + 1e-12
        assert p["risk_random"] == pytest.approx(cal.aurc_random(s.iou))
        assert p["mean_metric"] == pytest.approx(np.mean(_top(s.confidence, s.metric, k)))
    assert pts[4]["mean_metric"] == pytest.approx(cal.top_fraction_mean(s.confidence, s.metric, 0.5))
    assert pts[-1]["risk"] == pytest.approx(pts[-1]["risk_random"])  # everything kept: no ordering matters
    assert pts[0]["risk"] < pts[-1]["risk"]  # the confidence follows the IoU here


@pytest.fixture()
def bench_dir(tmp_path):
    good, unc = _config("cal<b>&", tokens="all"), _config("unc", tokens="lexical")
    rows = _rows(good, 60, 1) + _rows(unc, 12, 2, calibrated=False)
    rows.append({**_rows(good, 1, 3)[0], "sample_id": "bad", "error": "boom", "confidence": None, "mask_iou": None})
    t = build_tables(rows, [good, unc])
    write_tables(t, tmp_path)
    write_page(tmp_path, t, rows, [good, unc])
    return tmp_path, rows, good, unc


def test_tables_write_a_risk_coverage_csv(bench_dir):
    out, rows, good, unc = bench_dir
    got = list(csv.DictReader(open(out / "tables" / "risk_coverage.csv")))
    assert [r["config"] for r in got] == [good.label] * 10  # the uncalibrated config has no curve
    assert [float(r["coverage"]) for r in got] == list(COVERAGES)
    ok = [r for r in rows if r["checkpoint"] == good.checkpoint and not r["error"]]
    conf, iou = [r["confidence"] for r in ok], [r["mask_iou"] for r in ok]
    for r in got:
        k = int(r["n_kept"])
        assert float(r["risk"]) == pytest.approx(np.mean(1 - _top(conf, iou, k)), abs=1e-5)
        assert r["metric"] == "miou_fgbg" and r["recipe"] == "nuetzel2025" and r["recipe_digest"] == good.recipe_digest
    md = (out / "tables.md").read_text()
    assert "### Risk-coverage (most confident first)" in md and "Uncalibrated (no confidence, no curve): unc." in md
    s = cal.summary(conf, iou)  # the AURC section sits beside random and oracle baselines
    assert f"| {s['aurc']:.3f} | {s['aurc_random']:.3f} | {s['aurc_oracle']:.3f} |" in md


def _attrs(tag: str) -> dict[str, str]:
    return dict(re.findall(r"(data-[a-z-]+)='([^']*)'", tag))


def test_page_charts_plot_the_rows(bench_dir):
    out, rows, good, unc = bench_dir
    page = (out / "benchmark.html").read_text()
    assert "<b>" not in page and "cal&lt;b&gt;&amp;" in page  # every text escaped, labels included
    block = page.split("data-config='cal&lt;b&gt;&amp;'>")[1].split("</div>")[0]
    ok = [r for r in rows if r["checkpoint"] == good.checkpoint and not r["error"]]
    conf, iou = np.array([r["confidence"] for r in ok]), np.array([r["mask_iou"] for r in ok])
    bars = [_attrs(t) for t in re.findall(r"<rect class='bin'[^>]*>", block)]
    assert sum(int(b["data-n"]) for b in bars) == len(ok)
    for b in bars:
        inside = np.minimum((conf * 10).astype(int), 9) == int(b["data-bin"])
        assert int(b["data-n"]) == inside.sum()
        assert float(b["data-hit-rate"]) == pytest.approx((iou[inside] >= 0.3).mean(), abs=1e-5)
        assert float(b["data-confidence"]) == pytest.approx(conf[inside].mean(), abs=1e-5)
    assert f"ECE {cal.ece(conf, iou >= 0.3):.3f} (10 bins)" in block
    pts = [_attrs(t) for t in re.findall(r"<circle class='point' data-coverage[^>]*>", block)]
    table = list(csv.DictReader(open(out / "tables" / "risk_coverage.csv")))
    assert [(float(p["data-coverage"]), int(p["data-n"])) for p in pts] == [(float(r["coverage"]), int(r["n_kept"])) for r in table]
    assert [float(p["data-risk"]) for p in pts] == pytest.approx([float(r["risk"]) for r in table], abs=1e-5)
    assert f"AURC {cal.aurc(conf, iou):.3f}" in block
    assert "unc: uncalibrated" in page and page.count("<svg") == 2  # no misleading diagram for it


def test_reliability_bins_skip_empty_bins():
    cfg = _config("c")
    rows = [{"confidence": c, "mask_iou": i, "miou_fgbg": i} for c, i in [(0.05, 0.0), (0.91, 0.8), (0.99, 0.1)]]
    bins = reliability_bins(scored_rows(rows, cfg.main_metric))
    assert [(b["bin"], b["n"], b["hit_rate"]) for b in bins] == [(0, 1, 0.0), (9, 2, 0.5)]


def _fake_dir(path, cfg, rows):
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"configs": [cfg.to_dict()]}))
    (path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_compare_ranks_at_equal_coverage(tmp_path):
    a, b, u = _config("steady"), _config("selective", tokens="all"), _config("plain", tokens="lexical")
    # A is better on average but its confidence is noise; B's confidence orders its samples well
    ra = _rows(a, 80, 4, noise=5.0, level=0.12)
    _fake_dir(tmp_path / "A", a, ra)
    _fake_dir(tmp_path / "B", b, _rows(b, 80, 5, noise=0.02))
    _fake_dir(tmp_path / "U", u, _rows(u, 80, 6, calibrated=False))
    c = compare(tmp_path / "A", tmp_path / "B", n_boot=200)
    assert c.main_metric == "miou_fgbg" and [x["coverage"] for x in c.coverage] == [1.0, 0.8, 0.5]
    rank = {x["coverage"]: [name for name, _, _ in x["ranking"]] for x in c.coverage}
    assert rank[1.0] == ["A", "B"] and rank[0.5] == ["B", "A"]
    n, mean = next((n, m) for name, n, m in c.coverage[2]["ranking"] if name == "A")
    assert n == 40 and mean == pytest.approx(cal.top_fraction_mean([r["confidence"] for r in ra], [r["miou_fgbg"] for r in ra]))
    md = c.markdown()
    assert "### Ranking at equal coverage (miou_fgbg)" in md and "| 50% | B | A |" in md
    c = compare(tmp_path / "A", tmp_path / "U", n_boot=200)
    assert [name for name, _, _ in c.coverage[2]["ranking"]] == ["A"] and c.coverage[2]["uncalibrated"] == ["B"]
    assert "| 50% | A | — | 40, " in c.markdown() and "uncalibrated |" in c.markdown()


def test_rank_at_coverage_all_samples_for_uncalibrated_sides():
    cfg = _config("c")
    got = rank_at_coverage({"x": _rows(cfg, 10, 0, calibrated=False)}, "miou_fgbg", (1.0, 0.5))
    assert got[0]["ranking"][0][:2] == ("x", 10) and got[1]["ranking"] == [] and got[1]["uncalibrated"] == ["x"]


def test_page_charts_in_the_browser(bench_dir):
    from browser import chrome, console_errors, horizontal_overflow

    out = bench_dir[0]
    d = chrome()
    try:
        for width in (1280, 560):  # a narrow window too: the charts shrink, the page never scrolls sideways
            d.set_window_size(width, 900)
            d.get((out / "benchmark.html").as_uri())
            boxes = d.execute_script("return Array.from(document.querySelectorAll('svg.chart')).map("
                                     "s => {const r = s.getBoundingClientRect(); return [s.getAttribute('class'), r.width, r.height];});")
            assert [b[0] for b in boxes] == ["chart reliability", "chart risk-coverage"]
            assert all(0 < w <= width and h > 0 for _, w, h in boxes), boxes
            n = d.execute_script("return document.querySelectorAll('svg.chart circle.point').length")
            assert n == 10 + len(d.find_elements("css selector", "svg.reliability rect.bin"))
            assert horizontal_overflow(d) == 0
            assert console_errors(d) == []
    finally:
        d.quit()
