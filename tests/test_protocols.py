import math

import numpy as np
import pytest

from groundkit.core.geometry import Geometry
from groundkit.evaluation import metrics as M
from groundkit.evaluation.protocols import (
    CATEGORIES,
    NuetzelProtocol,
    VilourasProtocol,
    aggregate,
    get_protocol,
    split_boxes_by_crop,
)

# 8 x 12 landscape image, model input 4 x 4: short side 8 -> scale 1/2, resized 4 x 6, the crop
# drops one resized column (two original columns) on each side.
GEOM = Geometry(orig_h=8, orig_w=12, size=4)
HEAT = np.array([[1.0, 0.8, 0.0, 0.0],
                 [0.8, 0.6, 0.0, 0.0],
                 [0.0, 0.0, 0.0, 0.3],
                 [0.0, 0.0, 0.3, 0.0]])
BOX_ORIG = (2, 0, 4, 4)  # original pixels; in crop space (0, 0, 2, 2) = the top-left 2x2 block
CUT_BOX = (0, 0, 2, 8)  # lies entirely in the two columns the crop removes


def test_split_boxes_by_crop():
    kept, crop = split_boxes_by_crop([BOX_ORIG, CUT_BOX], GEOM)
    assert kept == [BOX_ORIG]
    assert crop == [(0.0, 0.0, 2.0, 2.0)]


def test_vilouras_evaluates_in_original_space():
    out = VilourasProtocol().evaluate(HEAT, None, GEOM, [BOX_ORIG])
    # hand-built original map: every crop pixel -> 2x2 original pixels, NaN in the cut columns
    orig = np.full((8, 12), np.nan)
    orig[:, 2:10] = np.kron(HEAT, np.ones((2, 2)))
    # target = the 1/.8/.8/.6 block; t=.1..5 all predict exactly it plus the two .3 pixels at
    # t=.1,.2 (each 4 original pixels): IoU 16/24 twice, then 1 three times
    assert out["miou_thr"] == pytest.approx((2 * 16 / 24 + 3) / 5)
    assert out["cnr"] == pytest.approx(M.cnr(orig, [BOX_ORIG]))
    assert out["cnr"] > 0 and out["cnr_abs"] == pytest.approx(out["cnr"])
    # binned AUROC: NaN columns drop out; the positives (>= .5) beat every negative (<= .3)
    assert out["auroc_binned5"] == 1.0
    assert out["n_boxes"] == 1 and out["n_boxes_dropped"] == 0


def test_vilouras_counts_dropped_boxes_and_nans_when_none_left():
    p = VilourasProtocol()
    both = p.evaluate(HEAT, None, GEOM, [BOX_ORIG, CUT_BOX])
    one = p.evaluate(HEAT, None, GEOM, [BOX_ORIG])
    assert both["n_boxes_dropped"] == 1 and both["n_boxes"] == 1
    for m in p.metrics:
        assert both[m] == one[m]
    none = p.evaluate(HEAT, None, GEOM, [CUT_BOX])
    assert none["n_boxes"] == 0 and none["n_boxes_dropped"] == 1
    assert all(math.isnan(none[m]) for m in p.metrics)


def test_nuetzel_hand_computed():
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    out = NuetzelProtocol().evaluate(HEAT, mask, GEOM, [BOX_ORIG])
    assert out["miou_fgbg"] == 1.0
    assert out["top1"] == 1.0
    assert out["auroc"] == 1.0
    # inside [1,.8,.8,.6]: mean .8, unbiased var .08/3; outside: ten 0s and two .3s
    out_vals = np.array([0.0] * 10 + [0.3, 0.3])
    expected = (0.8 - out_vals.mean()) / math.sqrt(0.08 / 3 + out_vals.var(ddof=1))
    assert out["cnr"] == pytest.approx(expected)
    assert out["n_boxes"] == 1 and out["n_boxes_dropped"] == 0


def test_nuetzel_empty_mask_scores_zero_everywhere():
    out = NuetzelProtocol().evaluate(HEAT, np.zeros((4, 4), bool), GEOM, [BOX_ORIG])
    assert {m: out[m] for m in NuetzelProtocol.metrics} == {"miou_fgbg": 0.0, "cnr": 0.0, "top1": 0.0, "auroc": 0.0}
    assert out["n_boxes"] == 1


def test_nuetzel_drops_boxes_the_crop_removes():
    mask = HEAT > 0.5
    out = NuetzelProtocol().evaluate(HEAT, mask, GEOM, [CUT_BOX, BOX_ORIG])
    assert out["n_boxes_dropped"] == 1 and out["n_boxes"] == 1
    assert out["miou_fgbg"] == 1.0
    none = NuetzelProtocol().evaluate(HEAT, mask, GEOM, [CUT_BOX])
    assert all(math.isnan(none[m]) for m in NuetzelProtocol.metrics)


