"""Report-level contrast between the findings of one report (groundkit.engine.contrast): one finding gives exactly
its own map, several findings get maps computed against each other from the SAME capture (no extra U-Net call),
two findings with different true regions get separated, the option reaches ground_many / ground_report / the CLI
and is recorded in findings.json and result.json."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import groundkit as gk
from groundkit.engine.contrast import BACKGROUND, MIX, TEMPERATURE, check_contrast, softmax_contrast
from groundkit.engine.side_prior import SIDE_FLOOR, check_side_prior, position_weight, side_weight, zone_of, zone_weight
from groundkit.reports import parse_report

DEMO = Path(gk.__file__).resolve().parent / "assets" / "demo"
SAMPLE_IMG = str(DEMO / "sample_report.png")
SAMPLE_TXT = (DEMO / "sample_report.txt").read_text()


@pytest.fixture(scope="module")
def demo():
    return gk.load("demo", device="cpu")


def _iou(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float((a & b).sum() / max(1, (a | b).sum()))


# ------------------------------------------------------------------------------------------------ the formulation
def test_shared_peak_is_split_and_own_regions_win():
    yy, xx = np.mgrid[:32, :32]
    blob = lambda y, x, s=3.0: np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))
    salient = blob(8, 8)  # the most salient abnormality: both phrases attend to it most
    a = salient + 0.7 * blob(24, 24)  # finding A's own region, weaker than the salient one in A's map
    b = salient + 0.6 * blob(24, 8) + 0.05 * blob(24, 24)  # finding B's own region
    ca, cb = softmax_contrast([a, b])
    assert np.unravel_index(np.argmax(a), a.shape) == (8, 8)  # without contrast A peaks on the salient region
    assert np.unravel_index(np.argmax(ca), ca.shape) == (24, 24)  # with it, on its own
    assert np.unravel_index(np.argmax(cb), cb.shape) == (24, 8)
    assert ca[8, 8] < 0.6 and cb[8, 8] < 0.6  # the shared peak is split
    assert ca.max() <= 1 and min(ca.min(), cb.min()) >= 0
    # the background term keeps pixels where no finding is confidently high out of every map
    assert ca[0, 31] < 0.1 and cb[0, 31] < 0.1
    assert (TEMPERATURE, BACKGROUND) == (0.2, 0.5)


def test_contrast_values_are_checked():
    assert check_contrast("findings") == "findings" and check_contrast("NONE") == "none"
    assert check_contrast(True) == "findings" and check_contrast(False) == check_contrast(None) == "none"
    with pytest.raises(ValueError, match="contrast="):
        check_contrast("softmax")
    with pytest.raises(ValueError):
        softmax_contrast([np.ones((4, 4))])


def test_side_weight_follows_the_radiological_convention():
    w = side_weight("right", 20)  # patient's right = image LEFT
    assert w.shape == (20, 20) and np.all(w[:, 0] == 1.0) and np.allclose(w[:, -1], SIDE_FLOOR)
    assert np.allclose(side_weight("left", 20), w[:, ::-1])  # mirror image
    assert np.all(np.diff(side_weight("left", 20)[0]) >= 0)  # rises monotonically towards the stated side
    assert 0.5 < side_weight("left", 20)[0, 10] < 1.0  # the ramp: just past the midline is damped, not cut
    assert side_weight("bilateral", 20) is None and side_weight(None, 20) is None
    assert check_side_prior(False) is False
    with pytest.raises(ValueError, match="side_prior="):
        check_side_prior("off")
    with pytest.raises(ValueError, match="floor"):
        side_weight("left", 8, floor=2.0)


def test_side_prior_lets_the_stated_side_win_the_contrast():
    """Two findings whose attention is the same salient blob (the model does not encode side): with their
    report's sides, each map peaks on its own side."""
    yy, xx = np.mgrid[:32, :32]
    blob = lambda y, x, s=3.0: np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))
    a = blob(20, 8) + 0.8 * blob(20, 24)  # "right effusion": most attention on image left (correct) ...
    b = blob(20, 8) + 0.8 * blob(20, 24)  # "left effusion": ... and the same map
    wa, wb = side_weight("right", 32), side_weight("left", 32)
    ca, cb = softmax_contrast([a * wa, b * wb])
    assert np.unravel_index(np.argmax(cb), cb.shape)[1] > 16  # left = image right
    assert np.unravel_index(np.argmax(ca), ca.shape)[1] < 16


