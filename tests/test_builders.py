"""tests/builders.py writes the real published layouts (tiny sizes here; full sizes only in benchmarks)."""
from __future__ import annotations

import json
from pathlib import Path

import builders as B
import pytest
import torch

from groundkit.core.safeload import load_state_dict


def _kwargs(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def _core_kwargs(entry: dict) -> dict:
    """old generative kwargs -> MONAI core kwargs (num_channels was renamed channels)."""
    kw = _kwargs(entry)
    kw["channels"] = kw.pop("num_channels")
    return kw


# ---------------------------------------------------------------------------------------------------
# MONAI bundle


def test_monai_bundle_files(tiny_monai_bundle):
    b = Path(tiny_monai_bundle)
    assert b.name == "cxr_image_synthesis_latent_diffusion_model"
    for rel in ("configs/inference.json", "configs/metadata.json", "models/autoencoder.pth", "models/diffusion_model.pth",
                "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/vocab.json",
                "tokenizer/merges.txt", "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json"):
        assert (b / rel).is_file(), rel
    cfg = json.loads((b / "configs/inference.json").read_text())
    assert cfg["autoencoder_def"]["_target_"] == "generative.networks.nets.AutoencoderKL"
    assert cfg["diffusion_def"]["_target_"] == "generative.networks.nets.DiffusionModelUNet"
    assert cfg["scheduler"]["_target_"] == "generative.networks.schedulers.DDIMScheduler"
    assert _kwargs(cfg["autoencoder_def"]) == B.MONAI_AE_TINY
    assert _kwargs(cfg["diffusion_def"]) == B.MONAI_UNET_TINY
    assert _kwargs(cfg["scheduler"]) == B.MONAI_SCHEDULER
    assert cfg["scheduler"]["schedule"] == "scaled_linear_beta" and cfg["scheduler"]["prediction_type"] == "v_prediction"
    # "$" expressions are there (and must never be evaluated by a loader)
    assert cfg["device"].startswith("$torch.device(")
    assert "stabilityai/stable-diffusion-2-1-base" in cfg["text_encoder"] and cfg["text_encoder"].startswith("$")
    assert cfg["create_output_dir"].startswith("$Path(")
    assert not (b / "output").exists()
    assert json.loads((b / "configs/metadata.json").read_text())["version"] == "1.0.0"


def test_full_size_monai_settings_are_the_published_ones():
    ae, un = B.MONAI_AE_FULL, B.MONAI_UNET_FULL
    assert ae["num_channels"] == [64, 128, 128, 128] and ae["latent_channels"] == 3 and ae["norm_num_groups"] == 32
    assert ae["with_encoder_nonlocal_attn"] is False and ae["attention_levels"] == [False] * 4
    assert un["num_channels"] == [256, 512, 768] and un["num_head_channels"] == [0, 512, 768]
    assert un["attention_levels"] == [False, True, True] and un["cross_attention_dim"] == 1024
    assert B.CLIP_TEXT_FULL["hidden_size"] == 1024 and B.CLIP_TEXT_FULL["num_hidden_layers"] == 23
    # tiny keeps the structure (levels, blocks, attention pattern)
    for k in ("num_res_blocks", "attention_levels", "transformer_num_layers", "with_conditioning"):
        assert B.MONAI_UNET_TINY[k] == un[k]
    assert len(B.MONAI_AE_TINY["num_channels"]) == len(ae["num_channels"])


def test_monai_state_dicts_are_old_format(tiny_monai_bundle):
    b = Path(tiny_monai_bundle)
    unet = load_state_dict(b / "models/diffusion_model.pth")
    ae = load_state_dict(b / "models/autoencoder.pth")
    assert any(".attn2.to_out.0.weight" in k for k in unet)
    assert not any("out_proj" in k for k in unet)
    assert "up_blocks.0.upsampler.conv.conv.weight" in unet and not any("postconv" in k for k in unet)
    assert "decoder.blocks.3.conv.conv.weight" in ae and not any("postconv" in k for k in ae)
    assert sum(1 for k in unet if k.endswith("attn2.to_k.weight")) == 11


def test_monai_state_dicts_load_into_old_classes(tiny_monai_bundle):
    nets = pytest.importorskip("generative.networks.nets")
    b = Path(tiny_monai_bundle)
    cfg = json.loads((b / "configs/inference.json").read_text())
    nets.AutoencoderKL(**_kwargs(cfg["autoencoder_def"])).load_state_dict(load_state_dict(b / "models/autoencoder.pth"))
    nets.DiffusionModelUNet(**_kwargs(cfg["diffusion_def"])).load_state_dict(
        load_state_dict(b / "models/diffusion_model.pth")
    )


def test_monai_state_dicts_load_into_core_networks(tiny_monai_bundle):
    from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

    b = Path(tiny_monai_bundle)
    cfg = json.loads((b / "configs/inference.json").read_text())
    ae = AutoencoderKL(**_core_kwargs(cfg["autoencoder_def"])).eval()
    old_ae = load_state_dict(b / "models/autoencoder.pth")
    ae.load_old_state_dict(dict(old_ae))
    torch.testing.assert_close(ae.state_dict()["decoder.blocks.3.postconv.conv.weight"], old_ae["decoder.blocks.3.conv.conv.weight"])

    unet = DiffusionModelUNet(**_core_kwargs(cfg["diffusion_def"])).eval()
    old = load_state_dict(b / "models/diffusion_model.pth")
    unet.load_old_state_dict(dict(old))
    new = unet.state_dict()
    k = "down_blocks.1.attentions.0.transformer_blocks.0.attn2"
    torch.testing.assert_close(new[f"{k}.out_proj.weight"], old[f"{k}.to_out.0.weight"])
    torch.testing.assert_close(new["up_blocks.1.upsampler.postconv.conv.weight"], old["up_blocks.1.upsampler.conv.conv.weight"])
    attn2 = [n for n, _ in unet.named_modules() if n.endswith("attn2")]
    assert len(attn2) == 11
    assert attn2[4] == "middle_block.attention.transformer_blocks.0.attn2"

    with torch.no_grad():
        z = ae.encode(torch.rand(1, 1, 64, 64))[0]
        assert z.shape == (1, 3, 8, 8)
        ctx = torch.randn(2, 77, cfg["diffusion_def"]["cross_attention_dim"])
        out = unet(torch.randn(2, 3, 16, 16), timesteps=torch.tensor([10, 10]), context=ctx)
    assert out.shape == (2, 3, 16, 16) and out.abs().sum() > 0  # zero-initialised layers were re-drawn


def test_monai_clip_tokenizer_and_text_encoder(tiny_monai_bundle):
    transformers = pytest.importorskip("transformers")
    b = Path(tiny_monai_bundle)
    tok = transformers.CLIPTokenizer.from_pretrained(str(b / "tokenizer"), local_files_only=True)
    assert tok.is_fast and tok.model_max_length == 77
    vocab = json.loads((b / "tokenizer/vocab.json").read_text())
    assert vocab["!"] == 0 and tok.pad_token_id == 0  # SD 2.x pads with "!"
    assert tok.bos_token_id == vocab["<|startoftext|>"] == len(vocab) - 2
    assert tok.eos_token_id == vocab["<|endoftext|>"] == len(vocab) - 1
    enc = tok(["", "Big right-sided pleural effusion", "small left pneumothorax"], padding="max_length", max_length=77,
              truncation=True)
    assert enc.tokens(1)[:8] == ["<|startoftext|>", "big</w>", "right</w>", "-</w>", "sided</w>", "pleural</w>",
                                 "effusion</w>", "<|endoftext|>"]
    assert enc.word_ids(1)[:8] == [None, 0, 1, 2, 3, 4, 5, None]
    assert enc["input_ids"][0][:3] == [tok.bos_token_id, tok.eos_token_id, 0]
    wid = enc.word_ids(2)
    assert wid.count(2) > 1  # "pneumothorax" is several BPE tokens of the same word
    for w in B.REPORT_WORDS:
        assert tok.tokenize(w) == [w + "</w>"], w

    te = transformers.CLIPTextModel.from_pretrained(str(b / "text_encoder"), local_files_only=True).eval()
    cfg = json.loads((b / "configs/inference.json").read_text())
    assert te.config.hidden_size == cfg["diffusion_def"]["cross_attention_dim"]
    assert te.config.vocab_size == len(vocab) and te.config.max_position_embeddings == 77
    with torch.no_grad():
        h = te(torch.tensor(enc["input_ids"][:2])).last_hidden_state
    assert h.shape == (2, 77, cfg["diffusion_def"]["cross_attention_dim"])


# ---------------------------------------------------------------------------------------------------
# diffusers SD-1.5 + CXR-BERT


def test_sd_tree_files(tiny_sd_cxrbert):
    t = Path(tiny_sd_cxrbert)
    for rel in ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                "unet_ema/config.json", "unet_ema/diffusion_pytorch_model.safetensors", "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
                "text_encoder/config.json", "text_encoder/pytorch_model.bin", "tokenizer/vocab.txt",
                "tokenizer/tokenizer_config.json"):
        assert (t / rel).is_file(), rel
    assert not (t / "text_encoder/modeling_cxrbert.py").exists()
    te = json.loads((t / "text_encoder/config.json").read_text())
    assert te["architectures"] == ["CXRBertModel"] and te["model_type"] == "cxr-bert" and "auto_map" in te
    tc = json.loads((t / "tokenizer/tokenizer_config.json").read_text())
    assert tc["do_lower_case"] is True and tc["model_max_length"] == 512


