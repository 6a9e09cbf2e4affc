"""groundkit.viz: files are written, and overlays put colour, NaN transparency and boxes where they belong."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

from groundkit import viz

GT = np.array([0, 255, 0], dtype=np.uint8)  # viz.GT_COLOR
MASK = np.array([0, 191, 255], dtype=np.uint8)  # viz.MASK_COLOR


def scene(h=300, w=400):
    """Non-square grayscale image, a heatmap hot on the left / cold on the right, NaN top strip."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = (0.25 + 0.5 * (yy / h)).astype(np.float32)  # vertical gradient
    hm = np.zeros((h, w), np.float32)
    hm[:, : w // 2] = 1.0  # hot left half
    hm[: h // 6] = np.nan  # transparent strip
    return img, hm


def png_ok(path, min_bytes=3_000, max_bytes=3_000_000):
    assert path.exists(), path
    size = path.stat().st_size
    assert min_bytes < size < max_bytes, size
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG" and im.mode == "RGB"
        return im.size


# ----------------------------------------------------------------------------------------------
# compose: pixel-exact core
# ----------------------------------------------------------------------------------------------
def test_compose_nan_transparent_hot_cold_and_blend_value():
    img, hm = scene()
    out = viz.compose(img, hm)
    assert out.shape == (300, 400, 3) and out.dtype == np.uint8
    gray = np.rint(img * 255).astype(np.uint8)
    # NaN strip: the image exactly, untouched
    assert np.array_equal(out[:50], np.repeat(gray[:50, :, None], 3, -1))
    # hot vs cold differ, and each is the documented blend
    hot = np.rint(0.5 * gray[150, 50] + 0.5 * np.array(colormaps["inferno"](1.0)[:3]) * 255)
    cold = np.rint(0.5 * gray[150, 350] + 0.5 * np.array(colormaps["inferno"](0.0)[:3]) * 255)
    assert np.abs(out[150, 50].astype(int) - hot).max() <= 1
    assert np.abs(out[150, 350].astype(int) - cold).max() <= 1
    assert np.abs(out[150, 50].astype(int) - out[150, 350].astype(int)).sum() > 150


def test_compose_boxes_drawn_on_their_edges():
    img, hm = scene()
    x, y, w, h = 220, 100, 120, 80
    out = viz.compose(img, hm, boxes=[[x, y, w, h]], line_width=2)
    for px, py in [(x, y + h // 2), (x + 1, y + h // 2), (x + w - 1, y + 10), (x + w // 2, y), (x + w // 2, y + h - 1)]:
        assert np.array_equal(out[py, px], GT), (px, py)
    for px, py in [(x - 1, y + h // 2), (x + w, y + h // 2), (x + w // 2, y - 1), (x + w // 2, y + h // 2), (x + 2, y + h // 2)]:
        assert not np.array_equal(out[py, px], GT), (px, py)


def test_compose_mask_contour_inside_mask():
    img, _ = scene()
    mask = np.zeros((300, 400), bool)
    mask[100:200, 100:250] = True
    out = viz.compose(img, None, mask=mask, line_width=2)
    assert np.array_equal(out[150, 100], MASK) and np.array_equal(out[150, 101], MASK)
    assert np.array_equal(out[100, 180], MASK) and np.array_equal(out[199, 180], MASK)
    assert not np.array_equal(out[150, 99], MASK)  # outside
    assert not np.array_equal(out[150, 175], MASK)  # interior untouched


def test_compose_accepts_uint8_torch_and_scales():
    img, hm = scene(64, 96)
    u8 = (img * 255).astype(np.uint8)
    a = viz.compose(u8, torch.from_numpy(hm), boxes=np.array([[10, 10, 20, 20]]))
    b = viz.compose(torch.from_numpy(img), hm, boxes=[[10, 10, 20, 20]])
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    big = viz.compose(img, hm, boxes=[[10, 10, 20, 20]], scale=4, line_width=2)
    assert big.shape == (256, 384, 3)
    assert np.array_equal(big[60, 40], GT) and not np.array_equal(big[60, 39], GT)  # box x=10 -> 40
    with pytest.raises(ValueError, match="one pixel grid"):
        viz.compose(img, np.zeros((10, 10)))


# ----------------------------------------------------------------------------------------------
# overlay figure
# ----------------------------------------------------------------------------------------------
def _at(fig_img: Image.Image, x: float, y: float) -> np.ndarray:
    left, top, _, _ = fig_img.info["groundkit_image_box"]
    s = fig_img.info["groundkit_scale"]
    return np.asarray(fig_img)[top + int(round(y * s)), left + int(round(x * s))]


def test_overlay_png_pixels(tmp_path):
    img, hm = scene()
    mask = np.zeros_like(hm, bool)
    mask[120:220, 40:160] = True
    box = [220, 100, 120, 80]
    path = tmp_path / "sub" / "overlay.png"
    fig = viz.overlay(img, hm, mask=mask, boxes=[box], title="small left apical pneumothorax", path=path)
    size = png_ok(path)
    assert size == fig.size and size[0] > 400 and size[1] > 300
    left, top, w, h = fig.info["groundkit_image_box"]
    assert (w, h) == (400, 300) and fig.info["groundkit_scale"] == 1.0
    gray = np.rint(img * 255).astype(np.uint8)
    # NaN strip untouched, hot and cold regions differ
    for x, y in [(20, 10), (200, 25), (380, 45)]:
        assert np.abs(_at(fig, x, y).astype(int) - int(gray[y, x])).max() <= 1
    assert np.abs(_at(fig, 50, 260).astype(int) - _at(fig, 350, 260).astype(int)).sum() > 150
    # box edge in the box colour at the right place, not one pixel outside
    assert np.array_equal(_at(fig, box[0], box[1] + 40), GT)
    assert np.array_equal(_at(fig, box[0] + box[2] - 1, box[1] + 40), GT)
    assert not np.array_equal(_at(fig, box[0] - 2, box[1] + 40), GT)
    # mask contour
    assert np.array_equal(_at(fig, 40, 170), MASK)
    # the figure saved on disk is the one returned
    with Image.open(path) as disk:
        assert np.array_equal(np.asarray(disk.convert("RGB")), np.asarray(fig))


@pytest.mark.parametrize("hw,scale", [((2000, 1500), 1024 / 2000), ((64, 48), 4.0)])
def test_overlay_rescales_for_display_and_keeps_boxes_in_place(tmp_path, hw, scale):
    h, w = hw
    img = np.full((h, w), 0.5, np.float32)
    hm = np.full((h, w), np.nan, np.float32)
    hm[h // 2:, :] = 1.0
    box = [w // 4, h // 4, w // 2, h // 2]
    fig = viz.overlay(img, hm, boxes=[box], path=tmp_path / "o.png")
    png_ok(tmp_path / "o.png")
    assert fig.info["groundkit_scale"] == pytest.approx(scale)
    assert np.array_equal(_at(fig, box[0], h // 2), GT)  # left edge
    assert np.abs(_at(fig, w // 2, h // 8).astype(int) - 128).max() <= 1  # NaN -> gray 0.5
    assert np.abs(_at(fig, w // 2, 7 * h // 8).astype(int) - 128).max() > 20  # hot blended


def test_overlay_without_path_returns_image_only(tmp_path):
    img, hm = scene(256, 256)
    out = viz.overlay(img, hm, title=None, colorbar=False)
    assert isinstance(out, Image.Image) and out.size[0] >= 256
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# grids, tables, curves
# ----------------------------------------------------------------------------------------------
def test_token_grid_panels(tmp_path):
    img, _ = scene()
    rng = np.random.default_rng(0)
    maps = {w: rng.random((16, 16)) for w in ["small", "left", "apical", "pneumo", "##thorax"]}
    maps["apical"][:] = np.nan
    path = tmp_path / "grid.png"
    out = viz.token_grid(img, maps, path, boxes=[[20, 20, 50, 50]], title="small left apical pneumothorax")
    w, h = png_ok(path)
    assert w > 3 * 256 and h > 2 * 150  # 6 panels -> 3 x 2
    assert out.size == (w, h)
    with pytest.raises(ValueError):
        viz.token_grid(img, {}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="normalize"):
        viz.token_grid(img, {"a": np.zeros((4, 4))}, None, normalize="bogus")


def test_gallery(tmp_path):
    img, hm = scene()
    mask = np.zeros_like(hm, bool)
    mask[100:200, 50:150] = True
    items = [(img, hm, [[10, 10, 50, 60]], "left lower lobe atelectasis"),
             (img, None, None, "no heatmap"),
             (img, hm, [], "a caption long enough that it has to wrap over more than a single line of text", mask)]
    viz.gallery(items, tmp_path / "gallery.png", ncols=2)
    w, h = png_ok(tmp_path / "gallery.png")
    assert w > 2 * 320 and h > 2 * 200
    with pytest.raises(ValueError, match="expected"):
        viz.gallery([(img, hm)], tmp_path / "bad.png")


def test_ablation_heatmap(tmp_path):
    v = np.arange(12, dtype=float).reshape(3, 4) / 12
    v[1, 2] = np.nan
    viz.ablation_heatmap(v, ["last 10", "last 20", "last 40"], ["L3", "L4", "L6", "L7"], "mIoU", tmp_path / "abl.png",
                         xlabel="layer", ylabel="steps")
    png_ok(tmp_path / "abl.png")
    with pytest.raises(ValueError):
        viz.ablation_heatmap(v, ["a"], ["b"], "t", tmp_path / "bad.png")


def test_category_bars(tmp_path):
    cats = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Lung Opacity", "Pleural Effusion",
            "Pneumonia", "Pneumothorax"]
    table = {c: {"monai-ldm": 0.1 * i, "sd15-cxrbert": (0.05 * i, 0.02)} for i, c in enumerate(cats)}
    reference = {c: {"monai-ldm": 0.1 * i + 0.05, "BioViL": 0.3} for i, c in enumerate(cats)}
    reference["Edema"] = 0.4  # plain number -> group-centre marker
    viz.category_bars(table, "cnr", tmp_path / "bars.png", reference=reference)
    w, h = png_ok(tmp_path / "bars.png")
    assert w >= 640 and h >= 400


def test_curve(tmp_path):
    xs = list(range(5, 55, 5))
    viz.curve(xs, {"cnr": np.linspace(0, 1, 10), "miou": [0.2] * 9 + [np.nan]}, "last n steps", "metric",
              tmp_path / "curve.png", hlines={"published": 0.5})
    viz.curve({"train": [0, 1, 2], "val": [0, 2]}, {"train": [1.0, 0.5, 0.25], "val": [1.1, 0.4]}, "epoch", "loss",
              tmp_path / "loss.png", logy=True)
    png_ok(tmp_path / "curve.png")
    png_ok(tmp_path / "loss.png")
    with pytest.raises(ValueError):
        viz.curve([1, 2], {"a": [1, 2, 3]}, "x", "y", tmp_path / "bad.png")
