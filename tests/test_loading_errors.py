"""Hardened loading, end to end through ``groundkit.load(folder)`` on tiny builds of the published layouts.

Wrong, truncated, mismatched or malicious files must fail with an error that names the file (and the first
mismatching keys / shapes), never with a bare stack trace, and never by running code from the file.
Also: checkpoints.yaml validation names the offending key, and the package source never asks for remote
code or unpickles without ``weights_only``.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

import groundkit as gk
from groundkit.core.safeload import CheckpointError, CheckpointMismatchError, UnsafeCheckpointError
from groundkit.registry import CheckpointConfigError, load_checkpoints

PACKAGE = Path(gk.__file__).resolve().parent
MAX_LINES = 15  # an error message, not a dump of every mismatching tensor


class _Payload:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious(path: Path, marker: Path) -> None:
    torch.save({"conv_in.weight": torch.zeros(1), "payload": _Payload(marker)}, path)


def _load(path: Path):
    return gk.load(str(path), device="cpu")


def _short(msg: str) -> None:
    assert len(msg.splitlines()) <= MAX_LINES, f"error message is a dump ({len(msg.splitlines())} lines):\n{msg}"


@pytest.fixture
def bundle(tiny_monai_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_monai_bundle, dst)
    return dst


@pytest.fixture
def sd_tree(tiny_sd_cxrbert, tmp_path):
    dst = tmp_path / "sd"
    shutil.copytree(tiny_sd_cxrbert, dst)
    return dst


def _edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data, indent=2))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ----------------------------------------------------------------------------------------------
# MONAI bundle


def test_monai_bundle_loads(bundle):
    m = _load(bundle)
    assert len(m.layers) == 11


def test_monai_autoencoder_weights_where_unet_expected(bundle):
    target = bundle / "models" / "diffusion_model.pth"
    shutil.copy(bundle / "models" / "autoencoder.pth", target)
    with pytest.raises(CheckpointMismatchError) as ei:
        _load(bundle)
    msg = str(ei.value)
    assert str(target) in msg
    assert "missing" in msg and "unexpected" in msg
    assert "conv_in" in msg  # first missing U-Net keys are listed
    assert "encoder.blocks.0" in msg  # first unexpected (autoencoder) keys are listed
    assert "autoencoder" in msg.lower() and "hint" in msg  # says what the file looks like
    _short(msg)


def test_monai_truncated_weights(bundle):
    target = bundle / "models" / "diffusion_model.pth"
    _truncate(target)
    with pytest.raises(CheckpointError) as ei:
        _load(bundle)
    assert str(target) in str(ei.value)
    assert "truncated" in str(ei.value)


def test_monai_config_that_does_not_match_the_weights(bundle):
    _edit_json(bundle / "configs" / "inference.json",
               lambda c: c["diffusion_def"].__setitem__("num_channels", [32, 64, 64]))
    with pytest.raises(CheckpointMismatchError) as ei:
        _load(bundle)
    msg = str(ei.value)
    assert str(bundle / "models" / "diffusion_model.pth") in msg
    assert re.search(r"expected \(64(, \d+)*\), file has \(32(, \d+)*\)", msg), msg  # the shapes, readable
    _short(msg)


def test_monai_weights_with_a_missing_key(bundle):
    """MONAI's load_old_state_dict keeps random initial values for keys the file lacks; groundkit must not."""
    target = bundle / "models" / "diffusion_model.pth"
    sd = torch.load(target, map_location="cpu", weights_only=True)
    dropped = "time_embed.0.weight"
    del sd[dropped]
    torch.save(sd, target)
    with pytest.raises(CheckpointMismatchError) as ei:
        _load(bundle)
    assert str(target) in str(ei.value) and dropped in str(ei.value)


def test_monai_malicious_pickle_is_refused_and_never_runs(bundle, tmp_path):
    marker = tmp_path / "pwned"
    target = bundle / "models" / "diffusion_model.pth"
    _malicious(target, marker)
    with pytest.raises(UnsafeCheckpointError) as ei:
        _load(bundle)
    assert str(target) in str(ei.value)
    assert not marker.exists()


