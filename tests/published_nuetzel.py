"""An independent re-implementation of the published Nuetzel et al. (2025) grounding loop, for checks.

It follows the published code's structure, not groundkit's: every one of the 50 DDIM steps is run
with a classifier-free-guidance batch [uncond, cond]; the image latent is a fresh VAE posterior sample
at every step; the text-only pass samples with diffusers' DDIMScheduler and guidance 16 from an empty
prompt encoded without an attention mask; the maps are float16 and BBM's matrix-product map 8-bit; the
GMM is fitted to the un-normalised merged map and followed by the published orphan-pixel convolution.

Only three things are shared with groundkit, deliberately: the capture processor (checked against the
published one elsewhere), the seeded noise streams (so that both see identical noise) and the token
positions of the lexical filter. Used by tests/test_bbm_fidelity.py and benchmarks/speed.py.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from groundkit.engine.recorder import Recorder
from groundkit.engine.schedules import STREAM_GT_NOISE, STREAM_POSTERIOR, STREAM_TEXT_PASS, step_generator


def normalize_and_scale(t: torch.Tensor, scale: bool = True) -> torch.Tensor:
    """The published helper: float16, min-max, optionally x255 and truncated to uint8."""
    t = t.type(torch.float16)
    out = (t - t.min()) / (t.max() - t.min())
    return (out * 255).to(torch.uint8) if scale else out


def _record(adapter, rec: Recorder, positions: list[int], z, t, ctx_pair) -> None:
    """One CFG forward [uncond, cond]; the conditional half's per-token maps are kept under key 'k'."""
    n = ctx_pair.shape[1]
    w = torch.zeros(2, len(positions), n)
    for g, pos in enumerate(positions):
        w[:, g, pos] = 1.0
    with rec.armed([None, "k"], w.to(adapter.device)):
        out = adapter.unet(torch.cat([z, z]), torch.full((2,), int(t), device=adapter.device), ctx_pair)
    return out


def _stack(rec: Recorder, layers, size: int) -> torch.Tensor:
    """(L, G, size, size): every layer's per-token maps nearest-upsampled to the largest grid."""
    maps = [F.interpolate(rec.maps[("k", info.index)][None], size=(size, size), mode="nearest")[0] for info in layers]
    rec.maps.clear()
    return torch.stack(maps).cpu()  # the published code's numpy post-processing runs on the host


def published_unconditional(adapter) -> torch.Tensor:
    """diffusers' encode_prompt for "" with a text encoder whose config has no use_attention_mask."""
    ids = adapter.tokenizer([""], padding="max_length", max_length=adapter.max_length, truncation=True,
                            return_tensors="pt")["input_ids"].to(adapter.device)
    with torch.no_grad():
        return adapter.text_encoder(ids)


@torch.no_grad()
def published_bbm(model, image, phrase: str, token_positions: list[int], seed: int = 0, rev_diff_steps: int = 40,
                  guidance_scale: float = 16.0, steps: int = 50, bbm: bool = True):
    """(preliminary map (H, H) float16, GMM mask (H, H) bool, s) of one phrase, as the published code."""
    from diffusers import DDIMScheduler
    from skimage.metrics import structural_similarity
    from sklearn.mixture import GaussianMixture

    a = model.adapter
    sched = DDIMScheduler.from_config(_scheduler_config(model))
    sched.set_timesteps(steps)
    pixels, _ = a.preprocess(model.prepare(image).image)
    dist = a.vae.encode(pixels.to(a.device)).latent_dist
    cond = a.encode_text([phrase]).embeddings
    null = published_unconditional(a)
    pair = torch.cat([null, cond])
    layers = model.layers
    size = max(info.resolution for info in layers)
    positions = [0] + list(token_positions)  # start token, then the selected tokens
    rec = Recorder(layers)
    gt_maps, txt_maps = [], []
    with a.capture(rec):
        for i, t in enumerate(sched.timesteps):
            eps_post = torch.randn(tuple(dist.mean.shape), generator=step_generator(seed, STREAM_POSTERIOR, i)).to(a.device)
            z0 = (dist.mean + dist.std * eps_post) * a.scale_factor  # latent_dist.sample(), scaled
            noise = torch.randn(tuple(z0.shape), generator=step_generator(seed, STREAM_GT_NOISE, i))
            zt = sched.add_noise(z0, noise.to(z0.device), t[None])
            _record(a, rec, positions, zt, t, pair)
            gt_maps.append(_stack(rec, layers, size))
        if bbm:
            latents = torch.randn(tuple(dist.mean.shape), generator=step_generator(seed, STREAM_TEXT_PASS)).to(a.device)
            for t in sched.timesteps:
                pred = _record(a, rec, positions, latents, t, pair).float()
                uncond, c = pred.chunk(2)
                latents = sched.step(uncond + guidance_scale * (c - uncond), t, latents).prev_sample
                txt_maps.append(_stack(rec, layers, size))
    attention = torch.stack(gt_maps)  # (steps, L, 1 + T, H, H): token 0 is the start token
    tok = list(range(1, len(positions)))
    tok_attention = attention[-rev_diff_steps:, :, tok]
    s = None
    if bbm:
        attention2 = torch.stack(txt_maps)
        merged = attention[:, :, [0]] @ attention2[:, :, tok]
        merged = normalize_and_scale(merged.mean(dim=(0, 1, 2)))
        image_bias = normalize_and_scale(attention[:, :, [0]].mean(dim=(0, 1, 2))).numpy().astype(np.uint8)
        text_bias = normalize_and_scale(attention2[:, :, tok].mean(dim=(0, 1, 2))).numpy().astype(np.uint8)
        s = structural_similarity(image_bias, text_bias)
        s = max(s, 0)
        merged = normalize_and_scale(merged, False)
        act = normalize_and_scale(tok_attention.mean(dim=(0, 1, 2)), False)
        prelim = 2 * (1 - s) * s * ((merged + act + (merged * act)) / 2) + ((1 - s) ** 2) * act + (s**2) * merged
    else:
        prelim = normalize_and_scale(tok_attention.mean(dim=(0, 1, 2)), False)
    gm = GaussianMixture(n_components=2, random_state=seed)
    gm.fit(prelim.reshape(-1, 1).float().numpy().astype(np.float64))
    binary = (prelim > float(np.mean(gm.means_))).float()[None, None]
    binary[..., 1:-1, 1:-1] = F.conv2d(binary, torch.full((1, 1, 3, 3), 1 / 9))
    mask = (binary[0, 0] >= 0.5)
    return prelim, mask, s


def evaluation_space(prelim: torch.Tensor, mask: torch.Tensor, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The published evaluation's resize: map min-maxed (float16), both linearly upsampled, mask rounded."""
    m = (prelim - prelim.min()) / (prelim.max() - prelim.min())
    big = F.interpolate(m.float()[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    mbig = F.interpolate(mask.float()[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    return big.double().numpy(), (torch.round(mbig) > 0.5).numpy()


def _scheduler_config(model) -> dict:
    import json

    return json.loads((model.entry.path / "scheduler" / "scheduler_config.json").read_text())
