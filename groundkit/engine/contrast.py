"""Report-level contrast: the positive findings of one report, grounded in the same image, against each other.

Each finding's map answers "where does the model attend for this phrase", and in an image with several
findings every phrase's attention is pulled towards the most salient abnormality. The other findings of the
report are exactly what separates them: :func:`contrast_scores` turns the findings' token-averaged maps
(captured in the shared pass: no extra U-Net call) into maps computed against each other, BEFORE the
recipe's usual post-processing (smoothing, min-max, Otsu/GMM, BBM), which :func:`groundkit.engine.heatmap.
make_heatmap` then applies unchanged.

Formulation (chosen on validation reports, docs/report-grounding.md): a per-pixel softmax over the findings'
min-maxed maps with a constant background term,

    z_i = minmax(A_i),    C_i = exp(z_i / T) / (sum_j exp(z_j / T) + exp(b / T)),    T = 0.2, b = 0.5
    score_i = 0.75 minmax(C_i) + 0.25 z_i

A pixel that every finding's map finds salient is shared between them (no finding keeps it at full
strength), a pixel where one finding is high and the others are low stays that finding's, and the
background term keeps pixels where no finding is confidently high (z < b) out of every map. The quarter of
the finding's own map keeps its contrast-to-noise ratio (the softmax alone flattens the map inside the
region). With ONE finding nothing is computed: the map is exactly the recipe's map.

The report flow adds, as a separate option on by default (``side_prior``, groundkit.engine.side_prior), the
report's own side words as a soft weight on each min-maxed map before the softmax: the attention of this model
barely encodes side, the report states it. It applies with and without contrast, so a report with one
finding gives the same map with contrast on and off.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from groundkit.core.types import LayerInfo
from groundkit.engine import postprocess as pp
from groundkit.engine.heatmap import grid_size
from groundkit.engine.maps import AttentionMaps
from groundkit.engine.side_prior import SIDES, ZONES, position_weight
from groundkit.recipes import Recipe

__all__ = ["CONTRAST_MODES", "TEMPERATURE", "BACKGROUND", "MIX", "FINE_WEIGHT", "REFINE_SIGMA", "check_contrast",
           "softmax_contrast", "refine_layers", "capture_recipe", "captured_fine", "contrast_scores", "describe"]

CONTRAST_MODES = ("findings", "none")
TEMPERATURE = 0.2
BACKGROUND = 0.5
MIX = 0.75  # share of the softmax in the contrasted map; the rest is the finding's own (side-weighted) map
FINE_WEIGHT = 1.0  # A_i = minmax(coarse_i) * (FINE_WEIGHT + minmax(fine_i)): the fine layers at most double a pixel
REFINE_SIGMA = 0.7  # Gaussian smoothing after a refined contrast, in cells of the fine layers' grid
FORMULATION = "softmax over the findings' min-maxed maps with a background term, 0.75/0.25 with the own map"


def check_contrast(value: Any) -> str:
    """``"findings"`` or ``"none"`` (``True``/``False`` and ``None`` accepted as on/off/off)."""
    if value is None or value is False:
        return "none"
    if value is True:
        return "findings"
    v = str(value).strip().lower()
    if v not in CONTRAST_MODES:
        raise ValueError(f"contrast={value!r}: expected one of {', '.join(CONTRAST_MODES)}")
    return v


def softmax_contrast(raw: Sequence[np.ndarray], temperature: float = TEMPERATURE,
                     background: float = BACKGROUND) -> list[np.ndarray]:
    """Per-pixel softmax over the min-maxed maps of several findings plus a constant background logit.

    ``raw``: (S, S) maps of the findings of one image, same shape. Returns one map per finding in [0, 1]."""
    if len(raw) < 2:
        raise ValueError("contrast needs at least two findings")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature})")
    z = np.stack([np.nan_to_num(pp.minmax(a), nan=0.0) for a in raw]).astype(np.float64)
    logits = np.concatenate([z, np.full((1,) + z.shape[1:], float(background))]) / temperature
    logits -= logits.max(axis=0, keepdims=True)
    e = np.exp(logits)
    p = e / e.sum(axis=0, keepdims=True)
    return [p[i] for i in range(len(raw))]


def refine_layers(layers: Sequence[LayerInfo], chosen: Sequence[int] | None) -> tuple[int, ...]:
    """The layers that refine a contrasted map: the up path's cross-attention layers at twice the finest
    resolution of the recipe's layers ``chosen`` (canonical indices into ``layers``); () when there are none."""
    by_index = {info.index: info for info in layers}
    picked = [by_index[i] for i in (chosen or ()) if i in by_index]
    if not picked:
        return ()
    target = 2 * max(info.resolution for info in picked)
    return tuple(info.index for info in layers
                 if info.block == "up" and info.attention == "attn2" and info.resolution == target)


def capture_recipe(recipe: Recipe, layers: Sequence[LayerInfo], findings: int, contrast: str) -> Recipe:
    """The recipe to CAPTURE with: the recipe's layers, plus the refining layers when the contrast will apply
    (``contrast == "findings"`` and two or more findings). Same passes, same U-Net calls: the extra layers are only
    recorded. Everything else (maps without contrast, result.json) still reads the recipe itself."""
    fine = refine_layers(layers, recipe.layers) if contrast == "findings" and findings > 1 else ()
    extra = tuple(i for i in fine if i not in (recipe.layers or ()))
    return recipe.override(layers=tuple(recipe.layers) + extra) if extra else recipe


