"""Hostile and careless inputs, round 2 (issue 24): every one is refused before any work, quickly, in one message
that names the file / field / argument and what is allowed. The inputs are built here: recipe values that would
build huge lists or fail deep in scipy / scikit-learn, YAML alias bombs and values of the wrong type, image headers
that declare too many pixels, broken plugins, wrong objects handed to ``gk.from_diffusers``, and component folders
that are symbolic links leaving the checkpoint folder."""
from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import groundkit as gk
from clitools import one_error_line, run_cli
from groundkit import registry
from groundkit.core.safeload import CheckpointError
from groundkit.data.images import load_image
from groundkit.recipes import FIELDS, Recipe, check_overrides

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "groundkit" / "assets" / "demo"
HANG_S = 60.0  # a hang guard, not a speed target


_cli, _one_error_line = run_cli, one_error_line


def _refused(fn, *args, exc=ValueError, **kw) -> str:
    """The call raises ``exc`` (no work first: a hostile value would otherwise build gigabytes or run for minutes,
    which the generous hang guard catches; the timings themselves are benchmarks' business); its message (one
    line, bounded length)."""
    start = time.perf_counter()
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    assert time.perf_counter() - start < HANG_S
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 800, msg
    return msg


# ------------------------------------------------------------------ 1. recipe values: bounds before work
HOSTILE_SETS = [
    ("layers", "0-9999999999", "9999999999"),
    ("layers", "5-2000000", "2000000"),
    ("layers", "9" * 5000, "layers"),
    ("grid", "leading:2000000000", "leading:N"),
    ("grid", "stride:0", "stride:K"),
    ("grid", "leading:" + "9" * 5000, "leading:N"),
    ("steps", "0:99999999999999", "START:END"),
    ("sigma", "inf", "finite"),
    ("sigma", "nan", "finite"),
    ("sigma", "-1", "0 <= sigma"),
    ("sigma", "1e400", "finite"),
    ("guidance_scale", "nan", "finite"),
    ("guidance_scale", "inf", "finite"),
    ("seed", str(10**30), "2**32"),
    ("seed", "-1", "2**32"),
    ("seed", "1e400", "2**32"),
    ("batch_size", "-1", "batch_size"),
    ("batch_size", "100000000", "4096"),
    ("layer_norm", "maybe", "true"),
    ("mode", "x" * 10_000, "at most 4096"),
]


@pytest.mark.parametrize("field,value,says", HOSTILE_SETS, ids=[f"{f}={v[:20]}" for f, v, _ in HOSTILE_SETS])
def test_hostile_recipe_values_are_refused_fast_by_field(field, value, says):
    msg = _refused(Recipe().override, **{field: value})
    assert f"recipe field {field!r}" in msg and says in msg, msg
    # the same table checks an override on its own (what the CLI does before loading a model)
    assert _refused(check_overrides, {field: value}) == msg


@pytest.mark.parametrize("field,value,says", [
    ("layers", {1, 2}, "list of at most"),  # a set (YAML !!set)
    ("layers", 3.5, "layer selector"),
    ("layers", [1, "x"], "layer selector"),
    ("layers", list(range(5000)), "at most 1024"),
    ("steps", {"a": 1}, "two integers"),
    ("steps", 4050, "base-60"),
    ("seed", 1.5, "integer"),
    ("seed", True, "integer"),
    ("sigma", float("inf"), "finite"),
    ("guidance_scale", float("nan"), "finite"),
    ("threshold", ["otsu"], "one of"),
    ("tokens", 5, "token filter"),
])
def test_overrides_of_the_wrong_type_name_the_field_and_the_type(field, value, says):
    msg = _refused(Recipe().override, **{field: value})
    assert f"recipe field {field!r}" in msg and says in msg, msg