def test_zone_words_weight_the_rows():
    def zone(text):  # as the report flow reads it: the parser's normalised locations
        return zone_of(parse_report(text).findings[0].location)

    assert zone("Right upper lobe opacity.") == zone("Right apical opacity.") == zone("RUL pneumonia.") == "upper"
    assert zone("Left basilar atelectasis.") == zone("LLL consolidation.") == "lower"
    assert zone("Opacity at the left costophrenic angle.") == zone("Retrocardiac opacity.") == "lower"
    assert zone("Right mid zone opacity.") == zone("Right middle lobe pneumonia.") == "middle"
    assert zone("Right pleural effusion.") is None
    assert zone_of([]) is None and zone_of(["upper lobe", "base"]) is None  # several zones: no position
    up, low, mid = (zone_weight(z, 40)[:, 0] for z in ("upper", "lower", "middle"))
    assert up[0] == 1.0 and up[-1] == SIDE_FLOOR and np.all(np.diff(up) <= 0)  # top of the image
    assert low[0] == SIDE_FLOOR and low[-1] == 1.0 and np.all(np.diff(low) >= 0)
    assert mid[0] == mid[-1] == SIDE_FLOOR and mid[18] == 1.0
    assert np.allclose(zone_weight("upper", 40)[:, 0], zone_weight("upper", 40)[:, -1])  # the same on every column
    assert zone_weight(None, 40) is None and zone_weight("everywhere", 40) is None
    assert position_weight(None, None, 8) is None
    np.testing.assert_allclose(position_weight("left", "lower", 40), side_weight("left", 40) * zone_weight("lower", 40))
    np.testing.assert_allclose(position_weight("left", None, 40), side_weight("left", 40))


def test_zone_prior_separates_two_findings_on_the_same_side():
    """Two findings on the same side whose attention is the same pair of blobs (one high, one low): with their
    report's zones each map peaks at its own height, which the side alone cannot do."""
    yy, xx = np.mgrid[:32, :32]
    blob = lambda y, x, s=3.0: np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))
    a = blob(8, 8) + 0.9 * blob(25, 8)
    b = a.copy()
    side_only = softmax_contrast([a * side_weight("right", 32), b * side_weight("right", 32)])
    assert all(np.unravel_index(np.argmax(c), c.shape)[0] < 16 for c in side_only)  # both on the upper blob
    ca, cb = softmax_contrast([a * position_weight("right", "upper", 32), b * position_weight("right", "lower", 32)])
    assert np.unravel_index(np.argmax(ca), ca.shape)[0] < 16 < np.unravel_index(np.argmax(cb), cb.shape)[0]


# ------------------------------------------------------------------------------------------------ on the demo model
def test_one_finding_is_bit_identical_with_contrast_on_and_off(demo):
    both = demo.ground_report_contrasts(SAMPLE_IMG, "Moderate cardiomegaly. No pneumothorax.", use_spacy=False)
    on, off = both["findings"].positive, both["none"].positive
    assert len(on) == len(off) == 1
    assert np.array_equal(on[0].grounding.heatmap_crop, off[0].grounding.heatmap_crop)
    assert np.array_equal(on[0].grounding.mask_crop, off[0].grounding.mask_crop)
    assert both["findings"].info["contrast"] == {**both["findings"].info["contrast"], "mode": "findings", "applied": False}
    # and it is today's map: the single phrase grounded on its own
    alone = demo.ground(SAMPLE_IMG, on[0].finding.phrase, category=on[0].finding.category)
    assert np.array_equal(alone.heatmap_crop, on[0].grounding.heatmap_crop)
    assert alone.info["contrast"]["mode"] == "none"