def test_monai_expression_in_network_arguments_is_refused(bundle, tmp_path):
    marker = tmp_path / "pwned"
    _edit_json(bundle / "configs" / "inference.json", lambda c: c["diffusion_def"].__setitem__(
        "num_res_blocks", f"$__import__('os').system('touch {marker}') or 2"))
    with pytest.raises(ValueError) as ei:
        _load(bundle)
    msg = str(ei.value)
    assert "diffusion_def.num_res_blocks" in msg and "inference.json" in msg
    assert not marker.exists()
    assert not (bundle / "output").exists()  # create_output_dir was never evaluated either


def test_monai_missing_weights_file(bundle):
    target = bundle / "models" / "diffusion_model.pth"
    target.unlink()
    with pytest.raises(FileNotFoundError) as ei:
        _load(bundle)
    msg = str(ei.value)
    assert str(target) in msg
    assert len(msg.splitlines()) == 1
    assert not msg.rstrip().endswith(";"), msg  # no dangling separator when the entry has no source


def test_monai_text_encoder_with_a_missing_key(bundle):
    """transformers fills keys a file lacks with random values and only logs it; groundkit must refuse."""
    from safetensors.torch import load_file, save_file

    target = bundle / "text_encoder" / "model.safetensors"
    sd = load_file(str(target))
    dropped = sorted(sd)[0]
    del sd[dropped]
    save_file(sd, str(target))
    with pytest.raises(CheckpointMismatchError) as ei:
        _load(bundle)
    assert "text_encoder" in str(ei.value) and dropped.split(".")[-2] in str(ei.value)


def test_monai_truncated_text_encoder(bundle):
    target = bundle / "text_encoder" / "model.safetensors"
    _truncate(target)
    with pytest.raises(CheckpointError) as ei:
        _load(bundle)
    assert str(target) in str(ei.value)


# ----------------------------------------------------------------------------------------------
# diffusers SD-1.5 + CXR-BERT tree


def test_sd_tree_loads(sd_tree):
    m = _load(sd_tree)
    assert len(m.layers) == 16


def test_sd_vae_weights_where_unet_expected(sd_tree):
    target = sd_tree / "unet_ema" / "diffusion_pytorch_model.safetensors"
    shutil.copy(sd_tree / "vae" / "diffusion_pytorch_model.safetensors", target)
    with pytest.raises(CheckpointMismatchError) as ei:
        _load(sd_tree)
    msg = str(ei.value)
    assert str(target) in msg
    assert "conv_in.weight" in msg or "time_embedding" in msg  # first missing U-Net keys
    assert "decoder." in msg  # first unexpected (VAE) keys
    assert "hint" in msg and "autoencoder" in msg.lower()
    _short(msg)


def test_sd_unet_with_a_missing_key(sd_tree):
    """diffusers' from_pretrained only logs keys that it had to initialise randomly; groundkit must refuse."""
    from safetensors.torch import load_file, save_file

    target = sd_tree / "unet_ema" / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(target))
    dropped = "conv_in.weight"
    del sd[dropped]
    save_file(sd, str(target))
    with pytest.raises(CheckpointMismatchError) as ei:
        _load(sd_tree)
    assert str(target) in str(ei.value) and dropped in str(ei.value)


def test_sd_truncated_unet(sd_tree):
    target = sd_tree / "unet_ema" / "diffusion_pytorch_model.safetensors"
    _truncate(target)
    with pytest.raises(CheckpointError) as ei:
        _load(sd_tree)
    assert str(target) in str(ei.value)
    assert "truncated" in str(ei.value) or "corrupt" in str(ei.value)


def test_sd_unet_config_that_does_not_match_the_weights(sd_tree):
    _edit_json(sd_tree / "unet_ema" / "config.json", lambda c: c.__setitem__("cross_attention_dim", 48))
    with pytest.raises(CheckpointMismatchError) as ei:
        _load(sd_tree)
    msg = str(ei.value)
    assert str(sd_tree / "unet_ema" / "diffusion_pytorch_model.safetensors") in msg
    assert re.search(r"attn2\.to_k\.weight: expected \(\d+, 48\), file has \(\d+, 32\)", msg), msg
    _short(msg)