def test_every_field_has_a_row_and_valid_values_still_parse():
    from dataclasses import fields

    assert {f.name for f in fields(Recipe)} == set(FIELDS)
    r = Recipe().override(layers="0-7,9", grid="leading:1000", sigma="0", seed=str(2**32 - 1), guidance_scale="7.5",
                          batch_size="auto", steps="10:50", layer_norm="yes")
    assert r.layers == (0, 1, 2, 3, 4, 5, 6, 7, 9) and r.seed == 2**32 - 1 and r.batch_size == 0 and r.sigma == 0.0
    assert Recipe().override(layers=[3, 1, 3]).layers == (1, 3) and Recipe().override(steps=[1, 2]).steps == (1, 2)
    with pytest.raises(ValueError, match=r"leading:2000 asks for 2000 steps, more than the model's 1000"):
        Recipe(grid="leading:2000").timesteps(1000)


def test_cli_set_values_fail_before_the_model_loads(tmp_path):
    for value, says in (("layers=0-9999999999", "'layers'"), ("grid=leading:2000000000", "'grid'"), ("sigma=inf", "'sigma'"),
                        ("seed=" + str(10**30), "'seed'")):
        start = time.perf_counter()
        line = _one_error_line(_cli("run", "--set", value, "--out", str(tmp_path / "o")))
        assert says in line and "loading" not in line, line
        assert time.perf_counter() - start < HANG_S  # a hang guard; "loading" absent above is the real check
    assert not (tmp_path / "o").exists()
    line = _one_error_line(_cli("report", "--set", "sigma=nan", "--out", str(tmp_path / "r")))  # the report flow too
    assert "'sigma'" in line and "loading" not in line, line


# ------------------------------------------------------------------ 2. YAML: no alias expansion, values checked by file and key
BOMB = ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n")


@pytest.fixture
def demo_copy(tmp_path) -> Path:
    dst = tmp_path / "demo"
    shutil.copytree(DEMO, dst)
    return dst


def test_alias_bomb_in_checkpoints_yaml_and_groundkit_yaml_is_refused(tmp_path, demo_copy):
    ck = tmp_path / "checkpoints.yaml"
    ck.write_text(BOMB + "checkpoints:\n  x:\n    adapter: diffusers-sd\n    path: /nowhere\n    recipe: nuetzel2025\n"
                  "    description: *g\n")
    for call in (registry.load_checkpoints, registry.home_of):
        msg = _refused(call, ck, exc=registry.CheckpointConfigError)
        assert str(ck) in msg and "aliases" in msg
    line = _one_error_line(_cli("checkpoints", "list", "--checkpoints-file", str(ck)))
    assert str(ck) in line and "aliases" in line
    cfg = demo_copy / "groundkit.yaml"
    cfg.write_text(BOMB + "description: *g\n")
    msg = _refused(registry.folder_config, demo_copy, exc=registry.CheckpointConfigError)
    assert str(cfg) in msg and "aliases" in msg
    msg = _refused(gk.load, str(demo_copy), exc=registry.CheckpointConfigError)
    assert str(cfg) in msg


@pytest.mark.parametrize("line,says", [
    ("image_size: sixty-four", "image_size: expected an integer, a multiple of 8, 8..4096"),
    ("image_size: 1e400", "image_size: expected an integer"),
    ("image_size: 1000000", "8..4096"),
    ("image_size: 60", "a multiple of 8"),
    ("image_size: -64", "8..4096"),
    ("max_length: 1e20", "max_length: expected an integer 1..4096"),
    ("max_length: 100000000", "1..4096"),
    ("scale_factor: .nan", "scale_factor: expected a finite number"),
    ("attention_mask: sometimes", "attention_mask: expected true or false"),
    ("overrides: layers=all", "overrides: expected a mapping"),
    ("overrides: !!set {a, b}", "overrides: expected a mapping"),
    ("overrides: {layers: !!set {1, 2}}", "recipe field 'layers'"),
    ("overrides: {sigma: .inf}", "recipe field 'sigma'"),
    ("overrides: {seed: 100000000000000000000000000000}", "recipe field 'seed'"),
    ("recipe: [1, 2]", "unknown recipe"),
    ("description: " + "[" * 3000 + "]" * 3000, "not valid YAML"),
    ("description: [" + ", ".join(["word"] * 2000) + "]", "description: expected text"),
])
def test_groundkit_yaml_values_name_the_file_field_and_range(demo_copy, line, says):
    cfg = demo_copy / "groundkit.yaml"
    kept = [ln for ln in cfg.read_text().splitlines() if not ln.startswith(line.split(":")[0] + ":")
            and not ln.startswith("  ") and not ln.startswith("overrides")]
    cfg.write_text("\n".join(kept + [line]) + "\n")
    msg = _refused(registry.folder_config, demo_copy, exc=registry.CheckpointConfigError)
    assert msg.startswith(str(cfg)) and says in msg, msg
    assert len(msg) < 600  # a value is quoted in at most ~80 characters, never whole


