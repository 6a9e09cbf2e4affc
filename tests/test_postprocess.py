import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from groundkit.core import geometry as G
from groundkit.core.geometry import Geometry
from groundkit.engine import postprocess as P

NAN = np.nan


# ---------------------------------------------------------------------------------------- minmax
def test_minmax_hand_case_keeps_nan():
    out = P.minmax(np.array([[1.0, 3.0], [NAN, 5.0]]))
    np.testing.assert_array_equal(out, [[0.0, 0.5], [NAN, 1.0]])


def test_minmax_constant_map_is_zeros_and_all_nan_stays_nan():
    np.testing.assert_array_equal(P.minmax(np.full((3, 4), 7.0)), np.zeros((3, 4)))
    c = np.array([[2.0, NAN], [2.0, 2.0]])
    np.testing.assert_array_equal(P.minmax(c), [[0.0, NAN], [0.0, 0.0]])
    assert np.isnan(P.minmax(np.full((2, 2), NAN))).all()


def test_minmax_int_input_and_nd():
    out = P.minmax(np.arange(8).reshape(2, 2, 2))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.ravel(), np.arange(8) / 7)


@pytest.mark.parametrize("bad", [np.array([[True, False]]), np.array([[1.0, np.inf]]), np.array([["a"]])])
def test_minmax_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        P.minmax(bad)


# -------------------------------------------------------------------------------------- gaussian
def test_gaussian_impulse_matches_separable_kernel():
    h = np.zeros((41, 41))
    h[20, 20] = 1.0
    out = P.gaussian(h, sigma=2.5)
    x = np.arange(-10, 11)  # truncate 4 * sigma 2.5 = radius 10
    k = np.exp(-(x**2) / (2 * 2.5**2))
    k /= k.sum()
    np.testing.assert_allclose(out[20, 20:31], k[10] * k[10:], rtol=1e-12)
    assert out[20, 31] == 0.0  # beyond the truncation radius
    assert math.isclose(out.sum(), 1.0, rel_tol=1e-12)


def test_gaussian_reflect_mode_and_nan_rejected():
    h = np.zeros((5, 5))
    h[0, 0] = 1.0
    # reflect: nothing leaks out of the image, so the mass is kept
    assert math.isclose(P.gaussian(h, 1.0).sum(), 1.0, rel_tol=1e-12)
    h[1, 1] = NAN
    with pytest.raises(ValueError, match="NaN"):
        P.gaussian(h)


# ------------------------------------------------------------------------------------------ Otsu
HIST_CASE = np.array([[0, 0, 1, 2], [3, 3, 3, 3]], dtype=float)


def test_otsu_threshold_hand_computed():
    # nbins=4 over [0,3]: centres .375 1.125 1.875 2.625, counts 2 1 1 4.
    # between-class variance w1*w2*(m1-m2)^2: k=0 42.19, k=1 51.34, k=2 45.56 -> centre of bin 1.
    assert P.otsu_threshold(HIST_CASE, nbins=4) == 1.125


def test_multiotsu_threshold_hand_computed_differs_from_otsu():
    # skimage's multi-Otsu LUT: index moments with first[0] = p[0]; sigma = 4.6875, 5.275, 5.28125
    # for t = 0, 1, 2 -> bin 2 (centre 1.875), one bin above threshold_otsu.
    assert P.multiotsu2_threshold(HIST_CASE, nbins=4) == 1.875


def test_otsu_threshold_two_values_is_first_bin_centre():
    h = np.array([[0.0, 0.0], [1.0, 1.0]])
    assert P.otsu_threshold(h) == 0.5 / 256
    assert P.multiotsu2_threshold(h) == 0.5 / 256


def test_otsu_threshold_ignores_nan_and_rejects_all_nan():
    h = np.array([[0, 0, 1, 2, NAN], [3, 3, 3, 3, NAN]], dtype=float)
    assert P.otsu_threshold(h, nbins=4) == 1.125
    with pytest.raises(ValueError, match="no finite"):
        P.otsu_threshold(np.full((2, 2), NAN))


def test_otsu_output_is_continuous_and_keeps_nan():
    h = np.array([[0.0, 0.2, 0.9], [1.0, 0.1, NAN]])
    out, mask = P.otsu(h)
    thr = P.otsu_threshold(h)
    assert 0.2 < thr < 0.9
    np.testing.assert_array_equal(mask, [[False, False, True], [True, False, False]])
    np.testing.assert_array_equal(out, [[0.0, 0.0, 0.9], [1.0, 0.0, NAN]])


