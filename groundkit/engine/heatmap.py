"""From captured maps to the recipe's heatmap and mask (docs/protocols.md §5), in crop space.

Written once for every adapter: the window is aggregated, optionally smoothed, min-maxed,
optionally merged with the text-only pass (BBM) and thresholded by the recipe's registered threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from groundkit.choices import get_threshold
from groundkit.core.geometry import resize
from groundkit.engine import postprocess as pp
from groundkit.engine.maps import AttentionMaps
from groundkit.recipes import Recipe


@dataclass
class Heatmap:
    heatmap_crop: np.ndarray  # (S, S) in the model's crop space: the recipe's output map
    mask_crop: np.ndarray  # (S, S) bool, crop space (``_crop`` everywhere: a bare heatmap/mask is the original image's)
    bbm_similarity: float | None = None  # SSIM s of BBM's image and text biases


def grid_size(maps: AttentionMaps, recipe: Recipe, layers, image_size: int) -> int:
    """Vilouras bilinearly upsamples every map to the input size; Nuetzel nearest-upsamples to the
    largest layer grid (64x64 for SD 1.5)."""
    if recipe.upsample == "bilinear":
        return image_size
    _, infos = maps.window(recipe.steps, layers)
    return max(info.resolution for info in infos)


def score_map(maps: AttentionMaps, recipe: Recipe, image_size: int, group: str = "selected") -> np.ndarray:
    """The continuous map before thresholding: window mean, smoothing, min-max (in float16 when the
    recipe replicates the published Nuetzel storage)."""
    size = grid_size(maps, recipe, recipe.layers, image_size)
    h = maps.aggregate(group, recipe.steps, recipe.layers, layer_norm=recipe.layer_norm, upsample=recipe.upsample, size=size)
    if recipe.sigma:
        h = pp.gaussian(h, recipe.sigma)
    return pp.minmax_fp16(h) if recipe.map_fp16 else pp.minmax(h)


def bbm_merge(a: np.ndarray, maps: AttentionMaps, text_maps: AttentionMaps, recipe: Recipe) -> tuple[np.ndarray, float]:
    """Nuetzel eq. 2-4 as the published code computes them. M: the matrix product of the GT pass's
    start-token maps and the text-only pass's selected-token maps, averaged, made 8-bit and min-maxed.
    s: the SSIM of the image bias (GT pass, start token) and the text bias (text-only pass, the same
    selected tokens as A), both 8-bit. Returns the un-normalised merged map and s."""
    size = a.shape[0]
    fp16 = recipe.map_fp16
    p_img = maps.stack("start", recipe.bbm_steps, recipe.layers, size).double().numpy()
    p_txt = text_maps.stack("selected", recipe.bbm_steps, recipe.layers, size).double().numpy()
    m = pp.bbm_matrix_map(p_img, p_txt, fp16=fp16)
    kw = dict(layer_norm=False, upsample="nearest", size=size)
    image_bias = pp.to_uint8(maps.aggregate("start", recipe.bbm_steps, recipe.layers, **kw), fp16=fp16)
    text_bias = pp.to_uint8(text_maps.aggregate("selected", recipe.bbm_steps, recipe.layers, **kw), fp16=fp16)
    s = pp.bbm_weight(image_bias, text_bias)
    return pp.bbm(a, m, s, variant=recipe.bbm, fp16=fp16), s


def threshold(h: np.ndarray, recipe: Recipe, raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The recipe's registered threshold (groundkit.choices.THRESHOLDS): (output map, bool mask)."""
    return get_threshold(recipe.threshold)(h, recipe, raw)


def make_heatmap(maps: AttentionMaps, recipe: Recipe, image_size: int, text_maps: AttentionMaps | None = None,
                 score: np.ndarray | None = None) -> Heatmap:
    """``score``: the continuous map to use instead of :func:`score_map` (the report-level contrast between
    findings, groundkit.engine.contrast); BBM and the threshold follow as for the recipe's own map."""
    h = score_map(maps, recipe, image_size) if score is None else score
    s = None
    if recipe.bbm is not None:
        if text_maps is None:
            raise ValueError("recipe asks for BBM but no text-only pass was captured")
        merged, s = bbm_merge(h, maps, text_maps, recipe)
        # As published: the GMM is fitted to the un-normalised merged map (values up to 1.5) and the
        # continuous metrics see its min-max; groundkit's heatmap is that min-max, always in [0, 1].
        h = pp.minmax_fp16(merged) if recipe.map_fp16 else pp.minmax(merged)
        out, mask = threshold(h, recipe, raw=merged)
    else:
        out, mask = threshold(h, recipe)
    if out.shape[0] != image_size:
        # as the published Nuetzel evaluation: linear upsampling of map and mask to the input
        # size, the mask rounded back (exactly 0.5 rounds down)
        out = np.clip(resize(out, image_size, mode="bilinear"), 0.0, 1.0)
        mask = resize(mask.astype(np.float64), image_size, mode="bilinear") > 0.5
    return Heatmap(out, mask.astype(bool), s)