@pytest.mark.parametrize("text,says", [
    ("home: [1, 2]\ncheckpoints: {}\n", "home: expected a folder path (text), got [1, 2]"),
    ("checkpoints:\n  x:\n    adapter: diffusers-sd\n    path: [1, 2]\n    recipe: nuetzel2025\n", "checkpoints.x.path"),
    ("checkpoints:\n  x:\n    adapter: [diffusers-sd]\n    path: p\n    recipe: nuetzel2025\n", "checkpoints.x.adapter"),
    ("checkpoints:\n  x:\n    adapter: diffusers-sd\n    path: p\n    recipe: nuetzel2025\n    image_size: sixty-four\n",
     "checkpoints.x.image_size: expected an integer"),
    ("checkpoints:\n  x:\n    adapter: diffusers-sd\n    path: p\n    recipe: nuetzel2025\n    max_length: 100000000\n",
     "checkpoints.x.max_length"),
    ("checkpoints:\n  x:\n    adapter: diffusers-sd\n    path: p\n    recipe: nuetzel2025\n    overrides: {layers: all-of-them}\n",
     "checkpoints.x.overrides: recipe field 'layers'"),
    ("checkpoints:\n  x:\n    adapter: diffusers-sd\n    path: p\n    recipe: nuetzel2025\n    description: {a: 1}\n",
     "checkpoints.x.description: expected text"),
])
def test_checkpoints_yaml_errors_name_the_file_entry_and_field(tmp_path, text, says):
    ck = tmp_path / "checkpoints.yaml"
    ck.write_text(text)
    msg = _refused(lambda: (registry.load_checkpoints(ck), registry.home_of(ck)), exc=registry.CheckpointConfigError)
    assert msg.startswith(str(ck)) and says in msg, msg


# ------------------------------------------------------------------ 3. images: pixel limit from the header, before decoding
def _dicom(path: Path, rows: int, cols: int, pixels: bytes = b"\0\0") -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "DX"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels
    ds.save_as(str(path), enforce_file_format=True)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff", "dcm"])
def test_image_headers_over_the_pixel_limit_are_refused_before_decoding(tmp_path, monkeypatch, fmt):
    path = tmp_path / f"img.{fmt}"
    if fmt == "dcm":
        _dicom(path, 300, 200, np.zeros((300, 200), np.uint16).tobytes())
    else:
        Image.fromarray(np.zeros((300, 200), np.uint8)).save(path)
    assert load_image(path).shape == (300, 200)  # under the default limit: loads
    monkeypatch.setenv("GROUNDKIT_MAX_IMAGE_PIXELS", "50000")
    msg = _refused(load_image, path)
    assert str(path) in msg and "200 x 300" in msg.replace("300 x 200", "200 x 300") and "60000 pixels" in msg and "50000" in msg


def test_image_bombs_at_the_default_limit(tmp_path):
    png = tmp_path / "bomb.png"
    Image.new("1", (7000, 7000)).save(png, optimize=True)  # 49 M pixels in a few kB
    msg = _refused(load_image, png)
    assert "7000 x 7000" in msg and "limit" in msg
    dcm = tmp_path / "bomb.dcm"
    _dicom(dcm, 60000, 60000)  # the header alone: 60000 x 60000 x 16 bit = 7.2 GB if decoded
    msg = _refused(load_image, dcm)
    assert str(dcm) in msg and "60000 x 60000" in msg


