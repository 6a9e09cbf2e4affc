"""More chest X-ray diffusion checkpoints (RadEdit, RoentGen, any SD 1.x/2.x diffusers folder with CLIP, with
epsilon or v-prediction), grounding with a pipeline already in memory (``gk.from_diffusers``), and the benchmark's
side-by-side comparison of several checkpoints with paired-bootstrap intervals.

Every checkpoint is a tiny random build in the real on-disk layout (nothing can be downloaded); full-size
architectures are checked on the meta device, with header-only (sparse) weight files.
"""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import groundkit as gk
from groundkit.families.diffusers_sd import DiffusersSDAdapter
from groundkit.families.diffusers_sd.testing_radedit import (
    RADEDIT_SCHEDULER,
    RADEDIT_UNET_FULL,
    SDXL_VAE_FULL,
    build_radedit,
    radedit_entry,
)
from groundkit.families.diffusers_sd.testing_roentgen import SD2_V_SCHEDULER, build_roentgen, build_sd_clip
from groundkit.families.text.cxrbert import CXRBertModel, load_cxrbert
from groundkit.families.text.testing import BIOVILT_FULL, CLIP_L_TEXT_FULL, build_biovilt_folder
from groundkit.registry import load_checkpoints
from groundkit.verify import verify_checkpoint

SHIPPED = Path(gk.__file__).parent / "checkpoints.yaml"
PHRASE = "small left pleural effusion"
FAST = {"steps": (48, 50)}


pytestmark = pytest.mark.usefixtures("one_thread")


def _image(seed=0, h=70, w=60):
    rng = np.random.default_rng(seed)
    img = rng.random((h, w)).astype(np.float32) * 0.3
    img[10:30, 30:50] += 0.6
    return img


def _shipped(name: str, path: Path, **extra) -> dict:
    """The shipped checkpoints.yaml entry of ``name``, pointed at a tiny build (served at 64 px)."""
    raw = yaml.safe_load(SHIPPED.read_text())["checkpoints"][name]
    return {**raw, "path": str(path), "image_size": 64, **extra}


def _yaml(tmp: Path, entries: dict) -> Path:
    f = tmp / "checkpoints.yaml"
    f.write_text(yaml.safe_dump({"home": str(tmp), "checkpoints": entries}))
    return f


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("more")
    return {"radedit": build_radedit(root, tiny=True, seed=0), "roentgen": build_roentgen(root, tiny=True, seed=1),
            "sd2v": build_sd_clip(root, tiny=True, seed=2, variant="sd2-v")}


@pytest.fixture(scope="module")
def radedit_cfg(trees):
    return _yaml(trees["radedit"].parent, {"radedit": _shipped("radedit", trees["radedit"]),
                                           "roentgen": _shipped("roentgen", trees["roentgen"])})


# ------------------------------------------------------------------------------------------------ RadEdit
def test_shipped_entries_declare_where_each_part_comes_from():
    entries = load_checkpoints()
    r, g = entries["radedit"], entries["roentgen"]
    assert r.adapter == g.adapter == "diffusers-sd"
    assert r.options["scale_factor"] == 0.13025 and r.options["max_length"] == 128 and r.options["attention_mask"] is False
    assert r.options["scheduler"] == RADEDIT_SCHEDULER  # the model card's DDIMScheduler arguments
    for repo in ("microsoft/radedit", "stabilityai/sdxl-vae", "microsoft/BiomedVLP-BioViL-T"):
        assert repo in r.source
    assert "StanfordMIMI/RoentGen" in g.source and "model_index.json" in g.files


