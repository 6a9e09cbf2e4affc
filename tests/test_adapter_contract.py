"""The Adapter contract, checked on every registered model family (as timm tests every listed model and
diffusers' PipelineTesterMixin every pipeline with tiny dummy components).

``toy-family`` is a third-party family written from the Protocol alone in ``tests/plugins`` and found
through its ``groundkit.adapters`` entry point (conftest puts the plugin folder on sys.path): it must
declare its options and files, load from a checkpoints.yaml, pass ``groundkit checkpoints verify`` and
this whole suite, like the built-in families.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import groundkit as gk
from groundkit.core.adapter import Adapter, Component
from groundkit.core.geometry import Geometry
from groundkit.core.types import TextBatch
from groundkit.engine.recorder import Recorder
from groundkit.verify import verify_checkpoint

PLUGINS = Path(__file__).resolve().parent / "plugins"


def _build(name: str, root: Path, layout: str | None = None) -> Path:
    """A tiny checkpoint of the family in its published on-disk layout (``layout``: one of several the family
    serves; its checkpoint options go into the folder's groundkit.yaml, as a checkpoints.yaml entry would set them)."""
    if name == "monai-ldm":
        from builders import build_monai_bundle

        folder = build_monai_bundle(root, tiny=True)
        (folder / "groundkit.yaml").write_text("image_size: 64\n")
        return folder
    if name == "diffusers-sd" and layout == "radedit":
        import yaml

        from groundkit.families.diffusers_sd.testing_radedit import build_radedit, radedit_entry

        folder = build_radedit(root, tiny=True)
        options = {k: v for k, v in radedit_entry(folder, image_size=64).items() if k != "path"}
        (folder / "groundkit.yaml").write_text(yaml.safe_dump(options))
        return folder
    if name == "diffusers-sd" and layout in ("roentgen", "sd2-v"):
        from groundkit.families.diffusers_sd.testing_roentgen import build_sd_clip

        folder = build_sd_clip(root, tiny=True, variant="sd1" if layout == "roentgen" else "sd2-v", name=layout)
        (folder / "groundkit.yaml").write_text("image_size: 64\n")
        return folder
    if name == "diffusers-sd":
        from builders import build_sd_cxrbert

        folder = build_sd_cxrbert(root, tiny=True)
        (folder / "groundkit.yaml").write_text("image_size: 64\n")
        return folder
    if name == "toy-family":
        import groundkit_toy_family

        return groundkit_toy_family.build(root / "toy")
    pytest.fail(f"family {name!r} is registered but the contract suite has no tiny builder for it: add one")


ADAPTERS = gk.list_adapters()
# families that serve several published layouts are exercised with each (diffusers-sd: Nuetzel's SD-1.5 +
# CXR-BERT, RadEdit's U-Net + SDXL VAE + BioViL-T, RoentGen's SD 1.x + CLIP, SD 2.x v-prediction + CLIP)
LAYOUTS = {"diffusers-sd": [None, "radedit", "roentgen", "sd2-v"]}
CASES = [f"{a}:{lay}" if lay else a for a in ADAPTERS for lay in LAYOUTS.get(a, [None])]


def test_the_suite_sees_the_plugin_and_the_builtins():
    assert {"monai-ldm", "diffusers-sd", "toy-family"} <= set(ADAPTERS)


@pytest.fixture(scope="module", params=CASES)
def family(request, tmp_path_factory):
    name, _, layout = request.param.partition(":")
    folder = _build(name, tmp_path_factory.mktemp(request.param.replace(":", "-")), layout or None)
    cfg = folder.parent / "checkpoints.yaml"
    cfg.write_text(f"checkpoints:\n  tiny-{name}:\n    adapter: {name}\n    path: {folder}\n    recipe: nuetzel2025\n"
                   f"    source: built by the contract suite\n")
    model = gk.load(f"tiny-{name}", device="cpu", checkpoints_file=cfg)
    return name, folder, cfg, model


def _image(seed=0, h=70, w=60):
    rng = np.random.default_rng(seed)
    img = rng.random((h, w)).astype(np.float32) * 0.3
    img[10:30, 30:50] += 0.6
    return img


def test_declares_the_protocol(family):
    name, folder, _, model = family
    a = model.adapter
    cls = type(a)
    assert isinstance(a, Adapter) and cls.name == name
    assert isinstance(cls.options, dict) and all(isinstance(k, str) and isinstance(v, str) and v for k, v in cls.options.items())
    assert cls.default_recipe in gk.list_recipes()
    assert cls.detect(folder)


def test_declared_files_exist_and_verify(family):
    name, folder, cfg, _ = family
    comps = type(family[3].adapter).components({"path": str(folder)})
    assert comps and all(isinstance(c, Component) for c in comps)
    assert all(f.is_relative_to(folder) for c in comps for f in c.files[:1]), "a family's files lie in its folder"
    assert any(c.kind == "weights" and c.build is not None for c in comps), "at least one deep-checked weights file"
    report = verify_checkpoint(f"tiny-{name}", checkpoints_file=cfg)
    assert report.ok, report.text()
    assert report.keys and all(k.ok for k in report.keys)
    env = dict(os.environ, PYTHONPATH=f"{PLUGINS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "groundkit", "checkpoints", "verify", f"tiny-{name}", "--checkpoints-file", str(cfg)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_layers_are_canonical(family):
    layers = family[3].adapter.cross_attention_layers()
    assert [info.index for info in layers] == list(range(len(layers))) and layers
    assert len({info.name for info in layers}) == len(layers)
    assert all(info.resolution > 0 and info.block in ("down", "mid", "up") for info in layers)


def test_images_and_text_encode_consistently(family):
    a = family[3].adapter
    pixels, geo = a.preprocess(_image())
    assert isinstance(geo, Geometry) and pixels.shape[0] == 1 and pixels.shape[-2:] == (a.image_size, a.image_size)
    mean, std = a.encode_posterior(pixels)
    assert mean.shape == (1, a.latent_channels, a.latent_size, a.latent_size)
    assert std is None or std.shape == mean.shape
    text = a.encode_text(["small left pleural effusion", "cardiomegaly"])
    assert isinstance(text, TextBatch)
    b, n, d = text.embeddings.shape
    assert b == 2 and len(text.tokens) == len(text.word_ids) == 2 and all(len(t) == n for t in text.tokens)
    assert text.special.shape == (2, n) and len(text.word_spans[0]) == 4
    assert a.encode_unconditional().shape == (1, n, d)
    out = a.unet(mean.repeat(2, 1, 1, 1), torch.tensor([500, 10]), text.embeddings)
    assert out.shape == (2, a.latent_channels, a.latent_size, a.latent_size) and torch.isfinite(out).all()


def test_capture_reports_probabilities_of_every_layer(family):
    a = family[3].adapter
    layers = a.cross_attention_layers()
    rec = Recorder(layers)
    text = a.encode_text(["left pleural effusion"])
    n = text.embeddings.shape[1]
    mean, _ = a.encode_posterior(a.preprocess(_image())[0])
    with a.capture(rec), rec.armed([("p", 0)], torch.ones(1, 1, n, device=a.device)), torch.no_grad():
        a.unet(mean, torch.tensor([300]), text.embeddings)
    for info in layers:
        m = rec.maps[(("p", 0), info.index)]  # all tokens summed: probabilities sum to one at every pixel
        assert m.shape == (1, info.resolution, info.resolution)
        torch.testing.assert_close(m, torch.ones_like(m), atol=1e-4, rtol=0)
    with torch.no_grad():  # capture leaves the model as it was
        before = a.unet(mean, torch.tensor([300]), text.embeddings)
        with a.capture(Recorder(layers)):
            during = a.unet(mean, torch.tensor([300]), text.embeddings)
    torch.testing.assert_close(before, during, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("recipe", ["nuetzel2025-fast", "vilouras2024-fast"])
def test_grounds_end_to_end_with_portable_recipes(family, recipe):
    model = family[3]
    over = {"grid": "stride:50", "steps": (2, 4)} if recipe.startswith("vilouras") else {"steps": (48, 50)}
    if recipe.startswith("vilouras") and not any(i.resolution == 16 for i in model.layers):
        over["layers"] = "all"
    g = model.ground(_image(), "small left pleural effusion", recipe, category="Pleural Effusion", **over)
    crop = g.heatmap_crop
    assert crop.shape == (model.adapter.image_size,) * 2 and np.isfinite(crop).all() and 0 <= crop.min() and crop.max() <= 1
    assert g.heatmap.shape == (70, 60) and g.mask.shape == (70, 60)
    assert g.info["unet_calls"] > 0 and g.info["recipe_provenance"]["name"] == recipe
