import csv
import os

import pytest

from groundkit.core.geometry import Geometry
from groundkit.data import mscxr
from groundkit.data.mscxr import Sample, drop_cropped_boxes, load

V10 = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height"]
V11 = V10 + ["split"]
MERGED = ["dicom_id", "paths", "category_name", "label_text", "bboxxywh", "image_width", "image_height"]


def write(tmp_path, header, rows, name="ms.csv"):
    p = tmp_path / name
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return p


P1 = "files/p10/p1/s1/d1.jpg"
P2 = "files/p10/p2/s2/d2.jpg"
OFFICIAL_ROWS = [
    ["d1", "Pneumonia", "left lower lobe pneumonia", P1, 10, 20, 30, 40, 100, 200],
    ["d1", "Edema", "mild edema, bilateral", P1, 0, 0, 100, 200, 100, 200],
    ["d1", "Pneumonia", "left lower lobe pneumonia", P1, 50, 60, 10, 10, 100, 200],  # 2nd box
    ["d2", "lung opacity", "patchy opacity", P2, 5, 5, 10, 10, 64, 64],  # category case-folded
    ["d2", "Lung Opacity", "patchy opacity", P2, 5, 5, 0, 10, 64, 64],  # zero-area box: skipped
    ["d2", "Lung Opacity", "patchy opacity", P2, 5, 5, 10, 10, 64, 64],  # duplicate box: skipped
]


def test_official_v1_0_merges_rows_by_path_and_text(tmp_path):
    ds = load(write(tmp_path, V10, OFFICIAL_ROWS), image_root="/data/mimic")
    assert len(ds) == 3
    s0, s1, s2 = ds
    assert s0 == Sample(sample_id="d1-0", image_path=os.path.join("/data/mimic", P1),
                        phrase="left lower lobe pneumonia", category="Pneumonia",
                        boxes=((10.0, 20.0, 30.0, 40.0), (50.0, 60.0, 10.0, 10.0)),
                        image_width=100, image_height=200, split=None)
    assert (s1.sample_id, s1.category, s1.phrase, len(s1.boxes)) == ("d1-1", "Edema", "mild edema, bilateral", 1)
    assert (s2.sample_id, s2.category, s2.boxes) == ("d2-0", "Lung Opacity", ((5.0, 5.0, 10.0, 10.0),))
    r = ds.report
    assert (r.format, r.rows_read, r.samples, r.boxes, r.rows_merged) == ("official", 6, 3, 4, 3)
    assert r.skipped == {"zero-area box": 1, "duplicate box": 1}
    assert "6 rows read -> 3 samples" in str(r)
    assert ds.categories() == ("Edema", "Lung Opacity", "Pneumonia")
    assert [s.sample_id for s in ds.by_category("Pneumonia")] == ["d1-0"]


def test_official_v1_1_split_column_and_filter(tmp_path):
    rows = [r + [split] for r, split in zip(OFFICIAL_ROWS[:4], ["test", "val", "test", "test"])]
    p = write(tmp_path, V11, rows)
    ds = load(p)
    assert [s.split for s in ds] == ["test", "val", "test"]
    assert ds[0].image_path == P1  # no image_root: path kept as is
    test = load(p, split="test")
    # ids do not depend on the filter: d1's edema phrase is still index 1 although filtered out
    assert [s.sample_id for s in test] == ["d1-0", "d2-0"]
    assert test.report.skipped == {"split != test": 1}
    with pytest.raises(ValueError, match="no 'split' column"):
        load(write(tmp_path, V10, OFFICIAL_ROWS, "v10.csv"), split="test")


def test_merged_variant(tmp_path):
    rows = [
        ["d1", P1, "Pneumonia", "left lower lobe pneumonia|pneumonia again", "10-20-30-40|50-60-10-10", 100, 200],
        ["d1", P1, "Edema", "mild edema", "0-0-100-200", 100, 200],
        ["d2", P2, "Pneumothorax", "small apical pneumothorax", "1.5-2-3-4.25", 64, 64],
    ]
    ds = load(write(tmp_path, MERGED, rows), image_root="root")
    assert ds.report.format == "merged"
    assert [s.sample_id for s in ds] == ["d1-0", "d1-1", "d2-0"]
    assert ds[0].phrase == "left lower lobe pneumonia"  # first of the "|"-joined phrases
    assert ds[0].boxes == ((10.0, 20.0, 30.0, 40.0), (50.0, 60.0, 10.0, 10.0))
    assert ds[2].boxes == ((1.5, 2.0, 3.0, 4.25),)
    assert ds[2].image_path == os.path.join("root", P2)
    assert ds.report.multi_phrase_rows == 1 and ds.report.rows_read == 3 and ds.report.boxes == 4


