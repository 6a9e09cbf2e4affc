"""Captured maps -> Grounding results: heatmap, contrast, side prior, confidence and what each result records.

Why apart from the pipeline: this is post-processing only (no U-Net call), run once per variant of a capture
(the report flow post-processes one capture under several contrast / side-prior settings) and, in the
benchmark runner, on worker threads while the next images' passes run.
"""
from __future__ import annotations

import functools
import platform
import time
from typing import Any, Protocol, Sequence

import torch

from groundkit.core.types import LayerInfo
from groundkit.engine import confidence
from groundkit.engine.caches import Prepared
from groundkit.engine.capture import Captured
from groundkit.engine.contrast import captured_fine, contrast_scores
from groundkit.engine.contrast import describe as describe_contrast
from groundkit.engine.heatmap import make_heatmap
from groundkit.engine.maps import AttentionMaps
from groundkit.engine.side_prior import describe as describe_side_prior
from groundkit.grounding import Grounding
from groundkit.recipes import Recipe, Resolved, layer_choice


class ResultHost(Protocol):
    """What a result records of the model that made it (``GroundingModel``)."""

    adapter: Any
    entry: Any
    layers: list
    compiled: bool


def groundings(model: ResultHost, prep: Prepared, phrases: list[str], captured: Captured, resolved: Resolved,
               contrast: str, token_maps: bool, t0: float, sides: Sequence[str | None] | None = None,
               zones: Sequence[str | None] | None = None) -> list[Grounding]:
    """One Grounding per phrase from one capture (post-processing only: no U-Net call). ``sides`` / ``zones``: the
    report's side and zone per phrase for the side prior (report flow only; None: no side prior)."""
    r = resolved.recipe
    size = model.adapter.image_size
    fine = captured_fine(captured.maps, model.layers, r, contrast)
    scores = contrast_scores(captured.maps, r, size, contrast=contrast == "findings", sides=sides, zones=zones,
                             fine=tuple(i.index for i in fine))
    out = []
    for p, phrase in enumerate(phrases):
        maps, text_maps = captured.maps[p], (captured.text_maps[p] if captured.text_maps else None)
        hm = make_heatmap(maps, r, size, text_maps, score=scores[p] if scores else None)
        words = _word_maps(maps, r, size) if token_maps else None
        info = _info(model, captured, p, len(phrases), resolved, contrast, sides, zones, fine)
        info["bbm_similarity"] = hm.bbm_similarity
        out.append(Grounding(phrase, hm.heatmap_crop, hm.mask_crop, prep.geometry, r, info, words, prep.image))
        confidence.attach(out[-1], maps, text_maps, model.entry)  # signals + calibrated confidence, no U-Net call
    total = time.perf_counter() - t0
    for g in out:
        g.info["timings"]["total_seconds_batch"] = total
    return out


def _word_maps(maps: AttentionMaps, r: Recipe, size: int) -> dict:
    """One map per word of the phrase (``token_maps``), each aggregated as a phrase's map, no BBM, no threshold."""
    words = {}
    for g in maps.groups:
        if g.startswith("word:"):
            words[g[5:]] = make_heatmap(_rename(maps, g), r.override(bbm=None, threshold="none"), size).heatmap_crop
    return words


def _info(model: ResultHost, captured: Captured, p: int, n: int, resolved: Resolved, contrast: str,
          sides: Sequence[str | None] | None, zones: Sequence[str | None] | None = None,
          fine: Sequence[LayerInfo] = ()) -> dict:
    """What a Grounding records of how it was made (``info``), but for the heatmap's BBM similarity."""
    r, adapter, explained = resolved.recipe, model.adapter, captured.explained[p]
    return {
        "checkpoint": model.entry.name, "adapter": adapter.name, "device": str(adapter.device),
        "dtype": str(adapter.dtype).replace("torch.", ""), "compiled": model.compiled, "seed": r.seed,
        "tokens": explained, "empty_selection": explained.get("fallback") == "no content word",
        "unet_calls": captured.calls / n, "unet_calls_total": captured.calls, "unet_forwards": captured.forwards,
        "phrases_in_batch": n, "timings": dict(captured.timings), "cache": dict(captured.cache),
        "bbm_similarity": None, "contrast": describe_contrast(contrast, n, fine),
        "side_prior": {**describe_side_prior(sides is not None, [sides[p]] if sides else [], [zones[p]] if zones else []),
                       "side": sides[p] if sides else None, "zone": zones[p] if zones else None},
        "recipe_provenance": resolved.to_dict(), "versions": versions(),
        "layers": layer_choice(resolved.layers_spec, model.layers, r.layers),
    }


def _rename(maps: AttentionMaps, group: str) -> AttentionMaps:
    """View a per-word group as the 'selected' group, to reuse the same aggregation."""
    groups = ["selected" if g == group else (g if g != "selected" else "_selected") for g in maps.groups]
    return AttentionMaps(maps.layers, maps.steps, groups, maps.maps)


def versions() -> dict[str, str]:
    """Library versions recorded with every grounding (a copy: callers may add to it)."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    """Looked up once per process from the installed distributions' metadata: importing a library only to read
    its version would cost seconds (monai alone about 1.2 s) in a run that never uses it."""
    from importlib import metadata

    from groundkit.core.version import __version__

    out = {"groundkit": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for dist in ("monai", "diffusers", "transformers", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
