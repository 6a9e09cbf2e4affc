"""The shipped demo checkpoint really grounds: end-to-end quality on held-out synthetic images.

The demo (groundkit/assets/demo, trained by benchmarks/demo/train.py on seed-1000+ images) is the only
end-to-end evidence of grounding on machines without real weights, so these tests check quality, not
shapes. Samples come from seed 2026, which neither training nor any choice (validation seed 77) saw. The
demo runs its default recipe, `demo-default` (its groundkit.yaml: nuetzel2025 with the window and token
filter chosen on validation). Thresholds sit below what the model measures here (comments) and above what a
map that ignores the image or the phrase can reach; the full figures are printed by benchmarks/demo/quality.py.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import groundkit as gk
from groundkit.cli import app
from groundkit.data import synthetic
from groundkit.bench.baselines import baseline_row

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "demo"))
from validate import LATERAL, side_mass, side_of, swap_side

N_SAMPLES = 16  # two per category


@pytest.fixture(scope="module")
def demo():
    return gk.load("demo", device="cpu")


@pytest.fixture(scope="module")
def held_out():
    return list(synthetic.iter_samples(N_SAMPLES, seed=2026, size=256))


@pytest.fixture(scope="module")
def scores(demo, held_out):
    """Per sample: metrics for the report phrase, for an unrelated phrase and for another finding's phrase on the
    same image (both typed without a category), and the two baselines."""
    from quality import UNRELATED, unrelated_phrases

    true_rows, other_rows, finding_rows, centre_rows, uniform_rows = [], [], [], [], []
    for (img, phrase, cat, boxes), finding in zip(held_out, unrelated_phrases(held_out)):
        g = demo.ground(img, phrase, category=cat)
        true_rows.append(g.evaluate(boxes))
        other_rows.append(demo.ground(img, UNRELATED[cat]).evaluate(boxes))
        finding_rows.append(demo.ground(img, finding).evaluate(boxes))
        centre_rows.append(baseline_row("centre", g.recipe, g.geometry, boxes))
        uniform_rows.append(baseline_row("uniform", g.recipe, g.geometry, boxes))
    return true_rows, (other_rows, finding_rows), centre_rows, uniform_rows


def _mean(rows, key):
    return float(np.mean([r[key] for r in rows]))


def test_demo_default_is_its_own_recipe(demo):
    r = demo.resolve()
    assert r.recipe.name == "demo-default" and r.provenance["layers"] == "checkpoint"
    published = demo.resolve("nuetzel2025")  # the published name keeps the published layers: every attn2
    assert published.layers_spec == "attn2" and published.provenance["layers"] == "recipe"
    assert published.recipe.layers == tuple(i.index for i in demo.layers if i.attention == "attn2")


def test_demo_beats_both_baselines_on_cnr(scores):
    true_rows, _, centre_rows, uniform_rows = scores
    demo_cnr, centre_cnr, uniform_cnr = _mean(true_rows, "cnr"), _mean(centre_rows, "cnr"), _mean(uniform_rows, "cnr")
    assert uniform_cnr == 0.0
    assert demo_cnr > centre_cnr + 0.2, (demo_cnr, centre_cnr)


def test_demo_peak_lands_in_the_box_more_often_than_a_centre_prior(scores):
    true_rows, _, centre_rows, _ = scores
    assert _mean(true_rows, "top1") > _mean(centre_rows, "top1") + 0.2


def test_demo_heatmap_follows_the_phrase(scores):
    """The same image grounded with an unrelated phrase, or with another finding's phrase, lands worse on the
    finding's boxes: the maps come from the text, not from image saliency alone."""
    true_rows, (other_rows, finding_rows), _, _ = scores
    # measured on these 16: CNR 1.65 (report phrase), 0.94 (enlarged cardiac silhouette), 1.30 (another finding)
    assert _mean(other_rows, "cnr") < 0.7 * _mean(true_rows, "cnr")
    assert sum(t["cnr"] > o["cnr"] for t, o in zip(true_rows, other_rows)) >= 12
    assert _mean(finding_rows, "cnr") < _mean(true_rows, "cnr") - 0.2


def test_side_swap_moves_the_heatmap(demo):
    """One-sided findings: the phrase with the correct side puts more heatmap mass on that side than the same
    phrase with the side swapped."""
    cases = [s for s in synthetic.iter_samples(24, seed=2026, size=256) if s[2] in LATERAL and side_of(s[1])][:8]
    assert len(cases) == 8
    wins = 0
    for img, phrase, cat, _ in cases:
        right, wrong = demo.ground_many(img, [phrase, swap_side(phrase)], categories=[cat, cat])
        wins += side_mass(right.heatmap_crop, side_of(phrase)) > side_mass(wrong.heatmap_crop, side_of(phrase))
    assert wins >= 7, wins


def test_default_run_command_grounds_the_bundled_sample(tmp_path):
    """`groundkit run` with no arguments: demo checkpoint, bundled image and phrase; the heatmap's peak lies in
    the box and the mask overlaps it."""
    res = CliRunner().invoke(app, ["run", "--out", str(tmp_path), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["checkpoint"] == "demo" and result["recipe"]["name"] == "demo-default"
    heat = np.load(tmp_path / "heatmap.npy")
    from PIL import Image

    folder = gk.registry.PACKAGE_DIR / "assets" / "demo"
    image = Image.open(folder / "sample.png")
    assert heat.shape == (image.height, image.width)
    x, y, w, h = (int(round(v)) for v in json.loads((folder / "sample.json").read_text())["boxes"][0])
    inside = np.zeros(heat.shape, bool)
    inside[y:y + h, x:x + w] = True
    assert inside[np.unravel_index(np.nanargmax(heat), heat.shape)]
    mask = np.asarray(Image.open(tmp_path / "mask.png")) > 0
    assert (mask & inside).sum() / (mask | inside).sum() >= 0.3
    assert result["metrics"]["top1"] == 1.0
