"""groundkit.verify: presence, sizes, sha256 and (meta-device) key sets of checkpoint files.

Deep key comparison is tested on tiny builds; full-size compatibility is tested without weights: the
networks are built from the published full-size configs on the META device, and full-size "weights" are
sparse safetensors files whose headers describe every tensor (no data is written or read).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
from builders import (
    CLIP_TEXT_FULL,
    CXRBERT_FULL,
    MONAI_AE_FULL,
    MONAI_UNET_FULL,
    SD15_SCHEDULER,
    SD15_UNET_FULL,
    SD15_VAE_FULL,
    _inference_json,
    _write_json,
    _write_wordpiece_tokenizer,
    build_clip_tokenizer_files,
    wordpiece_vocab,
)
from safetensors.torch import save_file

from groundkit.core.safeload import CheckpointError, check_keys
from groundkit.core.weightfiles import file_shapes, read_safetensors_header
from groundkit.families.monai_ldm.bundle import networks_on_meta as monai_networks_on_meta
from groundkit.families.monai_ldm.keys import convert_old_monai_keys
from groundkit.families.text.clip import normalize_clip_keys
from groundkit.verify import (
    verify_checkpoint,
)


def _copy(src: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def _problem(report, item: str):
    hits = [c for c in report.problems if c.item == item]
    assert hits, f"no problem reported for {item}:\n{report.text()}"
    return hits[0]


# ----------------------------------------------------------------------------------------------
# tiny builds: everything consistent


def test_tiny_monai_bundle_verifies(tiny_monai_bundle):
    r = verify_checkpoint(str(tiny_monai_bundle))
    assert r.ok, r.text()
    assert r.adapter == "monai-ldm"
    by = {k.component: k for k in r.keys}
    assert set(by) == {"autoencoder", "diffusion model", "CLIP text encoder"}
    assert all(k.ok and len(k.mapping) == k.expected for k in r.keys)
    assert by["diffusion model"].renamed == 48  # to_out.0 -> out_proj (old generative layout)
    assert by["autoencoder"].renamed == 6  # upsampler conv -> postconv
    text = r.text()
    assert "models/diffusion_model.pth" in text and "result: all files present and consistent" in text


def test_tiny_sd_tree_verifies(tiny_sd_cxrbert):
    r = verify_checkpoint(str(tiny_sd_cxrbert))
    assert r.ok, r.text()
    by = {k.component: k for k in r.keys}
    assert set(by) == {"U-Net", "VAE", "text encoder"}
    assert by["U-Net"].file.parent.name == "unet_ema"  # the EMA weights are the ones loaded
    assert by["text encoder"].module == "CXRBertModel"
    assert "bert.embeddings.position_ids" in by["text encoder"].tolerated
    # tied copies map to the file's own keys
    assert by["text encoder"].mapping["cls.predictions.decoder.weight"] == "cls.predictions.decoder.weight"


def test_shipped_demo_checkpoint_verifies_by_name():
    r = verify_checkpoint("demo")
    assert r.ok, r.text()
    assert any(c.item == "VAE" and "identity" in c.detail for c in r.checks)


def test_old_monai_renames_match_monai_load_old_state_dict(tiny_monai_bundle, capsys):
    """The pure rename gives exactly the tensors MONAI's load_old_state_dict puts in each parameter."""
    from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

    from groundkit.core.safeload import load_state_dict

    nets = monai_networks_on_meta(tiny_monai_bundle / "configs" / "inference.json")
    cfg = json.loads((tiny_monai_bundle / "configs" / "inference.json").read_text())
    for name, key, cls in (("autoencoder", "autoencoder_def", AutoencoderKL),
                           ("diffusion_model", "diffusion_def", DiffusionModelUNet)):
        kw = {("channels" if k == "num_channels" else k): v for k, v in cfg[key].items() if not k.startswith("_")}
        old = load_state_dict(tiny_monai_bundle / "models" / f"{name}.pth")
        renamed, n = convert_old_monai_keys(old, nets[name].state_dict().keys())
        assert n > 0 and set(renamed) == set(nets[name].state_dict())
        ours = cls(**kw)
        ours.load_state_dict(renamed, strict=True)
        ref = cls(**kw)
        ref.load_old_state_dict(dict(old))
        for k, v in ref.state_dict().items():
            assert torch.equal(ours.state_dict()[k], v), k
    capsys.readouterr()  # MONAI prints progress