def test_one_finding_with_a_side_is_identical_with_contrast_on_and_off(demo):
    """The side prior is a separate option: it applies with contrast on and off alike, so one finding still gets
    the same map either way; without it the map is exactly single-phrase grounding's."""
    text = "Small left pleural effusion. No pneumothorax."
    both = demo.ground_report_contrasts(SAMPLE_IMG, text, use_spacy=False)
    on, off = both["findings"].positive[0].grounding, both["none"].positive[0].grounding
    assert on.info["side_prior"]["side"] == "left" and both["findings"].info["side_prior"]["findings_weighted"] == 1
    assert np.array_equal(on.heatmap_crop, off.heatmap_crop) and np.array_equal(on.mask_crop, off.mask_crop)
    plain = demo.ground_report(SAMPLE_IMG, text, side_prior=False, use_spacy=False).positive[0]
    alone = demo.ground(SAMPLE_IMG, plain.finding.phrase, category=plain.finding.category)
    assert np.array_equal(alone.heatmap_crop, plain.grounding.heatmap_crop)
    assert not np.array_equal(alone.heatmap_crop, on.heatmap_crop)
    half = on.heatmap_crop.shape[1] // 2  # the weight moved mass towards the image's right half (patient's left)
    assert on.heatmap_crop[:, half:].sum() / on.heatmap_crop.sum() > alone.heatmap_crop[:, half:].sum() / alone.heatmap_crop.sum()


def test_contrast_separates_the_sample_reports_two_findings(demo):
    both = demo.ground_report_contrasts(SAMPLE_IMG, SAMPLE_TXT, use_spacy=False)
    on, off = both["findings"], both["none"]
    assert len(on.positive) == 2
    m_on = [f.grounding.mask for f in on.positive]
    m_off = [f.grounding.mask for f in off.positive]
    # the two findings' true regions differ (effusion at the left base, the heart): off they share one region
    assert _iou(*m_off) > 0.5 and _iou(*m_on) <= 0.3
    truth = json.loads((DEMO / "sample_report.json").read_text())["findings"]
    by_cat = {f.finding.category: f.grounding for f in on.positive}
    for t in truth:  # each finding's peak inside its own box
        assert by_cat[t["category"]].evaluate(t["boxes"])["top1"] == 1.0
    # the same capture: same U-Net calls (3 per finding for the demo's default recipe), none added by contrast
    assert on.info["unet_calls_total"] == off.info["unet_calls_total"] == 6
    assert on.info["unet_calls_per_finding"] == 3.0
    assert on.info["contrast"]["applied"] and not off.info["contrast"]["applied"]


def test_option_reaches_ground_many_and_ground_report(demo):
    # on by default in the report flow; the side prior (report flow only) is off here to compare with ground_many
    rg_on = demo.ground_report(SAMPLE_IMG, SAMPLE_TXT, side_prior=False, use_spacy=False)
    rg_off = demo.ground_report(SAMPLE_IMG, SAMPLE_TXT, contrast="none", side_prior=False, use_spacy=False)
    assert rg_on.info["contrast"]["mode"] == "findings" and rg_off.info["contrast"]["mode"] == "none"
    phrases = [f.finding.phrase for f in rg_on.positive]
    cats = [f.finding.category for f in rg_on.positive]
    plain = demo.ground_many(SAMPLE_IMG, phrases, categories=cats)  # off by default for ground_many
    contrasted = demo.ground_many(SAMPLE_IMG, phrases, categories=cats, contrast="findings")
    for f_on, f_off, p, c in zip(rg_on.positive, rg_off.positive, plain, contrasted):
        np.testing.assert_array_equal(p.heatmap_crop, f_off.grounding.heatmap_crop)
        np.testing.assert_array_equal(c.heatmap_crop, f_on.grounding.heatmap_crop)
        assert p.info["contrast"]["mode"] == "none" and c.info["contrast"]["applied"]
        assert c.info["unet_calls"] == p.info["unet_calls"] == 3
        assert not np.array_equal(p.heatmap_crop, c.heatmap_crop)  # contrast changes multi-finding maps
    with pytest.raises(ValueError, match="contrast="):
        demo.ground_many(SAMPLE_IMG, phrases, contrast="bogus")


