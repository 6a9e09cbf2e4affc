"""Label-free signals, the calibrated confidence, abstention and its page (groundkit.engine.confidence,
groundkit.evaluation.calibration, groundkit.bench.confidence, `groundkit calibrate`; docs/confidence.md)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import groundkit as gk
from groundkit.bench import confidence as bc
from groundkit.cli import app
from groundkit.core.types import LayerInfo
from groundkit.engine import confidence as conf
from groundkit.engine.maps import AttentionMaps
from groundkit.evaluation import calibration as cal
from groundkit.recipes import Recipe

DEMO = Path(gk.__file__).resolve().parent / "assets" / "demo"
SAMPLE = json.loads((DEMO / "sample.json").read_text()) if (DEMO / "sample.json").is_file() else {}
PHRASE = SAMPLE.get("phrase") or "small left pleural effusion"


@pytest.fixture(scope="module")
def demo():
    torch.set_num_threads(1)
    return gk.load("demo", device="cpu")


def test_signals_finite_and_confidence_calibrated(demo, tmp_path):
    g = demo.ground(str(DEMO / "sample.png"), PHRASE)
    assert set(g.signals) >= {"peak_background", "entropy", "mask_area", "separation", "threshold_stability",
                              "split_half_steps", "split_half_layers"}
    assert all(math.isfinite(v) for v in g.signals.values())
    assert 0.0 <= g.confidence <= 1.0  # the demo ships a calibration of its default recipe
    about = g.info["confidence"]
    assert about["status"] == "calibrated" and about["calibration"]["n"] >= 100
    assert {"data", "date", "groundkit"} <= set(about["calibration"])
    saved = json.loads((g.save(tmp_path) / "result.json").read_text())
    assert saved["signals"] == pytest.approx(g.signals) and saved["confidence"]["value"] == pytest.approx(g.confidence)


def test_uncalibrated_without_a_matching_calibration(demo):
    g = demo.ground(str(DEMO / "sample.png"), PHRASE, "nuetzel2025-fast")
    assert g.confidence is None and g.info["confidence"]["status"] == "uncalibrated"
    assert g.signals  # the raw signals are still there
    g = demo.ground(str(DEMO / "sample.png"), PHRASE, seed=3)  # demo-default, overridden: its digest differs
    assert g.confidence is None and "digest" in g.info["confidence"]["reason"]
    with pytest.raises(ValueError, match="calibrated confidence"):
        demo.ground(str(DEMO / "sample.png"), PHRASE, "nuetzel2025-fast", min_confidence=0.5)


def _rows(n=80, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.random(n)
    return [{"signals": {"a": float(x + rng.normal(0, .2)), "b": float(rng.normal()), "c": 1.0}, "iou": float(x)} for x in q]


def test_fit_store_reload(tmp_path):
    rows = _rows()
    doc = bc.fit(rows, checkpoint="toy", recipe="toy-recipe", recipe_digest="abc", data="planted")
    assert doc["model"]["features"] == ["a", "b"]  # the constant signal is dropped
    assert {"data", "date", "n", "fitted_metric", "groundkit"} <= set(doc) and doc["n"] == 80
    path = bc.store(doc, tmp_path)
    assert path == tmp_path / "calibration" / "toy-recipe.json"
    back = conf.load_calibration(tmp_path, "toy-recipe")
    probs = [conf.predict(back, r["signals"]) for r in rows]
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert cal.spearman(probs, [r["iou"] for r in rows]) > 0.5
    value, about = conf.confidence_of(rows[0]["signals"], Recipe(name="toy-recipe"), back)
    assert value is None and about["status"] == "uncalibrated"  # a different recipe digest


def test_judges():
    iou = np.array([0.9, 0.7, 0.5, 0.1, 0.0])
    assert cal.aurc_oracle(iou) == pytest.approx(cal.aurc(iou, iou))
    assert cal.aurc(iou, iou) < cal.aurc_random(iou) < cal.aurc(-iou, iou)
    assert cal.ece([0.95, 0.05], [True, False]) == pytest.approx(0.05)
    assert cal.top_fraction_mean(iou, iou, 0.4) == pytest.approx(0.8)


def _planted(sharp: bool, seed=0) -> tuple[AttentionMaps, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16]
    blob = np.exp(-((yy - 5) ** 2 + (xx - 10) ** 2) / 6.0)
    layers = [LayerInfo(i, f"l{i}", 16, "up") for i in range(2)]
    maps = {}
    for li in layers:
        m = [blob + 0.05 * rng.random((16, 16)) if sharp else rng.random((16, 16)) for _ in range(4)]
        maps[li.index] = torch.tensor(np.stack(m)[:, None], dtype=torch.float32)
    am = AttentionMaps(layers, [0, 1, 2, 3], ["selected"], maps)
    h = am.aggregate("selected", (0, 4), None, layer_norm=False, upsample="nearest", size=16)
    return am, (h - h.min()) / (h.max() - h.min())


def test_sharp_concentrated_map_is_more_confident_than_a_flat_one():
    calib = conf.load_calibration(DEMO, "demo-default")
    r = Recipe(name="planted", steps=(0, 4), layers=None)
    out = {}
    for sharp in (True, False):
        maps, h = _planted(sharp)
        s = conf.compute_signals(h, h > 0.5, maps, r)
        out[sharp] = conf.predict(calib, s)
        assert s["split_half_steps"] > 0.9 if sharp else s["split_half_steps"] < 0.5
    assert out[True] > out[False] + 0.2


def test_abstention_hides_the_mask_and_lists_the_finding(demo, tmp_path):
    g = demo.ground(str(DEMO / "sample.png"), PHRASE, min_confidence=1.0)
    assert not g.localised and not g.mask.any() and g.mask_crop.any()
    assert demo.ground(str(DEMO / "sample.png"), PHRASE, min_confidence=0.0).localised
    rg = demo.ground_report(str(DEMO / "sample_report.png"), (DEMO / "sample_report.txt").read_text(), min_confidence=1.0)
    assert rg.positive and all(not f.grounding.localised for f in rg.positive)
    out = rg.save(tmp_path / "r")
    found = json.loads((out / "findings.json").read_text())["findings"]
    assert all(f["localised"] is False and 0 <= f["confidence"] <= 1 for f in found if not f["negated"])
    page = (out / "report.html").read_text()
    assert "id='not-localised'" in page and "class='layer contour'" not in page


def test_page_shows_confidence_and_not_localised_list(tmp_path):
    from browser import chrome, console_errors
    from selenium.webdriver.common.by import By
    from test_report_page import make_data

    from groundkit.viz.report_page import render_report_page

    data = make_data()
    f0, f1 = data["findings"][0], data["findings"][1]
    f0["confidence"], f1["confidence"], f1["localised"], f1["contour_png"] = 0.81, 0.12, False, None
    data["min_confidence"] = 0.5
    (tmp_path / "p.html").write_text(render_report_page(data))
    d = chrome()
    try:
        d.get((tmp_path / "p.html").as_uri())
        assert not console_errors(d)
        legend = d.find_element(By.CSS_SELECTOR, ".legend-item[data-finding='f0'] .confidence")
        assert legend.text == "confidence 0.81" and legend.is_displayed()
        gone = d.find_elements(By.CSS_SELECTOR, "#not-localised li")
        assert [e.get_attribute("data-finding") for e in gone] == ["f1"] and "0.12" in gone[0].text
        assert not d.find_elements(By.CSS_SELECTOR, ".legend-item[data-finding='f1']")
        assert not d.find_elements(By.CSS_SELECTOR, "#viewer .contour[data-finding='f1']")
        assert "below 0.50" in d.find_element(By.TAG_NAME, "body").text
    finally:
        d.quit()


def test_cli_calibrate_tiny(tmp_path):
    data = tmp_path / "val"
    subprocess.run([sys.executable, "-m", "groundkit", "demo-data", "--out", str(data), "--n", "24", "--seed", "77",
                    "--size", "96", "--split", "val"], check=True, capture_output=True)
    res = CliRunner().invoke(app, ["calibrate", "--checkpoint", "demo", "--data", str(data), "--n", "24",
                                   "--out", str(tmp_path / "ck"), "--no-progress"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "ck" / "calibration" / "demo-default.json").read_text())
    assert doc["n"] == 24 and doc["recipe"] == "demo-default" and "synth-77" in doc["data"]
    # the provenance says how to write the set again, not only the (temporary) folder it lay in
    assert "`groundkit demo-data --n 24 --seed 77 --size 96 --split val`, first 24 samples" in doc["data"]
    res = CliRunner().invoke(app, ["calibrate", "--checkpoint", "demo", "--data", str(data), "--split", "test"])
    assert res.exit_code != 0 and "never fitted on the test split" in res.output


def test_benchmark_tables_get_a_confidence_section():
    rows = [{"confidence": c, "mask_iou": i} for c, i in [(0.9, 0.8), (0.7, 0.5), (0.2, 0.1), (0.1, 0.0)]]
    title, header, body, _ = bc.confidence_table({"demo": (rows, 0), "uncal": ([{"confidence": None, "mask_iou": .3}] * 3, 0)})
    assert "AURC" in header and [r[0] for r in body] == ["demo"] and body[0][2] == "1.000"
    assert bc.confidence_table({"x": ([{"confidence": None, "mask_iou": .3}], 0)}) is None