def test_old_monai_renames_leave_missing_keys_missing():
    t = "up.transformer_blocks.0"
    expected = [f"{t}.attn1.out_proj.weight", f"{t}.attn1.to_q.weight", "b.postconv.conv.weight"]
    old = {f"{t}.attn1.to_out.0.weight": 1, "b.conv.conv.weight": 3, "zzz": 4}
    out, n = convert_old_monai_keys(old, expected)
    assert n == 2
    assert set(out) == {f"{t}.attn1.out_proj.weight", "b.postconv.conv.weight", "zzz"}  # to_q stays missing


# ----------------------------------------------------------------------------------------------
# tiny builds: what goes wrong


def test_autoencoder_weights_where_unet_expected(tiny_monai_bundle, tmp_path):
    b = _copy(tiny_monai_bundle, tmp_path, "b")
    shutil.copy(b / "models" / "autoencoder.pth", b / "models" / "diffusion_model.pth")
    r = verify_checkpoint(str(b))
    assert not r.ok
    p = _problem(r, "models/diffusion_model.pth")
    assert "missing (first" in p.detail and "conv_in" in p.detail and "encoder.blocks.0" in p.detail
    assert "autoencoder" in p.detail and "U-Net was expected" in p.detail
    assert "models/diffusion_model.pth" in r.text()


def test_config_that_does_not_match_the_weights(tiny_monai_bundle, tmp_path):
    b = _copy(tiny_monai_bundle, tmp_path, "b")
    f = b / "configs" / "inference.json"
    cfg = json.loads(f.read_text())
    cfg["diffusion_def"]["cross_attention_dim"] = 48
    f.write_text(json.dumps(cfg))
    r = verify_checkpoint(str(b))
    p = _problem(r, "models/diffusion_model.pth")
    assert "attn2.to_k.weight: expected (32, 48), file has (32, 32)" in p.detail
    assert "config does not match" in p.detail


def test_expression_in_config_is_reported_not_evaluated(tiny_monai_bundle, tmp_path):
    b = _copy(tiny_monai_bundle, tmp_path, "b")
    marker = tmp_path / "pwned"
    f = b / "configs" / "inference.json"
    cfg = json.loads(f.read_text())
    cfg["autoencoder_def"]["latent_channels"] = f"$__import__('os').system('touch {marker}')"
    f.write_text(json.dumps(cfg))
    r = verify_checkpoint(str(b))
    p = _problem(r, "configs/inference.json")
    assert "autoencoder_def.latent_channels is an expression" in p.detail
    assert not marker.exists()


@pytest.mark.parametrize("deep", [True, False])
def test_truncated_files(tiny_monai_bundle, tiny_sd_cxrbert, tmp_path, deep):
    b = _copy(tiny_monai_bundle, tmp_path, "b")
    s = _copy(tiny_sd_cxrbert, tmp_path, "s")
    for f in (b / "models" / "diffusion_model.pth", s / "unet_ema" / "diffusion_pytorch_model.safetensors"):
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
    rb, rs = verify_checkpoint(str(b), deep=deep), verify_checkpoint(str(s), deep=deep)
    assert "truncated" in _problem(rb, "models/diffusion_model.pth").detail
    assert "truncated" in _problem(rs, "unet_ema/diffusion_pytorch_model.safetensors").detail


