"""The library API, a thin facade: ``gk.load(checkpoint).ground(image, phrase, recipe=..., **overrides)``.

Loading resolves a checkpoint (registry), builds its family's adapter and hands it to the engine's
:class:`~groundkit.engine.pipeline.GroundingModel`; the ``list_*`` functions expose the registries.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

from groundkit import registry
from groundkit.core.categories import CATEGORIES
from groundkit.engine import confidence, pipeline
from groundkit.engine.contrast import CONTRAST_MODES, capture_recipe, check_contrast
from groundkit.engine.contrast import describe as describe_contrast
from groundkit.engine.results import groundings, versions
from groundkit.engine.side_prior import check_side_prior, zone_of
from groundkit.engine.side_prior import describe as describe_side_prior
from groundkit.recipes import Recipe
from groundkit.report_grounding import PALETTE, GroundedFinding, ReportGrounding
from groundkit.reports import parse_report

__all__ = ["DTYPES", "GroundingModel", "from_diffusers", "load", "list_adapters", "list_checkpoints", "list_recipes", "pick_device",
           "resolve_dtype", "versions"]


class GroundingModel(pipeline.GroundingModel):
    """What ``load`` and ``from_diffusers`` return: the engine's model (``ground``, ``ground_many``, batches)
    plus the report flow, which parses a radiology report (groundkit.reports) and grounds its positive findings
    in one batched call. It sits here, above both the engine and the report parser."""

    def ground_report(self, image, report: str, recipe: str | Recipe | None = None, *, contrast: str = "findings",
                      side_prior: bool = True, use_spacy: bool | None = None, progress: bool = False,
                      min_confidence: float | None = None, **overrides: Any):
        """Ground every positive finding of a radiology report in one image, in ONE batched call that shares
        the per-image work; negated findings are listed, not grounded. Returns a ReportGrounding.

        ``contrast="findings"`` (the default) computes each positive finding's map against the other findings'
        (groundkit.engine.contrast; a report with one positive finding gets exactly its own map), ``"none"``
        grounds each finding on its own. ``side_prior`` (default on) weights each finding's map towards the
        side and zone its report names (groundkit.engine.side_prior), with contrast on or off."""
        return self.ground_report_contrasts(image, report, recipe, contrasts=(contrast,), side_prior=side_prior,
                                            use_spacy=use_spacy, progress=progress, min_confidence=min_confidence,
                                            **overrides)[check_contrast(contrast)]

    def ground_report_contrasts(self, image, report: str, recipe: str | Recipe | None = None, *,
                                contrasts: Sequence[str] = CONTRAST_MODES, side_prior: bool = True,
                                use_spacy: bool | None = None, progress: bool = False,
                                min_confidence: float | None = None, **overrides: Any) -> dict:
        """``ground_report`` once per contrast mode, all from ONE captured pass (the U-Net calls are those of
        one report): {mode: ReportGrounding}."""
        check_side_prior(side_prior)
        variants = [(check_contrast(c), side_prior) for c in contrasts]
        out = self.ground_report_variants(image, report, recipe, variants=variants, use_spacy=use_spacy,
                                          progress=progress, min_confidence=min_confidence, **overrides)
        return {mode: rg for (mode, _), rg in out.items()}

    def ground_report_variants(self, image, report: str, recipe: str | Recipe | None = None, *,
                               variants: Sequence[tuple[str, bool]], use_spacy: bool | None = None,
                               progress: bool = False, min_confidence: float | None = None, **overrides: Any) -> dict:
        """``ground_report`` once per (contrast mode, side prior) pair, all from ONE captured pass:
        {(mode, side_prior): ReportGrounding}. What the report benchmark compares."""
        variants = list(dict.fromkeys((check_contrast(c), check_side_prior(sp)) for c, sp in variants))
        if not variants:
            raise ValueError("contrasts: name at least one contrast mode")
        t0 = time.perf_counter()
        parsed = parse_report(report, use_spacy=use_spacy)
        resolved = self.resolve(recipe, **overrides)
        r = resolved.recipe
        confidence.require(self.entry, r, min_confidence)
        prep = self.prepare(image)
        todo_idx = [i for i, f in enumerate(parsed.findings) if not f.negated]
        phrases = [parsed.findings[i].phrase for i in todo_idx]
        cats = [parsed.findings[i].category if parsed.findings[i].category in CATEGORIES else None for i in todo_idx]
        any_contrast = "findings" if any(mode == "findings" for mode, _ in variants) else "none"
        rc = capture_recipe(r, self.layers, len(phrases), any_contrast)  # + the refining layers: no extra call
        captured = self.capture(prep, phrases, rc, categories=cats, progress=progress) if todo_idx else None
        out = {}
        for mode, side_prior in variants:
            sides = [parsed.findings[i].side for i in todo_idx] if side_prior else None
            zones = [zone_of(parsed.findings[i].location) for i in todo_idx] if side_prior else None
            found = [GroundedFinding(f, PALETTE[i % len(PALETTE)]) for i, f in enumerate(parsed.findings)]
            gs = groundings(self, prep, phrases, captured, resolved, mode, False, t0, sides, zones) if todo_idx else []
            confidence.abstain(gs, min_confidence)
            for i, g in zip(todo_idx, gs):
                found[i].grounding = g
            total = captured.calls if captured is not None else 0
            info = {"checkpoint": self.entry.name, "recipe": r.name, "recipe_digest": r.digest(),
                    "seconds": round(time.perf_counter() - t0, 3), "unet_calls_total": total,
                    "unet_calls_per_finding": total / len(todo_idx) if todo_idx else 0,
                    "unet_forwards": captured.forwards if captured is not None else 0,
                    "findings_grounded": len(todo_idx), "findings_negated": len(found) - len(todo_idx),
                    "contrast": dict(gs[0].info["contrast"]) if gs else describe_contrast(mode, 0),
                    "side_prior": describe_side_prior(side_prior, sides or [], zones or []), "groundkit": versions()["groundkit"]}
            out[(mode, side_prior)] = ReportGrounding(report, parsed, found, prep.image, info)
        return out



def pick_device(device: str | None = None) -> torch.device:
    """cuda, then mps, then cpu unless told."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The U-Net's compute dtype. ``"auto"`` (the default): bfloat16 on CUDA (float16 on a GPU without
    bfloat16), float32 on CPU and MPS. Capture (softmax, token weighting) and post-processing stay float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = "auto" if dtype is None else str(dtype).replace("torch.", "")
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def allow_tf32() -> None:
    """TF32 tensor cores for the float32 matmuls and convolutions left on CUDA (set by ``dtype="auto"``)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def load(checkpoint: str | Path = "demo", device: str | None = None, dtype: str | torch.dtype = "auto",
         checkpoints_file: str | Path | None = None, compile: bool = False) -> GroundingModel:
    """Load a checkpoint by name (checkpoints.yaml) or from a folder laid out as published.

    ``dtype="auto"``: bfloat16 U-Net on CUDA with TF32 allowed (float16 without bfloat16 support), float32 on
    CPU/MPS; ``"float32"`` keeps full precision everywhere. ``compile=True`` runs the U-Net's forward through
    ``torch.compile`` (same maps; the first forwards pay the compilation)."""
    entry = registry.resolve(checkpoint, checkpoints_file)
    dev = pick_device(device)
    dt = resolve_dtype(dtype, dev)
    if dev.type == "cuda" and (dtype is None or dtype == "auto"):
        allow_tf32()
    cls = registry.get_adapter_class(entry.adapter)
    start = time.perf_counter()
    adapter = cls.from_entry(entry.adapter_entry(), device=dev, dtype=dt)
    model = GroundingModel(adapter, entry, load_seconds=time.perf_counter() - start)
    if compile:
        model.compile()
    return model


def from_diffusers(pipe=None, *, unet=None, vae=None, text_encoder=None, tokenizer=None, scheduler=None,
                   image_size: int | None = None, name: str = "in-memory", max_length: int | None = None,
                   attention_mask: bool | None = None) -> GroundingModel:
    """Ground with a diffusers ``StableDiffusionPipeline`` (or its parts) already in memory, DAAM-style: no
    checkpoint folder, no copy of a weight. The modules stay where they are (the U-Net's device and dtype);
    a part given by keyword replaces the pipeline's. The same recipes, capture and outputs as ``load``; the
    model is the ``diffusers-sd`` family's adapter under a synthetic checkpoint entry named ``name``.

    Defaults as the pipeline's: input side ``unet.config.sample_size`` x the VAE's downsampling, tokens per
    phrase ``tokenizer.model_max_length`` (capped by the encoder's positions), the VAE config's scaling
    factor, the scheduler config's noise schedule (epsilon or v_prediction). ``attention_mask``: pass the
    tokenizer's mask with the phrases (default: as ``load`` does, yes for BERT-family encoders, no for CLIP).
    """
    from collections.abc import Mapping

    from groundkit.families.diffusers_sd import DiffusersSDAdapter

    if isinstance(pipe, Mapping):
        raise TypeError(f"from_diffusers: got a dict of pipeline components ({', '.join(map(str, list(pipe)[:6]))}); pass them as "
                        "keyword arguments, gk.from_diffusers(**components), or pass the pipeline itself")
    if pipe is not None and not any(hasattr(pipe, k) for k in ("unet", "text_encoder", "tokenizer", "scheduler")):
        what = type(pipe).__name__
        hint = (" (a U-Net: pass it as unet=...)" if isinstance(pipe, torch.nn.Module) and hasattr(getattr(pipe, "config", None), "get")
                and getattr(pipe, "config").get("cross_attention_dim") is not None else "")
        raise TypeError(f"from_diffusers: pipe: expected a diffusers pipeline (with .unet, .text_encoder, .tokenizer and "
                        f".scheduler) or None, got {what}{hint}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0):
        raise ValueError(f"from_diffusers: image_size={image_size!r:.40}: expected a positive integer (pixels), or None for "
                         "the pipeline's default (unet.config.sample_size x the VAE's downsampling)")
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ValueError(f"from_diffusers: name: expected a short non-empty text, got {type(name).__name__}")
    parts = {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}
    for key, value in parts.items():
        if value is None and pipe is not None:
            parts[key] = getattr(pipe, key, None)
    missing = [k for k in ("unet", "text_encoder", "tokenizer", "scheduler") if parts[k] is None]
    if missing:
        raise ValueError(f"from_diffusers: no {', '.join(missing)} (pass a pipeline, or the parts by keyword)")
    start = time.perf_counter()
    adapter = DiffusersSDAdapter.from_components(**parts, image_size=image_size, max_length=max_length,
                                                 attention_mask=attention_mask)
    entry = registry.CheckpointEntry(
        name=name, adapter=DiffusersSDAdapter.name, path=Path(f"<in-memory:{name}>"), recipe=DiffusersSDAdapter.default_recipe,
        source="modules in memory (groundkit.from_diffusers)", description=f"{type(pipe).__name__ if pipe is not None else 'components'} "
        "passed to groundkit.from_diffusers", options={"image_size": adapter.image_size, "max_length": adapter.max_length})
    return GroundingModel(adapter, entry, load_seconds=time.perf_counter() - start)


def list_recipes(checkpoints: bool = False) -> list[str]:
    """Every registered recipe name (see :func:`groundkit.registry.list_recipes`)."""
    return registry.list_recipes(checkpoints)


def list_checkpoints(checkpoints_file: str | Path | None = None) -> list[registry.CheckpointEntry]:
    """Every named checkpoint of checkpoints.yaml (present on disk or not)."""
    return list(registry.load_checkpoints(checkpoints_file).values())


def list_adapters() -> list[str]:
    """Every installed model family: built-ins and ``groundkit.adapters`` entry points."""
    return registry.list_adapters()
