"""Train the bundled `demo` checkpoint on groundkit's synthetic chest X-rays (CPU, hours, resumable).

The demo is a real member of the diffusers-sd family: a small UNet2DConditionModel in pixel space
(no VAE: the adapter's documented identity-autoencoder option), an SD-style DDIM scheduler and a
small BERT text encoder whose WordPiece vocabulary is the synthetic report vocabulary. It is loaded
by the same code as the published checkpoints (`gk.load`).

Version 2 changes what limited version 1 (see TRAINING.md for the measurements behind each):
- cross-attention at 32x32 as well as 16x16 and 8x8. The 32x32 blocks are built with diffusers'
  ``only_cross_attention`` (their first attention attends to the text too instead of to the image):
  a 1024-token self-attention would cost 2.5x the training time on a CPU;
- the text encoder is trained jointly (``--text train``) instead of frozen at random init, so its
  token outputs carry word identity and side; ``--text frozen`` keeps the v1 behaviour for comparison;
- images are rendered at 96-256 px and resized to 64 by the adapter's own preprocessing, exactly as
  evaluation images are, from a pool that is refreshed as training goes (no repeated epoch);
- timesteps can be weighted toward the grounding windows (``--t-low-frac``).

    python benchmarks/demo/train.py --run runs/demo-v2/main --hours 4 --seed 0     # start or resume
    python benchmarks/demo/train.py --run runs/demo-v2/main --export groundkit/assets/demo

The run folder holds everything needed to resume (``state.pt``, written with tensors only and read
back with ``weights_only=True``), a CSV log, and a loadable snapshot folder every ``--snapshot-every``
steps (``snapshots/step_NNNNNN``) for the validation curve (benchmarks/demo/validate.py).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from groundkit.data import synthetic
from groundkit.data.images import save_png

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = list(".,;:-()/'")
IMAGE_SIZE = 64
MAX_LENGTH = 32
TEXT_DIM = 64
RENDER_SIZES = (96, 128, 192, 256)

UNET_CONFIG = dict(
    sample_size=IMAGE_SIZE, in_channels=1, out_channels=1, layers_per_block=1,
    block_out_channels=(16, 32, 64, 96),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    only_cross_attention=(False, True, False, False),
    cross_attention_dim=TEXT_DIM, attention_head_dim=4, norm_num_groups=8,
)
TEXT_CONFIG = dict(hidden_size=TEXT_DIM, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                   max_position_embeddings=MAX_LENGTH)
SCHEDULER_CONFIG = dict(
    _class_name="DDIMScheduler", num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
    beta_schedule="scaled_linear", prediction_type="epsilon", set_alpha_to_one=False, steps_offset=1,
    clip_sample=False, timestep_spacing="leading",
)
SMALL_FILES = ("tokenizer", "scheduler", "model_index.json", "groundkit.yaml")


# ------------------------------------------------------------------ folder layout
def text_config(mode: str) -> dict:
    return {**TEXT_CONFIG, "num_hidden_layers": 0} if mode == "static" else dict(TEXT_CONFIG)


def build_folder(out: Path, seed: int, text: str = "train") -> None:
    """Write the untrained checkpoint in the published diffusers layout."""
    from diffusers import UNet2DConditionModel
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    (out / "tokenizer").mkdir(parents=True, exist_ok=True)
    vocab = SPECIALS + PUNCT + sorted(set(synthetic.report_vocabulary()))
    (out / "tokenizer" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (out / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": MAX_LENGTH}, indent=2))
    bert = BertModel(BertConfig(vocab_size=len(vocab), **text_config(text)), add_pooling_layer=False)
    save_text_encoder(bert, out / "text_encoder")
    save_unet(UNet2DConditionModel(**UNET_CONFIG), out / "unet_ema")
    (out / "scheduler").mkdir(exist_ok=True)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2))
    (out / "groundkit.yaml").write_text(
        "# options that travel with the weights (read by groundkit.registry)\n"
        f"adapter: diffusers-sd\nimage_size: {IMAGE_SIZE}\nmax_length: {MAX_LENGTH}\nvae: identity\n")
    (out / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "BertModel"],
        "tokenizer": ["transformers", "BertTokenizer"], "vae": [None, None]}, indent=2))


def _strip_paths(config_file: Path) -> None:
    """No absolute path of the build machine in a shipped file (diffusers/transformers write one)."""
    cfg = json.loads(config_file.read_text())
    cfg.pop("_name_or_path", None)
    config_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def save_unet(unet, folder: Path) -> None:
    unet.save_pretrained(folder, safe_serialization=True)
    _strip_paths(folder / "config.json")


def save_text_encoder(bert, folder: Path) -> None:
    bert.save_pretrained(folder, safe_serialization=True)
    _strip_paths(folder / "config.json")


# ------------------------------------------------------------------ data
class Pool:
    """Rendered training images (64x64 model pixels in [-1, 1]) and their phrases; a few are redrawn
    every step so the model never sees a fixed epoch. Seeds >= 1000 only (validation 77, test 2026)."""

    def __init__(self, adapter, size: int, seed: int):
        self.adapter, self.seed = adapter, seed
        self.pixels = torch.zeros(size, 1, IMAGE_SIZE, IMAGE_SIZE)
        self.phrases: list[str] = [""] * size
        self.drawn = 0

    def draw(self, index: int) -> None:
        rng = np.random.default_rng((self.seed, 1000 + self.drawn))  # train seeds: (seed, >= 1000)
        self.drawn += 1
        size = RENDER_SIZES[rng.integers(len(RENDER_SIZES))]
        img, finding = synthetic.render(rng, int(size))
        while not finding.boxes:
            img, finding = synthetic.render(rng, int(size), finding.category)
        x, _ = self.adapter.preprocess(img)
        self.pixels[index] = x[0, :1]
        self.phrases[index] = finding.phrase

    def fill(self, log) -> None:
        t0 = time.time()
        for i in range(len(self.phrases)):
            self.draw(i)
            if (i + 1) % 2000 == 0:
                log(f"pool: {i + 1}/{len(self.phrases)} images rendered in {time.time() - t0:.0f} s")


def tokenize(tokenizer, phrases: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(phrases, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


# ------------------------------------------------------------------ training
def lr_at(step: int, args) -> float:
    warm = min(1.0, (step + 1) / 300)
    frac = min(1.0, step / max(1, args.total_steps))
    return args.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def sample_t(gen: torch.Generator, n: int, low_frac: float) -> torch.Tensor:
    """Uniform over [0, 1000), with a share ``low_frac`` drawn from [0, 600): the GT-noised windows
    that ground best sit at low and middle noise, where a uniform draw spends only 60% of its samples."""
    t = torch.randint(0, 1000, (n,), generator=gen)
    low = torch.rand(n, generator=gen) < low_frac
    return torch.where(low, torch.randint(0, 600, (n,), generator=gen), t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="run folder (created, or resumed when it has state.pt)")
    ap.add_argument("--hours", type=float, default=4.0, help="wall-clock budget of this invocation")
    ap.add_argument("--total-steps", type=int, default=12000, help="length of the cosine learning-rate schedule")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--text", choices=("train", "frozen", "static"), default="train",
                    help="train the text encoder jointly, keep it frozen at random init (v1), or frozen static embeddings (no layers)")
    ap.add_argument("--text-lr-scale", type=float, default=0.5)
    ap.add_argument("--t-low-frac", type=float, default=0.3)
    ap.add_argument("--uncond-prob", type=float, default=0.1)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--pool", type=int, default=16000)
    ap.add_argument("--refresh", type=int, default=2, help="pool images redrawn per step")
    ap.add_argument("--save-minutes", type=float, default=5.0)
    ap.add_argument("--snapshot-every", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--export", type=Path, default=None, help="write the EMA weights as a checkpoint folder and stop")
    ap.add_argument("--snapshot", default=None, help="with --export: which snapshot (e.g. step_003000; default the newest)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run: Path = args.run
    if args.export is not None:
        export(run, args.export, args.snapshot)
        return
    train(run, args)


def _log_to(run: Path):
    fh = open(run / "train.log", "a")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        fh.write(line + "\n")
        fh.flush()
    return log


def train(run: Path, args) -> None:
    from diffusers import UNet2DConditionModel
    from transformers import BertConfig, BertModel

    import groundkit as gk

    folder = run / "folder"
    run.mkdir(parents=True, exist_ok=True)
    log = _log_to(run)
    state_file = run / "state.pt"
    resume = state_file.is_file()
    if not resume:
        build_folder(folder, args.seed, args.text)
        (run / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=2))
    model = gk.load(folder, device="cpu")
    adapter = model.adapter
    tokenizer = adapter.tokenizer
    vocab = (folder / "tokenizer" / "vocab.txt").read_text().split()
    unet = UNet2DConditionModel(**UNET_CONFIG)
    tcfg = BertConfig(vocab_size=len(vocab), **text_config(args.text))
    bert = BertModel(tcfg, add_pooling_layer=False)
    from safetensors.torch import load_file

    unet.load_state_dict(load_file(folder / "unet_ema" / "diffusion_pytorch_model.safetensors"))
    bert.load_state_dict(load_file(folder / "text_encoder" / "model.safetensors"))
    if args.text != "train":
        bert.requires_grad_(False)
    ema_unet = UNet2DConditionModel(**UNET_CONFIG).requires_grad_(False)
    ema_bert = BertModel(tcfg, add_pooling_layer=False).requires_grad_(False)
    ema_unet.load_state_dict(unet.state_dict())
    ema_bert.load_state_dict(bert.state_dict())
    groups = [{"params": list(unet.parameters()), "scale": 1.0}]
    if args.text == "train":
        groups.append({"params": list(bert.parameters()), "scale": args.text_lr_scale})
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=1e-2)
    pool = Pool(adapter, args.pool, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    step = 0
    if resume:
        st = torch.load(state_file, weights_only=True)
        unet.load_state_dict(st["unet"])
        bert.load_state_dict(st["bert"])
        ema_unet.load_state_dict(st["ema_unet"])
        ema_bert.load_state_dict(st["ema_bert"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        pool.pixels = st["pool_pixels"].float()
        pool.phrases = json.loads(bytes(st["pool_phrases"].tolist()).decode())
        pool.drawn = int(st["pool_drawn"])
        step = int(st["step"])
        log(f"resumed at step {step}")
    else:
        pool.fill(log)
    unet.train()
    bert.train(args.text == "train")
    abar = adapter.schedule.alphas_cumprod.float()
    empty_ids, empty_mask = tokenize(tokenizer, [""])
    log_path = run / "train_log.csv"
    new_log = not log_path.is_file()
    log_fh = open(log_path, "a", newline="")
    writer = csv.writer(log_fh)
    if new_log:
        writer.writerow(["step", "seconds", "loss", "lr"])
    deadline = time.time() + args.hours * 3600
    elapsed0 = float(torch.load(state_file, weights_only=True)["seconds"]) if resume else 0.0
    t_start, last_save, losses = time.time(), time.time(), []

    def save() -> None:
        tmp = run / "state.pt.tmp"
        torch.save({
            "unet": unet.state_dict(), "bert": bert.state_dict(), "ema_unet": ema_unet.state_dict(),
            "ema_bert": ema_bert.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "step": step,
            "seconds": elapsed0 + time.time() - t_start, "pool_pixels": pool.pixels.half(),
            "pool_phrases": torch.tensor(list(json.dumps(pool.phrases).encode()), dtype=torch.uint8),
            "pool_drawn": pool.drawn,
        }, tmp)
        tmp.replace(state_file)

    while time.time() < deadline and step < args.total_steps:
        idx = torch.randint(0, len(pool.phrases), (args.batch,), generator=gen)
        x0 = pool.pixels[idx]
        phrases = [pool.phrases[i] for i in idx.tolist()]
        drop = (torch.rand(args.batch, generator=gen) < args.uncond_prob).tolist()
        phrases = ["" if d else p for p, d in zip(phrases, drop)]
        ids, mask = tokenize(tokenizer, phrases)
        ctx = bert(ids, attention_mask=mask).last_hidden_state
        t = sample_t(gen, args.batch, args.t_low_frac)
        noise = torch.randn(x0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        lr = lr_at(step, args)
        for g in opt.param_groups:
            g["lr"] = lr * g["scale"]
        pred = unet(zt, t, encoder_hidden_states=ctx).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            for ema, live in ((ema_unet, unet), (ema_bert, bert)):
                for pe, p in zip(ema.parameters(), live.parameters()):
                    pe.mul_(d).add_(p.detach(), alpha=1 - d)
        for _ in range(args.refresh):
            pool.draw(int(torch.randint(0, len(pool.phrases), (1,), generator=gen)))
        losses.append(loss.item())
        step += 1
        if step % 25 == 0:
            secs = elapsed0 + time.time() - t_start
            writer.writerow([step, round(secs, 1), float(np.mean(losses[-25:])), lr])
            log_fh.flush()
            if step % 100 == 0:
                log(f"step {step} loss {np.mean(losses[-100:]):.4f} lr {lr:.2e} {secs:.0f}s")
        if step % args.snapshot_every == 0:
            snapshot(folder, run / "snapshots" / f"step_{step:06d}", ema_unet, ema_bert)
        if time.time() - last_save > args.save_minutes * 60:
            save()
            last_save = time.time()
    save()
    snapshot(folder, run / "snapshots" / f"step_{step:06d}", ema_unet, ema_bert)
    log(f"stopped at step {step} ({elapsed0 + time.time() - t_start:.0f} s in all)")
    log_fh.close()
    _ = empty_ids, empty_mask


def snapshot(folder: Path, dest: Path, ema_unet, ema_bert) -> None:
    """A loadable checkpoint folder of the EMA weights (small files copied from the run's folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in SMALL_FILES:
        src = folder / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    save_unet(ema_unet, dest / "unet_ema")
    save_text_encoder(ema_bert, dest / "text_encoder")


def export(run: Path, out: Path, snapshot: str | None = None) -> None:
    """Copy one snapshot's weights into ``out`` (the shipped demo folder, keeping its groundkit.yaml), write the
    bundled samples and TRAINING.md with the validation curve."""
    snaps = sorted((run / "snapshots").glob("step_*"))
    if snapshot:
        snaps = [s for s in snaps if s.name == snapshot]
    if not snaps:
        raise SystemExit(f"error: {run}/snapshots has no snapshot {snapshot or ''} to export")
    src = snaps[-1]
    for name in ("unet_ema", "text_encoder") + SMALL_FILES:
        s = src / name
        if name == "groundkit.yaml" and (out / name).is_file():
            continue  # the shipped folder's options (its validation-chosen default recipe) stay
        if s.is_dir():
            shutil.rmtree(out / name, ignore_errors=True)
            shutil.copytree(s, out / name)
        elif s.is_file():
            shutil.copy2(s, out / name)
    step = int(src.name.split("_")[1])
    with open(run / "train_log.csv") as fh:
        log = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
    with open(out / "train_log.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(log[0]))
        w.writeheader()
        w.writerows(log)
    write_training_md(run, out, step, log)
    write_sample(out)
    print(f"exported {src.name} to {out}")


def write_training_md(run: Path, out: Path, step: int, log: list[dict]) -> None:
    """TRAINING.md: how the shipped weights were made, and validation vs steps (so anyone can see whether
    more training would still help)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from validate import plot

    args = json.loads((run / "args.json").read_text())
    resumes = [line.split(" ", 1)[1] for line in (run / "train.log").read_text().splitlines() if "resumed at step" in line]
    val = run / "validation.jsonl"
    rows = sorted((json.loads(x) for x in val.read_text().splitlines()), key=lambda r: r["step"]) if val.is_file() else []
    if rows:
        plot(val, out / "validation.png")
    loss = float(np.mean([float(r["loss"]) for r in log[-100:]]))
    lines = [
        "# demo checkpoint (v2)", "",
        f"Trained by `python benchmarks/demo/train.py --run RUN --text {args['text']} --seed {args['seed']} "
        f"--batch {args['batch']} --lr {args['lr']} --total-steps N --snapshot-every {args['snapshot_every']}` "
        "(1 CPU thread, resumed across sessions: the run folder's state.pt holds model, EMA, optimiser, RNG and data pool), "
        f"then `--export groundkit/assets/demo --snapshot step_{step:06d}`.", "",
        f"- steps: {step} (EMA {args['ema']} weights of that step); wall time {float(log[-1]['seconds']) / 3600:.1f} h on 1 CPU thread"
        f" (invocations: first, then {len(resumes)} resumes: {'; '.join(resumes) or 'none'});",
        f"- final training loss (mean of the last 100 logged steps): {loss:.4f};",
        "- data: synthetic chest X-rays of seed 1000 + step (pool of "
        f"{args['pool']} images, {args['refresh']} redrawn per step), rendered at 96-256 px and resized by the adapter to "
        f"{IMAGE_SIZE} px; text dropout {args['uncond_prob']}; timesteps: a share {args['t_low_frac']} drawn from the low-noise "
        "third (the grounding windows), the rest uniform;",
        f"- text encoder: a {TEXT_CONFIG['num_hidden_layers']}-layer BERT ({TEXT_DIM} wide) over the synthetic report vocabulary, "
        f"trained jointly ({args['text']}, learning rate x{args['text_lr_scale']});",
        f"- U-Net: `{json.dumps(UNET_CONFIG)}`.", "",
        "Validation (synthetic seed 77, the only split any choice looked at; Nuetzel protocol, last 5 GT-noised steps, "
        "all layers, macro over 8 categories):", "",
        "| step | fg/bg mIoU | CNR | Top-1 | side swap (lexical) | side swap (disease words) |", "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['step']} | {r['last5/miou_fgbg']:.3f} | {r['last5/cnr']:.3f} | {r['last5/top1']:.3f} | "
                     f"{r['side_swap']:.2f} | {r.get('side_swap_disease', float('nan')):.2f} |")
    if rows:
        c = rows[-1]
        lines += ["", f"Centre-prior Gaussian on the same samples: mIoU {c['centre/miou_fgbg']:.3f}, CNR {c['centre/cnr']:.3f}, "
                  f"Top-1 {c['centre/top1']:.3f}.", "", "![validation vs steps](validation.png)"]
    (out / "TRAINING.md").write_text("\n".join(lines) + "\n")


def write_sample(out: Path) -> None:
    """The image and phrase `groundkit run` uses when called with no arguments (held-out seed 7)."""
    for img, phrase, cat, boxes in synthetic.iter_samples(64, seed=7, size=256):
        if cat == "Pleural Effusion" and img.shape[0] != img.shape[1]:
            break
    save_png(out / "sample.png", img)
    (out / "sample.json").write_text(json.dumps({"phrase": phrase, "category": cat, "boxes": [list(map(float, b)) for b in boxes]}, indent=2))
    write_report_sample(out)


def write_report_sample(out: Path) -> None:
    """The image and report `groundkit report` uses with no arguments: two drawn findings (held-out seed 8),
    a report that states them, negates one and repeats one in the impression; ground truth beside it."""
    import numpy as np

    from groundkit.data.synthetic import render_many

    rng = np.random.default_rng(8)
    img, (effusion, heart) = render_many(rng, 256, ["Pleural Effusion", "Cardiomegaly"])
    text = ("EXAMINATION: Chest radiograph, frontal view.\n\n"
            f"FINDINGS: There is a {effusion.phrase}. {heart.phrase[0].upper() + heart.phrase[1:]} is noted. "
            "No pneumothorax is seen. The lungs are otherwise clear.\n\n"
            f"IMPRESSION: {effusion.phrase[0].upper() + effusion.phrase[1:]}. No pneumothorax.\n")
    save_png(out / "sample_report.png", img)
    (out / "sample_report.txt").write_text(text)
    truth = [{"category": f.category, "phrase": f.phrase, "boxes": [list(map(float, b)) for b in f.boxes]} for f in (effusion, heart)]
    (out / "sample_report.json").write_text(json.dumps({"findings": truth, "negated": ["Pneumothorax"]}, indent=2))


if __name__ == "__main__":
    main()