def test_otsu_constant_map_gives_zeros():
    out, mask = P.otsu(np.full((4, 4), 0.3))
    assert not mask.any()
    np.testing.assert_array_equal(out, np.zeros((4, 4)))
    with pytest.raises(ValueError):
        P.otsu(np.ones((2, 2)), method="triangle")


def test_otsu_method_switch():
    h = HIST_CASE.copy()
    h[0, 3] = 1.6  # same histogram as HIST_CASE (bin 2), so thresholds 1.125 / 1.875
    out1, m1 = P.otsu(h, nbins=4)
    out2, m2 = P.otsu(h, nbins=4, method="multiotsu")
    assert m1.sum() == 5 and m2.sum() == 4  # 1.6 is above 1.125 but not above 1.875
    assert out1[0, 3] == 1.6 and out2[0, 3] == 0.0


# ------------------------------------------------------------------------------------------- GMM
def _gmm_case():
    h = np.full((7, 7), 0.1)
    h[1:4, 1:4] = 0.9  # 3x3 block
    h[5, 5] = 0.9  # isolated interior pixel
    h[0, 6] = 0.9  # border pixel
    return h


def test_gmm_threshold_is_mean_of_component_means():
    assert math.isclose(P.gmm_threshold(_gmm_case()), 0.5, abs_tol=1e-9)


def test_gmm_mask_with_majority_filter_hand_computed():
    mask = P.gmm(_gmm_case())
    expected = np.zeros((7, 7), dtype=bool)
    # block corners see only 4 of 9 set -> removed; edges see 6, centre 9 -> kept (a plus shape)
    for r, c in [(1, 2), (2, 1), (2, 2), (2, 3), (3, 2)]:
        expected[r, c] = True
    expected[0, 6] = True  # border pixels are never filtered
    np.testing.assert_array_equal(mask, expected)


def test_majority_filter_threshold_is_five_of_nine():
    m = np.zeros((3, 3), dtype=bool)
    m.flat[[0, 1, 2, 3]] = True  # 4 set incl. border pixels; centre unset
    assert not P.majority_filter(m)[1, 1]
    m.flat[5] = True  # 5 set
    out = P.majority_filter(m)
    assert out[1, 1]
    np.testing.assert_array_equal(out.ravel()[[0, 1, 2, 3, 5, 6, 7, 8]], m.ravel()[[0, 1, 2, 3, 5, 6, 7, 8]])
    with pytest.raises(ValueError):
        P.majority_filter(np.zeros((3, 3)))


def test_gmm_constant_and_nan():
    assert not P.gmm(np.full((5, 5), 0.4)).any()
    h = _gmm_case()
    h[2, 2] = NAN
    mask = P.gmm(h)
    # NaN is never foreground itself, but the filter may fill it from its neighbours (6 of 9 set)
    assert mask[2, 2]
    assert mask.dtype == bool


# ------------------------------------------------------------------------------------------ SSIM
def _halves():
    a = np.zeros((7, 7))
    a[:, 3:] = 1.0
    return a, a.T.copy()


def test_ssim_identical_is_one():
    rng = np.random.default_rng(0)
    a = rng.random((12, 9))
    assert math.isclose(P.ssim(a, a), 1.0, rel_tol=1e-12)
    assert math.isclose(P.ssim(a, 3 * a + 2), 1.0, rel_tol=1e-12)  # min-max makes it scale-free


def test_ssim_hand_computed_uncorrelated():
    # 7x7: only the centre survives the 3-pixel border crop; its window is the whole image.
    # a = columns >= 3, b = rows >= 3 (0/255): equal means, sample variances 255^2/4, covariance 0
    a, b = _halves()
    expected = 0.0009 / (0.5 + 0.0009)  # C2 / (2 var + C2) in units of 255^2
    assert math.isclose(P.ssim(a, b), expected, rel_tol=1e-12)


def test_ssim_hand_computed_anticorrelated():
    a, _ = _halves()
    ma, mb, var = 4 / 7, 3 / 7, 0.25  # units of 255 and 255^2
    c1, c2 = 0.0001, 0.0009
    expected = (2 * ma * mb + c1) * (-2 * var + c2) / ((ma**2 + mb**2 + c1) * (2 * var + c2))
    assert math.isclose(P.ssim(a, 1 - a), expected, rel_tol=1e-12)


def test_to_uint8_truncates():
    np.testing.assert_array_equal(P.to_uint8(np.array([[0.0, 0.5, 1.0]])), [[0, 127, 255]])