def captured_fine(maps: Sequence[AttentionMaps], layers: Sequence[LayerInfo], recipe: Recipe,
                  contrast: str) -> tuple[LayerInfo, ...]:
    """The refining layers this capture holds, when the contrast applies to it (else, or when the capture lacks
    any of them, ()): what ``contrast_scores(fine=)`` uses and result.json records."""
    if contrast != "findings" or len(maps) < 2:
        return ()
    fine = refine_layers(layers, recipe.layers)
    have = {info.index: info for info in maps[0].layers}
    return tuple(have[i] for i in fine) if fine and all(i in have for i in fine) else ()


def _refined(maps: Sequence[AttentionMaps], recipe: Recipe, fine: tuple[int, ...], size: int,
             fine_weight: float) -> list[np.ndarray]:
    """Each finding's token-averaged map on a ``size`` grid, refined by the ``fine`` layers when given."""
    kw = dict(layer_norm=recipe.layer_norm, upsample=recipe.upsample, size=size)
    raw = [m.aggregate("selected", recipe.steps, recipe.layers, **kw) for m in maps]
    if not fine:
        return raw
    return [np.nan_to_num(pp.minmax(a), nan=0.0)
            * (fine_weight + np.nan_to_num(pp.minmax(m.aggregate("selected", recipe.steps, fine, **kw)), nan=0.0))
            for a, m in zip(raw, maps)]


def contrast_scores(maps: Sequence[AttentionMaps], recipe: Recipe, image_size: int, *, contrast: bool = True,
                    sides: Sequence[str | None] | None = None, zones: Sequence[str | None] | None = None,
                    fine: Sequence[int] = (), temperature: float = TEMPERATURE, background: float = BACKGROUND,
                    mix: float = MIX, fine_weight: float = FINE_WEIGHT,
                    refine_sigma: float = REFINE_SIGMA) -> list[np.ndarray | None] | None:
    """The score maps (what ``make_heatmap(..., score=)`` thresholds) of the findings of one image.

    ``contrast``: each finding against the others (needs two or more findings). ``sides``: the report's side
    per finding, the side prior (groundkit.engine.side_prior) weighting each min-maxed map BEFORE the
    contrast, so a finding's own side wins the softmax; ``zones`` ("upper" / "middle" / "lower" per finding,
    ``side_prior.zone_of``) weight the rows the same way. ``None`` for a finding means "the recipe's own map"
    (no contrast, no side, no zone), and ``None`` overall when nothing applies (one finding, no side prior).
    ``fine``: the refining layers (``refine_layers``, captured in ``maps``), used with the contrast only."""
    contrast = contrast and len(maps) > 1
    for name, per in (("sides", sides), ("zones", zones)):
        if per is not None and len(per) != len(maps):
            raise ValueError(f"{name}: expected one per finding ({len(maps)}), got {len(per)}")
    sides = list(sides) if sides is not None else [None] * len(maps)
    zones = list(zones) if zones is not None else [None] * len(maps)
    if not maps or (not contrast and not any(s in SIDES or z in ZONES for s, z in zip(sides, zones))):
        return None
    fine = tuple(fine) if contrast else ()
    size = grid_size(maps[0], recipe, tuple(recipe.layers or ()) + fine, image_size)
    weights = [position_weight(s, z, size) for s, z in zip(sides, zones)]
    raw = _refined(maps, recipe, fine, size, fine_weight)
    z = [a if w is None else np.nan_to_num(pp.minmax(a), nan=0.0) * w for a, w in zip(raw, weights)]
    if contrast:  # the softmax, blended with the finding's own map (keeps its contrast-to-noise, see MIX)
        own = [np.nan_to_num(pp.minmax(h), nan=0.0) for h in z]
        z = [mix * pp.minmax(c) + (1.0 - mix) * o for c, o in zip(softmax_contrast(z, temperature, background), own)]
    else:  # side prior only: a finding without a side keeps the recipe's own map, bit for bit
        z = [h if w is not None else None for h, w in zip(z, weights)]
    sigma = refine_sigma * size / max(i.resolution for i in maps[0].layers if i.index in fine) if fine else 0.0
    out: list[np.ndarray | None] = []
    for h in z:
        if h is not None and sigma:
            h = pp.gaussian(h, sigma)
        if h is not None and recipe.sigma:
            h = pp.gaussian(h, recipe.sigma)
        out.append(None if h is None else pp.minmax_fp16(h) if recipe.map_fp16 else pp.minmax(h))
    return out


def describe(mode: str, findings: int, fine: Sequence[LayerInfo] = ()) -> dict[str, Any]:
    """What result.json / findings.json record about the contrast of one grounding (``fine``: the refining layers
    used, when the contrast applied)."""
    d: dict[str, Any] = {"mode": mode, "findings": int(findings), "applied": mode == "findings" and findings > 1}
    if mode == "findings":
        d.update({"formulation": FORMULATION, "temperature": TEMPERATURE, "background": BACKGROUND, "mix": MIX})
        d["refine"] = ({"layers": [i.name for i in fine], "fine_weight": FINE_WEIGHT, "sigma": REFINE_SIGMA}
                       if d["applied"] and fine else None)
    return d
