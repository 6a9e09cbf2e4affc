import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from groundkit.evaluation import metrics as M

NAN = np.nan
BOX = [(1, 1, 2, 2)]  # rows 1:3, cols 1:3 of a 4x4 grid


def _box_map(inside=1.0, outside=0.0, shape=(4, 4)):
    h = np.full(shape, outside)
    h[1:3, 1:3] = inside
    return h


# -------------------------------------------------------------------------------- box rasterising
def test_box_mask_union_and_rounding():
    t = M.box_mask((4, 5), [(0.4, 0.6, 2.2, 1.0)])  # cols round(.4)=0..round(2.6)=3, rows 1..2
    expected = np.zeros((4, 5), bool)
    expected[1:2, 0:3] = True
    np.testing.assert_array_equal(t, expected)
    # halves round to even, like Python's round: x0 = round(0.5) = 0, x1 = round(2.5) = 2
    assert M.box_bounds((0.5, 0, 2, 1), (4, 4)) == (0, 1, 0, 2)
    u = M.box_mask((4, 4), [(0, 0, 2, 2), (1, 1, 2, 2)])
    assert u.sum() == 7


@pytest.mark.parametrize("boxes", [[(3, 0, 2, 1)], [(-1, 0, 1, 1)], [(0, 0, 1, -1)], [(0, 0, 1)], [], [("a", 0, 1, 1)],
                                   [(0, 0, np.inf, 1)]])
def test_bad_boxes_raise(boxes):
    with pytest.raises(ValueError):
        M.box_mask((4, 4), boxes)


def test_box_outside_message_names_box():
    with pytest.raises(ValueError, match=r"boxes\[1\].*outside the 4x4 image"):
        M.iou(np.zeros((4, 4), bool), [(0, 0, 1, 1), (0, 0, 5, 1)])


@pytest.mark.parametrize("fn", [M.miou_thresholds, M.cnr, M.auroc, M.auroc_binned, M.top1])
def test_heatmap_input_checks(fn):
    with pytest.raises(ValueError, match="2-D"):
        fn(np.zeros(16), BOX)
    with pytest.raises(ValueError, match="dtype"):
        fn(np.zeros((4, 4), bool), BOX)
    with pytest.raises(ValueError, match="inf"):
        fn(np.full((4, 4), np.inf), BOX)


@pytest.mark.parametrize("fn", [M.iou, M.miou_fgbg])
def test_mask_input_checks(fn):
    with pytest.raises(ValueError, match="bool"):
        fn(np.zeros((4, 4)), BOX)
    with pytest.raises(ValueError, match="2-D"):
        fn(np.zeros((2, 4, 4), bool), BOX)


# --------------------------------------------------------------------------------------------- IoU
def test_iou_exact_disjoint_overlapping():
    assert M.iou(_box_map() > 0, BOX) == 1.0
    assert M.iou(_box_map() > 0, [(3, 3, 1, 1)]) == 0.0
    mask = np.zeros((4, 4), bool)
    mask[0:2, 0:2] = True
    assert M.iou(mask, [(0, 0, 2, 2), (1, 1, 2, 2)]) == pytest.approx(4 / 7)
    assert M.iou(np.zeros((4, 4), bool), BOX) == 0.0


def test_iou_symmetric_and_bounded():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = (int(rng.integers(0, 8)), int(rng.integers(0, 8)), int(rng.integers(0, 5)), int(rng.integers(0, 5)))
        b = (int(rng.integers(0, 8)), int(rng.integers(0, 8)), int(rng.integers(0, 5)), int(rng.integers(0, 5)))
        ab = M.iou(M.box_mask((12, 12), [a]), [b])
        ba = M.iou(M.box_mask((12, 12), [b]), [a])
        assert ab == ba and 0.0 <= ab <= 1.0


def test_miou_thresholds_hand_computed():
    h = _box_map(0.35, 0.15)
    # t=.1: all 16 predicted -> 4/16; t=.2,.3: exactly the box -> 1; t=.4,.5: nothing -> 0
    assert M.miou_thresholds(h, BOX) == pytest.approx((0.25 + 1 + 1) / 5)
    assert M.miou_thresholds(h, BOX, thresholds=(0.2,)) == 1.0


def test_miou_thresholds_nan_padding():
    h = _box_map(0.35, 0.15)
    h[:, 3] = NAN  # NaN is never predicted: t=.1 predicts 12 pixels
    assert M.miou_thresholds(h, BOX) == pytest.approx((4 / 12 + 2) / 5)
    h = _box_map(0.35, 0.15)
    h[:, 2:] = NAN  # half of the box is NaN but still in the target
    assert M.miou_thresholds(h, BOX, thresholds=(0.2,)) == pytest.approx(2 / 4)
    assert M.miou_thresholds(np.full((4, 4), NAN), BOX) == 0.0