def test_sd_malicious_unet_bin_is_refused_and_never_runs(sd_tree, tmp_path):
    """diffusers 0.42 itself reads .bin with torch.load(weights_only=True), so nothing runs even through
    from_pretrained; groundkit must also say *why* the file is refused (UnsafeCheckpointError)."""
    marker = tmp_path / "pwned"
    (sd_tree / "unet_ema" / "diffusion_pytorch_model.safetensors").unlink()
    target = sd_tree / "unet_ema" / "diffusion_pytorch_model.bin"
    _malicious(target, marker)
    with pytest.raises(UnsafeCheckpointError) as ei:
        _load(sd_tree)
    assert str(target) in str(ei.value)
    assert not marker.exists()


def test_sd_malicious_text_encoder_is_refused_and_never_runs(sd_tree, tmp_path):
    marker = tmp_path / "pwned"
    target = sd_tree / "text_encoder" / "pytorch_model.bin"
    _malicious(target, marker)
    with pytest.raises(UnsafeCheckpointError) as ei:
        _load(sd_tree)
    assert str(target) in str(ei.value)
    assert not marker.exists()


def test_sd_missing_text_encoder_weights(sd_tree):
    (sd_tree / "text_encoder" / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError) as ei:
        _load(sd_tree)
    msg = str(ei.value)
    assert str(sd_tree / "text_encoder") in msg and len(msg.splitlines()) == 1


def test_sd_missing_unet_weights(sd_tree):
    (sd_tree / "unet_ema" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError) as ei:
        _load(sd_tree)
    msg = str(ei.value)
    assert str(sd_tree / "unet_ema") in msg and len(msg.splitlines()) == 1


# ----------------------------------------------------------------------------------------------
# checkpoints.yaml validation

_GOOD = {"adapter": "monai-ldm", "path": "somewhere", "recipe": "vilouras2024"}


def _yaml(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "checkpoints.yaml"
    f.write_text(text)
    return f


def _entry_yaml(tmp_path: Path, **fields) -> Path:
    import yaml

    entry = {k: v for k, v in {**_GOOD, **fields}.items() if v is not ...}
    return _yaml(tmp_path, yaml.safe_dump({"checkpoints": {"mine": entry}}))


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"adapter": "no-such-adapter"}, r"checkpoints\.mine\.adapter: unknown adapter 'no-such-adapter'"),
        ({"path": ...}, r"checkpoints\.mine: missing required key 'path'"),
        ({"adapter": ...}, r"checkpoints\.mine: missing required key 'adapter'"),
        ({"recipe": "vilouras2099"}, r"checkpoints\.mine\.recipe: unknown recipe 'vilouras2099'"),
        ({"colour": "blue"}, r"checkpoints\.mine: unknown keys \['colour'\]"),
        ({"overrides": {"no_such_field": 1}}, r"checkpoints\.mine\.overrides: unknown recipe field 'no_such_field'"),
        ({"overrides": {"threshold": "bogus"}}, r"checkpoints\.mine\.overrides: recipe field 'threshold'"),
        ({"overrides": [1, 2]}, r"checkpoints\.mine\.overrides"),
    ],
)
def test_checkpoints_yaml_errors_name_the_key(tmp_path, fields, expected):
    f = _entry_yaml(tmp_path, **fields)
    with pytest.raises(CheckpointConfigError) as ei:
        load_checkpoints(f)
    assert str(f) in str(ei.value)
    assert re.search(expected, str(ei.value)), str(ei.value)


def test_checkpoints_yaml_unquoted_step_window(tmp_path):
    f = _yaml(tmp_path, "checkpoints:\n  mine:\n    adapter: monai-ldm\n    path: x\n    recipe: vilouras2024\n"
                        "    overrides:\n      steps: 40:50\n")
    with pytest.raises(CheckpointConfigError) as ei:
        load_checkpoints(f)
    assert "checkpoints.mine.overrides" in str(ei.value) and "quotes" in str(ei.value)


