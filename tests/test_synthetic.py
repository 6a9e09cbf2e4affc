"""The synthetic chest X-ray set: deterministic, MS-CXR format, findings where the phrase says."""
from __future__ import annotations

import csv

import numpy as np

from groundkit.bench.datasets import load_dataset
from groundkit.core.categories import CATEGORIES
from groundkit.data import synthetic
from groundkit.data.images import load_image

OFFICIAL_V11 = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height", "split"]


def test_generate_writes_official_format_and_is_deterministic(tmp_path):
    a = synthetic.generate(tmp_path / "a", n=16, seed=3, size=96)
    b = synthetic.generate(tmp_path / "b", n=16, seed=3, size=96)
    with open(a) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0].keys()) == OFFICIAL_V11
    assert a.read_text() == b.read_text()
    first = rows[0]["path"]
    assert (tmp_path / "a" / first).read_bytes() == (tmp_path / "b" / first).read_bytes()
    assert {r["category_name"] for r in rows} == set(CATEGORIES)
    # the loader reads it back as MS-CXR samples: one per image, 2 boxes for bilateral edema
    ds = load_dataset("synthetic", data=tmp_path / "a")
    assert len(ds) == 16
    assert any(len(s.boxes) == 2 for s in ds if s.category == "Edema")
    for s in ds:
        img = load_image(s.image_path)
        assert img.shape == (s.image_height, s.image_width)
        assert min(img.shape) == 96
        for x, y, w, h in s.boxes:
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= img.shape[1] and y + h <= img.shape[0]


def test_some_images_are_not_square():
    shapes = [img.shape for img, *_ in synthetic.iter_samples(40, seed=1, size=64)]
    assert any(h != w for h, w in shapes) and any(h == w for h, w in shapes)


def test_finding_changes_pixels_inside_its_box():
    for seed in range(16):
        with_f, finding = synthetic.render(np.random.default_rng(seed), 128)
        without, _ = synthetic.render(np.random.default_rng(seed), 128, with_finding=False)
        diff = np.abs(with_f - without)
        inside = np.zeros(diff.shape, bool)
        for x, y, w, h in finding.boxes:
            inside[int(y) : int(y + h), int(x) : int(x + w)] = True
        assert diff[inside].mean() > 5 * diff[~inside].mean() + 1e-4, finding


def test_phrase_side_matches_box_side():
    """Patient's left is the image's right in a frontal CXR."""
    checked = 0
    for img, phrase, cat, boxes in synthetic.iter_samples(64, seed=9, size=96):
        words = phrase.split()
        side = "left" if "left" in words else "right" if "right" in words else None
        if side is None:
            continue
        cx = np.mean([x + w / 2 for x, y, w, h in boxes]) / img.shape[1]
        assert (cx > 0.5) == (side == "left"), (phrase, boxes, img.shape)
        checked += 1
    assert checked > 30


def test_vocabulary_covers_every_phrase():
    """Every word the demo tokenizer will see (BERT splits "left-sided" into left, -, sided) is in its vocabulary."""
    vocab = set(synthetic.report_vocabulary())
    hyphenated = 0
    for _, phrase, _, _ in synthetic.iter_samples(200, seed=2, size=64):
        assert set(phrase.replace("-", " ").split()) <= vocab, phrase
        hyphenated += "-" in phrase
    assert hyphenated > 0  # the varied wording ("left-sided", "plate-like") is exercised