# ------------------------------------------------------------------ 4. plugins: a broken one is skipped, the rest work
def _dist(root: Path, package: str, module: str, adapter: str, source: str) -> None:
    info = root / f"{package.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[groundkit.adapters]\n{adapter} = {module}:Adapter\n")
    (root / f"{module}.py").write_text(source)


@pytest.fixture
def broken_plugins(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    _dist(site, "gk-broken-import", "gk_broken_import_mod", "broken-import", "import no_such_module_for_groundkit_tests\n")
    _dist(site, "gk-broken-detect", "gk_broken_detect_mod", "broken-detect",
          "class Adapter:\n    name = 'broken-detect'\n    options = {}\n\n    @classmethod\n    def detect(cls, path):\n"
          "        raise RuntimeError('detect exploded')\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry.ADAPTERS, "broken", {})
    return site


def test_broken_plugins_are_skipped_with_one_warning_each(broken_plugins, demo_copy, tmp_path):
    cfg = demo_copy / "groundkit.yaml"
    cfg.write_text("\n".join(ln for ln in cfg.read_text().splitlines() if not ln.startswith("adapter:")) + "\n")
    toy = tmp_path / "toy"
    toy.mkdir()
    (toy / "toy.json").write_text("{}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert {"broken-import", "broken-detect", "toy-family", "diffusers-sd", "monai-ldm"} <= set(registry.adapter_names())
        for _ in range(3):
            assert registry.detect_adapter(demo_copy) == "diffusers-sd"  # a folder without adapter: still the built-in
            assert registry.detect_adapter(toy) == "toy-family"  # the working plugin too
        assert registry.resolve(str(demo_copy)).adapter == "diffusers-sd"
    plugin_warnings = [str(w.message) for w in caught if issubclass(w.category, registry.PluginWarning)]
    assert len(plugin_warnings) == 2, plugin_warnings
    assert any("gk-broken-import" in m and "no_such_module_for_groundkit_tests" in m for m in plugin_warnings)
    assert any("gk-broken-detect" in m and "detect exploded" in m for m in plugin_warnings)
    with pytest.raises(registry.PluginError, match="gk-broken-import"):
        registry.get_adapter_class("broken-import")  # asked for by name: its own error, naming the package


def test_checkpoints_list_shows_the_broken_plugins_and_why(broken_plugins):
    env = {"PYTHONPATH": os.pathsep.join([str(broken_plugins), os.environ.get("PYTHONPATH", "")])}  # + the installed example
    proc = _cli("checkpoints", "list", env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "demo" in out and "toy-family" in out
    assert "broken-import  (package gk-broken-import" in out and "BROKEN" in out and "no_such_module_for_groundkit_tests" in out
    assert "broken-detect  (package gk-broken-detect" in out and "detect exploded" in out


# ------------------------------------------------------------------ 5. gk.from_diffusers: arguments checked up front
@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as dlog

    from groundkit.families.diffusers_sd.testing_roentgen import build_roentgen

    dlog.set_verbosity_error()
    folder = build_roentgen(tmp_path_factory.mktemp("pipe"), tiny=True, seed=1)
    return StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)


def _no_cross_attention_unets():
    from diffusers import UNet2DConditionModel, UNet2DModel

    kw = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
              down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    return UNet2DConditionModel(**kw, mid_block_type=None), UNet2DModel(**kw)


def test_from_diffusers_names_the_wrong_argument(pipe):
    parts = dict(unet=pipe.unet, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, scheduler=pipe.scheduler)
    no_cross, plain = _no_cross_attention_unets()
    cases = [
        (dict(unet=7), TypeError, "unet: expected a diffusers UNet2DConditionModel"),
        (dict(unet=torch.nn.Linear(2, 2)), TypeError, "unet: expected"),
        (dict(unet=pipe.text_encoder), TypeError, "got CLIPTextModel"),
        (dict(unet="unet"), TypeError, "unet: expected"),
        (dict(vae=3), TypeError, "vae: expected a diffusers AutoencoderKL"),
        (dict(vae=torch.nn.Linear(2, 2)), TypeError, "vae: expected"),
        (dict(text_encoder=pipe.unet), TypeError, "text_encoder: expected a transformers text model"),
        (dict(text_encoder="clip"), TypeError, "text_encoder: expected"),
        (dict(tokenizer="tokenizer"), TypeError, "tokenizer: expected a Hugging Face fast tokenizer"),
        (dict(scheduler="ddim"), TypeError, "scheduler: expected a diffusers scheduler"),
        (dict(scheduler=torch.nn.Linear(2, 2)), TypeError, "scheduler: expected"),
        (dict(image_size=-5), ValueError, "image_size=-5: expected a positive integer"),
        (dict(image_size=0), ValueError, "image_size=0: expected a positive integer"),
        (dict(image_size=60), ValueError, "a multiple of 8"),
        (dict(image_size=10**6), ValueError, "<= 4096"),
        (dict(max_length=10**20), ValueError, "max_length="),
        (dict(unet=no_cross), ValueError, "unet: this UNet2DConditionModel has no cross-attention"),
        (dict(unet=plain), ValueError, "unet: this UNet2DModel has no cross-attention"),
    ]
    for change, exc, says in cases:
        msg = _refused(gk.from_diffusers, exc=exc, **{**parts, **change})
        assert msg.startswith("from_diffusers: ") and says in msg, (change, msg)
        assert "width" not in msg
    msg = _refused(gk.from_diffusers, parts, exc=TypeError)
    assert "gk.from_diffusers(**components)" in msg
    assert "unet=" in _refused(gk.from_diffusers, pipe.unet, exc=TypeError)
    assert "pipe: expected a diffusers pipeline" in _refused(gk.from_diffusers, "pipeline", exc=TypeError)
    assert gk.from_diffusers(pipe, image_size=64).adapter.image_size == 64  # good arguments still work
    assert gk.from_diffusers(pipe).adapter.image_size == pipe.unet.config.sample_size * 8  # None: the pipeline's default


# ------------------------------------------------------------------ 6. component folders linked outside the checkpoint
@pytest.mark.parametrize("component", ["text_encoder", "tokenizer", "unet_ema"])
def test_component_folder_links_leaving_the_checkpoint_are_refused(demo_copy, tmp_path, component):
    outside = tmp_path / "elsewhere" / component
    outside.parent.mkdir()
    shutil.move(str(demo_copy / component), outside)
    (demo_copy / component).symlink_to(outside, target_is_directory=True)
    msg = _refused(gk.load, str(demo_copy), exc=CheckpointError)
    assert f"{demo_copy / component} is a symbolic link to {outside}" in msg and "outside the checkpoint folder" in msg
    from groundkit.verify import verify_checkpoint

    report = verify_checkpoint(str(demo_copy), deep=False)
    assert not report.ok
    bad = [c for c in report.checks if c.status == "bad"]
    assert bad and all(c.item.startswith(component + "/") and "symbolic link" in c.detail for c in bad), report.text()
    if component == "text_encoder":  # the command line once (an interpreter start with diffusers costs seconds)
        proc = _cli("checkpoints", "verify", str(demo_copy), "--no-deep")
        assert proc.returncode == 1 and "symbolic link" in proc.stdout


def test_linked_weight_file_is_refused_and_links_inside_are_fine(demo_copy, tmp_path):
    from groundkit.verify import verify_checkpoint

    weights = demo_copy / "unet_ema" / "diffusion_pytorch_model.safetensors"
    inside = demo_copy / "blobs" / "unet.safetensors"  # a link that stays inside the folder is fine
    inside.parent.mkdir()
    shutil.move(str(weights), inside)
    weights.symlink_to(inside)
    assert verify_checkpoint(str(demo_copy), deep=False).ok
    outside = tmp_path / "unet.safetensors"
    shutil.move(str(inside), outside)
    weights.unlink()
    weights.symlink_to(outside)
    report = verify_checkpoint(str(demo_copy), deep=False)
    assert [c.item for c in report.checks if c.status == "bad"] == ["unet_ema/diffusion_pytorch_model.safetensors"]
    msg = _refused(gk.load, str(demo_copy), exc=CheckpointError)  # and loading refuses it, unread
    assert f"{weights} is a symbolic link to {outside}" in msg and "outside the checkpoint folder" in msg
