"""Train the bundled `demo` checkpoint on groundkit's synthetic chest X-rays (CPU, ~40 minutes).

The demo is a real member of the diffusers-sd family: a small UNet2DConditionModel in pixel space
(no VAE: the adapter's documented identity-autoencoder option), an SD-style DDIM scheduler, and a
frozen, randomly initialised BERT text encoder whose WordPiece vocabulary is the synthetic report
vocabulary. It is loaded by the same code as the published checkpoints (`gk.load`).

    python benchmarks/demo/train.py --out groundkit/assets/demo --minutes 40 --seed 0

Writes unet_ema/ (EMA weights, what groundkit loads), scheduler/, text_encoder/, tokenizer/,
model_index.json, train_log.csv, loss.png, TRAINING.md and a sample image for `groundkit run`.
Checkpoints every few minutes, so an interrupted run loses little (`--resume` continues).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from groundkit.data import synthetic  # noqa: E402
from groundkit.data.images import save_png  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = list(".,;:-()/'")
IMAGE_SIZE = 64
MAX_LENGTH = 32
TEXT_DIM = 64

# cross-attention at 16x16 and 8x8 only: 7 layers, the same block types as SD 1.5 (CrossAttn* blocks)
UNET_CONFIG = dict(
    sample_size=IMAGE_SIZE, in_channels=1, out_channels=1, layers_per_block=1,
    block_out_channels=(16, 32, 64, 96),
    down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    cross_attention_dim=TEXT_DIM, attention_head_dim=4, norm_num_groups=8,
)
SCHEDULER_CONFIG = dict(
    _class_name="DDIMScheduler", num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
    beta_schedule="scaled_linear", prediction_type="epsilon", set_alpha_to_one=False, steps_offset=1,
    clip_sample=False, timestep_spacing="leading",
)


def build_folder(out: Path, seed: int) -> None:
    """Write the untrained checkpoint in the published diffusers layout."""
    from diffusers import UNet2DConditionModel
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    (out / "tokenizer").mkdir(parents=True, exist_ok=True)
    vocab = SPECIALS + PUNCT + sorted(set(synthetic.report_vocabulary()))
    (out / "tokenizer" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (out / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": MAX_LENGTH}, indent=2))
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=TEXT_DIM, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=MAX_LENGTH)
    bert = BertModel(cfg, add_pooling_layer=False)
    bert.save_pretrained(out / "text_encoder", safe_serialization=True)
    UNet2DConditionModel(**UNET_CONFIG).save_pretrained(out / "unet_ema", safe_serialization=True)
    (out / "scheduler").mkdir(exist_ok=True)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2))
    (out / "groundkit.yaml").write_text(
        "# options that travel with the weights (read by groundkit.registry)\n"
        f"adapter: diffusers-sd\nrecipe: nuetzel2025\nimage_size: {IMAGE_SIZE}\nmax_length: {MAX_LENGTH}\nvae: identity\n")
    (out / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "BertModel"],
        "tokenizer": ["transformers", "BertTokenizer"], "vae": [None, None]}, indent=2))


def make_data(adapter, n: int, seed: int):
    """Pixels (n, 1, S, S) in [-1, 1] and per-sample indices into the unique phrase embeddings."""
    images, phrase_idx, phrases = [], [], {}
    for img, phrase, _cat, _boxes in synthetic.iter_samples(n, seed, size=IMAGE_SIZE):
        x, _ = adapter.preprocess(img)
        images.append(x[0])
        phrase_idx.append(phrases.setdefault(phrase, len(phrases)))
    texts = list(phrases)
    emb = torch.cat([adapter.encode_text(texts[i:i + 256]).embeddings for i in range(0, len(texts), 256)])
    return torch.stack(images), torch.tensor(phrase_idx), emb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "groundkit" / "assets" / "demo")
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--uncond-prob", type=float, default=0.1)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    import groundkit as gk

    out: Path = args.out
    if not (args.resume and (out / "unet_ema" / "config.json").is_file()):
        build_folder(out, args.seed)
    model = gk.load(out, device="cpu")
    adapter = model.adapter
    unet = adapter.unet_model
    if args.resume and (out / "unet_train").is_dir():
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(out / "unet_train")
    unet.train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    t0 = time.time()
    pixels, pidx, emb = make_data(adapter, args.n_train, seed=args.seed + 1000)  # train split: seeds >= 1000
    null = adapter.encode_text([""]).embeddings
    print(f"data: {len(pixels)} images, {len(emb)} unique phrases in {time.time() - t0:.1f} s", flush=True)

    abar = adapter.schedule.alphas_cumprod.float()
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(args.seed)
    log_path = out / "train_log.csv"
    log = open(log_path, "a", newline="")
    writer = csv.writer(log)
    if log_path.stat().st_size == 0:
        writer.writerow(["step", "seconds", "loss", "lr"])
    deadline = time.time() + args.minutes * 60
    step, losses, last_save = 0, [], time.time()
    est_total = None
    while time.time() < deadline:
        idx = torch.randint(0, len(pixels), (args.batch,), generator=gen)
        x0 = pixels[idx]
        ctx = emb[pidx[idx]].clone()
        drop = torch.rand(args.batch, generator=gen) < args.uncond_prob
        ctx[drop] = null[0]
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        # linear warm-up then cosine decay over the time budget
        frac = 1 - max(0.0, deadline - time.time()) / (args.minutes * 60)
        lr = args.lr * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        pred = unet(zt, t, encoder_hidden_states=ctx).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.mul_(d).add_(p.detach(), alpha=1 - d)
        losses.append(loss.item())
        step += 1
        if step % 25 == 0:
            writer.writerow([step, round(time.time() - t0, 1), float(np.mean(losses[-25:])), lr])
            log.flush()
            print(f"step {step} loss {np.mean(losses[-25:]):.4f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)
        if time.time() - last_save > 300:
            ema.save_pretrained(out / "unet_ema", safe_serialization=True)
            unet.save_pretrained(out / "unet_train", safe_serialization=True)
            last_save = time.time()
    ema.save_pretrained(out / "unet_ema", safe_serialization=True)
    unet.save_pretrained(out / "unet_train", safe_serialization=True)
    log.close()
    write_sample(out)
    plot_loss(log_path, out / "loss.png")
    (out / "TRAINING.md").write_text(
        f"# demo checkpoint\n\nCommand: `python benchmarks/demo/train.py --out {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} "
        f"--minutes {args.minutes} --seed {args.seed} --n-train {args.n_train} --batch {args.batch} --lr {args.lr}`\n\n"
        f"Steps: {step}; final loss (mean of last 100): {np.mean(losses[-100:]):.4f}; wall time {time.time() - t0:.0f} s on "
        f"{torch.get_num_threads()} CPU threads. Training split: synthetic seed {args.seed + 1000}, {args.n_train} images "
        f"at {IMAGE_SIZE} px; held-out evaluation uses other seeds. EMA decay {args.ema}, text dropout {args.uncond_prob}.\n\n"
        "U-Net: " + json.dumps(UNET_CONFIG) + "\n\n![loss](loss.png)\n")
    print(f"done: {step} steps", flush=True)


def write_sample(out: Path) -> None:
    """The image and phrase `groundkit run` uses when called with no arguments (held-out seed)."""
    for img, phrase, cat, boxes in synthetic.iter_samples(64, seed=7, size=256):
        if cat == "Pleural Effusion" and img.shape[0] != img.shape[1]:  # a category the demo grounds well (TRAINING.md)
            break
    save_png(out / "sample.png", img)
    (out / "sample.json").write_text(json.dumps({"phrase": phrase, "category": cat, "boxes": [list(map(float, b)) for b in boxes]}, indent=2))


def plot_loss(log_path: Path, png: Path) -> None:
    from groundkit import viz

    rows = list(csv.DictReader(open(log_path)))
    xs = [int(r["step"]) for r in rows]
    viz.curve(xs, {"train loss (25-step mean)": [float(r["loss"]) for r in rows]}, "step", "MSE (epsilon)", png)


if __name__ == "__main__":
    main()
