"""Core: adapters load the published layouts, capture is exact, optimised schedules equal naive ones."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import served_at

import groundkit as gk
from groundkit.engine import schedules
from groundkit.engine.recorder import Recorder
from groundkit.families.common import ordered_cross_attention

FAST_VILOURAS = dict(grid="stride:50", steps=(3, 6))  # 20-entry grid, 3 recorded steps
FAST_NUETZEL = dict(steps=(45, 50))


@pytest.fixture(scope="module")
def monai_model(tiny_monai_bundle):
    return gk.load(tiny_monai_bundle, device="cpu")


@pytest.fixture(scope="module")
def sd_model(sd128_tree):
    return gk.load(sd128_tree, device="cpu")


@pytest.fixture(scope="module")
def sd128_tree(tiny_sd_cxrbert, tmp_path_factory):
    """The tiny SD tree served at 128 px (latents 16x16): the engine's behaviour, at 1/16 of the 512-px cost."""
    return served_at(tiny_sd_cxrbert, 128, tmp_path_factory)


def _image(h=80, w=64, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.random((h, w)).astype(np.float32) * 0.2
    img[h // 4 : h // 2, w // 4 : w // 2] += 0.7
    return img


def _check_heatmap(g, shape):
    heat = g.heatmap
    assert heat.shape == shape
    pad_top, pad_bottom, pad_left, pad_right = g.geometry.pad
    inside = heat[pad_top : shape[0] - pad_bottom, pad_left : shape[1] - pad_right]
    assert np.isfinite(inside).all()
    assert inside.min() >= 0 and inside.max() <= 1
    if pad_top + pad_bottom:
        assert np.isnan(heat[:pad_top]).all() and np.isnan(heat[shape[0] - pad_bottom :]).all()
    assert g.mask.shape == shape and g.mask.dtype == bool
    assert not g.mask[:pad_top].any()


def test_monai_bundle_grounds_non_square_image(monai_model):
    assert monai_model.adapter.name == "monai-ldm"
    assert len(monai_model.layers) == 11
    g = monai_model.ground(_image(80, 64), "right lower lobe consolidation", "vilouras2024", **FAST_VILOURAS)
    _check_heatmap(g, (80, 64))
    assert g.recipe.threshold == "multiotsu"
    # published cost model: (end - 1) unconditional inversion calls + one conditional call per recorded step
    assert g.info["unet_calls"] == 5 + 3
    # Otsu output is continuous inside the mask and zero outside it
    crop = g.heatmap_crop
    assert (crop[~g.mask_crop] == 0).all() and (crop[g.mask_crop] > 0).all()


@pytest.mark.parametrize("recipe", ["nuetzel2025", "nuetzel2025-bbm"])
def test_sd_cxrbert_grounds(sd_model, recipe):
    assert sd_model.adapter.name == "diffusers-sd"
    assert len(sd_model.layers) == 16
    over = dict(FAST_NUETZEL, bbm_steps=(0, 4)) if recipe.endswith("bbm") else FAST_NUETZEL
    g = sd_model.ground(_image(64, 96), "small left apical pneumothorax", recipe, **over)
    _check_heatmap(g, (64, 96))
    if recipe.endswith("bbm"):
        assert g.info["bbm_similarity"] is not None and 0 <= g.info["bbm_similarity"] <= 1
        # GT pass over the union of windows (steps 0..3 and 45..49) + text pass with CFG over 4 grid steps: 2 x 4
        # minus the last step's unconditional half (it only feeds an unused move) and the first step's (shared per
        # seed: computed once, +1)
        assert g.info["unet_calls"] == 9 + 2 * 4 - 2 + 1
        again = sd_model.ground(_image(64, 96), "left pleural effusion", recipe, **over)  # same seed: the first step's
        assert again.info["unet_calls"] == 9 + 2 * 4 - 2  # unconditional prediction is reused
    else:
        assert g.info["unet_calls"] == 5


def test_capture_probabilities_sum_to_one(sd_model):
    adapter = sd_model.adapter
    layers = adapter.cross_attention_layers()
    rec = Recorder(layers)
    text = adapter.encode_text(["left pleural effusion"])
    n = text.embeddings.shape[1]
    ones = torch.ones(1, 1, n)  # un-normalised: summing over every key token
    z = torch.randn(1, adapter.unet_model.config.in_channels, adapter.latent_size, adapter.latent_size)
    with adapter.capture(rec), rec.armed([("p", 0)], ones):
        adapter.unet(z, torch.tensor([500]), text.embeddings)
    assert len(rec.maps) == 16
    for (key, layer), m in rec.maps.items():
        assert m.shape == (1, layers[layer].resolution, layers[layer].resolution)
        torch.testing.assert_close(m, torch.ones_like(m), atol=1e-5, rtol=0)
    # capture is removed on exit: the original processors are back
    assert not any(type(p).__name__ == "CaptureAttnProcessor" for p in adapter.unet_model.attn_processors.values())


def test_monai_capture_restores_flags(monai_model):
    unet = monai_model.adapter.unet_model
    before = [(m.save_attn, m.use_flash_attention) for n, m in unet.named_modules() if n.endswith("attn2")]
    monai_model.ground(_image(64, 64), "cardiomegaly", "vilouras2024", **FAST_VILOURAS)
    after = [(m.save_attn, m.use_flash_attention) for n, m in unet.named_modules() if n.endswith("attn2")]
    assert before == after


def test_real_size_layer_order_and_resolutions():
    """The canonical lists of docs/protocols.md §2, from the real configs, built on the meta device."""
    from diffusers import UNet2DConditionModel
    from monai.networks.nets import DiffusionModelUNet

    with torch.device("meta"):
        monai_unet = DiffusionModelUNet(
            spatial_dims=2, in_channels=3, out_channels=3, channels=[256, 512, 768], num_res_blocks=2,
            attention_levels=[False, True, True], num_head_channels=[0, 512, 768], with_conditioning=True,
            transformer_num_layers=1, cross_attention_dim=1024, norm_eps=1e-6,
        )
        sd_unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2, attention_head_dim=8, cross_attention_dim=768,
        )
    m = ordered_cross_attention(monai_unet, 64, 3)
    assert [(i.name.rsplit(".transformer_blocks", 1)[0], i.resolution) for i in m] == [
        ("down_blocks.1.attentions.0", 32), ("down_blocks.1.attentions.1", 32),
        ("down_blocks.2.attentions.0", 16), ("down_blocks.2.attentions.1", 16),
        ("middle_block.attention", 16),
        ("up_blocks.0.attentions.0", 16), ("up_blocks.0.attentions.1", 16), ("up_blocks.0.attentions.2", 16),
        ("up_blocks.1.attentions.0", 32), ("up_blocks.1.attentions.1", 32), ("up_blocks.1.attentions.2", 32),
    ]
    assert [m[i].resolution for i in (3, 4, 6, 7)] == [16, 16, 16, 16]  # the Vilouras window
    s = ordered_cross_attention(sd_unet, 64, 4)
    assert [i.resolution for i in s] == [64, 64, 32, 32, 16, 16, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64]
    assert s[6].name.startswith("mid_block") and s[7].name.startswith("up_blocks.1")


def test_batched_gt_noised_equals_one_step_at_a_time(sd128_tree):
    m1 = gk.load(sd128_tree, device="cpu")
    img = _image(64, 64, seed=3)
    a = m1.ground(img, "left lower lobe atelectasis", "nuetzel2025", steps=(40, 50), batch_size=16)
    b = m1.ground(img, "left lower lobe atelectasis", "nuetzel2025", steps=(40, 50), batch_size=1)
    assert a.info["unet_forwards"] == 1 and b.info["unet_forwards"] == 10
    np.testing.assert_allclose(a.heatmap_crop, b.heatmap_crop, atol=1e-5)


def test_truncated_inversion_equals_full_inversion(monai_model):
    adapter = monai_model.adapter
    grid = gk.get_recipe("vilouras2024").override(grid="stride:50").timesteps()
    pixels, _ = adapter.preprocess(_image(64, 64))
    z0 = adapter.encode_image(pixels)
    null = adapter.encode_text([""]).embeddings
    with torch.no_grad():
        kept = schedules.inversion_trajectory(adapter.unet, adapter.schedule, z0, grid, {4, 5, 6}, null)
        full = schedules.inversion_trajectory(adapter.unet, adapter.schedule, z0, grid, set(range(len(grid))), null)
    assert sorted(kept) == [4, 5, 6]
    for i in kept:
        torch.testing.assert_close(kept[i], full[i], rtol=1e-5, atol=1e-5)
    # the naive published loop: z_{i+1} = sqrt(a') x0 + sqrt(1-a') eps from the v-prediction at t_i
    z = z0.clone()
    abar = adapter.schedule.alphas_cumprod
    with torch.no_grad():
        for i in range(6):
            v = adapter.unet(z, torch.tensor([grid[i]]), null)
            a, a2 = abar[grid[i]].float(), abar[grid[i + 1]].float()
            x0 = a.sqrt() * z - (1 - a).sqrt() * v
            eps = a.sqrt() * v + (1 - a).sqrt() * z
            z = a2.sqrt() * x0 + (1 - a2).sqrt() * eps
    torch.testing.assert_close(kept[6], z, rtol=1e-4, atol=1e-5)


def test_same_seed_same_heatmap_and_seed_matters(sd128_tree):
    img = _image(64, 64, seed=5)
    a = gk.load(sd128_tree, device="cpu").ground(img, "right upper lobe pneumonia", "nuetzel2025", seed=1, **FAST_NUETZEL)
    b = gk.load(sd128_tree, device="cpu").ground(img, "right upper lobe pneumonia", "nuetzel2025", seed=1, **FAST_NUETZEL)
    c = gk.load(sd128_tree, device="cpu").ground(img, "right upper lobe pneumonia", "nuetzel2025", seed=2, **FAST_NUETZEL)
    np.testing.assert_array_equal(a.heatmap_crop, b.heatmap_crop)
    assert not np.array_equal(a.heatmap_crop, c.heatmap_crop)


def test_ground_many_equals_ground(monai_model):
    img = _image(72, 64, seed=7)
    phrases = ["left pleural effusion", "moderate cardiomegaly", "right apical pneumothorax"]
    # compare the continuous maps: a pixel at the Otsu threshold may flip with batch-size rounding
    many = monai_model.ground_many(img, phrases, "vilouras2024", threshold="none", **FAST_VILOURAS)
    # one unconditional trajectory shared by all phrases: 5 + 3 x 3 conditional calls
    assert many[0].info["unet_calls_total"] == 5 + 9
    for phrase, g in zip(phrases, many):
        single = monai_model.ground(img, phrase, "vilouras2024", threshold="none", **FAST_VILOURAS)
        assert single.info["cache"]["inversion"] == 1  # the trajectory was cached per image
        np.testing.assert_allclose(g.heatmap_crop, single.heatmap_crop, atol=1e-5)


def test_overrides_are_validated(sd_model):
    with pytest.raises(ValueError, match="layers"):
        sd_model.ground(_image(), "edema", "nuetzel2025", layers=(3, 99))
    with pytest.raises(ValueError, match="steps"):
        sd_model.ground(_image(), "edema", "nuetzel2025", steps=(10, 60))
    with pytest.raises(ValueError, match="unknown recipe field"):
        sd_model.ground(_image(), "edema", "nuetzel2025", colour="red")


def test_token_maps_per_word(sd_model):
    g = sd_model.ground(_image(64, 64), "left basal effusion", "nuetzel2025", token_maps=True, **FAST_NUETZEL)
    assert set(g.token_maps) == {"left", "basal", "effusion"}
    for m in g.token_maps.values():
        assert m.shape == (64, 64) and np.nanmax(m) <= 1


def test_fast_recipes_only_change_the_timestep_window():
    """The -fast variants are the faithful recipes with fewer U-Net calls: same fields otherwise, and the
    Vilouras variant covers the same noise levels on a coarser grid."""
    from groundkit.recipes import RECIPES

    for name, fields in (("vilouras2024", {"grid", "steps"}), ("nuetzel2025", {"steps"})):
        faithful, fast = RECIPES[name].to_dict(), RECIPES[name + "-fast"].to_dict()
        assert {k for k in faithful if faithful[k] != fast[k]} == fields | {"name"}
        t_faithful = RECIPES[name].timesteps(1000)[slice(*RECIPES[name].steps)]
        t_fast = RECIPES[name + "-fast"].timesteps(1000)[slice(*RECIPES[name + "-fast"].steps)]
        assert len(t_fast) < len(t_faithful) and set(t_fast) <= set(range(min(t_faithful), max(t_faithful) + 1))