def test_miou_fgbg_hand_computed():
    mask = _box_map() > 0
    assert M.miou_fgbg(mask, BOX) == 1.0
    empty = np.zeros((4, 4), bool)
    assert M.miou_fgbg(empty, BOX) == pytest.approx((0 + 12 / 16) / 2)
    # both backgrounds empty: background IoU 0 (sklearn's zero_division default)
    assert M.miou_fgbg(np.ones((4, 4), bool), [(0, 0, 4, 4)]) == 0.5


# --------------------------------------------------------------------------------------------- CNR
def test_cnr_hand_computed_population_and_unbiased():
    h = np.array([[0.0, 0, 0, 0],
                  [0, 1, 1, 2],
                  [0, 3, 3, 2],
                  [2, 2, 2, 2]])
    # inside [1,1,3,3]: mean 2, population var 1; outside: six 0s and six 2s: mean 1, var 1
    assert M.cnr(h, BOX) == pytest.approx(1 / math.sqrt(2))
    assert M.cnr(h, BOX, variance="unbiased") == pytest.approx(1 / math.sqrt(4 / 3 + 12 / 11))
    assert M.cnr(-h, BOX) == pytest.approx(-1 / math.sqrt(2))
    assert M.cnr(-h, BOX, absolute=True) == pytest.approx(1 / math.sqrt(2))
    with pytest.raises(ValueError, match="variance"):
        M.cnr(h, BOX, variance="sample")


ROW = np.array([[1.0, 2, 3, 4, 5, 6]])
TWO = [(0, 0, 3, 1), (2, 0, 2, 1)]  # cols 0..2 and 2..3, overlapping in col 2


def test_cnr_per_box_cumulative_masking():
    # box A: in [1,2,3] vs out [4,5,6] -> -3/sqrt(4/3); then A is NaN:
    # box B: in [4] (col 2 already NaN) vs out [5,6] -> (4-5.5)/sqrt(0+.25) = -3
    expected = (-3 / math.sqrt(4 / 3) - 3) / 2
    assert M.cnr(ROW, TWO) == pytest.approx(expected)
    assert M.cnr(ROW, TWO, absolute=True) == pytest.approx(-expected)
    # the box order matters because of the masking
    assert M.cnr(ROW, TWO[::-1]) != pytest.approx(expected)


def test_cnr_values_are_the_signed_per_box_numbers():
    v = M.cnr_values(ROW, TWO)
    assert v == pytest.approx([-3 / math.sqrt(4 / 3), -3.0])
    assert len(M.cnr_values(ROW, TWO, per_box=False)) == 1


def test_cnr_union_unbiased():
    # union cols 0..3: [1,2,3,4] mean 2.5 var 5/3; out [5,6] mean 5.5 var .5
    assert M.cnr(ROW, TWO, variance="unbiased", per_box=False) == pytest.approx(-3 / math.sqrt(5 / 3 + 0.5))


def test_cnr_ignores_nan_pixels():
    padded = np.array([[NAN, 1.0, 2, 3, 4, 5, 6, NAN]])
    shifted = [(1, 0, 3, 1), (3, 0, 2, 1)]
    assert M.cnr(padded, shifted) == pytest.approx(M.cnr(ROW, TWO))
    assert M.cnr(padded, shifted, per_box=False, variance="unbiased") == pytest.approx(
        M.cnr(ROW, TWO, per_box=False, variance="unbiased"))


def test_cnr_degenerate_cases_are_zero():
    assert M.cnr(np.full((4, 4), 0.3), BOX) == 0.0  # constant map
    assert M.cnr(np.full((4, 4), NAN), BOX) == 0.0  # NaN everywhere
    assert M.cnr(_box_map(), BOX) == 0.0  # zero noise: documented 0, not inf
    h = _box_map(0.9, 0.1)
    h[1:3, 1:3] = NAN  # box entirely outside the field of view
    assert M.cnr(h, BOX) == 0.0
    assert M.cnr(np.array([[1.0, 2.0]]), [(0, 0, 1, 1)], variance="unbiased", per_box=False) == 0.0


def test_cnr_sign_flips_with_map():
    rng = np.random.default_rng(1)
    for _ in range(20):
        h = rng.random((6, 7))
        v = M.cnr(h, [(1, 2, 3, 2), (4, 0, 2, 3)])
        assert M.cnr(-h, [(1, 2, 3, 2), (4, 0, 2, 3)]) == pytest.approx(-v)
        assert M.cnr(1 - h, [(1, 2, 3, 2)], per_box=False, variance="unbiased") == pytest.approx(
            -M.cnr(h, [(1, 2, 3, 2)], per_box=False, variance="unbiased"))