def test_nuetzel_partial_box_is_clipped_to_the_crop():
    # original x 0..6 -> crop x -1..2, clipped to 0..2: same target as BOX_ORIG
    mask = HEAT > 0.5
    a = NuetzelProtocol().evaluate(HEAT, mask, GEOM, [(0, 0, 6, 4)])
    b = NuetzelProtocol().evaluate(HEAT, mask, GEOM, [BOX_ORIG])
    assert a == b


@pytest.mark.parametrize("proto", [VilourasProtocol(), NuetzelProtocol()])
def test_protocol_input_errors(proto):
    mask = HEAT > 0.5
    with pytest.raises(ValueError, match="crop size"):
        proto.evaluate(np.zeros((4, 5)), mask, GEOM, [BOX_ORIG])
    with pytest.raises(ValueError, match="mask_crop"):
        proto.evaluate(HEAT, mask.astype(float), GEOM, [BOX_ORIG])
    with pytest.raises(ValueError, match="mask_crop"):
        proto.evaluate(HEAT, np.zeros((3, 3), bool), GEOM, [BOX_ORIG])
    with pytest.raises(ValueError, match="geometry"):
        proto.evaluate(HEAT, mask, (8, 12, 4), [BOX_ORIG])
    with pytest.raises(ValueError, match="box"):
        proto.evaluate(HEAT, mask, GEOM, [])


def test_nuetzel_needs_a_mask():
    with pytest.raises(ValueError, match="mask_crop"):
        NuetzelProtocol().evaluate(HEAT, None, GEOM, [BOX_ORIG])


def test_get_protocol():
    assert get_protocol("vilouras").name == "vilouras"
    assert get_protocol("Nuetzel2025").name == "nuetzel"
    assert get_protocol("vilouras").metrics == ("miou_thr", "cnr_abs", "cnr", "auroc_binned5")
    assert get_protocol("nuetzel").metrics == ("miou_fgbg", "cnr", "top1", "auroc")
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("boecking")


# --------------------------------------------------------------------------------------- aggregate
ROWS = [
    {"category": "Pneumonia", "x": 0.0},
    {"category": "Atelectasis", "x": 1.0},
    {"category": "Edema", "x": 4.0},
    {"category": "Pneumonia", "x": 0.0},
    {"category": "Atelectasis", "x": 3.0},
    {"category": "Pneumonia", "x": 3.0},
    {"category": "Pneumonia", "x": float("nan")},  # a sample without boxes: skipped
]


def test_aggregate_hand_computed():
    agg = aggregate(ROWS, ["x"])
    assert agg.categories == ("Atelectasis", "Edema", "Pneumonia")  # CATEGORIES order
    assert agg.per_category["Atelectasis"]["x"] == 2.0
    assert agg.per_category["Pneumonia"]["x"] == 1.0
    assert agg.counts["Pneumonia"]["x"] == 3
    assert agg.macro["x"] == pytest.approx(7 / 3)
    assert agg.macro_std["x"] == pytest.approx(math.sqrt(14 / 9))  # ddof=0 of (2, 4, 1)
    assert agg.per_sample["x"] == pytest.approx(11 / 6)
    # squared class counts: (2^2*2 + 1^2*4 + 3^2*1) / (4 + 1 + 9)
    assert agg.weighted_avg_sq["x"] == pytest.approx(21 / 14)


def test_weighted_avg_sq_equals_nuetzels_row_frequency_weighting():
    rows = [r for r in ROWS if not math.isnan(r["x"])]
    freq = {c: sum(r["category"] == c for r in rows) for c in {r["category"] for r in rows}}
    published = sum(r["x"] * freq[r["category"]] for r in rows) / sum(freq[r["category"]] for r in rows)
    assert aggregate(rows, ["x"]).weighted_avg_sq["x"] == pytest.approx(published)


def test_aggregate_errors_and_dict():
    with pytest.raises(ValueError, match="category"):
        aggregate([{"x": 1.0}], ["x"])
    with pytest.raises(ValueError, match="metric 'y'"):
        aggregate([{"category": "Edema", "x": 1.0}], ["y"])
    d = aggregate(ROWS, ["x"]).to_dict()
    assert d["macro"]["x"] == pytest.approx(7 / 3) and d["categories"] == ["Atelectasis", "Edema", "Pneumonia"]


def test_categories_constant():
    assert CATEGORIES == ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Lung Opacity",
                          "Pleural Effusion", "Pneumonia", "Pneumothorax")