def test_malicious_pickle_is_reported_and_never_runs(tiny_sd_cxrbert, tmp_path):
    s = _copy(tiny_sd_cxrbert, tmp_path, "s")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"w": Payload()}, s / "text_encoder" / "pytorch_model.bin")
    r = verify_checkpoint(str(s))
    assert "cannot be loaded safely" in _problem(r, "text_encoder/pytorch_model.bin").detail
    assert not marker.exists()


def test_missing_key_and_extra_key(tiny_sd_cxrbert, tmp_path):
    from safetensors.torch import load_file

    s = _copy(tiny_sd_cxrbert, tmp_path, "s")
    f = s / "vae" / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(f))
    del sd["decoder.conv_out.weight"]
    sd["decoder.stray.weight"] = torch.zeros(2)
    save_file(sd, str(f))
    p = _problem(verify_checkpoint(str(s)), "vae/diffusion_pytorch_model.safetensors")
    assert "1 missing key(s), 1 unexpected key(s)" in p.detail
    assert "decoder.conv_out.weight" in p.detail and "decoder.stray.weight" in p.detail


# ----------------------------------------------------------------------------------------------
# checkpoints.yaml: names, sha256, what to download


def _yaml(tmp_path: Path, entries: dict) -> Path:
    import yaml

    f = tmp_path / "checkpoints.yaml"
    f.write_text(yaml.safe_dump({"home": str(tmp_path), "checkpoints": entries}))
    return f


def test_sha256_recorded_in_checkpoints_yaml(tiny_monai_bundle, tmp_path):
    good = hashlib.sha256((tiny_monai_bundle / "models" / "autoencoder.pth").read_bytes()).hexdigest()
    f = _yaml(tmp_path, {"mine": {
        "adapter": "monai-ldm", "path": str(tiny_monai_bundle), "recipe": "vilouras2024", "source": "the zoo",
        "sha256": {"models/autoencoder.pth": good, "models/diffusion_model.pth": "0" * 64},
    }})
    r = verify_checkpoint("mine", checkpoints_file=f)
    assert any(c.item == "models/autoencoder.pth" and "sha256 ok" in c.detail and c.status == "ok" for c in r.checks)
    p = _problem(r, "models/diffusion_model.pth")
    assert "sha256 MISMATCH" in p.detail and "0" * 64 in p.detail
    assert not r.ok and "replace the bad files from: the zoo" in r.text()
    # a sha256 mismatch does not stop the key check of a readable file
    assert {k.component for k in r.keys if k.ok} >= {"diffusion model"}


def test_missing_files_say_what_to_download_from_where(tiny_sd_cxrbert, tmp_path):
    s = _copy(tiny_sd_cxrbert, tmp_path, "s")
    shutil.rmtree(s / "vae")
    f = _yaml(tmp_path, {"mine": {
        "adapter": "diffusers-sd", "path": str(s), "recipe": "nuetzel2025", "source": "SD 1.5 + the G2G release",
        "files": ["scheduler/scheduler_config.json", "extra/notes.txt"],
    }})
    r = verify_checkpoint("mine", checkpoints_file=f)
    assert not r.ok
    assert set(r.missing) == {"extra/notes.txt", "vae/config.json", "vae/diffusion_pytorch_model.safetensors"}
    text = r.text()
    assert "[MISSING] vae/config.json: vae/ of stable-diffusion-v1-5" in text
    assert "to obtain them:\n  SD 1.5 + the G2G release" in text
    assert text.count("[MISSING]") == 3
    assert "result: 3 file(s) missing" in text