def test_radedit_loads_as_its_model_card_builds_it(trees, radedit_cfg):
    from diffusers import DDIMScheduler

    m = gk.load("radedit", device="cpu", checkpoints_file=radedit_cfg)
    a = m.adapter
    assert isinstance(a.text_encoder, CXRBertModel) and a.max_length == 128 and a.pass_mask is False
    assert a.scale_factor == 0.13025 and a.latent_size == 8 and a.vae.config.scaling_factor == 0.13025
    card = DDIMScheduler(beta_schedule="linear", clip_sample=False, prediction_type="epsilon",
                         timestep_spacing="trailing", steps_offset=1)
    torch.testing.assert_close(a.schedule.alphas_cumprod, card.alphas_cumprod.double())
    assert a.schedule.prediction_type == "epsilon" and a.schedule.final_alpha_cumprod == 1.0  # set_alpha_to_one default
    # phrases encoded as the card's StableDiffusionPipeline does: 128 tokens, no attention mask
    text = a.encode_text([PHRASE])
    ids = a.tokenizer([PHRASE], padding="max_length", max_length=128, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(text.embeddings, a.text_encoder(ids))
    g = m.ground(_image(), PHRASE, "nuetzel2025-fast", **FAST)
    assert np.isfinite(g.heatmap_crop).all() and g.info["checkpoint"] == "radedit"


def test_radedit_verifies_and_says_which_files_to_obtain(trees, radedit_cfg, tmp_path):
    r = verify_checkpoint("radedit", checkpoints_file=radedit_cfg)
    assert r.ok, r.text()
    by = {k.component: k for k in r.keys}
    assert set(by) == {"U-Net", "VAE", "text encoder"} and by["text encoder"].module == "CXRBertModel"
    assert "bert.embeddings.position_ids" in by["text encoder"].tolerated
    assert "DDIMScheduler(beta_schedule=linear" in r.text()
    assert "biovil_t_image_model" not in r.text()  # the image model file is never read
    # an empty folder: every file named, with where it comes from
    empty = tmp_path / "radedit"
    empty.mkdir()
    r = verify_checkpoint("radedit", checkpoints_file=_yaml(tmp_path, {"radedit": _shipped("radedit", empty)}))
    text = r.text()
    assert {"unet/config.json", "vae/config.json", "text_encoder/config.json", "text_encoder/vocab.txt",
            "vae/diffusion_pytorch_model.safetensors"} <= set(r.missing)
    assert "stabilityai/sdxl-vae" in text and "microsoft/BiomedVLP-BioViL-T" in text and "unet/ of microsoft/radedit" in text


@pytest.mark.parametrize("revision", ["main", "initial"])
def test_biovilt_config_revisions_load_with_groundkits_class(tmp_path, revision):
    folder = build_biovilt_folder(tmp_path / "BiomedVLP-BioViL-T", tiny=True, seed=4, revision=revision)
    cfg = json.loads((folder / "config.json").read_text())
    assert ("model_type" in cfg) == (revision == "initial")
    enc, tok = load_cxrbert(folder, model_max_length=128)
    assert hasattr(enc, "cls_projection_head") and hasattr(enc, "cls") and tok.model_max_length == 128
    assert enc.project_cls(tok(["no effusion"], return_tensors="pt").input_ids).shape == (1, 16)


def test_unet_conditioning_groundkit_cannot_feed_is_refused(trees, tmp_path):
    src = trees["radedit"]
    bad = tmp_path / "radedit"
    shutil.copytree(src, bad)
    cfg_file = bad / "unet" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    f = _yaml(tmp_path, {"radedit": _shipped("radedit", bad)})
    cfg_file.write_text(json.dumps({**cfg, "cross_attention_dim": 48}))
    with pytest.raises(ValueError, match=r"attn2\.to_k\.weight: expected \(\d+, 48\)"):  # config vs its own weights
        gk.load("radedit", device="cpu", checkpoints_file=f)
    r = verify_checkpoint("radedit", checkpoints_file=f)
    assert any(c.item == "unet/config.json" and "48-wide" in c.detail for c in r.problems), r.text()
    cfg_file.write_text(json.dumps({**cfg, "addition_embed_type": "text_time", "addition_time_embed_dim": 8}))
    with pytest.raises(ValueError, match="addition_embed_type='text_time'"):
        gk.load("radedit", device="cpu", checkpoints_file=f)
    (bad / "groundkit.yaml").write_text("image_size: 64\n")  # as a bare folder: no scheduler, and none given
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(FileNotFoundError, match="option `scheduler`"):
        gk.load(str(bad), device="cpu")


# ------------------------------------------------------------------------------------------------ RoentGen / SD 2.x
def test_roentgen_layout_loads_strictly_and_verifies(trees, radedit_cfg):
    from transformers import CLIPTextModel

    m = gk.load("roentgen", device="cpu", checkpoints_file=radedit_cfg)
    a = m.adapter
    assert isinstance(a.text_encoder, CLIPTextModel) and a.pass_mask is False and a.max_length == 77
    assert a.tokenizer.pad_token == "<|endoftext|>"
    assert a.schedule.prediction_type == "epsilon" and a.schedule.final_alpha_cumprod == pytest.approx(1 - 0.00085)
    r = verify_checkpoint("roentgen", checkpoints_file=radedit_cfg)
    assert r.ok, r.text()
    by = {k.component: k for k in r.keys}
    assert by["VAE"].renamed == 16  # 2022 attention names (query/key/value/proj_attn)
    assert by["CLIP text encoder"].tolerated == ["text_model.embeddings.position_ids"]
    assert by["U-Net"].file.name == "diffusion_pytorch_model.bin"


def test_v_prediction_scheduler_loads_and_grounds(trees, tmp_path):
    folder = trees["sd2v"]
    (folder / "groundkit.yaml").write_text("image_size: 64\n")
    m = gk.load(str(folder), device="cpu")
    assert m.adapter.schedule.prediction_type == "v_prediction"
    over = {"grid": "stride:50", "steps": (2, 4), "layers": "all"}
    g = m.ground(_image(), PHRASE, "vilouras2024-fast", **over)
    assert np.isfinite(g.heatmap_crop).all()
    eps = tmp_path / "eps"  # the same weights read as epsilon-prediction: the inversion, hence the map, changes
    shutil.copytree(folder, eps)
    (eps / "scheduler" / "scheduler_config.json").write_text(json.dumps({**SD2_V_SCHEDULER, "prediction_type": "epsilon"}))
    g_eps = gk.load(str(eps), device="cpu").ground(_image(), PHRASE, "vilouras2024-fast", **over)
    assert not np.allclose(g.heatmap_crop, g_eps.heatmap_crop)


# ------------------------------------------------------------------------------------------------ from_diffusers
def _pipe(unet, vae, text_encoder, tokenizer, scheduler):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _same_maps(m1, m2, recipe="nuetzel2025-fast", **over):
    a = m1.ground(_image(), PHRASE, recipe, **(over or FAST))
    b = m2.ground(_image(), PHRASE, recipe, **(over or FAST))
    assert np.array_equal(np.isnan(a.heatmap), np.isnan(b.heatmap))
    np.testing.assert_allclose(a.heatmap_crop, b.heatmap_crop, atol=1e-6)
    assert np.array_equal(a.mask, b.mask)
    return a


def test_from_diffusers_roentgen_pipeline_equals_load(trees):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    folder = trees["roentgen"]
    (folder / "groundkit.yaml").write_text("image_size: 64\n")
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)
    before = {k: type(v) for k, v in pipe.unet.attn_processors.items()}
    m = gk.from_diffusers(pipe, image_size=64, name="roentgen-in-memory")
    assert m.adapter.unet_model is pipe.unet and m.adapter.text_encoder is pipe.text_encoder  # no copies
    assert m.entry.name == "roentgen-in-memory" and m.entry.adapter == "diffusers-sd"
    g = _same_maps(m, gk.load(str(folder), device="cpu"))
    assert g.info["checkpoint"] == "roentgen-in-memory"
    _same_maps(m, gk.load(str(folder), device="cpu"), "vilouras2024-fast", grid="stride:50", steps=(2, 4), layers="all")
    assert {k: type(v) for k, v in pipe.unet.attn_processors.items()} == before  # capture restored diffusers' processors
    # the parts by keyword, a pipeline part replaced by keyword
    parts = gk.from_diffusers(unet=pipe.unet, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                              scheduler=pipe.scheduler, image_size=64)
    _same_maps(parts, m)


