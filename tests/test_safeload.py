"""groundkit.core.safeload: weights_only loading, clear errors, key checks."""
from __future__ import annotations

import builtins
import os
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file

from groundkit.core.safeload import (
    CheckpointError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    check_keys,
    load_into,
    load_state_dict,
)

MARKER = "groundkit_pwned_marker"


class _SystemPayload:
    """Unpickling this would run a shell command creating the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpenPayload:
    """Unpickling this would create the marker file through builtins.open."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


class _CustomObject:
    """A harmless but arbitrary class: still refused (it is not a tensor container)."""

    def __init__(self) -> None:
        self.x = 1


def _sd(seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return OrderedDict(
        [("layer.weight", torch.randn(4, 3, generator=g)), ("layer.bias", torch.randn(4, generator=g)),
         ("steps", torch.tensor(7))]
    )


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("payload", [_SystemPayload, _OpenPayload])
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt"])
def test_malicious_pickle_is_refused_and_never_executed(tmp_path, payload, suffix):
    marker = tmp_path / MARKER
    path = tmp_path / f"evil{suffix}"
    torch.save({"weight": torch.zeros(2), "extra": payload(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError) as ei:
        load_state_dict(path)
    assert not marker.exists(), "the payload ran"
    msg = str(ei.value)
    assert str(path) in msg
    assert "never unpickles" in msg and "safetensors" in msg  # explains why, and how to convert
    assert isinstance(ei.value, ValueError)


def test_arbitrary_class_is_refused(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": _CustomObject()}, path)
    with pytest.raises(UnsafeCheckpointError, match="obj.pt"):
        load_state_dict(path)


def test_safetensors_round_trip(tmp_path):
    sd = _sd()
    path = tmp_path / "m.safetensors"
    save_file(dict(sd), str(path))
    _assert_same(load_state_dict(path), sd)


def test_safetensors_sniffed_without_suffix(tmp_path):
    sd = _sd()
    path = tmp_path / "weights"
    save_file(dict(sd), str(path))
    _assert_same(load_state_dict(path), sd)


@pytest.mark.parametrize("zipped", [True, False])
def test_torch_save_round_trip(tmp_path, zipped):
    sd = _sd()
    path = tmp_path / "m.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=zipped)  # legacy format cannot be mmapped
    _assert_same(load_state_dict(path), sd)


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_checkpoint_is_unwrapped(tmp_path, wrapper):
    sd = _sd()
    path = tmp_path / "ckpt.ckpt"
    torch.save({wrapper: sd, "epoch": 12, "optimizer": {"lr": 1e-4, "state": {}}}, path)
    _assert_same(load_state_dict(path), sd)


def test_state_dict_with_a_tensor_named_model_is_not_unwrapped(tmp_path):
    sd = {"model": torch.ones(2), "other": torch.zeros(1)}
    path = tmp_path / "m.pt"
    torch.save(sd, path)
    _assert_same(load_state_dict(path), sd)


def test_non_tensor_entries_are_reported(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(1), "note": "hello"}, path)
    with pytest.raises(CheckpointError, match="not a plain state dict") as ei:
        load_state_dict(path)
    assert "m.pt" in str(ei.value) and "'note'" in str(ei.value)


@pytest.mark.parametrize("suffix,saver", [(".pt", "torch"), (".pth", "torch_legacy"), (".safetensors", "st")])
def test_truncated_file_error_names_the_file(tmp_path, suffix, saver):
    sd = {"w": torch.randn(256, 64)}
    full = tmp_path / f"full{suffix}"
    if saver == "torch":
        torch.save(sd, full)
    elif saver == "torch_legacy":
        torch.save(sd, full, _use_new_zipfile_serialization=False)
    else:
        save_file(sd, str(full))
    data = full.read_bytes()
    for cut in (len(data) // 2, 12):
        bad = tmp_path / f"truncated_{cut}{suffix}"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as ei:
            load_state_dict(bad)
        assert not isinstance(ei.value, UnsafeCheckpointError)
        assert str(bad) in str(ei.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_state_dict(path)


def test_check_keys_lists_missing_unexpected_and_shapes():
    expected = {f"blocks.{i}.weight": (4, 4) for i in range(8)}
    expected["head.weight"] = (10, 4)
    got = {f"blocks.{i}.weight": torch.zeros(4, 4) for i in range(2, 8)}
    got["head.weight"] = torch.zeros(12, 4)
    got.update({f"extra.{i}": torch.zeros(1) for i in range(7)})
    with pytest.raises(CheckpointMismatchError) as ei:
        check_keys(expected, got, "/ckpt/model.safetensors")
    msg = str(ei.value)
    assert "/ckpt/model.safetensors" in msg
    assert "2 missing" in msg and "7 unexpected" in msg and "1 shape mismatch" in msg
    assert "blocks.0.weight" in msg and "blocks.1.weight" in msg
    assert "extra.0" in msg and "extra.4" in msg and "extra.6" not in msg  # only the first few
    assert "head.weight: expected (10, 4), file has (12, 4)" in msg


def test_check_keys_passes_and_relaxes():
    expected = {"a": (2,), "b": (3,)}
    check_keys(expected, {"a": torch.zeros(2), "b": torch.zeros(3)}, "f")
    check_keys(expected, {"a": torch.zeros(2), "c": torch.zeros(1)}, "f", allow_missing=True, allow_unexpected=True)
    with pytest.raises(CheckpointMismatchError):  # shapes are always checked
        check_keys(expected, {"a": torch.zeros(5)}, "f", allow_missing=True, allow_unexpected=True)


def test_hint_when_file_is_another_component():
    unet = {
        "conv_in.weight": (8, 4, 3, 3), "time_embed.0.weight": (16, 8), "down_blocks.0.resnets.0.conv1.weight": (8, 8, 3, 3),
        "middle_block.0.conv1.weight": (8, 8, 3, 3), "up_blocks.0.resnets.0.conv1.weight": (8, 8, 3, 3),
    }
    ae_file = {
        "encoder.blocks.0.conv.weight": torch.zeros(8, 1, 3, 3), "encoder.blocks.1.conv1.conv.weight": torch.zeros(8, 8, 3, 3),
        "decoder.blocks.0.conv.weight": torch.zeros(8, 3, 3, 3), "quant_conv_mu.conv.weight": torch.zeros(3, 8, 1, 1),
        "post_quant_conv.conv.weight": torch.zeros(3, 3, 1, 1),
    }
    with pytest.raises(CheckpointMismatchError) as ei:
        check_keys(unet, ae_file, "models/autoencoder.pth")
    msg = str(ei.value)
    assert "autoencoder" in msg and "U-Net" in msg and "hint" in msg


def test_hint_for_old_monai_generative_keys():
    expected = {"blk.attn2.out_proj.weight": (4, 4), "blk.attn2.to_q.weight": (4, 4)}
    got = {"blk.attn2.to_out.0.weight": torch.zeros(4, 4), "blk.attn2.to_q.weight": torch.zeros(4, 4)}
    with pytest.raises(CheckpointMismatchError, match="old monai-generative key names"):
        check_keys(expected, got, "diffusion_model.pth")


def test_hint_for_wrapper_prefix():
    expected = {"a.weight": (2,), "b.weight": (2,), "c.weight": (2,)}
    got = {f"module.{k}": torch.zeros(2) for k in expected}
    with pytest.raises(CheckpointMismatchError, match="'module.'"):
        check_keys(expected, got, "f.pt")


def test_load_into(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    src = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    path = tmp_path / "net.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    load_into(net, load_state_dict(path), path)
    _assert_same(net.state_dict(), src.state_dict())

    partial = {k: v for k, v in src.state_dict().items() if not k.startswith("2.")}
    with pytest.raises(CheckpointMismatchError, match="2.weight"):
        load_into(net, partial, path)
    load_into(net, partial, path, strict=False)  # tolerated when not strict
    bad = dict(src.state_dict())
    bad["0.weight"] = torch.zeros(5, 3)
    with pytest.raises(CheckpointMismatchError, match=r"0.weight: expected \(4, 3\), file has \(5, 3\)"):
        load_into(net, bad, path, strict=False)
