"""The CLI over the library, and the checkpoint registry (names, folders, folder options)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import groundkit as gk
from groundkit import registry
from groundkit.cli import app
from groundkit.data.images import save_png

runner = CliRunner()


@pytest.fixture()
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.random((90, 72)) * 0.3).astype(np.float32)
    img[20:40, 30:50] += 0.6
    path = tmp_path / "cxr.png"
    save_png(path, img)
    return path


def test_run_writes_outputs(tiny_sd_cxrbert, image_file, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", "-c", str(tiny_sd_cxrbert), "-i", str(image_file), "-t", "left pleural effusion",
                              "--timesteps", "45:50", "--box", "30,20,20,20", "--token-maps", "-o", str(out)])
    assert res.exit_code == 0, res.output
    heat = np.load(out / "heatmap.npy")
    assert heat.shape == (90, 72)
    assert np.isnan(heat[:5]).all() and np.isfinite(heat[45]).all()  # crop cut rows are NaN
    from PIL import Image

    assert Image.open(out / "mask.png").size == (72, 90)
    for name in ("overlay.png", "tokens.png"):
        assert (out / name).stat().st_size > 1000
    result = json.loads((out / "result.json").read_text())
    assert result["recipe"]["steps"] == [45, 50] and result["recipe"]["name"] == "nuetzel2025"
    assert result["unet_calls"] == 5 and "miou_fgbg" in result["metrics"]
    assert result["versions"]["torch"]
    assert "miou_fgbg=" in res.output


def test_run_reports_bad_input_in_one_line(tiny_sd_cxrbert, image_file, tmp_path):
    res = runner.invoke(app, ["run", "-c", str(tiny_sd_cxrbert), "-i", str(tmp_path / "nope.png"), "-t", "x"])
    assert res.exit_code == 2 and "nope.png" in res.output
    res = runner.invoke(app, ["run", "-c", str(tiny_sd_cxrbert), "-i", str(image_file), "-t", "edema", "--layers", "3,99"])
    assert res.exit_code == 2 and "layers" in res.output
    res = runner.invoke(app, ["run", "-c", "no-such-checkpoint", "-i", str(image_file), "-t", "edema"])
    assert res.exit_code == 2 and "no-such-checkpoint" in res.output


def test_checkpoints_list_names_files_sources_and_presence(monkeypatch, tmp_path):
    monkeypatch.setenv("GROUNDKIT_HOME", str(tmp_path))
    res = runner.invoke(app, ["checkpoints", "list"])
    assert res.exit_code == 0, res.output
    for name in ("monai-cxr-ldm", "sd15-cxrbert", "demo"):
        assert name in res.output
    assert "models/diffusion_model.pth" in res.output and "monai.bundle download" in res.output
    assert "missing" in res.output
    with pytest.raises(FileNotFoundError, match="diffusion_model.pth|cxr_image_synthesis"):
        registry.resolve("monai-cxr-ldm")


def test_folder_config_travels_with_weights(tiny_sd_cxrbert, tmp_path):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_sd_cxrbert, folder)
    (folder / "groundkit.yaml").write_text("recipe: nuetzel2025-bbm\nimage_size: 256\noverrides:\n  steps: [40, 50]\n")
    m = gk.load(folder)
    assert m.adapter.image_size == 256
    r = m.recipe()
    # the folder's overrides make the checkpoint's own default recipe; the published name keeps its settings
    assert r.name == "ckpt-default" and r.steps == (40, 50) and r.bbm == "mixture"
    assert m.resolve().provenance["steps"] == "checkpoint" and m.resolve().provenance["bbm"] == "recipe"
    assert m.recipe("nuetzel2025-bbm").steps == (10, 50)
    assert m.resolve("nuetzel2025-bbm", steps=(45, 50)).provenance["steps"] == "user"
    (folder / "groundkit.yaml").write_text("overrides:\n  steps: 40:50\n")  # YAML 1.1: base-60 number 2450
    with pytest.raises(ValueError, match="quotes"):
        gk.load(folder).recipe()
    (folder / "groundkit.yaml").write_text("colour: red\n")
    with pytest.raises(ValueError, match="colour"):
        gk.load(folder)


def test_third_party_adapter_registration(tiny_sd_cxrbert):
    from groundkit.families.diffusers_sd.adapter import DiffusersSDAdapter

    class MyAdapter(DiffusersSDAdapter):
        name = "my-family"

    registry.register_adapter("my-family", MyAdapter)
    assert "my-family" in registry.adapter_names()
    assert registry.get_adapter_class("my-family") is MyAdapter
    assert set(registry.adapter_names()) >= {"monai-ldm", "diffusers-sd"}
