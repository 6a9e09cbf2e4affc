"""Label-free signals of a grounding's quality and its calibrated confidence (docs/confidence.md).

Every signal is computed from what a grounding already captured (the recipe's map and mask, the per-step and
per-layer attention maps of its window, BBM's text-pass similarity): no U-Net call. A *calibration* (fitted by
``groundkit calibrate``, groundkit.bench.confidence) turns the signals into the probability that the returned
mask's IoU with the true region is >= 0.3: a logistic regression on standardised signals, stored as JSON at
``<checkpoint folder>/calibration/<recipe>.json`` and applied here with numpy alone.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from groundkit.engine.maps import AttentionMaps
from groundkit.recipes import Recipe

CALIBRATION_DIR = "calibration"
FORMAT = "groundkit-confidence-calibration/1"
SIGNALS = ("peak_background", "entropy", "mask_area", "separation", "threshold_stability", "largest_component",
           "split_half_steps", "split_half_layers", "bbm_similarity")


# ------------------------------------------------------------------ signals
def map_signals(heatmap: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Concentration and threshold-stability signals of one map (crop space) and its mask."""
    h = np.nan_to_num(np.asarray(heatmap, np.float64)).ravel()
    m = np.asarray(mask, bool).ravel()
    n, std = h.size, float(h.std())
    top = np.sort(h)[-max(1, n // 100):].mean()
    p = h - h.min()
    p = p / p.sum() if p.sum() > 0 else np.full(n, 1.0 / n)
    nz = p[p > 0]
    area = float(m.mean())
    out = {"peak_background": float((top - np.median(h)) / (std + 1e-6)),
           "entropy": float(-(nz * np.log(nz)).sum() / math.log(n)), "mask_area": area}
    inside, outside = h[m], h[~m]
    if inside.size and outside.size:
        pooled = math.sqrt((inside.var() + outside.var()) / 2) + 1e-6
        out["separation"] = float((inside.mean() - outside.mean()) / pooled)
        t = float(np.quantile(h, 1.0 - area))  # the threshold giving the mask's area
        lo, hi = h >= t - 0.05, h >= t + 0.05
        out["threshold_stability"] = float(np.count_nonzero(lo & hi) / max(1, np.count_nonzero(lo | hi)))
        labels, k = ndimage.label(np.asarray(mask, bool))
        sizes = np.bincount(labels.ravel())[1:] if k else np.zeros(1)
        out["largest_component"] = float(sizes.max() / max(1, m.sum()))
    else:  # an empty or full mask: nothing separated
        out.update({"separation": 0.0, "threshold_stability": 0.0, "largest_component": 0.0})
    return out


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else 0.0


def split_half(maps: AttentionMaps, recipe: Recipe, group: str = "selected") -> dict[str, float]:
    """Correlation between the mean maps of disjoint halves of the window: even vs odd steps (all layers) and
    even vs odd layers (all steps). 1.0 where the window has a single step (or layer): nothing to split."""
    pos, infos = maps.window(recipe.steps, recipe.layers)
    gi = maps.groups.index(group)
    size = max(i.resolution for i in infos)
    per = []  # (layers, steps, size, size)
    for info in infos:
        m = maps.maps[info.index][torch.tensor(pos), gi].double()
        if recipe.layer_norm:
            lo, hi = m.amin(dim=(1, 2), keepdim=True), m.amax(dim=(1, 2), keepdim=True)
            m = (m - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        per.append(F.interpolate(m[:, None], size=(size, size), mode="nearest")[:, 0])
    x = torch.stack(per)
    out = {}
    for name, dim in (("split_half_steps", 1), ("split_half_layers", 0)):
        k = x.shape[dim]
        if k < 2:
            out[name] = 1.0
            continue
        a = x.index_select(dim, torch.arange(0, k, 2)).mean(dim=(0, 1))
        b = x.index_select(dim, torch.arange(1, k, 2)).mean(dim=(0, 1))
        out[name] = _corr(a, b)
    return out


def compute_signals(heatmap: np.ndarray, mask: np.ndarray, maps: AttentionMaps | None, recipe: Recipe,
                    bbm_similarity: float | None = None) -> dict[str, float]:
    """Every signal of one grounding (see SIGNALS; bbm_similarity only with BBM, split-half only with maps)."""
    out = map_signals(heatmap, mask)
    if maps is not None:
        out.update(split_half(maps, recipe))
    if bbm_similarity is not None:
        out["bbm_similarity"] = float(bbm_similarity)
    return {k: (v if math.isfinite(v) else 0.0) for k, v in out.items()}


# ------------------------------------------------------------------ calibration
def calibration_path(checkpoint_dir: str | Path, recipe_name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in recipe_name)
    return Path(checkpoint_dir) / CALIBRATION_DIR / f"{safe}.json"


_CACHE: dict[tuple[str, float], dict | None] = {}


def load_calibration(checkpoint_dir: str | Path | None, recipe_name: str) -> dict | None:
    """The stored calibration of a checkpoint's recipe, or None (read once per file version)."""
    if checkpoint_dir is None:
        return None
    path = calibration_path(checkpoint_dir, recipe_name)
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError:
        return None
    if key not in _CACHE:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a groundkit confidence calibration (format {data.get('format')!r})")
        data["file"] = str(path)
        _CACHE[key] = data
    return _CACHE[key]


def predict(calibration: Mapping[str, Any], signals: Mapping[str, float]) -> float:
    """P(IoU >= threshold) of the calibration's logistic model, for one grounding's signals."""
    m = calibration["model"]
    z = [(float(signals.get(f, 0.0)) - mu) / sd for f, mu, sd in zip(m["features"], m["mean"], m["scale"])]
    logit = float(np.dot(m["coef"], z) + m["intercept"])
    return float(1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit)))))


