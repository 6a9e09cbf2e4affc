"""Grounding a whole report: findings extracted and grounded in ONE shared pass, negations listed not grounded,
the outputs on disk, the CLI, synthetic reports with ground truth, and the real page clicked in a browser."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from browser import chrome, console_errors, horizontal_overflow

import groundkit as gk
from groundkit.data.synthetic_reports import generate_reports, iter_report_samples
from groundkit.reports import parse_report

DEMO = Path(gk.__file__).resolve().parent / "assets" / "demo"
REPORT = ("FINDINGS: Small left pleural effusion. There is no pneumothorax. Mild cardiomegaly.\n"
          "IMPRESSION: Left pleural effusion. Pneumothorax cannot be excluded.")


@pytest.fixture(scope="module")
def demo():
    return gk.load("demo", device="cpu")


def test_report_is_grounded_in_one_shared_call(demo):
    img = str(DEMO / "sample_report.png")
    rg = demo.ground_report(img, REPORT, side_prior=False, use_spacy=False)  # ground_many has no side prior
    phrases = {f.finding.phrase: f for f in rg.findings}
    assert set(phrases) == {"Small left pleural effusion", "pneumothorax", "Mild cardiomegaly", "Pneumothorax"}
    assert phrases["pneumothorax"].grounding is None and phrases["pneumothorax"].negated  # listed, not grounded
    assert phrases["Pneumothorax"].finding.uncertain and phrases["Pneumothorax"].grounding is not None  # "cannot be excluded"
    assert len(rg.positive) == 3 and all(f.grounding.heatmap.shape == (256, 256) for f in rg.positive)
    # the effusion stated twice is one finding with two mentions; one batched call grounds both positives
    assert len(phrases["Small left pleural effusion"].finding.mentions) == 2
    # (the report flow computes each finding against the others: ground_many does the same with contrast="findings")
    batch = demo.ground_many(img, [f.finding.phrase for f in rg.positive], categories=[f.finding.category for f in rg.positive],
                             contrast="findings")
    assert rg.info["unet_calls_total"] == batch[0].info["unet_calls_total"] == 3 * demo.ground(img, "x").info["unet_calls"]
    for f, g in zip(rg.positive, batch):
        np.testing.assert_allclose(f.grounding.heatmap_crop, g.heatmap_crop)


def test_inversion_trajectory_is_shared_between_findings(tiny_monai_bundle):
    m = gk.load(tiny_monai_bundle, device="cpu")
    over = dict(grid="stride:50", steps=(3, 6))
    rg = m.ground_report(np.random.default_rng(0).random((64, 64)), "Left pleural effusion. Right lower lobe consolidation.",
                         "vilouras2024", use_spacy=False, **over)
    # (end - 1) unconditional inversion calls once per image, then 3 conditional calls per finding
    assert rg.info["unet_calls_total"] == 5 + 2 * 3
    assert rg.info["unet_calls_per_finding"] == pytest.approx(5.5)


def test_save_writes_every_output(demo, tmp_path):
    rg = demo.ground_report(str(DEMO / "sample_report.png"), REPORT, use_spacy=False)
    out = rg.save(tmp_path / "rep")
    found = json.loads((out / "findings.json").read_text())
    assert found["report"] == REPORT and len(found["findings"]) == 4
    neg = [f for f in found["findings"] if f["negated"]]
    assert neg and all("heatmap" not in f for f in neg) and neg[0]["cue"]
    for f in found["findings"]:
        for m in f["mentions"]:
            assert REPORT[m["start"]:m["end"]] == m["text"]
        if not f["negated"]:
            heat = np.load(out / f["heatmap"])
            assert heat.shape == (256, 256) and (out / f["mask"]).is_file() and f["unet_calls"] > 0
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and html.count('class="mention') + html.count("class='mention") >= 5


def test_cli_report_defaults_to_the_bundled_sample(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "groundkit", "report", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "2 finding(s) grounded, 1 negated" in proc.stdout
    truth = json.loads((DEMO / "sample_report.json").read_text())
    found = json.loads((tmp_path / "r" / "findings.json").read_text())
    assert {f["category"] for f in found["findings"] if not f["negated"]} == {t["category"] for t in truth["findings"]}
    bad = subprocess.run([sys.executable, "-m", "groundkit", "report", "--image", str(DEMO / "sample.png")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "error: give the report with --report FILE or --text" in bad.stderr


def test_synthetic_reports_carry_their_ground_truth(tmp_path):
    csv = generate_reports(tmp_path / "d", n=6, seed=11, size=96)
    reports = sorted((tmp_path / "d" / "reports").glob("*.json"))
    assert len(reports) == 6 and csv.is_file()
    for f in reports:
        truth = json.loads(f.read_text())
        text = f.with_suffix(".txt").read_text()
        assert truth["findings"] and any(m["negated"] for m in truth["mentions"])
        for m in truth["mentions"]:
            assert 0 <= m["start"] < m["end"] <= len(text)
    # the parser finds what the generator wrote (the full measurement: benchmarks/report_grounding.py)
    hits = total = 0
    for _, findings, rep in iter_report_samples(20, 3, 64):
        parsed = parse_report(rep["text"], use_spacy=False)
        for m in rep["mentions"]:
            total += 1
            hits += any(x.start < m["end"] and m["start"] < x.end and x.negated == m["negated"] for x in parsed.mentions)
    assert hits / total >= 0.95


def test_report_page_in_a_real_browser(demo, tmp_path):
    out = demo.ground_report(str(DEMO / "sample_report.png"), REPORT, use_spacy=False).save(tmp_path / "rep")
    driver = chrome()
    try:
        driver.get((out / "report.html").as_uri())
        viewer = driver.find_element("id", "viewer")
        heat = driver.find_element("id", "heatmap")
        seen = set()
        for span in driver.find_elements("css selector", ".mention"):
            fid = span.get_attribute("data-finding")
            negated = "negated" in (span.get_attribute("class") or "")
            driver.execute_script("document.activeElement && document.activeElement.blur()")
            span.click()
            if negated:
                assert viewer.get_attribute("data-active") != fid
                continue
            assert viewer.get_attribute("data-active") == fid
            seen.add((fid, heat.get_attribute("src")[:120] if heat.get_attribute("src") else None))
        srcs = {s for _, s in seen}
        assert len({f for f, _ in seen}) == 3 and len(srcs) == 3 and None not in srcs  # each finding its own heatmap
        assert not console_errors(driver) and horizontal_overflow(driver) <= 0
    finally:
        driver.quit()