def test_merged_variant_without_image_size(tmp_path):
    header = ["paths", "category_name", "label_text", "bboxxywh"]
    ds = load(write(tmp_path, header, [[P2, "Edema", "edema", "1-2-3-4"]]))
    s = ds[0]
    assert (s.sample_id, s.image_width, s.image_height) == ("d2-0", None, None)
    with pytest.raises(ValueError, match="image size unknown"):
        s.geometry(512)


def _error(tmp_path, header, rows):
    with pytest.raises(ValueError) as e:
        load(write(tmp_path, header, rows))
    return str(e.value)


def test_error_missing_column(tmp_path):
    msg = _error(tmp_path, [c for c in V10 if c != "h"], [r[:7] + r[8:] for r in OFFICIAL_ROWS])
    assert "ms.csv" in msg and "['h']" in msg


@pytest.mark.parametrize("col,value,field,text", [
    (4, "ten", "x", "not a number"),
    (6, "-3", "x/y/w/h", "negative"),
    (4, "95", "x/y/w/h", "outside the 100x200 image"),
    (1, "Fracture", "category_name", "unknown category"),
    (8, "0", "image_width", "positive integer"),
    (2, "", "label_text", "missing value"),
])
def test_error_names_file_row_and_field(tmp_path, col, value, field, text):
    rows = [list(r) for r in OFFICIAL_ROWS[:3]]
    rows[1][col] = value  # the second data row = CSV line 3
    msg = _error(tmp_path, V10, rows)
    assert "ms.csv" in msg and "row 3" in msg and f"field '{field}'" in msg and text in msg


def test_error_inconsistent_merge(tmp_path):
    rows = [list(OFFICIAL_ROWS[0]), list(OFFICIAL_ROWS[2])]
    rows[1][8] = 101
    msg = _error(tmp_path, V10, rows)
    assert "row 3" in msg and "image_width" in msg and "row 2" in msg


@pytest.mark.parametrize("bbox,text", [("1-2-3", "not 'x-y-w-h'"), ("1-2-3-4|", "not 'x-y-w-h'"),
                                       ("1-2-a-4", "not a number"), ("60-2-10-4", "outside the 64x64")])
def test_error_bad_bboxxywh(tmp_path, bbox, text):
    rows = [["d2", P2, "Edema", "edema", "1-2-3-4", 64, 64], ["d2", P2, "Edema", "more edema", bbox, 64, 64]]
    msg = _error(tmp_path, MERGED, rows)
    assert "row 3" in msg and "field 'bboxxywh'" in msg and text in msg


def test_clip_boxes_option(tmp_path):
    rows = [["d2", "Edema", "edema", P2, 60, 2, 10, 4, 64, 64],
            ["d2", "Edema", "edema", P2, 64, 2, 10, 4, 64, 64]]
    ds = load(write(tmp_path, V10, rows), clip_boxes=True)
    assert ds[0].boxes == ((60.0, 2.0, 4.0, 4.0),)
    assert ds.report.boxes_clipped == 1 and ds.report.skipped == {"box outside image": 1}


def test_blank_lines_and_bom_are_tolerated(tmp_path):
    p = tmp_path / "bom.csv"
    text = ",".join(V10) + "\n" + ",".join(map(str, OFFICIAL_ROWS[0])) + "\n,,,,,,,,,\n"
    p.write_bytes(b"\xef\xbb\xbf" + text.encode())
    ds = load(p)
    assert len(ds) == 1 and ds.report.rows_read == 1


def test_drop_cropped_boxes_and_geometry():
    # 100 wide x 200 high, size 50: scale .5, resized 50 x 100, crop keeps original rows 50..149
    s = Sample("d1-0", "x.jpg", "p", "Edema", ((0, 0, 10, 40), (0, 60, 10, 10), (0, 140, 10, 30)), 100, 200)
    g = s.geometry(50)
    assert g == Geometry(orig_h=200, orig_w=100, size=50)
    kept, dropped = drop_cropped_boxes(s, g)
    assert kept == ((0, 60, 10, 10), (0, 140, 10, 30)) and dropped == 1


def test_module_exports_categories():
    assert len(mscxr.CATEGORIES) == 8 and "Lung Opacity" in mscxr.CATEGORIES