def test_contrast_is_recorded_on_disk(demo, tmp_path):
    rg = demo.ground_report(SAMPLE_IMG, SAMPLE_TXT, use_spacy=False)
    out = rg.save(tmp_path / "rep")
    found = json.loads((out / "findings.json").read_text())
    assert found["contrast"]["mode"] == "findings" and found["contrast"]["applied"] is True
    assert found["contrast"]["temperature"] == TEMPERATURE and found["contrast"]["findings"] == 2
    assert found["contrast"]["mix"] == MIX
    g = rg.positive[0].grounding
    res = json.loads((g.save(tmp_path / "one") / "result.json").read_text())
    assert res["contrast"]["mode"] == "findings" and res["contrast"]["applied"] is True
    assert found["side_prior"]["on"] is True and found["side_prior"]["findings_weighted"] == 1  # "left" effusion
    assert found["side_prior"]["floor"] == SIDE_FLOOR
    assert {r.finding.category: r.grounding.info["side_prior"]["side"] for r in rg.positive} == {
        "Pleural Effusion": "left", "Cardiomegaly": None}
    single = demo.ground(SAMPLE_IMG, "moderate cardiomegaly")
    res = json.loads((single.save(tmp_path / "single") / "result.json").read_text())
    assert res["contrast"] == {"mode": "none", "findings": 1, "applied": False}
    assert res["side_prior"] == {"on": False, "findings_weighted": 0, "side": None, "zone": None}


def test_tiny_model_other_recipe_paths(tiny_monai_bundle):
    """Smoothing + Otsu (vilouras2024) and the inversion pass: same calls on and off, maps changed, finite."""
    m = gk.load(tiny_monai_bundle, device="cpu")
    over = dict(grid="stride:50", steps=(3, 6))
    img = np.random.default_rng(0).random((64, 64))
    both = m.ground_report_contrasts(img, "Left pleural effusion. Right lower lobe consolidation.", "vilouras2024",
                                     use_spacy=False, **over)
    on, off = both["findings"], both["none"]
    assert on.info["unet_calls_total"] == off.info["unet_calls_total"] == 5 + 2 * 3
    for a, b in zip(on.positive, off.positive):
        assert np.isfinite(a.grounding.heatmap_crop).all() and a.grounding.heatmap_crop.shape == b.grounding.heatmap_crop.shape
    assert any(not np.array_equal(a.grounding.heatmap_crop, b.grounding.heatmap_crop) for a, b in zip(on.positive, off.positive))


