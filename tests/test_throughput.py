"""Throughput: cross-image batching gives every image its one-by-one maps, the benchmark runner's overlapped
pipeline gives the sequential rows in the same order (errors and resume included), and the forward counts
of docs/speed-throughput.md.

Tiny random models (tests/builders.py) on one CPU thread; a few seconds each.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import served_at

import groundkit as gk

FAST_VILOURAS = dict(grid="stride:50", steps=(3, 6))  # 20-entry grid, 3 recorded steps
PHRASES = ["left pleural effusion", "moderate cardiomegaly", "right apical pneumothorax", "bibasal atelectasis",
           "small left pneumothorax"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def monai_tree(tiny_monai_bundle):
    return tiny_monai_bundle


@pytest.fixture(scope="module")
def sd_tree(tiny_sd_cxrbert, tmp_path_factory):
    return served_at(tiny_sd_cxrbert, 64, tmp_path_factory)


def _image(seed, h=72, w=64):
    rng = np.random.default_rng(seed)
    img = rng.random((h, w)).astype(np.float32) * 0.2
    img[h // 4 + seed % 5 : h // 2 + seed % 5, w // 4 : w // 2] += 0.7
    return img


def _items(n, per_image=1, seed0=0):
    return [(_image(seed0 + i), [PHRASES[(i + k) % len(PHRASES)] for k in range(per_image)]) for i in range(n)]


def _one_by_one(tree, items, recipe, **kw):
    m = gk.load(tree, device="cpu")
    return [m.ground_many(img, ph, recipe, **kw) for img, ph in items], m


def _assert_same(batched, single, atol=1e-5, same_calls=True):
    """Same maps; the same batch items per phrase (BBM: the same in total, its text-pass shares differ)."""
    assert len(batched) == len(single)
    for gb, gs in zip(batched, single):
        assert [g.phrase for g in gb] == [g.phrase for g in gs]
        for a, b in zip(gb, gs):
            np.testing.assert_allclose(a.heatmap_crop, b.heatmap_crop, atol=atol, rtol=0)
            if same_calls:
                assert a.info["unet_calls"] == pytest.approx(b.info["unet_calls"])
    total = [sum(g.info["unet_calls"] for g in gs) for gs in (sum(batched, []), sum(single, []))]
    assert total[0] == pytest.approx(total[1])


def test_batched_inversion_equals_one_by_one(monai_tree):
    items = _items(5, per_image=2)
    kw = dict(threshold="none", batch_size=4, **FAST_VILOURAS)
    single, _ = _one_by_one(monai_tree, items, "vilouras2024", **kw)
    m = gk.load(monai_tree, device="cpu")
    batched = m.ground_batch(items, "vilouras2024", images_per_batch=4, **kw)
    _assert_same(batched, single)
    # the inversion trajectories themselves
    from groundkit.engine import passes

    preps = [m.prepare(img) for img, _ in items]
    grid = m.recipe("vilouras2024", **FAST_VILOURAS).timesteps(m.adapter.schedule.num_train_timesteps)
    many, calls, forwards = passes.inversion_latents_many(m.adapter, grid, [p.z0 for p in preps], [3, 4, 5], m.null(), 4)
    assert calls == 5 * 5 and forwards == 2 * 5  # 5 images x 5 steps, in 2 forwards per step
    for p, lat in zip(preps, many):
        one, _, _ = passes.inversion_latents(m.adapter, grid, p.z0, [3, 4, 5], m.null())
        for s in (3, 4, 5):
            torch.testing.assert_close(lat[s], one[s], rtol=0, atol=1e-5)


def test_batched_gt_noised_and_bbm_equal_one_by_one(sd_tree):
    items = _items(4, per_image=2, seed0=10)
    items[2] = (items[2][0], [items[0][1][0], "left lower lobe consolidation"])  # a phrase shared by two images
    for recipe, kw in (("nuetzel2025", dict(grid="stride:100", steps=(6, 10), threshold="none")),
                       ("nuetzel2025-bbm", dict(grid="stride:100", steps=(7, 10), bbm_steps=(7, 10)))):
        single, _ = _one_by_one(sd_tree, items, recipe, batch_size=8, **kw)
        m = gk.load(sd_tree, device="cpu")
        batched = m.ground_batch(items, recipe, batch_size=8, **kw)
        _assert_same(batched, single, same_calls=recipe == "nuetzel2025")
        if recipe == "nuetzel2025-bbm":
            for gb, gs in zip(batched, single):
                for a, b in zip(gb, gs):
                    np.testing.assert_array_equal(a.mask, b.mask)


# ------------------------------------------------------------------------------------------------ runner
@pytest.fixture(scope="module")
def bench_data(tmp_path_factory):
    from test_benchmark import write_mscxr

    from groundkit.bench.datasets import load_dataset

    root = tmp_path_factory.mktemp("mscxr_tp")
    return load_dataset("mscxr", csv=write_mscxr(root), images=root)


RUN = dict(recipe="nuetzel2025", overrides={"steps": "48:50", "tokens": "all", "batch_size": 2}, progress=False,
           tables=False, page=False)


def _key_metrics(rows):
    from groundkit.bench.rows import row_key

    return [(row_key(r), r["error"], [r.get(m) for m in ("miou_fgbg", "cnr", "top1", "auroc")], r["unet_calls"])
            for r in rows]


@pytest.fixture(scope="module")
def sequential(sd_tree, bench_data, tmp_path_factory):
    from groundkit.bench.runner import run_benchmark

    m = gk.load(sd_tree, device="cpu")
    return run_benchmark([m], samples=bench_data, out_dir=tmp_path_factory.mktemp("seq"), cross_image=False, workers=0, **RUN)


@pytest.mark.parametrize("workers", [1, 2])
def test_overlapped_runner_gives_the_sequential_rows(sd_tree, bench_data, sequential, tmp_path, workers):
    import json

    from groundkit.bench.rows import read_rows
    from groundkit.bench.runner import run_benchmark

    m = gk.load(sd_tree, device="cpu")
    res = run_benchmark([m], samples=bench_data, out_dir=tmp_path, workers=workers, **RUN)
    rows = read_rows(tmp_path / "rows.jsonl")
    assert [r["sample_id"] for r in rows] == ["d-a-0", "d-a-1", "d-b-0", "d-bad-0", "d-c-0", "d-c-1"]
    assert _key_metrics(rows) == _key_metrics(sequential.rows)
    assert [r["sample_id"] for r in res.errors] == ["d-bad-0"] and rows[3]["error"]
    assert rows[3]["error"] == sequential.rows[3]["error"]  # the same error row as one image after the other
    session = json.loads((tmp_path / "run.json").read_text())["sessions"][-1]
    assert session["workers"] == workers and set(session["stages"]) == {"unet", "post", "prefetch", "wall"}
    assert session["stages"]["unet"] > 0 and session["stages"]["post"] > 0


def test_overlapped_runner_resumes_after_a_crash_in_a_worker(sd_tree, bench_data, sequential, tmp_path, monkeypatch):
    from groundkit.bench.rows import read_rows
    from groundkit.bench.runner import run_benchmark

    m = gk.load(sd_tree, device="cpu")
    real = m.ground_many

    def crash_on_c(image, phrases, *a, **k):  # runs in a post-processing thread
        if "d-c" in str(image):
            raise KeyboardInterrupt
        return real(image, phrases, *a, **k)

    monkeypatch.setattr(m, "ground_many", crash_on_c)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark([m], samples=bench_data, out_dir=tmp_path, **RUN)
    monkeypatch.setattr(m, "ground_many", real)
    assert [r["sample_id"] for r in read_rows(tmp_path / "rows.jsonl")] == ["d-a-0", "d-a-1", "d-b-0", "d-bad-0"]
    final = run_benchmark([m], samples=bench_data, out_dir=tmp_path, **RUN)
    assert final.new_rows == 2 and final.skipped == 4
    assert _key_metrics(read_rows(tmp_path / "rows.jsonl")) == _key_metrics(sequential.rows)


def test_a_failing_chunk_falls_back_to_one_by_one(sd_tree, bench_data, sequential, tmp_path, monkeypatch):
    from groundkit.bench.rows import read_rows
    from groundkit.bench.runner import run_benchmark

    m = gk.load(sd_tree, device="cpu")

    def boom(*a, **k):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(m, "precapture", boom)
    run_benchmark([m], samples=bench_data, out_dir=tmp_path, **RUN)
    assert _key_metrics(read_rows(tmp_path / "rows.jsonl")) == _key_metrics(sequential.rows)


# ------------------------------------------------------------------------------------------------ counting
def test_forwards_per_phrase_with_cross_image_batching(monai_tree):
    """Vilouras at 1 phrase/image over 16 images, batch 8: the 16 inversions share forwards 8 at a time."""
    items = _items(16, per_image=1, seed0=20)
    m = gk.load(monai_tree, device="cpu")
    kw = dict(batch_size=8, **FAST_VILOURAS)  # 5 inversion forwards per image alone, 3 conditional items per phrase
    one = [m.ground_many(img, ph, "vilouras2024", **kw)[0] for img, ph in items[:2]]
    assert one[0].info["unet_forwards"] == 5 + 1
    m = gk.load(monai_tree, device="cpu")
    gs = m.ground_batch(items, "vilouras2024", **kw)
    total = sum(g[0].info["unet_forwards"] for g in gs)
    assert total == pytest.approx(2 * 5 + 48 / 8)  # 2 chunks x 5 inversion forwards + 48 conditional items / 8
    assert sum(g[0].info["unet_calls"] for g in gs) == 16 * (5 + 3)  # the same batch items as one by one


def test_a_text_pass_phrase_batch_larger_than_the_batch_size_is_split(sd_tree):
    """BBM's text pass runs at most batch_size phrases per call on CPU (batch_size / 2 on CUDA): more phrases
    mean more calls, never a larger forward; the maps stay the same."""
    img = _image(3)
    kw = dict(grid="stride:100", steps=(8, 10), bbm_steps=(8, 10), tokens="all")
    m = gk.load(sd_tree, device="cpu")
    whole = m.ground_many(img, PHRASES[:3], "nuetzel2025-bbm", batch_size=8, **kw)
    m = gk.load(sd_tree, device="cpu")
    seen = []
    real = m.adapter.unet

    def spy(z, t, ctx):
        seen.append(z.shape[0])
        return real(z, t, ctx)

    m.adapter.unet = spy
    split = m.ground_many(img, PHRASES[:3], "nuetzel2025-bbm", batch_size=2, **kw)
    m.adapter.unet = real
    assert max(seen) <= 2 * 2  # a paired text-pass step: 2 items per phrase, at most batch_size phrases
    assert split[0].info["unet_forwards"] > whole[0].info["unet_forwards"]
    for a, b in zip(whole, split):
        np.testing.assert_allclose(a.heatmap_crop, b.heatmap_crop, atol=1e-5, rtol=0)
