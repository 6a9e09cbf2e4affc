import numpy as np
import pytest
from PIL import Image

from groundkit.data.images import load_image, save_png

H, W = 37, 53  # non-square on purpose


def _marker(h=H, w=W):
    """Asymmetric test pattern: a horizontal gradient plus a bright block near the top-left."""
    a = np.tile(np.linspace(0.0, 1.0, w), (h, 1)) * 0.5
    a[2:6, 3:11] = 1.0  # top-left block, wider than tall
    a[h - 3:, w - 2:] = 0.0  # dark bottom-right corner
    return a


def _check_marker(img):
    assert img.shape == (H, W)
    assert img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert np.all(img[2:6, 3:11] > 0.95)
    assert img[H - 1, W - 1] < 0.01
    # gradient runs left -> right, not top -> bottom
    assert img[20, W - 5] > img[20, 12] + 0.2
    assert abs(float(img[10, 20]) - float(img[30, 20])) < 0.02


@pytest.mark.parametrize("bits", [8, 16])
def test_gray_roundtrip(tmp_path, bits):
    a = _marker()
    p = save_png(tmp_path / f"g{bits}.png", a, bits=bits)
    with Image.open(p) as im:
        assert im.size == (W, H)
        raw = np.array(im)
    assert raw.shape == (H, W)
    img = load_image(p)
    tol = 1 / 255 if bits == 8 else 1 / 65535
    np.testing.assert_allclose(img, a, atol=tol * 0.51 + 1e-7)
    _check_marker(img)


def test_16bit_uses_full_range(tmp_path):
    a = np.zeros((4, 6), np.uint16)
    a[0, 0] = 65535
    a[1, 1] = 32768
    p = tmp_path / "raw16.png"
    Image.fromarray(a).save(p)
    img = load_image(p)
    assert img[0, 0] == pytest.approx(1.0)
    assert img[1, 1] == pytest.approx(32768 / 65535)
    assert img[2, 2] == 0.0


def test_rgb_and_rgba_to_luma(tmp_path):
    a = (_marker() * 255).round().astype(np.uint8)
    rgb = np.stack([a, a, a], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    rgba = np.concatenate([rgb, np.full((H, W, 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    for name in ("rgb.png", "rgba.png"):
        img = load_image(tmp_path / name)
        np.testing.assert_allclose(img, a / 255.0, atol=1e-6)
        _check_marker(img)
    # pure colours follow BT.601 luma
    red = np.zeros((2, 3, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(tmp_path / "red.png")
    assert load_image(tmp_path / "red.png")[0, 0] == pytest.approx(76 / 255, abs=1 / 255)


def test_jpeg_orientation(tmp_path):
    a = _marker()
    Image.fromarray((a * 255).astype(np.uint8)).save(tmp_path / "m.jpg", quality=100)
    img = load_image(tmp_path / "m.jpg")
    assert img.shape == (H, W)
    assert img[3:5, 4:10].mean() > 0.9
    assert img[20, W - 5] > img[20, 12] + 0.2


def test_arrays_and_tensors():
    import torch

    a = _marker()
    _check_marker(load_image(a.astype(np.float32)))
    _check_marker(load_image((a * 255).round().astype(np.uint8)))
    _check_marker(load_image((a * 65535).round().astype(np.uint16)))
    _check_marker(load_image(np.repeat(a[..., None], 3, axis=-1)))  # channel last
    _check_marker(load_image(torch.from_numpy(a)))
    _check_marker(load_image(torch.from_numpy(a)[None]))  # (1, H, W)
    _check_marker(load_image(torch.from_numpy(a)[None].repeat(3, 1, 1)))  # (3, H, W)
    # floats outside [0, 1] are min-max scaled
    img = load_image(a * 1000.0 - 200.0)
    assert img.min() == 0.0 and img.max() == pytest.approx(1.0)
    _check_marker(img)
    # floats inside [0, 1] are unchanged
    np.testing.assert_array_equal(load_image(a * 0.5), (a * 0.5).astype(np.float32))


def _write_dicom(path, pixels, photometric="MONOCHROME2", slope=None, intercept=None):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    assert pydicom.dcmread(str(path)).pixel_array.shape == pixels.shape


def test_dicom_monochrome2_and_orientation(tmp_path):
    a = _marker()
    px = (a * 4000).round().astype(np.uint16)
    p = tmp_path / "img.dcm"
    _write_dicom(p, px)
    img = load_image(p)
    np.testing.assert_allclose(img, px / px.max(), atol=1e-6)  # min is 0 -> plain max scaling
    _check_marker(img)


def test_dicom_monochrome1_inverted(tmp_path):
    a = _marker()
    px = ((1.0 - a) * 4000 + 100).round().astype(np.uint16)  # MONOCHROME1: low value = bright
    p = tmp_path / "mono1"  # no suffix: detected through the DICM preamble
    _write_dicom(p, px, photometric="MONOCHROME1")
    img = load_image(p)
    _check_marker(img)
    np.testing.assert_allclose(img, a, atol=1 / 4000)


def test_dicom_rescale_slope_intercept(tmp_path):
    px = np.array([[0, 10, 20], [30, 40, 1000]], np.uint16)
    p = tmp_path / "rescale.dcm"
    # with a negative slope the largest stored value becomes the darkest pixel
    _write_dicom(p, px, slope=-2.0, intercept=50.0)
    img = load_image(p)
    hu = px * -2.0 + 50.0
    np.testing.assert_allclose(img, (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)
    assert img[1, 2] == 0.0 and img[0, 0] == 1.0


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_image(bad)
    bad_dcm = tmp_path / "broken.dcm"
    bad_dcm.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="broken.dcm"):
        load_image(bad_dcm)
    with pytest.raises(ValueError, match="2-D"):
        load_image(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="channel-last"):
        load_image(np.zeros((8, 8, 7)))
    with pytest.raises(ValueError, match="NaN"):
        load_image(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        save_png(tmp_path / "x.png", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="bits"):
        save_png(tmp_path / "x.png", np.zeros((2, 2)), bits=12)