def test_cli_contrast_option(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    bad = subprocess.run([sys.executable, "-m", "groundkit", "report", "--contrast", "softmax", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "--contrast softmax: expected findings or none" in bad.stderr
    proc = subprocess.run([sys.executable, "-m", "groundkit", "report", "--contrast", "none", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "contrast: none" in proc.stdout
    found = json.loads((tmp_path / "r" / "findings.json").read_text())
    assert found["contrast"] == {"mode": "none", "findings": 2, "applied": False}


# ------------------------------------------------------------------------------------------------ coarse to fine
def _maps(coarse: np.ndarray, fine: np.ndarray):
    """AttentionMaps of one phrase: a 4x4 'coarse' layer (index 0) and an 8x8 'fine' up-path layer (index 1)."""
    import torch

    from groundkit.core.types import LayerInfo
    from groundkit.engine.maps import AttentionMaps

    layers = [LayerInfo(0, "up_blocks.0.attn2", 4, "up", "attn2"), LayerInfo(1, "up_blocks.1.attn2", 8, "up", "attn2")]
    t = lambda a: torch.tensor(np.repeat(a[None, None], 3, 0), dtype=torch.float32)  # (steps, groups, h, w)
    return AttentionMaps(layers, [47, 48, 49], ["selected"], {0: t(coarse), 1: t(fine)})


def test_refine_layers_are_the_up_paths_cross_attention_at_twice_the_resolution(demo):
    from groundkit.engine.contrast import refine_layers

    r = demo.recipe()
    by_index = {i.index: i for i in demo.layers}
    fine = refine_layers(demo.layers, r.layers)
    assert fine and all(by_index[i].block == "up" and by_index[i].attention == "attn2" for i in fine)
    assert {by_index[i].resolution for i in fine} == {2 * max(by_index[i].resolution for i in r.layers)}
    assert refine_layers(demo.layers, fine) == ()  # the finest layers have nothing finer
    assert refine_layers(demo.layers, ()) == ()


def test_capture_recipe_adds_the_refining_layers_only_when_the_contrast_applies(demo):
    from groundkit.engine.contrast import capture_recipe, refine_layers

    r = demo.recipe()
    assert capture_recipe(r, demo.layers, 1, "findings") is r  # one finding: the recipe's own capture
    assert capture_recipe(r, demo.layers, 3, "none") is r
    extended = capture_recipe(r, demo.layers, 2, "findings")
    assert tuple(extended.layers) == tuple(r.layers) + refine_layers(demo.layers, r.layers)
    assert extended.override(layers=r.layers) == r  # nothing else changes: same steps, same passes


def test_fine_layers_move_the_peak_inside_a_coarse_cell(demo):
    """A thin band fills a quarter of one coarse cell: the coarse map alone peaks on the whole cell, refined the
    peak is on the band; without the contrast (one phrase) the fine layers are not used."""
    from groundkit.engine.contrast import contrast_scores

    r = demo.recipe().override(layers=(0,))
    coarse_a = np.zeros((4, 4))
    coarse_a[2, 1], coarse_a[0, 3] = 1.0, 0.3
    coarse_b = np.zeros((4, 4))
    coarse_b[0, 3] = 1.0
    fine_a = np.zeros((8, 8))
    fine_a[5, 2:4] = 1.0  # the band: the lower row of coarse cell (2, 1)
    a, b = _maps(coarse_a, fine_a), _maps(coarse_b, np.zeros((8, 8)))
    plain = contrast_scores([a, b], r, 64, contrast=True)
    refined = contrast_scores([a, b], r, 64, contrast=True, fine=(1,))
    assert plain[0].shape == (4, 4) and refined[0].shape == (8, 8)
    peak = np.unravel_index(np.argmax(refined[0]), refined[0].shape)
    assert peak[0] == 5 and peak[1] in (2, 3)
    assert refined[0][5, 2] > refined[0][4, 2] + 0.05  # the band's row wins over the same cell's other row
    assert np.unravel_index(np.argmax(refined[1]), (8, 8)) in {(0, 6), (0, 7), (1, 6), (1, 7)}  # B stays in its cell
    assert contrast_scores([a], r, 64, contrast=True, fine=(1,)) is None  # one finding: the recipe's own map


def test_refinement_is_recorded_and_adds_no_unet_call(demo):
    both = demo.ground_report_contrasts(SAMPLE_IMG, SAMPLE_TXT, use_spacy=False)
    on, off = both["findings"], both["none"]
    by_index = {i.index: i.name for i in demo.layers}
    from groundkit.engine.contrast import refine_layers

    names = [by_index[i] for i in refine_layers(demo.layers, demo.recipe().layers)]
    assert on.info["contrast"]["refine"]["layers"] == names and off.info["contrast"].get("refine") is None
    assert on.positive[0].grounding.info["contrast"]["refine"]["layers"] == names
    assert on.info["unet_calls_total"] == off.info["unet_calls_total"] == 6
    # the recipe recorded is the recipe asked for, not the capture's extended layer list
    assert on.positive[0].grounding.recipe.layers == demo.recipe().layers
