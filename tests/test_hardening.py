"""Hostile and unlucky inputs: path traversal in shard indexes, strict CLIP loading in a diffusers folder,
one `error:` line for OS-level failures (decompression bomb, read-only folder, full disk), no ghost
benchmark configurations, and only literal numbers where a MONAI config expects numbers."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from test_loading_errors import _edit_json, _malicious

import groundkit as gk
from clitools import one_error_line, run_cli
from groundkit.core.safeload import CheckpointError, UnsafeCheckpointError

REPO = Path(__file__).resolve().parents[1]


_cli, _one_error_line = run_cli, one_error_line


@pytest.fixture
def sd_tree(tiny_sd_cxrbert, tmp_path):
    dst = tmp_path / "sd"
    shutil.copytree(tiny_sd_cxrbert, dst)
    return dst


# ------------------------------------------------------------------ 1. path traversal
def _shard(folder: Path, names: list[str], outside: Path) -> Path:
    """Split the U-Net weights into an index whose second shard is ``names[1]`` (maybe outside)."""
    sd = load_file(folder / "diffusion_pytorch_model.safetensors")
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    keys = sorted(sd)
    half = len(keys) // 2
    save_file({k: sd[k] for k in keys[:half]}, folder / names[0])
    outside.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: sd[k] for k in keys[half:]}, outside)
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {**{k: names[0] for k in keys[:half]}, **{k: names[1] for k in keys[half:]}}}))
    return index


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_shard_index_cannot_point_outside_the_checkpoint(sd_tree, tmp_path, kind):
    elsewhere = tmp_path / "elsewhere" / "x.safetensors"
    unet = sd_tree / "unet_ema"
    if kind == "dotdot":
        name = os.path.relpath(elsewhere, unet)
    elif kind == "absolute":
        name = str(elsewhere)
    else:
        name = "link.safetensors"
    index = _shard(unet, ["a.safetensors", name], elsewhere)
    if kind == "symlink":
        (unet / name).symlink_to(elsewhere)
    with pytest.raises(CheckpointError) as ei:
        gk.load(sd_tree, device="cpu")
    msg = str(ei.value)
    assert "outside the checkpoint folder" in msg
    if kind == "symlink":  # a linked shard is caught with the component folder, before the index is read
        assert f"{unet / name} is a symbolic link to {elsewhere}" in msg
    else:
        assert str(index) in msg and "weight_map" in msg
    # `checkpoints verify` says the same and fails
    proc = _cli("checkpoints", "verify", str(sd_tree))
    assert proc.returncode != 0 and "outside the checkpoint folder" in proc.stdout + proc.stderr


def test_shard_index_inside_the_folder_still_loads(sd_tree, tmp_path):
    ref = gk.load(sd_tree, device="cpu").adapter.unet_model.state_dict()
    _shard(sd_tree / "unet_ema", ["a.safetensors", "b.safetensors"], sd_tree / "unet_ema" / "b.safetensors")
    got = gk.load(sd_tree, device="cpu").adapter.unet_model.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)


# ------------------------------------------------------------------ 2. strict CLIP in a diffusers folder
@pytest.fixture
def sd_clip(sd_tree):
    from builders import build_clip_text_encoder, build_clip_tokenizer_files

    shutil.rmtree(sd_tree / "text_encoder")
    shutil.rmtree(sd_tree / "tokenizer")
    build_clip_tokenizer_files(sd_tree / "tokenizer")
    vocab = len(json.loads((sd_tree / "tokenizer" / "vocab.json").read_text()))
    build_clip_text_encoder(sd_tree / "text_encoder", tiny=True, vocab_size=vocab)
    return sd_tree


def test_clip_text_encoder_in_diffusers_folder_loads_strictly(sd_clip):
    m = gk.load(sd_clip, device="cpu")
    assert type(m.adapter.text_encoder).__name__ == "CLIPTextModel"
    file = sd_clip / "text_encoder" / "model.safetensors"
    sd = load_file(file)
    dropped = sorted(sd)[3]
    del sd[dropped]
    save_file(sd, file)
    with pytest.raises(CheckpointError) as ei:
        gk.load(sd_clip, device="cpu")
    assert str(file) in str(ei.value) and dropped.split(".")[-2] in str(ei.value)


def test_clip_text_encoder_malicious_bin_is_refused_by_name(sd_clip, tmp_path):
    marker = tmp_path / "pwned"
    (sd_clip / "text_encoder" / "model.safetensors").unlink()
    target = sd_clip / "text_encoder" / "pytorch_model.bin"
    _malicious(target, marker)
    with pytest.raises(UnsafeCheckpointError) as ei:
        gk.load(sd_clip, device="cpu")
    assert str(target) in str(ei.value) and not marker.exists()
    line = _one_error_line(_cli("run", "--checkpoint", str(sd_clip), "--out", str(tmp_path / "o")))
    assert str(target) in line and not marker.exists()


# ------------------------------------------------------------------ 3. one error line
def _bomb_png(path: Path, side: int = 30000) -> None:
    """A real PNG file whose header declares side x side pixels (1-bit, highly compressible)."""
    Image.new("1", (side, side)).save(path, optimize=True)


def test_decompression_bomb_is_one_error_line(tmp_path):
    bomb = tmp_path / "bomb.png"
    _bomb_png(bomb)
    line = _one_error_line(_cli("run", "--image", str(bomb), "--text", "left effusion", "--out", str(tmp_path / "o")))
    assert str(bomb) in line and "limit" in line
    debug = _cli("run", "--debug", "--image", str(bomb), "--text", "x", "--out", str(tmp_path / "o"))
    assert "Traceback" in debug.stderr  # --debug keeps the traceback


@pytest.fixture
def small_fs(tmp_path):
    """A 48 kB tmpfs (root only): skip with the reason where the machine does not allow mounting."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): read-only / full-disk cases need it")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _tiny_data(tmp_path: Path) -> Path:
    from groundkit.data import synthetic

    synthetic.generate(tmp_path / "data", n=6, seed=5, size=64)
    return tmp_path / "data"