def test_missing_named_checkpoint_lists_each_file_once_with_the_resolved_home(tmp_path, monkeypatch):
    """No folder at all: one line per missing file, the home folder resolved (GROUNDKIT_HOME unset), and the
    source's commands with that folder in them, ready to copy."""
    monkeypatch.delenv("GROUNDKIT_HOME", raising=False)
    f = tmp_path / "c.yaml"
    f.write_text(f"home: {tmp_path / 'home'}\ncheckpoints:\n  zoo:\n    adapter: monai-ldm\n    path: zoo_bundle\n"
                 "    recipe: vilouras2024\n    files: [configs/inference.json, models/autoencoder.pth]\n"
                 "    source: python -m monai.bundle download zoo --bundle_dir $GROUNDKIT_HOME\n")
    r = verify_checkpoint("zoo", checkpoints_file=f)
    text = r.text()
    missing_lines = [ln for ln in text.splitlines() if "[MISSING]" in ln]
    items = [ln.split("[MISSING]")[1].split(":")[0].strip() for ln in missing_lines]
    assert len(items) == len(set(items)), text  # nothing listed twice
    assert {"configs/inference.json", "models/autoencoder.pth", "models/diffusion_model.pth"} <= set(items)
    assert "$GROUNDKIT_HOME" not in text
    assert f"--bundle_dir {tmp_path / 'home'}" in text and f"home:   {tmp_path / 'home'}" in text
    assert f"result: {len(items)} file(s) missing" in text


def test_named_checkpoint_without_its_folder(tmp_path):
    f = _yaml(tmp_path, {"gone": {"adapter": "monai-ldm", "path": "not_here", "recipe": "vilouras2024",
                                  "source": "python -m monai.bundle download ..."}})
    r = verify_checkpoint("gone", checkpoints_file=f)
    assert not r.ok
    assert {"configs/inference.json", "models/autoencoder.pth", "models/diffusion_model.pth"} <= set(r.missing)
    assert "python -m monai.bundle download" in r.text()


def test_deep_false_skips_key_sets(tiny_monai_bundle):
    r = verify_checkpoint(str(tiny_monai_bundle), deep=False)
    assert r.ok and r.keys == []
    assert "--no-deep" in r.text()


def test_unknown_name_or_folder(tmp_path):
    with pytest.raises(ValueError, match="neither a checkpoint name"):
        verify_checkpoint(str(tmp_path / "nope"))


def test_cli_checkpoints_verify(tiny_monai_bundle, tmp_path):
    from typer.testing import CliRunner

    from groundkit.cli import app

    b = _copy(tiny_monai_bundle, tmp_path, "b")
    f = _yaml(tmp_path, {"mine": {"adapter": "monai-ldm", "path": str(b), "recipe": "vilouras2024", "source": "zoo"}})
    runner = CliRunner()
    ok = runner.invoke(app, ["checkpoints", "verify", "mine", "--checkpoints-file", str(f)])
    assert ok.exit_code == 0, ok.output
    assert "result: all files present and consistent" in ok.output
    (b / "models" / "autoencoder.pth").unlink()
    bad = runner.invoke(app, ["checkpoints", "verify", "mine", "--checkpoints-file", str(f), "--no-deep"])
    assert bad.exit_code == 1
    assert "[MISSING] models/autoencoder.pth" in bad.output and "to obtain them:\n  zoo" in bad.output


# ----------------------------------------------------------------------------------------------
# full size, without weights: META-device networks and sparse files that only have headers