def test_from_diffusers_radedit_pipeline_as_on_the_model_card(trees):
    """RadEdit assembled in memory as its model card does (U-Net, SDXL VAE, BioViL-T with 128 tokens, DDIM built in
    code): groundkit's CXR-BERT class stands in for the remote-code AutoModel."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    folder = trees["radedit"]
    text_encoder, tokenizer = load_cxrbert(folder / "text_encoder", model_max_length=128)
    pipe = _pipe(UNet2DConditionModel.from_pretrained(str(folder / "unet")), AutoencoderKL.from_pretrained(str(folder / "vae")),
                 text_encoder, tokenizer, DDIMScheduler(**{k: v for k, v in RADEDIT_SCHEDULER.items() if k[0] != "_"}))
    m = gk.from_diffusers(pipe, image_size=64)
    assert m.adapter.max_length == 128 and m.adapter.scale_factor == 0.13025
    assert m.adapter.pass_mask is True  # BERT-family default, as load; RadEdit's entry turns it off
    loaded = DiffusersSDAdapter.from_entry(radedit_entry(folder, image_size=64))
    assert loaded.pass_mask is False
    m = gk.from_diffusers(pipe, image_size=64, attention_mask=False)
    _same_maps(m, gk.GroundingModel(loaded, m.entry))


def test_from_diffusers_sd15_cxrbert_pipeline_equals_load(tiny_sd_cxrbert, tmp_path):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    folder = tmp_path / "sd15"
    shutil.copytree(tiny_sd_cxrbert, folder)
    (folder / "groundkit.yaml").write_text("image_size: 64\n")
    text_encoder, tokenizer = load_cxrbert(folder / "text_encoder", tokenizer_folder=folder / "tokenizer")
    pipe = _pipe(UNet2DConditionModel.from_pretrained(str(folder / "unet_ema")), AutoencoderKL.from_pretrained(str(folder / "vae")),
                 text_encoder, tokenizer, DDIMScheduler.from_pretrained(str(folder / "scheduler")))
    _same_maps(gk.from_diffusers(pipe, image_size=64, max_length=77), gk.load(str(folder), device="cpu"))


def test_from_diffusers_says_what_is_missing(trees):
    with pytest.raises(ValueError, match="no text_encoder, tokenizer, scheduler"):
        gk.from_diffusers(unet=torch.nn.Linear(1, 1))

    class Slow:
        is_fast = False

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(trees["roentgen"]), safety_checker=None, requires_safety_checker=False)
    with pytest.raises(TypeError, match="slow tokenizer"):
        gk.from_diffusers(pipe, tokenizer=Slow(), image_size=64)


# ------------------------------------------------------------------------------------------------ full size, on meta
def _sparse(path: Path, shapes: dict) -> None:
    """A safetensors file whose header describes ``shapes``; the data is a hole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header, off = {}, 0
    for k, shape in shapes.items():
        n = 4 * int(np.prod(shape)) if shape else 4
        header[k] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + off)