# ------------------------------------------------------------------------------------------- AUROC
def test_auroc_perfect_inverted_constant():
    assert M.auroc(_box_map(), BOX) == 1.0
    assert M.auroc(1 - _box_map(), BOX) == 0.0
    assert M.auroc(np.full((4, 4), 0.2), BOX) == 0.5
    assert M.auroc(np.zeros((4, 4)), [(0, 0, 4, 4)]) == 0.5  # one class only


def test_auroc_ties_hand_computed():
    h = np.array([[0.5, 0.8, 0.5, 0.2]])
    # positives {.5,.8} vs negatives {.5,.2}: .5=.5 -> 1/2, the other three pairs win -> 3.5/4
    assert M.auroc(h, [(0, 0, 2, 1)]) == pytest.approx(0.875)


def test_auroc_matches_sklearn_and_excludes_nan():
    rng = np.random.default_rng(2)
    for _ in range(20):
        h = np.round(rng.random((9, 8)), 1)  # plenty of ties
        boxes = [(1, 2, 3, 4), (5, 0, 2, 2)]
        t = M.box_mask(h.shape, boxes)
        assert M.auroc(h, boxes) == pytest.approx(roc_auc_score(t.ravel(), h.ravel()), abs=1e-12)
        hn = h.copy()
        hn[:, 0] = NAN
        keep = ~np.isnan(hn)
        assert M.auroc(hn, boxes) == pytest.approx(roc_auc_score(t[keep], hn[keep]), abs=1e-12)


def test_auroc_binned_hand_computed():
    h = np.array([[0.6, 0.3, 0.4, 0.0]])
    boxes = [(0, 0, 2, 1)]  # positives .6, .3; negatives .4, 0
    # (FP,TP) from t=1 down: (0,0)(0,0)(0,0)(0,1)(1,2)(2,2) -> (1.5 + 2) / (2*2)
    assert M.auroc_binned(h, boxes) == pytest.approx(0.875)
    assert M.auroc(h, boxes) == pytest.approx(0.75)  # .3 < .4 is lost inside the bin [.25, .5)


def test_auroc_binned_perfect_inverted_empty_class():
    assert M.auroc_binned(_box_map(), BOX) == 1.0
    assert M.auroc_binned(1 - _box_map(), BOX) == 0.0
    assert M.auroc_binned(np.full((4, 4), 0.3), BOX) == 0.5
    assert M.auroc_binned(_box_map(), [(0, 0, 4, 4)]) == 0.5
    assert M.auroc_binned(np.full((4, 4), NAN), BOX) == 0.5
    with pytest.raises(ValueError):
        M.auroc_binned(_box_map(), BOX, n_thresholds=1)


def test_auroc_binned_equals_exact_on_threshold_valued_maps():
    # With >= semantics every distinct value of such a map is one of the thresholds, so the binned
    # ROC has exactly the vertices of the exact one (plus repeats): the areas agree, NaN included.
    rng = np.random.default_rng(3)
    for _ in range(30):
        h = rng.integers(0, 5, size=(8, 9)) / 4.0
        h[rng.random((8, 9)) < 0.1] = NAN
        boxes = [(int(rng.integers(0, 5)), int(rng.integers(0, 4)), 3, 3)]
        assert M.auroc_binned(h, boxes) == pytest.approx(M.auroc(h, boxes), abs=1e-12)


def test_auroc_binned_nan_pixels_drop_out():
    h = np.array([[1.0, 0.5, 0.0, 0.25]])
    hn = np.array([[1.0, 0.5, 0.0, 0.25, NAN, NAN]])
    boxes = [(0, 0, 2, 1)]
    assert M.auroc_binned(hn, boxes) == pytest.approx(M.auroc_binned(h, boxes))
    # a NaN pixel inside the box does not count as a missed positive either
    assert M.auroc_binned(np.array([[1.0, NAN, 0.0]]), [(0, 0, 2, 1)]) == 1.0


# -------------------------------------------------------------------------------------------- top1
def test_top1():
    assert M.top1(_box_map(0.9, 0.1), BOX) == 1.0
    h = _box_map(0.9, 0.1)
    h[0, 0] = 0.95
    assert M.top1(h, BOX) == 0.0
    h[0, 0] = NAN  # NaN is ignored
    assert M.top1(h, BOX) == 1.0
    assert M.top1(np.full((4, 4), NAN), BOX) == 0.0
    tie = np.zeros((4, 4))
    tie[0, 3] = tie[1, 1] = 1.0  # first maximum in row-major order is (0, 3), outside the box
    assert M.top1(tie, BOX) == 0.0