def _sparse_safetensors(path: Path, shapes: dict[str, tuple[int, ...]], dtype: str = "F32") -> int:
    """A safetensors file whose header describes ``shapes``; the data is a hole (sparse file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header, off = {}, 0
    for k, shape in shapes.items():
        n = 4
        for d in shape:
            n *= int(d)
        header[k] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        fh.truncate(8 + len(raw) + off)
    return 8 + len(raw) + off


def _meta_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _n(shapes: dict[str, tuple[int, ...]]) -> int:
    total = 0
    for s in shapes.values():
        n = 1
        for d in s:
            n *= d
        total += n
    return total


def test_full_size_monai_networks_on_meta(tmp_path):
    f = tmp_path / "configs" / "inference.json"
    _write_json(f, _inference_json(dict(MONAI_AE_FULL), dict(MONAI_UNET_FULL)))
    nets = monai_networks_on_meta(f)
    ae, unet = nets["autoencoder"], nets["diffusion_model"]
    assert all(t.is_meta for t in list(ae.state_dict().values()) + list(unet.state_dict().values()))
    assert sum(p.numel() for p in unet.parameters()) == 263_636_995
    attn2 = [n for n, _ in unet.named_modules() if n.endswith(".attn2")]
    assert len(attn2) == 11  # docs/protocols.md §1
    assert attn2[0].startswith("down_blocks.1.attentions.0") and attn2[4].startswith("middle_block.attention")
    assert unet.block_out_channels == (256, 512, 768) or list(unet.block_out_channels) == [256, 512, 768]


def test_full_size_old_generative_layout_maps_onto_monai_core():
    """Every key of the OLD generative classes at the bundle's full size, renamed, fits MONAI core exactly."""
    gen = pytest.importorskip("generative.networks.nets")
    from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

    for old_cls, new_cls, kw in ((gen.AutoencoderKL, AutoencoderKL, MONAI_AE_FULL),
                                 (gen.DiffusionModelUNet, DiffusionModelUNet, MONAI_UNET_FULL)):
        new_kw = {("channels" if k == "num_channels" else k): v for k, v in kw.items()}
        with torch.device("meta"):
            old, new = old_cls(**kw), new_cls(**new_kw)
        expected = _meta_shapes(new)
        renamed, n = convert_old_monai_keys(old.state_dict(), expected)
        check_keys(expected, renamed, f"full-size {old_cls.__name__}")  # raises on any difference
        assert n > 0