def test_ssim_rejects_small_or_mismatched():
    with pytest.raises(ValueError):
        P.ssim(np.ones((6, 6)), np.ones((6, 6)))
    with pytest.raises(ValueError):
        P.ssim(np.ones((7, 7)), np.ones((7, 8)))


# ------------------------------------------------------------------------------------------- BBM
def test_bbm_identical_biases_give_M_and_opposite_give_A():
    A = np.array([[0.2, 0.5], [1.0, 0.0]])
    M = np.array([[1.0, 0.1], [0.3, 0.6]])
    a, _ = _halves()
    assert P.bbm_weight(a, a) == pytest.approx(1.0)
    assert P.bbm_weight(a, 1 - a) == 0.0  # negative SSIM is clipped to 0
    for variant in P.BBM_VARIANTS:
        np.testing.assert_allclose(P.bbm(A, M, 1.0, variant), M, atol=1e-12)
        np.testing.assert_array_equal(P.bbm(A, M, 0.0, variant), A)


def test_bbm_variants_at_intermediate_s():
    A, M = np.array([[0.5]]), np.array([[1.0]])
    a, b = _halves()
    s = 0.0009 / 0.5009
    assert P.bbm_weight(a, b) == pytest.approx(s, rel=1e-12)
    # mixture control point (M + A + MA)/2 = (1 + .5 + .5)/2 = 1
    mix = P.bbm(A, M, s, "mixture")
    assert mix[0, 0] == pytest.approx((1 - s) ** 2 * 0.5 + 2 * s * (1 - s) * 1.0 + s**2 * 1.0, rel=1e-12)
    lin = P.bbm(A, M, s, "linear")
    assert lin[0, 0] == pytest.approx(s * 1.0 + (1 - s) * 0.5, rel=1e-12)
    quad = P.bbm(A, M, s, "quadratic")
    assert quad[0, 0] == pytest.approx((1 - s) ** 2 * 0.5 + 2 * s * (1 - s) * 0.5 + s**2, rel=1e-12)
    with pytest.raises(ValueError, match="variant"):
        P.bbm(A, M, s, "cubic")


def test_bbm_fp16_rounds_every_operation_like_torch_half():
    rng = np.random.default_rng(3)
    A = P.minmax_fp16(rng.random((8, 8)))
    M = P.minmax_fp16(rng.random((8, 8)))
    s = 0.3712
    got = P.bbm(A, M, s, "mixture", fp16=True)
    a, m = torch.from_numpy(A).half(), torch.from_numpy(M).half()
    ref = 2 * (1 - s) * s * ((m + a + (m * a)) / 2) + ((1 - s) ** 2) * a + (s**2) * m  # published expression
    assert ref.dtype == torch.float16
    np.testing.assert_array_equal(got, ref.double().numpy())
    # and it is not the float64 value: half precision is visible
    assert np.abs(got - P.bbm(A, M, s, "mixture")).max() > 0


def test_minmax_fp16_is_the_published_half_precision_min_max():
    h = np.array([[0.1234567, 0.5], [0.98765, 0.3333333]])
    t = torch.from_numpy(h).to(torch.float16)
    expected = ((t - t.min()) / (t.max() - t.min())).double().numpy()
    np.testing.assert_array_equal(P.minmax_fp16(h), expected)
    np.testing.assert_array_equal(P.minmax_fp16(np.full((2, 2), 3.0)), np.zeros((2, 2)))
    # every value is a float16 number
    out = P.minmax_fp16(np.random.default_rng(0).random((5, 5)))
    np.testing.assert_array_equal(out, out.astype(np.float16).astype(np.float64))