def test_sd_tree_loads_with_diffusers(tiny_sd_cxrbert):
    diffusers = pytest.importorskip("diffusers")
    t = Path(tiny_sd_cxrbert)
    unet = diffusers.UNet2DConditionModel.from_pretrained(str(t), subfolder="unet").eval()
    ema = diffusers.UNet2DConditionModel.from_pretrained(str(t), subfolder="unet_ema").eval()
    assert list(unet.config.block_out_channels) == B.SD15_UNET_TINY["block_out_channels"]
    assert list(unet.config.down_block_types) == B.SD15_UNET_FULL["down_block_types"]
    assert list(unet.config.up_block_types) == B.SD15_UNET_FULL["up_block_types"]
    assert not torch.equal(unet.conv_in.weight, ema.conv_in.weight)  # EMA weights are distinct
    attn2 = [n for n, _ in unet.named_modules() if n.endswith("attn2")]
    assert len(attn2) == 16

    vae = diffusers.AutoencoderKL.from_pretrained(str(t), subfolder="vae").eval()
    assert vae.config.scaling_factor == pytest.approx(0.18215) and vae.config.latent_channels == 4
    sched = diffusers.DDIMScheduler.from_pretrained(str(t), subfolder="scheduler")
    assert sched.config.prediction_type == "epsilon" and sched.config.steps_offset == 1
    assert sched.config.set_alpha_to_one is False and sched.config.timestep_spacing == "leading"
    sched.set_timesteps(50)
    assert sched.timesteps[0].item() == 981 and sched.timesteps[-1].item() == 1

    from groundkit.families.text.cxrbert import load_cxrbert

    enc, tok = load_cxrbert(t / "text_encoder", model_max_length=77)  # finds ../tokenizer
    assert enc.config.hidden_size == unet.config.cross_attention_dim
    batch = tok(["right upper lobe pneumonia"], padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        ctx = enc(batch["input_ids"], batch["attention_mask"])
        x = vae.encode(torch.rand(1, 3, 64, 64) * 2 - 1).latent_dist.mean
        assert x.shape == (1, 4, 8, 8)
        out = unet(x, 981, encoder_hidden_states=ctx).sample
    assert out.shape == x.shape


def test_full_size_sd_settings_are_the_published_ones():
    u, v, s = B.SD15_UNET_FULL, B.SD15_VAE_FULL, B.SD15_SCHEDULER
    assert u["block_out_channels"] == [320, 640, 1280, 1280] and u["cross_attention_dim"] == 768
    assert u["attention_head_dim"] == 8 and u["layers_per_block"] == 2 and u["sample_size"] == 64
    assert v["block_out_channels"] == [128, 256, 512, 512] and v["scaling_factor"] == 0.18215
    assert (s["beta_start"], s["beta_end"], s["beta_schedule"]) == (0.00085, 0.012, "scaled_linear")
    assert B.CXRBERT_FULL["hidden_size"] == u["cross_attention_dim"]
    assert B.CXRBERT_TINY["hidden_size"] == B.SD15_UNET_TINY["cross_attention_dim"]


def test_builds_are_deterministic(tmp_path):
    a = B.build_cxrbert_folder(tmp_path / "a", seed=3)
    b = B.build_cxrbert_folder(tmp_path / "b", seed=3)
    c = B.build_cxrbert_folder(tmp_path / "c", seed=4)
    sa, sb, sc = (load_state_dict(p / "pytorch_model.bin") for p in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["bert.embeddings.word_embeddings.weight"], sc["bert.embeddings.word_embeddings.weight"])