@pytest.fixture(scope="module")
def full_size_sparse_bundle(tmp_path_factory):
    """The MONAI bundle at full size: real configs, OLD-layout weights as header-only safetensors, a CLIP
    text encoder with SD-2.1-base's config in transformers 4's key layout (``text_model.`` prefix,
    ``position_ids`` buffer) as SD-2.1-base publishes it."""
    gen = pytest.importorskip("generative.networks.nets")
    from transformers import CLIPTextConfig, CLIPTextModel

    root = tmp_path_factory.mktemp("full_monai") / "cxr_image_synthesis_latent_diffusion_model"
    _write_json(root / "configs" / "inference.json", _inference_json(dict(MONAI_AE_FULL), dict(MONAI_UNET_FULL)))
    with torch.device("meta"):
        ae, unet = gen.AutoencoderKL(**MONAI_AE_FULL), gen.DiffusionModelUNet(**MONAI_UNET_FULL)
        clip = CLIPTextModel(CLIPTextConfig(**CLIP_TEXT_FULL))
    sizes = {
        "ae": _sparse_safetensors(root / "models" / "autoencoder.safetensors", _meta_shapes(ae)),
        "unet": _sparse_safetensors(root / "models" / "diffusion_model.safetensors", _meta_shapes(unet)),
    }
    clip_keys = {"text_model." + k: s for k, s in _meta_shapes(clip).items()}
    clip_keys["text_model.embeddings.position_ids"] = (1, 77)
    sizes["clip"] = _sparse_safetensors(root / "text_encoder" / "model.safetensors", clip_keys)
    _write_json(root / "text_encoder" / "config.json",
                {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", **CLIP_TEXT_FULL})
    build_clip_tokenizer_files(root / "tokenizer")
    return root, sizes


def test_full_size_monai_bundle_verifies_from_headers(full_size_sparse_bundle):
    root, sizes = full_size_sparse_bundle
    assert sizes["unet"] > 1_000_000_000  # ~1.05 GB described...
    assert os.stat(root / "models" / "diffusion_model.safetensors").st_blocks * 512 < 1_000_000  # ...none on disk
    r = verify_checkpoint(str(root))
    assert r.ok, r.text()
    by = {k.component: k for k in r.keys}
    assert by["diffusion model"].expected == 496 and by["diffusion model"].renamed == 48
    assert by["CLIP text encoder"].renamed == by["CLIP text encoder"].expected  # text_model. stripped
    assert by["CLIP text encoder"].tolerated == ["text_model.embeddings.position_ids"]
    assert "1.1 GB" in r.text() or "1.0 GB" in r.text()


def test_full_size_monai_bundle_with_a_wrong_sized_clip(full_size_sparse_bundle, tmp_path):
    root, _ = full_size_sparse_bundle
    b = tmp_path / "b"  # hard links to the sparse files (a copy would write their holes out; symbolic links leaving
    for sub in ("configs", "models", "tokenizer"):  # the checkpoint folder are a verify failure of their own)
        shutil.copytree(root / sub, b / sub, copy_function=os.link)
    (b / "text_encoder").mkdir()
    os.link(root / "text_encoder" / "model.safetensors", b / "text_encoder" / "model.safetensors")
    shutil.copy(root / "text_encoder" / "config.json", b / "text_encoder" / "config.json")
    cfg = json.loads((b / "text_encoder" / "config.json").read_text())
    cfg["hidden_size"] = 768  # an SD-1.x CLIP config with SD-2.1's weights
    cfg["num_attention_heads"] = 12
    (b / "text_encoder" / "config.json").write_text(json.dumps(cfg))
    p = _problem(verify_checkpoint(str(b), deep=True), "text_encoder/model.safetensors")
    assert "expected (49408, 768), file has (49408, 1024)" in p.detail


def test_full_size_sd_tree_verifies_from_headers(tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import BertConfig, BertForMaskedLM

    root = tmp_path / "sd15_cxrbert"
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(SD15_UNET_FULL)
        vae = AutoencoderKL.from_config(SD15_VAE_FULL)
        bert_keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id")
        mlm = BertForMaskedLM(BertConfig(**{k: CXRBERT_FULL[k] for k in bert_keys}))
    assert _n(_meta_shapes(unet)) == 859_520_964  # SD 1.5 U-Net
    _write_json(root / "unet_ema" / "config.json", {"_class_name": "UNet2DConditionModel", **SD15_UNET_FULL})
    _sparse_safetensors(root / "unet_ema" / "diffusion_pytorch_model.safetensors", _meta_shapes(unet))
    # SD 1.5's published VAE file predates diffusers' attention rename: query/key/value/proj_attn
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    vae_keys = {}
    for k, s in _meta_shapes(vae).items():
        if ".mid_block.attentions.0." in k:
            for new, was in old.items():
                k = k.replace(f".attentions.0.{new}.", f".attentions.0.{was}.")
        vae_keys[k] = s
    assert "encoder.mid_block.attentions.0.query.weight" in vae_keys
    _write_json(root / "vae" / "config.json", {"_class_name": "AutoencoderKL", **SD15_VAE_FULL})
    _sparse_safetensors(root / "vae" / "diffusion_pytorch_model.safetensors", vae_keys)
    _write_json(root / "scheduler" / "scheduler_config.json", SD15_SCHEDULER)
    # CXR-BERT-specialized as published: BertForMaskedLM keys + position_ids + projection head
    h, p = CXRBERT_FULL["hidden_size"], CXRBERT_FULL["projection_size"]
    te = dict(_meta_shapes(mlm))
    te["bert.embeddings.position_ids"] = (1, CXRBERT_FULL["max_position_embeddings"])
    te.update({"cls_projection_head.dense_to_hidden.weight": (p, h), "cls_projection_head.dense_to_hidden.bias": (p,),
               "cls_projection_head.LayerNorm.weight": (p,), "cls_projection_head.LayerNorm.bias": (p,),
               "cls_projection_head.dense_to_output.weight": (p, p), "cls_projection_head.dense_to_output.bias": (p,)})
    _write_json(root / "text_encoder" / "config.json", CXRBERT_FULL)
    _sparse_safetensors(root / "text_encoder" / "model.safetensors", te)
    _write_wordpiece_tokenizer(root / "tokenizer", wordpiece_vocab())
    r = verify_checkpoint(str(root))
    assert r.ok, r.text()
    by = {k.component: k for k in r.keys}
    assert by["U-Net"].expected == 686
    assert by["VAE"].renamed == 16  # 2 mid-block attentions x (query, key, value, proj_attn) x (weight, bias)
    assert by["text encoder"].module == "CXRBertModel" and by["text encoder"].expected == len(te) - 1
    assert "3.4 GB" in r.text()


def test_safetensors_header_reader(tmp_path):
    f = tmp_path / "x.safetensors"
    total = _sparse_safetensors(f, {"a": (2, 3), "b": (4,)})
    assert read_safetensors_header(f) == {"a": ("F32", (2, 3)), "b": ("F32", (4,))}
    shapes = file_shapes(f)
    assert shapes["a"].is_meta and tuple(shapes["a"].shape) == (2, 3)
    with open(f, "r+b") as fh:
        fh.truncate(total - 1)
    with pytest.raises(CheckpointError, match="truncated") as ei:
        read_safetensors_header(f)
    assert str(f) in str(ei.value)


def _header_file(header: bytes, n: int | None = None, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header) if n is None else n) + header + data


@pytest.mark.parametrize("content,why", [
    (b"", "only 0 bytes"),
    (b"abc", "only 3 bytes"),
    (b"PK\x03\x04" + b"\0" * 60, "unreadable safetensors header"),  # a torch.save zip
    (b"this is a text file, not weights", "unreadable safetensors header"),
    (_header_file(b"{}", n=1 << 40), "header too large"),  # hostile length: refused before reading
    (_header_file(b'{"a": 1', n=1000), "unreadable safetensors header"),  # length past the end of the file
    (_header_file(b"{abc"), "invalid JSON"),
    (_header_file(b"[]"), "unreadable safetensors header"),
    (_header_file(json.dumps({"a": {"dtype": "F32", "shape": [5], "data_offsets": [0, 8]}}).encode(), data=b"\0" * 8),
     "unreadable safetensors header"),  # shape and byte range disagree
])
def test_safetensors_header_reader_refuses_broken_files(tmp_path, content, why):
    f = tmp_path / "bad.safetensors"
    f.write_bytes(content)
    with pytest.raises(CheckpointError, match=why) as ei:
        read_safetensors_header(f)
    assert str(f) in str(ei.value)


def test_safetensors_header_reader_file_longer_than_header(tmp_path):
    f = tmp_path / "x.safetensors"
    total = _sparse_safetensors(f, {"a": (2, 3)})
    with open(f, "r+b") as fh:
        fh.truncate(total + 8)
    with pytest.raises(CheckpointError, match="longer than its header says"):
        read_safetensors_header(f)


def test_safetensors_header_reader_metadata_and_order(tmp_path):
    f = tmp_path / "x.safetensors"
    save_file({"z": torch.zeros(2, dtype=torch.bfloat16), "a": torch.zeros(3, 1, dtype=torch.int64)}, str(f),
              metadata={"format": "pt"})
    assert read_safetensors_header(f) == {"z": ("BF16", (2,)), "a": ("I64", (3, 1))}
    shapes = file_shapes(f)
    assert shapes["z"].dtype == torch.bfloat16 and shapes["a"].dtype == torch.int64


def test_clip_key_normalisation():
    own = ["embeddings.token_embedding.weight", "final_layer_norm.weight"]
    out, n, dropped = normalize_clip_keys(
        {"text_model.embeddings.token_embedding.weight": 1, "text_model.final_layer_norm.weight": 2,
         "text_model.embeddings.position_ids": 3}, own)
    assert set(out) == set(own) and n == 2 and dropped == ["text_model.embeddings.position_ids"]