def test_to_uint8_fp16_is_normalize_and_scale():
    h = np.array([[0.0, 0.2, 0.4], [0.6, 0.8, 1.0]]) * 3.7 + 0.1
    t = torch.from_numpy(h).to(torch.float16)
    ref = (((t - t.min()) / (t.max() - t.min())) * 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(P.to_uint8(h, fp16=True), ref)
    assert P.to_uint8(h, fp16=True).dtype == np.uint8


def test_bbm_matrix_map_is_a_matrix_product():
    eye = np.eye(2)
    swap = np.array([[0.0, 1.0], [1.0, 0.0]])
    t = np.array([[1.0, 2.0], [3.0, 4.0]])
    p_img = np.stack([eye, swap])[:, None]  # (S=2, L=1, 2, 2)
    p_txt = np.stack([t, t])[:, None]
    # mean(I @ T, S @ T) = mean([[1,2],[3,4]], [[3,4],[1,2]]) = [[2,3],[2,3]] -> min-max
    np.testing.assert_array_equal(P.bbm_matrix_map(p_img, p_txt), [[0.0, 1.0], [0.0, 1.0]])
    with pytest.raises(ValueError):
        P.bbm_matrix_map(p_img, p_txt[:1])
    with pytest.raises(ValueError):
        P.bbm_matrix_map(np.ones((1, 1, 2, 3)), np.ones((1, 1, 2, 3)))


def test_bbm_matrix_map_is_8_bit_as_published():
    # product mean [[0, 1], [2, 3.5]]: 8-bit levels floor(255 * v / 3.5) = [0, 72, 145, 255], min-maxed again
    p_img = np.eye(2)[None, None]
    p_txt = np.array([[0.0, 1.0], [2.0, 3.5]])[None, None]
    expected = np.array([[0, 72], [145, 255]]) / 255.0
    np.testing.assert_allclose(P.bbm_matrix_map(p_img, p_txt), expected, atol=1e-15)
    assert not np.allclose(P.bbm_matrix_map(p_img, p_txt), P.minmax(p_txt[0, 0]))


# -------------------------------------------------------------------------------------- resizing
@pytest.mark.parametrize("n_in,n_out", [(4, 6), (512, 2539), (512, 3056), (6, 3056), (64, 512), (7, 3), (5, 5)])
def test_nearest_indices_match_torch_float32(n_in, n_out):
    x = torch.arange(n_in, dtype=torch.float32)[None, None, None, :]
    ref = F.interpolate(x, size=(1, n_out), mode="nearest")[0, 0, 0].long().numpy()
    np.testing.assert_array_equal(G.nearest_indices(n_in, n_out), ref)


def test_nearest_indices_float32_rounding_case():
    # 1528 * 6/3056 is exactly 3, but float32(6/3056) * 1528 < 3: torch (float32) picks 2
    assert G.nearest_indices(6, 3056)[1528] == 2


def test_resize_bilinear_hand_computed():
    out = G.resize(np.array([[0.0, 1.0], [2.0, 3.0]]), 4)
    c = np.array([0.0, 0.25, 0.75, 1.0])  # align_corners=False, edge-clamped
    np.testing.assert_allclose(out, c[None, :] + 2 * c[:, None], atol=1e-15)


def test_resize_nearest_and_shape_and_errors():
    h = np.arange(6.0).reshape(2, 3)
    out = G.resize(h, (4, 3), mode="nearest")
    np.testing.assert_array_equal(out, [[0, 1, 2], [0, 1, 2], [3, 4, 5], [3, 4, 5]])
    with pytest.raises(ValueError):
        G.resize(h, 4, mode="bicubic")
    with pytest.raises(ValueError):
        G.resize(h, (0, 3))


def test_to_original_landscape_pads_nan_left_right():
    g = Geometry(orig_h=6, orig_w=10, size=4)  # short 6, crop cut 2 columns each side
    h = np.arange(16.0).reshape(4, 4) / 15
    out = G.to_original(h, g)
    assert out.shape == (6, 10)
    assert np.isnan(out[:, :2]).all() and np.isnan(out[:, 8:]).all()
    idx = [0, 0, 1, 2, 2, 3]  # floor(dst * 4/6)
    np.testing.assert_array_equal(out[:, 2:8], h[np.ix_(idx, idx)])


def test_to_original_portrait_uneven_padding_and_mask():
    g = Geometry(orig_h=9, orig_w=6, size=3)  # dh = 3 -> 1 row on top, 2 at the bottom
    h = np.array([[0.0, 0.5, 1.0], [0.2, 0.4, 0.6], [0.9, 0.8, 0.7]])
    out = G.to_original(h, g)
    assert out.shape == (9, 6)
    assert np.isnan(out[0]).all() and np.isnan(out[7:]).all() and not np.isnan(out[1:7]).any()
    np.testing.assert_array_equal(out[1:7], np.repeat(np.repeat(h, 2, axis=0), 2, axis=1))
    m = G.to_original(h > 0.55, g)
    assert m.dtype == bool and m.shape == (9, 6)
    assert not m[0].any() and not m[7:].any()
    np.testing.assert_array_equal(m[1:7], np.repeat(np.repeat(h > 0.55, 2, axis=0), 2, axis=1))


def test_to_original_rejects_wrong_shape():
    with pytest.raises(ValueError, match="crop size"):
        G.to_original(np.zeros((4, 5)), Geometry(6, 10, 4))
    with pytest.raises(ValueError):
        G.to_original(np.zeros((4, 4)), (6, 10, 4))