def _shapes(module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_full_size_radedit_and_roentgen_verify_from_headers(tmp_path):
    """The full-size configs on the meta device: RadEdit's (assumed) U-Net takes BioViL-T's 768-wide states, the
    SDXL VAE and CLIP ViT-L/14 have their published sizes, and verify accepts header-only files of those shapes."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from groundkit.families.diffusers_sd.testing import SD15_UNET_FULL, SD15_VAE_FULL
    from groundkit.families.diffusers_sd.testing_roentgen import SD1_PNDM_SCHEDULER
    from groundkit.families.text.cxrbert import build_bert_config
    from groundkit.families.text.testing import write_wordpiece_tokenizer

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(RADEDIT_UNET_FULL)
        vae = AutoencoderKL.from_config(SDXL_VAE_FULL)
        bert = CXRBertModel(build_bert_config(BIOVILT_FULL), projection_size=128, mlm_head=True)
        sd1 = UNet2DConditionModel.from_config(SD15_UNET_FULL)
        clip = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in CLIP_L_TEXT_FULL.items() if k not in ("architectures", "model_type")}))
    n = {name: sum(p.numel() for p in mod.parameters()) for name, mod in
         (("unet", unet), ("vae", vae), ("bert", bert), ("sd1", sd1), ("clip", clip))}
    assert n["vae"] == 83_653_863 and n["clip"] == 123_060_480 and n["sd1"] == 859_520_964
    assert unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight.shape == (320, 768)
    root = tmp_path / "radedit"
    (root / "unet").mkdir(parents=True)
    (root / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel", **RADEDIT_UNET_FULL}))
    _sparse(root / "unet" / "diffusion_pytorch_model.safetensors", _shapes(unet))
    (root / "vae").mkdir()
    (root / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **SDXL_VAE_FULL}))
    _sparse(root / "vae" / "diffusion_pytorch_model.safetensors", _shapes(vae))
    te = {**_shapes(bert), "bert.embeddings.position_ids": (1, 512)}
    _sparse(root / "text_encoder" / "model.safetensors", te)  # the real file is pytorch_model.bin: same keys
    (root / "text_encoder" / "config.json").write_text(json.dumps(BIOVILT_FULL))
    from groundkit.families.text.testing import wordpiece_vocab

    write_wordpiece_tokenizer(root / "text_encoder", wordpiece_vocab(BIOVILT_FULL["vocab_size"]))
    r = verify_checkpoint("radedit", checkpoints_file=_yaml(tmp_path, {"radedit": _shipped("radedit", root)}))
    assert r.ok, r.text()
    assert {k.component: k.expected for k in r.keys}["text encoder"] == len(te) - 1
    # RoentGen: SD 1.x U-Net with CLIP ViT-L/14 (768) as published by transformers 4.x (text_model., position_ids)
    g = tmp_path / "roentgen"
    (g / "unet").mkdir(parents=True)
    (g / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel", **SD15_UNET_FULL}))
    _sparse(g / "unet" / "diffusion_pytorch_model.safetensors", _shapes(sd1))
    (g / "vae").mkdir()
    (g / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **SD15_VAE_FULL}))
    _sparse(g / "vae" / "diffusion_pytorch_model.safetensors", _shapes(vae))
    (g / "scheduler").mkdir()
    (g / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD1_PNDM_SCHEDULER))
    clip_keys = {("" if k.startswith("text_model.") else "text_model.") + k: s for k, s in _shapes(clip).items()}
    _sparse(g / "text_encoder" / "model.safetensors", {**clip_keys, "text_model.embeddings.position_ids": (1, 77)})
    (g / "text_encoder" / "config.json").write_text(json.dumps(CLIP_L_TEXT_FULL))
    from groundkit.families.text.testing import build_clip_tokenizer_files

    build_clip_tokenizer_files(g / "tokenizer", pad="<|endoftext|>")
    (g / "model_index.json").write_text("{}")
    r = verify_checkpoint(str(g))
    assert r.ok, r.text()


# ------------------------------------------------------------------------------------------------ benchmark
def test_benchmark_four_checkpoints_side_by_side(trees, tiny_monai_bundle, tiny_sd_cxrbert, tmp_path):
    """The four named checkpoints (tiny builds in their published layouts, the shipped entries' options) in one
    benchmark run on the synthetic set: one side-by-side table per metric with paired-bootstrap CIs vs the first."""
    import csv

    from typer.testing import CliRunner

    from groundkit.bench.rows import read_rows
    from groundkit.cli import app
    from groundkit.data.synthetic import generate

    entries = {"monai-cxr-ldm": _shipped("monai-cxr-ldm", tiny_monai_bundle),
               "sd15-cxrbert": _shipped("sd15-cxrbert", tiny_sd_cxrbert),
               "radedit": _shipped("radedit", trees["radedit"]), "roentgen": _shipped("roentgen", trees["roentgen"])}
    cfg = _yaml(tmp_path, entries)
    generate(tmp_path / "syn", n=6, seed=0, size=64)
    out = tmp_path / "bench"
    names = ["monai-cxr-ldm", "sd15-cxrbert", "radedit", "roentgen"]
    args = ["benchmark", *[x for n in names for x in ("-c", n)], "-r", "nuetzel2025", "--set", "steps=48:50",
            "--set", "tokens=all", "--dataset", "synthetic", "--data", str(tmp_path / "syn"), "--checkpoints-file", str(cfg),
            "--out", str(out), "--no-page", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = read_rows(out / "rows.jsonl")
    assert len(rows) == 24 and not [r for r in rows if r["error"]]
    assert {r["checkpoint"] for r in rows} == set(names)
    md = (out / "tables.md").read_text()
    assert "Side by side (nuetzel protocol): miou_fgbg" in md and "Side by side (nuetzel protocol): cnr" in md
    for n in names[1:]:
        assert f"Δ {n} − monai-cxr-ldm [95% CI]" in md
    side = list(csv.DictReader(open(out / "tables" / "side_by_side_nuetzel.csv")))
    per_sample = [r for r in side if r["metric"] == "miou_fgbg" and r["category"] == "Per-sample mean"]
    assert [r["config"] for r in per_sample] == names
    for r in per_sample[1:]:
        assert int(r["n_pairs"]) == 6 and float(r["lo"]) <= float(r["diff_vs_first"]) <= float(r["hi"])
    assert per_sample[0]["diff_vs_first"] == ""  # the reference column


def test_side_by_side_matches_compare_and_finds_a_shift(tmp_path):
    from groundkit.bench.compare import compare
    from groundkit.bench.configs import Config
    from groundkit.bench.tables import build_tables
    from groundkit.evaluation.protocols import get_protocol
    from groundkit.recipes import get_recipe

    r = get_recipe("nuetzel2025")
    metrics = tuple(get_protocol("nuetzel").metrics)
    cfgs = [Config(n, n, f"/x/{n}", "diffusers-sd", r.to_dict(), r.digest(), "nuetzel", metrics) for n in ("a", "b", "c")]
    rng = np.random.default_rng(0)
    rows = []
    for shift, cfg in zip((0.0, 0.1, 0.0), cfgs):
        for c in ("Pneumonia", "Edema", "Cardiomegaly"):
            for i in range(25):
                base = np.random.default_rng(hash((c, i)) % 2**32).random(len(metrics))
                rows.append({"sample_id": f"{c[:3]}-{i}", "checkpoint": cfg.checkpoint, "category": c, "phrase": "p",
                             "recipe_digest": cfg.recipe_digest, "error": None,
                             **{m: float(v + shift + 0.01 * rng.standard_normal()) for m, v in zip(metrics, base)}})
    t = build_tables(rows, cfgs)
    side = [r for r in t.csvs["side_by_side_nuetzel"] if r["metric"] == "miou_fgbg"]
    b = {r["category"]: r for r in side if r["config"] == "b"}
    c = {r["category"]: r for r in side if r["config"] == "c"}
    assert b["Per-sample mean"]["lo"] > 0.05 and b["Per-sample mean"]["diff_vs_first"] == pytest.approx(0.1, abs=0.02)
    assert c["Per-sample mean"]["lo"] < 0 < c["Per-sample mean"]["hi"]
    md = t.markdown()
    assert "Δ b − a [95% CI]" in md and "Δ c − a [95% CI]" in md
    # the same intervals as `groundkit benchmark --compare` on the pair (same bootstrap, same seed)
    for cfg in cfgs[:2]:
        d = tmp_path / cfg.label
        d.mkdir()
        (d / "run.json").write_text(json.dumps({"configs": [cfg.to_dict()]}))
        (d / "rows.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows if x["checkpoint"] == cfg.checkpoint))
    cmp = {(x["metric"], x["category"]): x for x in compare(tmp_path / "a", tmp_path / "b").rows}
    for r in (r for r in t.csvs["side_by_side_nuetzel"] if r["config"] == "b"):
        x = cmp[(r["metric"], r["category"])]
        assert (r["diff_vs_first"], r["lo"], r["hi"], r["n_pairs"]) == pytest.approx((x["diff"], x["lo"], x["hi"], x["n"]))