def describe_calibration(cal: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("file", "checkpoint", "recipe", "data", "n", "date", "target", "fitted_metric", "groundkit")
    return {k: cal[k] for k in keys if k in cal}


def confidence_of(signals: Mapping[str, float], recipe: Recipe, calibration: Mapping | None) -> tuple[float | None, dict]:
    """(confidence or None, what info["confidence"] says about it)."""
    if calibration is None:
        return None, {"status": "uncalibrated", "reason": f"no calibration for recipe {recipe.name!r} of this checkpoint "
                      "(groundkit calibrate); the raw signals are in info['signals']"}
    if calibration.get("recipe_digest") != recipe.digest():
        return None, {"status": "uncalibrated", "reason": f"the calibration of {recipe.name!r} was fitted for recipe digest "
                      f"{calibration.get('recipe_digest')}, this recipe is {recipe.digest()} (overridden fields)",
                      "calibration": describe_calibration(calibration)}
    value = predict(calibration, signals)
    return value, {"status": "calibrated", "value": value, "meaning": calibration.get("target", "P(IoU >= 0.3)"),
                   "calibration": describe_calibration(calibration)}


def attach(grounding, maps: AttentionMaps | None, text_maps: AttentionMaps | None, entry: Any) -> None:
    """Compute a Grounding's signals and confidence into its info (``signals``, ``confidence``)."""
    del text_maps  # BBM's text pass enters through bbm_similarity, already computed
    r = grounding.recipe
    signals = compute_signals(grounding.heatmap_crop, grounding.mask_crop, maps, r, grounding.info.get("bbm_similarity"))
    path = getattr(entry, "path", None)
    cal = load_calibration(path, r.name) if path is not None and Path(path).is_dir() else None
    value, about = confidence_of(signals, r, cal)
    grounding.info["signals"] = signals
    grounding.info["confidence"] = about
    grounding.info["localised"] = True


def abstain(groundings, min_confidence: float | None) -> None:
    """Mark groundings whose confidence is below ``min_confidence`` as not localised (their mask is hidden);
    an uncalibrated grounding cannot be judged: ValueError."""
    if min_confidence is None:
        return
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise ValueError(f"min_confidence={min_confidence!r}: expected a probability in [0, 1]")
    for g in groundings:
        c = g.confidence
        if c is None:
            raise ValueError(f"min_confidence needs a calibrated confidence, and {g.phrase!r} has none: "
                             f"{g.info.get('confidence', {}).get('reason', 'uncalibrated')}")
        g.info["localised"] = bool(c >= float(min_confidence))
        g.info["min_confidence"] = float(min_confidence)


def require(entry: Any, recipe: Recipe, min_confidence: float | None) -> None:
    """Before any U-Net call: ``min_confidence`` needs a calibration matching this recipe (ValueError otherwise)."""
    if min_confidence is None:
        return
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise ValueError(f"min_confidence={min_confidence!r}: expected a probability in [0, 1]")
    path = getattr(entry, "path", None)
    cal = load_calibration(path, recipe.name) if path is not None and Path(path).is_dir() else None
    _, about = confidence_of({}, recipe, cal) if cal is None or cal.get("recipe_digest") != recipe.digest() else (0, {})
    if about:
        raise ValueError(f"min_confidence needs a calibrated confidence: {about['reason']}")
