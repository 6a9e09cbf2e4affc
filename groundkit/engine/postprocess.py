"""Post-processing of aggregated attention maps (docs/protocols.md §5).

Everything here is plain numpy in, numpy out, with float64 arithmetic, so that the two published
pipelines can be rebuilt from small, separately tested steps:

- Vilouras 2024: resize -> mean -> ``gaussian`` -> ``minmax`` -> ``otsu`` (continuous output;
  ``method="multiotsu"`` reproduces the published ``threshold_multiotsu(classes=2)`` call exactly).
- Nuetzel 2025: mean -> ``minmax`` -> ``gmm`` mask (+ 3x3 majority filter), optionally ``bbm``.

NaN marks pixels outside the evaluated field of view; each function says how it treats them.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from groundkit.choices import BBM_VARIANTS, get_bbm_variant
from groundkit.core.checks import as_float as _as_float
from groundkit.core.checks import finite_values as _finite_values

__all__ = [
    "minmax",
    "gaussian",
    "otsu_threshold",
    "multiotsu2_threshold",
    "otsu",
    "gmm_threshold",
    "gmm",
    "majority_filter",
    "minmax_fp16",
    "to_uint8",
    "ssim",
    "bbm_weight",
    "bbm",
    "bbm_matrix_map",
    "BBM_VARIANTS",
]


# --------------------------------------------------------------------------------------------
# normalisation and smoothing
# --------------------------------------------------------------------------------------------
def minmax(h) -> np.ndarray:
    """Rescale to [0, 1] over the finite pixels; NaN stays NaN.

    Both papers min-max every map before thresholding so that fixed thresholds mean the same thing
    for every phrase. A constant map has no contrast to stretch: it becomes all zeros (not NaN, as
    a naive 0/0 would give), so that downstream thresholds predict nothing rather than failing.
    Works on arrays of any dimension (the statistics are global).
    """
    a = _as_float(h, ndim=None)
    finite = np.isfinite(a)
    out = np.full(a.shape, np.nan)
    if not finite.any():
        return out
    lo, hi = a[finite].min(), a[finite].max()
    if hi > lo:
        out[finite] = (a[finite] - lo) / (hi - lo)
    else:
        out[finite] = 0.0
    return out


def gaussian(h, sigma: float = 2.5) -> np.ndarray:
    """Gaussian smoothing as Vilouras (scipy ``gaussian_filter``, mode reflect, truncate 4).

    NaN is rejected: it would spread over the whole kernel footprint.
    """
    a = _as_float(h, allow_nan=False)
    return ndimage.gaussian_filter(a, sigma=sigma, mode="reflect", truncate=4.0)


# --------------------------------------------------------------------------------------------
# Otsu (Vilouras)
# --------------------------------------------------------------------------------------------
def otsu_threshold(h, nbins: int = 256) -> float:
    """``skimage.filters.threshold_otsu`` on the finite pixels (NaN marks pixels outside the view).

    A map with a single value returns that value, so ``h > thr`` is empty."""
    from skimage.filters import threshold_otsu

    v = _finite_values(_as_float(h, ndim=None), "h")
    if np.all(v == v[0]):
        return float(v[0])
    return float(threshold_otsu(v, nbins=nbins))


def multiotsu2_threshold(h, nbins: int = 256) -> float:
    """``skimage.filters.threshold_multiotsu(h, classes=2)`` on the finite pixels: the exact call of the
    published Vilouras code. It maximises the same criterion as Otsu with skimage's multi-Otsu tables and
    often lands one histogram bin above ``threshold_otsu``. A single value returns that value (skimage raises)."""
    from skimage.filters import threshold_multiotsu

    v = _finite_values(_as_float(h, ndim=None), "h")
    if np.all(v == v[0]):
        return float(v[0])
    return float(threshold_multiotsu(v, classes=2, nbins=nbins)[0])


def otsu(h, nbins: int = 256, method: str = "otsu") -> tuple[np.ndarray, np.ndarray]:
    """Vilouras' post-processing: keep the map where it exceeds the Otsu threshold.

    Returns ``(h * (h > thr), mask)``: the output stays continuous (not binary), which is what their
    mIoU thresholds and binned AUROC are computed on. NaN pixels stay NaN and are not in the mask.
    method: "otsu" (``otsu_threshold``) or "multiotsu" (``multiotsu2_threshold``, the published
    code's exact call).
    """
    a = _as_float(h)
    if method == "otsu":
        thr = otsu_threshold(a, nbins)
    elif method == "multiotsu":
        thr = multiotsu2_threshold(a, nbins)
    else:
        raise ValueError(f"otsu: method must be 'otsu' or 'multiotsu', got {method!r}")
    with np.errstate(invalid="ignore"):
        mask = a > thr
    return a * mask, mask


# --------------------------------------------------------------------------------------------
# GMM (Nuetzel)
# --------------------------------------------------------------------------------------------
def gmm_threshold(h, seed: int = 0) -> float:
    """Mean of the two component means of a 2-component 1-D Gaussian mixture on the finite pixels.

    sklearn ``GaussianMixture(n_components=2, random_state=seed)`` as Nuetzel (who left it unseeded;
    groundkit seeds it for reproducibility). Fewer than two distinct values: that value.
    """
    from sklearn.mixture import GaussianMixture

    a = _as_float(h, ndim=None)
    v = _finite_values(a, "h")
    if np.all(v == v[0]):
        return float(v[0])
    gm = GaussianMixture(n_components=2, random_state=seed)
    with warnings.catch_warnings():
        # few distinct values (e.g. tests) make k-means init warn; the fit is still well defined
        warnings.simplefilter("ignore")
        gm.fit(v.reshape(-1, 1))
    return float(np.mean(gm.means_))


def majority_filter(mask) -> np.ndarray:
    """3x3 majority vote on interior pixels: set iff >= 5 of the 9 (itself included) are set.

    Nuetzel's "orphan pixel" filter (mean of a 3x3 window >= 0.5). Border pixels keep their value
    because their window would leave the image. Computed from the input, not in place.
    """
    m = np.asarray(mask)
    if m.dtype != bool or m.ndim != 2:
        raise ValueError(f"mask: expected a 2-D bool array, got dtype {m.dtype} shape {m.shape}")
    out = m.copy()
    if m.shape[0] < 3 or m.shape[1] < 3:
        return out
    c = m.astype(np.int32)
    s = sum(c[1 + dy:c.shape[0] - 1 + dy, 1 + dx:c.shape[1] - 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    out[1:-1, 1:-1] = s >= 5
    return out


def gmm(h, seed: int = 0, fp16: bool = False) -> np.ndarray:
    """Nuetzel's binary mask: pixels strictly above ``gmm_threshold``, then ``majority_filter``.

    NaN pixels are never foreground. ``fp16=True``: the map is a float16 tensor in the published code,
    and torch compares it with the threshold rounded to float16 first; so does this.
    """
    a = _as_float(h)
    thr = gmm_threshold(a, seed)
    if fp16:
        thr = float(np.float16(thr))
    with np.errstate(invalid="ignore"):
        mask = a > thr
    return majority_filter(mask)


# --------------------------------------------------------------------------------------------
# float16 as the published Nuetzel code, SSIM and Bimodal Bias Merging
# --------------------------------------------------------------------------------------------
def minmax_fp16(h) -> np.ndarray:
    """``minmax`` as the published Nuetzel code computes it: cast to float16 first, then
    (h - min) / (max - min) with every operation rounded to float16 (torch CPU half arithmetic).

    The published code stores every map it evaluates this way; the float16 values are returned as
    float64 (exactly representable). A constant map becomes zeros, as in ``minmax``."""
    import torch

    a = _as_float(h, ndim=None, allow_nan=False)
    t = torch.from_numpy(np.ascontiguousarray(a)).to(torch.float16)
    lo, hi = t.min(), t.max()
    if not bool(hi > lo):
        return np.zeros(a.shape)
    return ((t - lo) / (hi - lo)).double().numpy()


def to_uint8(h, fp16: bool = False) -> np.ndarray:
    """Min-max, times 255, truncated to uint8 (the published ``normalize_and_scale_tensor``).

    ``fp16=True`` computes the min-max and the product in float16 exactly as published; otherwise
    in float64 (the two differ by at most one grey level on a few pixels)."""
    if not fp16:
        return np.floor(minmax(_as_float(h, allow_nan=False)) * 255.0).astype(np.uint8)
    import torch

    t = torch.from_numpy(minmax_fp16(h)).to(torch.float16)
    return (t * 255).to(torch.uint8).numpy()


def ssim(a, b) -> float:
    """Mean SSIM of two maps on their 8-bit versions (uint8 arrays are used as they are, other maps go
    through ``to_uint8``): scikit-image's ``structural_similarity`` with its defaults, the call the
    published code makes (data range 255 from the dtype, 7x7 uniform window, K1 0.01, K2 0.03,
    sample covariance, mean over the pixels the window fits in)."""
    from skimage.metrics import structural_similarity

    a8 = a if np.asarray(a).dtype == np.uint8 else to_uint8(a)
    b8 = b if np.asarray(b).dtype == np.uint8 else to_uint8(b)
    if a8.shape != b8.shape:
        raise ValueError(f"ssim: shapes differ: {a8.shape} vs {b8.shape}")
    if min(a8.shape) < 7:
        raise ValueError(f"ssim: maps must be at least 7x7, got {a8.shape}")
    return float(structural_similarity(a8, b8))


def bbm_weight(image_bias, text_bias) -> float:
    """s = max(0, SSIM(image bias, text bias)): how much the image and the text-only pass share the
    same background pattern; the more they do, the more weight BBM gives to M."""
    return max(0.0, ssim(image_bias, text_bias))


def bbm(A, M, s: float, variant: str = "mixture", fp16: bool = False) -> np.ndarray:
    """Bimodal Bias Merging (Nuetzel eq. 2-4): blend the map A with the bias-product map M by weight s.

      mixture:   (1-s)^2 A + 2 s (1-s) (M + A + M*A)/2 + s^2 M   (eq. 2, published default)
      linear:    s M + (1-s) A                                    (eq. 3)
      quadratic: (1-s)^2 A + 2 s (1-s) M*A + s^2 M                (eq. 4)

    Not renormalised (values reach 1.5), as published. ``fp16=True`` evaluates it on float16 maps in the
    published operation order (float16 rounding after every operation)."""
    merge = get_bbm_variant(variant)  # unknown: the error lists the registered variants
    A = _as_float(A, "A", allow_nan=False)
    M = _as_float(M, "M", allow_nan=False)
    if A.shape != M.shape:
        raise ValueError(f"bbm: A and M shapes differ: {A.shape} vs {M.shape}")
    if fp16:
        import torch

        A, M = torch.from_numpy(A).half(), torch.from_numpy(M).half()
    P = merge(A, M, s)
    return P.double().numpy() if fp16 else P


def bbm_matrix_map(p_img, p_txt, fp16: bool = False) -> np.ndarray:
    """M for BBM: the mean over (step, layer) of the matrix product p_img @ p_txt, made 8-bit and
    min-maxed again, as published (``normalize_and_scale_tensor`` with scale, then without).

    p_img: (S, L, H, H) start-token maps of the GT-noised pass; p_txt: (S, L, H, H) token-mean maps
    of the text-only pass. The product is literally the HxH matrix product, as published (the mean
    over tokens of P_img @ P_txt,t equals P_img @ mean_t P_txt,t, so token-mean input is exact).
    """
    a = _as_float(p_img, "p_img", ndim=4, allow_nan=False)
    b = _as_float(p_txt, "p_txt", ndim=4, allow_nan=False)
    if a.shape != b.shape:
        raise ValueError(f"bbm_matrix_map: shapes differ: {a.shape} vs {b.shape}")
    if a.shape[-1] != a.shape[-2]:
        raise ValueError(f"bbm_matrix_map: maps must be square for a matrix product, got {a.shape[-2:]}")
    m8 = to_uint8(np.matmul(a, b).mean(axis=(0, 1)), fp16=fp16)
    return minmax_fp16(m8) if fp16 else minmax(m8)
