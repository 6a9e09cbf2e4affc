"""Window ablation: one capture per sample, every window evaluated from the store.

Tiny MONAI bundle (DDIM inversion, Vilouras protocol) on a hand-written MS-CXR v1.1.0 set; the demo
checkpoint on synthetic data through the CLI. Windows use grid stride:50 (20 steps) to stay fast.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import groundkit as gk
from groundkit.bench import ablation as A
from groundkit.bench.datasets import load_dataset
from groundkit.data.images import save_png
from groundkit.engine.heatmap import make_heatmap
from groundkit.evaluation.protocols import aggregate

BASE = dict(grid="stride:50")  # 20-step inversion grid
LAYERS = [None, (3, 4, 6, 7)]
STEPS = [(0, 2), (1, 2)]
POSTS = ["multiotsu", "none"]
METRICS = ["miou_thr", "cnr"]

ROWS = [  # official v1.1.0 columns; image a has two phrases (one with two boxes), image b one
    ("a", "Pleural Effusion", "small left pleural effusion", "files/a.png", 30, 44, 20, 18, 64, 80),
    ("a", "Pleural Effusion", "small left pleural effusion", "files/a.png", 8, 50, 10, 12, 64, 80),
    ("a", "Cardiomegaly", "enlarged cardiac silhouette", "files/a.png", 16, 30, 30, 26, 64, 80),
    ("b", "Pneumothorax", "right apical pneumothorax", "files/b.png", 6, 4, 22, 20, 72, 72),
]


def _image(h, w, seed):
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w)) * 0.25).astype(np.float32)
    img[h // 3 : h // 2, w // 4 : w // 2] += 0.6
    return img


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("mscxr")
    (root / "files").mkdir()
    save_png(root / "files" / "a.png", _image(80, 64, 0))
    save_png(root / "files" / "b.png", _image(72, 72, 1))
    file = root / "MS_CXR_Local_Alignment_v1.1.0.csv"
    with open(file, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height", "split"])
        for r in ROWS:
            w.writerow(list(r) + ["test"])
    samples = load_dataset("mscxr", csv=file, images=root)
    assert len(samples) == 3
    return samples


class CountingUnet:
    """Counts every U-Net batch item that reaches the adapter (independent of the engine's counter)."""

    def __init__(self, adapter):
        self.inner, self.calls = adapter.unet, 0
        adapter.unet = self

    def __call__(self, z, t, ctx):
        self.calls += z.shape[0]
        return self.inner(z, t, ctx)


@pytest.fixture(scope="module")
def model(uninterrupted):
    """The module's model, loaded by ``uninterrupted`` (so that its first capture met empty caches)."""
    return uninterrupted[4]


@pytest.fixture(scope="module")
def uninterrupted(tiny_monai_bundle, dataset, tmp_path_factory, monkeypatch_module):
    """A fresh model (empty caches), its U-Net counted, one full float16 ablation on disk; U-Net calls
    made while evaluating the windows are counted separately."""
    fresh = gk.load(tiny_monai_bundle, device="cpu")
    counter = CountingUnet(fresh.adapter)
    during_eval = {}
    from groundkit.bench.ablation import run as R

    real_eval = R.evaluate

    def spy(*args, **kwargs):
        before = counter.calls
        out = real_eval(*args, **kwargs)
        during_eval["calls"] = counter.calls - before
        return out

    monkeypatch_module.setattr(R, "evaluate", spy)
    out = tmp_path_factory.mktemp("abl_full")
    res = A.run_ablation(fresh, dataset, "vilouras2024", LAYERS, STEPS, POSTS, METRICS, out, progress=False, overrides=BASE)
    monkeypatch_module.setattr(R, "evaluate", real_eval)
    return res, out, counter.calls, during_eval["calls"], fresh


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_windows_parsing_and_cost_model():
    assert A.parse_layers_grid("all;3,4,6,7;2-7") == [None, (3, 4, 6, 7), (2, 3, 4, 5, 6, 7)]
    assert A.parse_timesteps_grid("0:100;40:60") == [(0, 100), (40, 60)]
    assert A.parse_timesteps_grid("0:20:10") == [(0, 10), (0, 20), (10, 20)]  # lattice for the (start, end) plot
    with pytest.raises(ValueError, match="start < end"):
        A.parse_timesteps_grid("60:40")
    assert A.last_n_windows([1, 10, 40], 50) == [(49, 50), (40, 50), (10, 50)]
    assert [A.layers_label(w) for w in (None, (2, 3, 4, 5, 6, 7), (3, 4, 6, 7))] == ["all", "2-7", "3,4,6,7"]
    # engine counting: gt-noised P*T; inversion (end-1) unconditional + P*T conditional
    assert A.window_cost("gt-noised", (10, 50), 2) == 80
    assert A.window_cost("ddim-inversion", (120, 180), 1) == 179 + 60
    # Vilouras Table II: T_total=100, T=20 = 40..60, L=6 = the middle six of 11 (2-7)
    lws, sws, posts = A.vilouras_table2_grid(11, 100)
    assert lws == [None, (2, 3, 4, 5, 6, 7)] and sws == [(0, 100), (40, 60)] and posts == ["none", "otsu"]


def test_unet_calls_equal_one_capture(uninterrupted, dataset):
    res, out, counted, during_eval, _ = uninterrupted
    # capture range 0:2 -> per image: 1 unconditional inversion call + 2 conditional calls per phrase
    one_capture = (1 + 2 * 2) + (1 + 1 * 2)
    assert counted == res.calls["made"] == res.calls["one_capture"] == one_capture
    assert during_eval == 0  # every window comes from the store
    assert res.calls["recorded_capture"] == pytest.approx(one_capture)
    # re-running each of the 4 (layer x step) windows separately
    rerun = sum(A.window_cost("ddim-inversion", sw, p) for p in (2, 1) for _ in LAYERS for sw in STEPS)
    assert res.calls["rerun"] == rerun > one_capture
    assert "U-Net calls: 8 made" in res.calls_line()
    assert len(res.rows) == 3 * len(LAYERS) * len(STEPS) * len(POSTS)
    for name in ("rows.jsonl", "table.md", "table.csv", "best_windows.csv", "ablation.json",
                 "heatmap_miou_thr_multiotsu.png", "heatmap_cnr_none.png"):
        assert (out / name).is_file(), name
    entries = sorted((out / "store").glob("*.npz"))
    assert len(entries) == 3
    with np.load(entries[0]) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        assert z["L3"].dtype == np.float16 and z["L3"].shape == (2, 16, 16)  # only steps 0, 1 stored
    assert meta["steps"] == [0, 1] and len(meta["layers"]) == 11 and meta["recipe_digest"]
    best = res.best("miou_thr")
    assert set(best) == {"macro", "Cardiomegaly", "Pleural Effusion", "Pneumothorax"}


def test_window_from_store_equals_ground(model, dataset, uninterrupted):
    """float32 store: equal to ground_many() up to float32 round-off (U-Net batches differ);
    float16 store (the default): within its quantisation (<= 2.4e-4 of each map's range), except
    pixels that sit on the Otsu threshold."""
    res16, out, _, _, _ = uninterrupted
    exact = A.run_ablation(model, dataset, "vilouras2024", LAYERS, STEPS, POSTS, METRICS, None, progress=False,
                           store_dtype="float32", keep_heatmaps=True, overrides=BASE)
    store16 = A.AblationStore(out / "store")
    for lw, sw, post, images in [((3, 4, 6, 7), (0, 2), "multiotsu", ("a.png", "b.png")), (None, (1, 2), "none", ("a.png",))]:
        c = A.Cell(lw, sw, post)
        recipe = res16.recipe.override(steps=sw, layers=lw, threshold=post)
        for image in images:
            ss = [s for s in dataset if s.image_path.endswith(image)]
            gs = model.ground_many(ss[0].image_path, [s.phrase for s in ss], recipe, categories=[s.category for s in ss])
            for s, g in zip(ss, gs):
                hm = exact.heatmaps[(s.sample_id, c.key)]
                np.testing.assert_allclose(hm.heatmap_crop, g.heatmap_crop, atol=1e-5)
                assert (hm.mask_crop == g.mask_crop).mean() > 0.999
                direct = g.evaluate(s.boxes)
                row = next(r for r in exact.rows if r["sample_id"] == s.sample_id and r["layers"] == A.layers_label(lw)
                           and r["steps"] == A.steps_label(sw) and r["post"] == post)
                row16 = next(r for r in res16.rows if r["sample_id"] == s.sample_id and r["layers"] == A.layers_label(lw)
                             and r["steps"] == A.steps_label(sw) and r["post"] == post)
                for m in METRICS:
                    assert row[m] == pytest.approx(direct[m], abs=1e-4)
                    assert row16[m] == pytest.approx(direct[m], abs=2e-2)
                maps, _ = store16.get(A.AblationStore.key(s))
                h16 = make_heatmap(maps, recipe, model.adapter.image_size)
                same = h16.mask_crop == g.mask_crop
                assert same.mean() > 0.99
                assert np.abs(h16.heatmap_crop - g.heatmap_crop)[same].max() < 5e-3


def test_resumed_ablation_equals_uninterrupted(model, dataset, uninterrupted, tmp_path, monkeypatch):
    full = uninterrupted[0]
    fresh = model
    real_capture = fresh.capture
    seen = []

    def crash_on_second_image(prep, phrases, *args, **kwargs):
        seen.append(phrases)
        if len(seen) == 2:
            raise RuntimeError("simulated crash")
        return real_capture(prep, phrases, *args, **kwargs)

    monkeypatch.setattr(fresh, "capture", crash_on_second_image)
    with pytest.raises(RuntimeError, match="simulated crash"):
        A.run_ablation(fresh, dataset, "vilouras2024", LAYERS, STEPS, POSTS, METRICS, tmp_path, progress=False, overrides=BASE)
    store = tmp_path / "store"
    assert len(list(store.glob("*.npz"))) == 2  # image a's two phrases; nothing half-written
    (store / ".leftover.npz.999.tmp").write_bytes(b"partial")  # a crash mid-write leaves only a hidden tmp file
    monkeypatch.setattr(fresh, "capture", real_capture)
    fresh.inversions.clear()  # cold cache, so that the calls made are the full cost of image b
    resumed = A.run_ablation(fresh, dataset, "vilouras2024", LAYERS, STEPS, POSTS, METRICS, tmp_path, progress=False, overrides=BASE)
    assert resumed.calls["captured_samples"] == 1 and resumed.calls["reused_samples"] == 2
    assert resumed.calls["made"] == 1 + 2  # image b only: 1 inversion + 2 steps x 1 phrase
    assert resumed.rows == full.rows
    assert (tmp_path / "rows.jsonl").read_text() == (uninterrupted[1] / "rows.jsonl").read_text()
    # a narrower grid is served by the same entries: no U-Net call at all
    again = A.run_ablation(fresh, dataset, "vilouras2024", [None], [(1, 2)], ["none"], METRICS, tmp_path, progress=False, overrides=BASE)
    assert again.calls["made"] == 0 and again.calls["reused_samples"] == 3


def test_sweep_notebook_api(model, dataset):
    img = dataset[0].image_path  # a.png, already encoded and inverted: one conditional forward
    res = A.sweep(model, img, ["small left pleural effusion", "enlarged cardiac silhouette"],
                  [[(30, 44, 20, 18)], [(16, 30, 30, 26)]], "all;3,4,6,7", "0:2;1:2", ["none"],
                  recipe="vilouras2024", categories=["Pleural Effusion", "Cardiomegaly"], **BASE)
    assert len(res.cells) == 4 and len(res.rows) == 8
    table = res.table("miou_thr")
    assert {t["steps"] for t in table} == {"0:2", "1:2"} and all(0 <= t["macro"] <= 1 for t in table)
    hm = res.heatmaps[("small left pleural effusion", res.cells[0].key)]
    assert hm.heatmap_crop.shape == (model.adapter.image_size,) * 2
    assert "## miou_thr" in res.to_markdown()
    with pytest.raises(ValueError, match="BBM"):
        A.sweep(model, img, "x ray", [(1, 1, 5, 5)], recipe="nuetzel2025-bbm")
    with pytest.raises(ValueError, match="exceeds the grid"):
        A.sweep(model, img, "x ray", [(1, 1, 5, 5)], step_windows="0:30", recipe="vilouras2024", **BASE)


def test_layer_selectors_in_the_grid_are_this_models_indices(model, dataset):
    """'16x16' and 'up:16x16' in a layers grid name this model's layers, like the recipe field does."""
    img = dataset[0].image_path
    res = A.sweep(model, img, "small left pleural effusion", [(30, 44, 20, 18)], "16x16;up:16x16;3,4", "1:2", ["none"],
                  recipe="vilouras2024", categories=["Pleural Effusion"], **BASE)
    want16 = tuple(i.index for i in model.layers if i.resolution == 16)
    want_up16 = tuple(i.index for i in model.layers if i.resolution == 16 and i.block == "up")
    assert want16 and want_up16 and want_up16 != want16
    assert [c.layers for c in res.cells] == [want16, want_up16, (3, 4)]


def test_vilouras_table2_side_by_side(tmp_path):
    """Layout of Vilouras Table II: our macro/per-category numbers beside the published ones."""
    ref = tmp_path / "t2.csv"
    ref.write_text("# comment\nsetup,metric,Pneumonia,Edema,Avg\n"
                   '"L=6, T=20, Otsu",miou_thr,20.3,28.2,20.2\n"L=6, T=20, Otsu",cnr,0.87,0.59,0.74\n'
                   '"L=11, T=100",cnr,0.86,0.55,0.67\n')
    cell = A.Cell((2, 3, 4, 5, 6, 7), (40, 60), "otsu")
    rows = [{"category": "Pneumonia", "miou_thr": 0.25, "cnr": 1.0}, {"category": "Edema", "miou_thr": 0.15, "cnr": 0.5}]
    res = A.AblationResult("m", gk.get_recipe("vilouras2024"), "vilouras", ("miou_thr", "cnr"), [cell.layers], [cell.steps],
                           ["otsu"], [], 100, 11, [cell], [], {cell.key: aggregate(rows, ["miou_thr", "cnr"])}, {}, {}, 2)
    out_rows, md = A.vilouras_table2(res, ref)
    got = {(r["setup"], r["metric"], r["category"]): (r["ours"], r["published"]) for r in out_rows}
    assert got[("L=6, T=20, Otsu", "miou_thr", "Avg")] == (pytest.approx(20.0), 20.2)  # percent, macro
    assert got[("L=6, T=20, Otsu", "cnr", "Pneumonia")] == (1.0, 0.87)
    assert math.isnan(got[("L=11, T=100", "cnr", "Avg")][0])  # setup not in the grid
    assert "| L=6, T=20, Otsu | miou_thr | 2-7 | 40:60 | otsu | 25.0 / 20.3 | 15.0 / 28.2 | 20.0 / 20.2 |" in md
    assert A.reference_file() is not None  # shipped in groundkit/assets/reference


def test_cli_ablate_demo_on_synthetic(tmp_path):
    """A small sweep end to end: demo checkpoint, synthetic data, the `ablate` command."""
    from groundkit.cli import app
    from groundkit.data import synthetic

    if not (Path(gk.__file__).parent / "assets" / "demo" / "unet_ema").is_dir() or not hasattr(synthetic, "generate"):
        pytest.skip("demo checkpoint or synthetic generator not built")
    synthetic.generate(tmp_path / "data", n=2, seed=0, size=64)
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(app, ["ablate", "--checkpoint", "demo", "--dataset", "synthetic", "--data", str(tmp_path / "data"),
                              "--layers-grid", "all;0-2", "--timesteps-grid", "48:50", "--last-n", "1,2", "--post", "gmm,none",
                              "--metrics", "miou_fgbg,cnr", "--limit", "2", "--device", "cpu", "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "U-Net calls: 4 made" in res.output  # 2 images x 1 phrase x steps 48, 49
    assert "re-running each of the 4 windows separately = 12" in res.output
    for name in ("table.md", "table.csv", "rows.jsonl", "last_n.csv", "last_n_miou_fgbg.png", "heatmap_cnr_gmm.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "store").glob("*.npz"))) == 2
    bad = runner.invoke(app, ["ablate", "--dataset", "mscxr", "--out", str(out)])
    assert bad.exit_code == 2 and "--csv" in bad.output