BENCH = ["benchmark", "-c", "demo", "--dataset", "synthetic", "--set", "steps=49:50", "--set", "tokens=all",
         "--no-page", "--no-progress"]


def test_read_only_output_folder_is_one_error_line(tmp_path, small_fs):
    data = _tiny_data(tmp_path)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    line = _one_error_line(_cli(*BENCH, "--data", str(data), "--out", str(small_fs / "run")))
    assert str(small_fs / "run") in line and "read-only" in line.lower()


def test_full_disk_names_the_file_and_resumes(tmp_path, small_fs):
    data = _tiny_data(tmp_path)
    # fill the file system but a few hundred bytes: run.json fits, the rows soon do not
    free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
    (small_fs / "ballast").write_bytes(b"\0" * max(0, free - 6 * 1024))
    out = small_fs / "run"
    line = _one_error_line(_cli(*BENCH, "--data", str(data), "--out", str(out)))
    assert "no space left on device" in line and "resume" in line
    assert str(out) in line and ("rows.jsonl" in line or "run.json" in line or "tables" in line)
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()] if (out / "rows.jsonl").exists() else []
    (small_fs / "ballast").unlink()  # free space, run again: resumes, nothing lost, nothing twice
    proc = _cli(*BENCH, "--data", str(data), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    final = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    assert len(final) == 6 and len({r["sample_id"] for r in final}) == 6
    assert {r["sample_id"] for r in rows} <= {r["sample_id"] for r in final}


# ------------------------------------------------------------------ 5. no ghost configuration
def test_failed_run_leaves_no_ghost_and_other_recipes_are_refused(tmp_path):
    data = _tiny_data(tmp_path)
    out = tmp_path / "run"
    bad = _cli(*BENCH, "--data", str(data), "--out", str(out), "--set", "layers=99")
    _one_error_line(bad)
    ok = _cli(*BENCH, "--data", str(data), "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    run = json.loads((out / "run.json").read_text())
    assert len(run["configs"]) == 1 and run["configs"][0]["label"] == "demo"
    assert "No successful rows yet" not in (out / "tables.md").read_text()
    other = _cli(*BENCH, "--data", str(data), "--out", str(out), "--set", "seed=3")
    line = _one_error_line(other)
    assert "already holds rows of demo under another recipe" in line and "--overwrite" in line
    again = _cli(*BENCH, "--data", str(data), "--out", str(out), "--set", "seed=3", "--overwrite")
    assert again.returncode == 0, again.stderr
    run = json.loads((out / "run.json").read_text())
    assert len(run["configs"]) == 1 and run["configs"][0]["recipe"]["seed"] == 3


# ------------------------------------------------------------------ 6. literal numbers in inference.json
@pytest.mark.parametrize("value", [{"_target_": "os.system", "command": "touch x"}, "two", [2, {"_target_": "x"}], True])
def test_non_numeric_network_argument_is_refused(tiny_monai_bundle, tmp_path, value):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_monai_bundle, bundle)
    _edit_json(bundle / "configs" / "inference.json", lambda c: c["diffusion_def"].__setitem__("num_res_blocks", value))
    with pytest.raises(ValueError) as ei:
        gk.load(bundle, device="cpu")
    assert "diffusion_def.num_res_blocks" in str(ei.value) and "inference.json" in str(ei.value)