@pytest.mark.parametrize("text", ["checkpoints: [a, b]\n", "just text\n", "checkpoints:\n  mine: 3\n", "a: [\n"])
def test_checkpoints_yaml_malformed(tmp_path, text):
    f = _yaml(tmp_path, text)
    with pytest.raises(CheckpointConfigError) as ei:
        load_checkpoints(f)
    assert str(f) in str(ei.value)


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"sha256": ["abc", "def"]}, "sha256"),  # must be {relative file: hex}
        ({"files": "configs/inference.json"}, "files"),  # a string, not a list: must not be split into letters
        ({"path": None}, "path"),  # must not become the folder "None"
    ],
)
def test_checkpoints_yaml_field_types(tmp_path, fields, key):
    f = _entry_yaml(tmp_path, **fields)
    with pytest.raises(CheckpointConfigError) as ei:
        load_checkpoints(f)
    assert f"checkpoints.mine.{key}" in str(ei.value), str(ei.value)


def test_shipped_checkpoints_yaml_is_valid():
    entries = load_checkpoints()
    assert {"monai-cxr-ldm", "sd15-cxrbert", "demo"} <= set(entries)


# ----------------------------------------------------------------------------------------------
# the package source: no remote code, no unrestricted unpickling


def _package_sources():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    for f in files:
        yield f, ast.parse(f.read_text(encoding="utf-8"), filename=str(f))


def _call_name(node: ast.Call) -> str:
    parts = []
    f = node.func
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


def _dict_literal_sets(tree: ast.AST, var: str, key: str) -> bool:
    """True if ``var`` is assigned a dict literal with ``key: True`` somewhere in ``tree``."""
    for node in ast.walk(tree):
        value = None
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == var for t in node.targets):
            value = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == var:
            value = node.value
        if isinstance(value, ast.Dict):
            for k, v in zip(value.keys, value.values):
                if isinstance(k, ast.Constant) and k.value == key and isinstance(v, ast.Constant) and v.value is True:
                    return True
    return False


def test_no_remote_code_anywhere_in_the_package():
    offenders = []
    for f, tree in _package_sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "trust_remote_code" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        offenders.append(f"{f.relative_to(PACKAGE)}:{node.lineno}")
                    if kw.arg is None and isinstance(kw.value, ast.Dict):
                        for k in kw.value.keys:
                            if isinstance(k, ast.Constant) and k.value == "trust_remote_code":
                                offenders.append(f"{f.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, f"trust_remote_code used at {offenders}"


def test_every_torch_load_is_weights_only():
    calls, offenders = [], []
    for f, tree in _package_sources():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _call_name(node) == "torch.load"):
                continue
            where = f"{f.relative_to(PACKAGE)}:{node.lineno}"
            calls.append(where)
            literal = any(kw.arg == "weights_only" and isinstance(kw.value, ast.Constant) and kw.value.value is True
                          for kw in node.keywords)
            via_dict = any(kw.arg is None and isinstance(kw.value, ast.Name)
                           and _dict_literal_sets(tree, kw.value.id, "weights_only") for kw in node.keywords)
            if not (literal or via_dict):
                offenders.append(where)
    assert calls, "expected groundkit.core.safeload to call torch.load"
    assert not offenders, f"torch.load without weights_only=True at {offenders}"


def test_no_pickle_eval_or_allow_pickle_in_the_package():
    offenders = []
    for f, tree in _package_sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            bare = isinstance(node.func, ast.Name)
            if name in ("pickle.load", "pickle.loads", "dill.load", "dill.loads", "joblib.load") or (
                bare and name in ("eval", "exec")
            ):
                offenders.append(f"{f.relative_to(PACKAGE)}:{node.lineno} {name}")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    offenders.append(f"{f.relative_to(PACKAGE)}:{node.lineno} allow_pickle")
    assert not offenders, offenders
