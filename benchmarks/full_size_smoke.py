"""Full-size smoke test: the published architectures at their real sizes, random weights, real memory.

For each family it builds the checkpoint folder in the published layout (tests/builders.py, tiny=False):

* ``monai``: MONAI bundle ``cxr_image_synthesis_latent_diffusion_model`` (old ``generative`` state dicts,
  ~1.1 GB U-Net) + a CLIP text encoder with SD-2.1-base's config (~1.4 GB);
* ``sd``: SD-1.5 diffusers tree (U-Net ~3.4 GB under ``unet/`` and ``unet_ema/``, VAE, DDIM scheduler) +
  CXR-BERT-specialized (config with ``auto_map``, ``pytorch_model.bin``, loaded without remote code);
* ``radedit``: RadEdit's U-Net (``unet/``; its block layout is an assumption, see
  groundkit/families/diffusers_sd/testing_radedit.py) + the SDXL VAE (``vae/``, scaling factor 0.13025) +
  BioViL-T (``text_encoder/``), served with the shipped ``radedit`` entry's options (128 tokens, no attention
  mask, the model card's DDIM scheduler inline) written to the folder's groundkit.yaml;
* ``roentgen``: SD 1.x diffusers folder with a CLIP ViT-L/14 text encoder, in the 2022 file layout (``*.bin``,
  old VAE attention names, ``text_model.`` keys), as RoentGen is assumed to be published;

then loads it with ``groundkit.load`` and grounds one synthetic chest X-ray, printing wall time and peak
memory per stage (build, load, preprocess+encode, capture, post-process), the number of U-Net calls, and a
strict check that every tensor of every weights file was consumed and landed in the loaded network.

Each stage's peak RSS is measured with the kernel's high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``; no psutil). Build and run happen in separate child processes so that freed
build memory does not inflate the load figures. On a GPU, ``torch.cuda.max_memory_allocated`` per stage too.

    python benchmarks/full_size_smoke.py                     # fast windows, monai + sd (~10 min on 2 cores)
    python benchmarks/full_size_smoke.py --only radedit --only roentgen
    python benchmarks/full_size_smoke.py --faithful          # the published windows (much longer on CPU)
    python benchmarks/full_size_smoke.py --only sd --workdir /data/gk_full --keep

Fast windows: vilouras2024 with grid="stride:50", steps=(3, 6) (DDIM inversion to t=250, 3 captured steps);
nuetzel2025 with steps=(45, 50) (5 GT-noised steps). ``--faithful``: the recipes as published.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procmem import reset_peak, status_kb

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
KINDS = {
    "monai": {"recipe": "vilouras2024", "fast": {"grid": "stride:50", "steps": (3, 6)},
              "folder": "cxr_image_synthesis_latent_diffusion_model"},
    "sd": {"recipe": "nuetzel2025", "fast": {"steps": (45, 50)}, "folder": "sd15_cxrbert"},
    "radedit": {"recipe": "nuetzel2025", "fast": {"steps": (45, 50)}, "folder": "radedit"},
    "roentgen": {"recipe": "nuetzel2025", "fast": {"steps": (45, 50)}, "folder": "roentgen"},
}
DEFAULT_KINDS = ["monai", "sd"]
COMPONENT_MODULE = {  # verify's component label -> the role of that network in Adapter.networks()
    "autoencoder": "autoencoder", "diffusion model": "unet", "CLIP text encoder": "text_encoder",
    "U-Net": "unet", "VAE": "autoencoder", "text encoder": "text_encoder",
}


# ----------------------------------------------------------------------------------------------
# measuring


class Stage:
    """Wall time, RSS before/after, peak RSS during, and (CUDA) peak allocated memory of one stage."""

    def __init__(self, name: str, results: list, device: str = "cpu"):
        self.name, self.results, self.device = name, results, device

    def __enter__(self):
        import gc

        gc.collect()
        self.exact = reset_peak()
        self.rss0 = status_kb("VmRSS")
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        cuda = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            cuda = torch.cuda.max_memory_allocated() / 2**30
        seconds = time.perf_counter() - self.t0
        peak = status_kb("VmHWM") if self.exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.results.append({
            "stage": self.name, "seconds": seconds, "rss_before_gib": (self.rss0 or 0) / 2**20,
            "rss_after_gib": (status_kb("VmRSS") or 0) / 2**20, "peak_rss_gib": (peak or 0) / 2**20,
            "peak_exact": self.exact, "cuda_peak_gib": cuda,
        })
        return False


# ----------------------------------------------------------------------------------------------
# children


def _disk_bytes(folder: Path) -> int:
    """Bytes on disk, hard links (unet_ema/ = unet/ at full size) counted once."""
    seen, total = set(), 0
    for f in Path(folder).rglob("*"):
        if f.is_file() and not f.is_symlink():
            st = f.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def child_build(kind: str, workdir: Path, tiny: bool = False) -> dict:
    sys.path.insert(0, str(TESTS))
    from builders import build_monai_bundle, build_sd_cxrbert

    stages: list = []
    with Stage("build", stages):
        if kind == "monai":
            folder = build_monai_bundle(workdir, tiny=tiny, seed=0)
        elif kind == "radedit":
            import yaml

            from groundkit.families.diffusers_sd.testing_radedit import build_radedit, radedit_entry

            folder = build_radedit(workdir, tiny=tiny, seed=0)
            options = {k: v for k, v in radedit_entry(folder, 512).items() if k != "path"}
            (folder / "groundkit.yaml").write_text(yaml.safe_dump(options))  # the shipped entry's options
        elif kind == "roentgen":
            from groundkit.families.diffusers_sd.testing_roentgen import build_roentgen

            folder = build_roentgen(workdir, tiny=tiny, seed=0)
        else:
            folder = build_sd_cxrbert(workdir, tiny=tiny, seed=0)
    size = _disk_bytes(Path(folder))
    (Path(folder) / ".smoke_complete").write_text("ok\n")
    return {"stages": stages, "folder": str(folder), "bytes": size}


def _synthetic_image():
    import numpy as np

    try:
        from groundkit.data.synthetic import iter_samples

        image, phrase, category, boxes = next(iter_samples(1, seed=0, size=512))
        return np.asarray(image, dtype=np.float32), phrase, category, boxes
    except Exception:
        yy, xx = np.mgrid[0:512, 0:512] / 512.0
        image = (0.3 + 0.4 * np.exp(-((xx - 0.7) ** 2 + (yy - 0.6) ** 2) / 0.02)).astype(np.float32)
        return image, "right lower lobe opacity", None, [(300, 250, 120, 120)]


def strict_check(model, folder: Path) -> list[dict]:
    """Every tensor of every weights file consumed and equal to the loaded network's (verify's mapping)."""
    import torch

    from groundkit.core.safeload import load_state_dict
    from groundkit.verify import verify_checkpoint

    report = verify_checkpoint(str(folder), deep=True)
    if not report.ok:
        raise SystemExit("verify failed:\n" + report.text())
    out = []
    for kc in report.keys:
        module = model.adapter.networks()[COMPONENT_MODULE[kc.component]]
        own = module.state_dict()
        if kc.file.suffix == ".safetensors":
            from safetensors import safe_open

            fh = safe_open(str(kc.file), framework="pt")
            get = fh.get_tensor
            file_keys = set(fh.keys())
        else:
            sd = load_state_dict(kc.file)  # weights_only, memory-mapped
            get = sd.__getitem__
            file_keys = set(sd)
        used = set(kc.mapping.values())
        unconsumed = sorted(file_keys - used - set(kc.tolerated))
        missing = sorted(set(own) - set(kc.mapping))
        differ = [k for k, fk in kc.mapping.items() if not torch.equal(own[k].detach().cpu().float(), get(fk).float())]
        out.append({"component": kc.component, "file": str(kc.file.relative_to(folder)), "file_keys": len(file_keys),
                    "module_keys": len(own), "consumed": len(used), "tolerated": list(kc.tolerated),
                    "unconsumed": unconsumed[:5], "missing": missing[:5], "differ": differ[:5],
                    "strict_ok": not (unconsumed or missing or differ)})
    return out


def child_run(kind: str, folder: Path, faithful: bool, device: str) -> dict:
    import torch

    import groundkit as gk
    from groundkit.engine.heatmap import make_heatmap

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))  # OMP_NUM_THREADS caps it
    spec = KINDS[kind]
    image, phrase, category, boxes = _synthetic_image()
    stages: list = []
    with Stage("import libraries", stages, device):  # kept out of "load"
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
        from monai.networks import nets  # noqa: F401

        import groundkit.api
    with Stage("load", stages, device):
        model = gk.load(str(folder), device=device)
    overrides = {} if faithful else dict(spec["fast"])
    r = model.recipe(spec["recipe"], **overrides)
    with Stage("preprocess+encode", stages, device):
        prep = model.prepare(image)
        model.adapter.encode_text([phrase])
    with Stage("capture", stages, device):
        captured = model.capture(prep, [phrase], r, categories=[category])
    with Stage("post-process", stages, device):
        hm = make_heatmap(captured.maps[0], r, model.adapter.image_size,
                          captured.text_maps[0] if captured.text_maps else None)
        g = gk.Grounding(phrase, hm.heatmap_crop, hm.mask_crop, prep.geometry, r, {}, None, prep.image)
        heat = g.heatmap
        metrics = g.evaluate(boxes) if boxes else {}
    with Stage("strict check", stages, device):
        strict = strict_check(model, folder)
    params = {name: sum(p.numel() for p in net.parameters()) for name, net in model.adapter.networks().items()}
    return {
        "stages": stages, "unet_calls": captured.calls, "unet_forwards": captured.forwards,
        "recipe": r.name, "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "window": list(r.steps), "grid": r.grid, "layers": len(model.layers), "phrase": phrase,
        "heatmap_shape": list(heat.shape), "heatmap_finite": bool(torch.isfinite(torch.as_tensor(heat)).any()),
        "metrics": {k: float(v) for k, v in metrics.items()}, "strict": strict, "params": params,
        "device": str(model.adapter.device), "torch_threads": torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------------------------
# parent


def _spawn(args: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-6000:])
        raise SystemExit(f"child {' '.join(args)} failed with exit code {proc.returncode}")
    return json.loads(lines[-1][len("RESULT "):])


def _print_stages(stages: list[dict]) -> None:
    print(f"  {'stage':<18} {'time':>9} {'peak RSS':>10} {'RSS after':>10}  {'CUDA peak':>9}")
    for s in stages:
        cuda = f"{s['cuda_peak_gib']:.2f} GiB" if s.get("cuda_peak_gib") is not None else "-"
        exact = "" if s["peak_exact"] else "*"
        print(f"  {s['stage']:<18} {s['seconds']:>8.1f}s {s['peak_rss_gib']:>8.2f}G{exact} "
              f"{s['rss_after_gib']:>9.2f}G  {cuda:>9}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, help="where the checkpoints are built (default: a temp dir, removed)")
    ap.add_argument("--only", choices=sorted(KINDS), action="append", help="one family (repeatable)")
    ap.add_argument("--faithful", action="store_true", help="the published windows instead of the fast ones")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    ap.add_argument("--keep", action="store_true", help="keep a temp workdir")
    ap.add_argument("--json", type=Path, help="also write all figures here")
    ap.add_argument("--tiny", action="store_true", help="tiny widths: a seconds-long check of this script's plumbing")
    ap.add_argument("--child", choices=("build", "run"), help=argparse.SUPPRESS)
    ap.add_argument("--kind", choices=sorted(KINDS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        if args.child == "build":
            out = child_build(args.kind, args.workdir, args.tiny)
        else:
            out = child_run(args.kind, args.workdir / KINDS[args.kind]["folder"], args.faithful, args.device)
        print("RESULT " + json.dumps(out))
        return 0

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="groundkit_full_"))
    workdir.mkdir(parents=True, exist_ok=True)
    all_out = {}
    ok = True
    try:
        for kind in args.only or DEFAULT_KINDS:
            spec = KINDS[kind]
            print(f"\n== {kind}{' (TINY widths)' if args.tiny else ''}: {spec['folder']} ({spec['recipe']}, "
                  f"{'published windows' if args.faithful else 'fast windows ' + json.dumps(spec['fast'])}) on {device}")
            folder = workdir / spec["folder"]
            if (folder / ".smoke_complete").is_file():
                build = {"stages": [], "bytes": _disk_bytes(folder), "reused": True}
                print(f"  reusing {folder}")
            else:
                build = _spawn(["--child", "build", "--kind", kind, "--workdir", str(workdir)]
                               + (["--tiny"] if args.tiny else []))
            run = _spawn(["--child", "run", "--kind", kind, "--workdir", str(workdir), "--device", device]
                         + (["--faithful"] if args.faithful else []))
            print(f"  folder: {build['bytes'] / 1e9:.2f} GB on disk; parameters: "
                  + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in run["params"].items()))
            _print_stages(build["stages"] + run["stages"])
            print(f"  recipe {run['recipe']} grid {run['grid']} window {run['window']}: {run['unet_calls']} U-Net calls "
                  f"({run['unet_forwards']} forwards), {run['layers']} cross-attention layers; heatmap "
                  f"{run['heatmap_shape']}; metrics " + ", ".join(f"{k}={v:.3f}" for k, v in run["metrics"].items()))
            for s in run["strict"]:
                state = "OK" if s["strict_ok"] else "FAILED"
                tol = f" (+{len(s['tolerated'])} tolerated: {', '.join(s['tolerated'])})" if s["tolerated"] else ""
                print(f"  strict {state}: {s['file']}: {s['consumed']}/{s['file_keys']} file tensors consumed{tol}, "
                      f"all {s['module_keys']} {s['component']} tensors loaded and equal to the file"
                      if s["strict_ok"] else
                      f"  strict {state}: {s['file']}: unconsumed {s['unconsumed']}, missing {s['missing']}, "
                      f"different {s['differ']}")
                ok &= s["strict_ok"]
            all_out[kind] = {"build": build, "run": run}
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.workdir is None:
            print(f"\nkept {workdir}")
    if args.json:
        args.json.write_text(json.dumps(all_out, indent=2))
    print("\npeak RSS marked * is the process peak so far (clear_refs unavailable)." if any(
        not s["peak_exact"] for k in all_out.values() for s in k["run"]["stages"]) else "")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
