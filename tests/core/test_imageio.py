"""Image IO over every real sample file in pydicom and pydicom-data, plus made-up files."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from lesion_studio.core.errors import ImageLoadError, SeriesChoiceError
from lesion_studio.core.imageio import load_image, load_series, scan_series
from lesion_studio.core.sample_data import pydicom_data_dir, pydicom_test_files_dir, sample_file

SKIP_SUFFIXES = {".txt", ".json", ".dump", ".icc", ".gz"}

#: Files that must be refused, with a word the reason must contain.
BAD_FILES = {
    "MR_truncated.dcm": "truncated",
    "no_meta.dcm": "preamble",
    "rtplan.dcm": "RT Plan",
    "rtplan_truncated.dcm": "not an image",
    "rtstruct.dcm": "RT Structure Set",
    "test-SR.dcm": "SR",
    "reportsi.dcm": "SR",
    "reportsi_with_empty_number_tags.dcm": "SR",
    "waveform_ecg.dcm": "Waveform",
    "ExplVR_BigEndNoMeta.dcm": "RT Ion Plan",
    "ExplVR_LitEndNoMeta.dcm": "RT Ion Plan",
    "emri_small_jpeg_2k_lossless_too_short.dcm": "pixel data",
    "JPEG2000-embedded-sequence-delimiter.dcm": "decode",
    "UN_sequence.dcm": "not an image",
    "badVR.dcm": "invalid",
    "empty_charset_LEI.dcm": "not an image",
    "meta_missing_tsyntax.dcm": "Transfer Syntax",
    "nested_priv_SQ.dcm": "Bits Allocated",
    "no_meta_group_length.dcm": "not an image",
    "priv_SQ.dcm": "not an image",
}

#: Lossless files and their uncompressed twins: pixels must match exactly.
LOSSLESS_TWINS = [
    ("RG1_J2KR.dcm", "RG1_UNCR.dcm"),
    ("RG3_J2KR.dcm", "RG3_UNCR.dcm"),
    ("MR2_J2KR.dcm", "MR2_UNCR.dcm"),
    ("693_J2KR.dcm", "693_UNCR.dcm"),
    ("US1_J2KR.dcm", "US1_UNCR.dcm"),
    ("emri_small_RLE.dcm", "emri_small.dcm"),
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),
    ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"),
    ("emri_small_big_endian.dcm", "emri_small.dcm"),
    ("MR_small_RLE.dcm", "MR_small.dcm"),
    ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
    ("MR_small_bigendian.dcm", "MR_small.dcm"),
    ("MR_small_implicit.dcm", "MR_small.dcm"),
    ("OBXXXX1A_rle.dcm", "OBXXXX1A.dcm"),
    ("OBXXXX1A_rle_2frame.dcm", "OBXXXX1A_2frame.dcm"),
    ("SC_rgb_rle.dcm", "SC_rgb.dcm"),
    ("SC_rgb_rle_16bit_2frame.dcm", "SC_rgb_16bit_2frame.dcm"),
    ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb.dcm"),
]


def _all_sample_files() -> list[Path]:
    files = []
    for folder in (pydicom_data_dir(), pydicom_test_files_dir()):
        files += [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix not in SKIP_SUFFIXES]
    return files


@pytest.mark.parametrize("path", _all_sample_files(), ids=lambda p: p.name)
def test_every_sample_file_loads_or_is_refused_clearly(path: Path) -> None:
    if path.name in BAD_FILES:
        with pytest.raises(ImageLoadError) as info:
            load_image(path)
        assert info.value.path == path
        assert str(path) in str(info.value)
        assert BAD_FILES[path.name].lower() in info.value.reason.lower()
        return
    image = load_image(path)
    assert image.pixels.dtype == np.float32
    assert image.pixels.ndim in (2, 3)
    assert np.isfinite(image.pixels).all()
    assert image.window.width > 0
    if image.spacing_mm is not None:
        assert len(image.spacing_mm) == image.pixels.ndim
        assert all(s > 0 for s in image.spacing_mm)
    assert image.source.path == path


def _raw(name: str) -> tuple[pydicom.Dataset, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(sample_file(name))
        return ds, ds.pixel_array


def test_radiograph_zero_pixel_spacing_is_unknown_not_zero() -> None:
    image = load_image(sample_file("RG1_UNCR.dcm"))
    assert image.shape == (1955, 1841)
    assert image.modality == "CR"
    assert image.spacing_mm is None
    assert any("spacing unknown" in n for n in image.source.notes)


def test_monochrome1_is_inverted_within_the_stored_range() -> None:
    ds, raw = _raw("RG1_UNCR.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    expected = (2 ** int(ds.BitsStored) - 1) - raw.astype(np.float64)
    image = load_image(sample_file("RG1_UNCR.dcm"))
    np.testing.assert_array_equal(image.pixels, expected.astype(np.float32))
    # The stored window is mirrored with the pixels (RG1's is then found too wide and replaced,
    # see below; the note quotes the mirrored one).
    stored_center = float(ds.WindowCenter[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter)
    mirrored = 2 ** int(ds.BitsStored) - 1 - stored_center
    assert any(f"window {mirrored:g}/" in note for note in image.source.notes), image.source.notes


def test_monochrome1_and_its_monochrome2_twin_load_equal(tmp_path: Path) -> None:
    ds, raw = _raw("MR_small.dcm")
    bits = int(ds.BitsStored)
    assert int(ds.PixelRepresentation) == 1  # signed: inversion uses the signed range
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    mono1 = ds.copy()
    mono1.PhotometricInterpretation = "MONOCHROME1"
    mono1.PixelData = ((lo + hi) - raw.astype(np.int32)).astype(raw.dtype).tobytes()
    for kw in ("WindowCenter", "WindowWidth"):
        if kw in mono1:
            del mono1[kw]
    path = tmp_path / "mono1.dcm"
    mono1.save_as(path)
    np.testing.assert_array_equal(load_image(path).pixels, load_image(sample_file("MR_small.dcm")).pixels)


def test_ct_is_in_hounsfield_units_with_air_near_minus_1000() -> None:
    image = load_image(sample_file("693_UNCR.dcm"))
    ds, raw = _raw("693_UNCR.dcm")
    expected = raw * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(image.pixels, expected.astype(np.float32))
    assert image.unit == "HU"
    assert image.spacing_mm == pytest.approx((0.478516, 0.478516))
    # Air inside the reconstruction circle, outside the head: the histogram's air peak.
    values = image.pixels[image.pixels > -1500]
    hist, edges = np.histogram(values, bins=np.arange(-1500, 2000, 25))
    air_peak = edges[np.argmax(hist[edges[:-1] < -500])]
    assert -1100 <= air_peak <= -900


def test_first_value_of_a_multivalued_window_is_used() -> None:
    ds, _ = _raw("MR_small.dcm")
    image = load_image(sample_file("MR_small.dcm"))
    first = ds.WindowCenter[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter
    assert image.window_source == "dicom"
    assert image.window.center == pytest.approx(float(first))


def test_ct_without_window_gets_the_soft_tissue_preset() -> None:
    image = load_image(sample_file("CT_small.dcm"))
    assert image.window_source == "preset"
    assert (image.window.center, image.window.width) == (40.0, 400.0)


def test_image_without_window_gets_a_percentile_window() -> None:
    image = load_image(sample_file("OT-PAL-8-face.dcm"))
    assert image.window_source == "percentile"
    lo, hi = np.percentile(image.pixels, [1, 99])
    assert image.window.low == pytest.approx(lo, abs=1.0)
    assert image.window.high == pytest.approx(hi, abs=1.0)


@pytest.mark.parametrize(("compressed", "uncompressed"), LOSSLESS_TWINS, ids=lambda n: n)
def test_lossless_files_equal_their_uncompressed_twins(compressed: str, uncompressed: str) -> None:
    a = load_image(sample_file(compressed))
    b = load_image(sample_file(uncompressed))
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.pixels, b.pixels)


def test_colour_images_become_bt601_luma_with_a_note() -> None:
    ds, rgb = _raw("SC_rgb.dcm")
    image = load_image(sample_file("SC_rgb.dcm"))
    expected = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    np.testing.assert_allclose(image.pixels, expected, rtol=1e-6)
    assert any("BT.601" in n for n in image.source.notes)


def test_multiframe_file_is_a_volume() -> None:
    image = load_image(sample_file("emri_small.dcm"))
    assert image.shape == (10, 64, 64)
    assert image.is_volume and image.n_slices == 10


def test_lossy_compressed_files_decode_close_to_the_original() -> None:
    lossy = load_image(sample_file("RG1_J2KI.dcm")).pixels
    exact = load_image(sample_file("RG1_UNCR.dcm")).pixels
    assert np.mean(np.abs(lossy - exact)) < 0.01 * (exact.max() - exact.min())


def test_deflate_transfer_syntax_loads() -> None:
    image = load_image(sample_file("image_dfl.dcm"))
    assert image.shape == (512, 512)
    assert image.pixels.max() > image.pixels.min()


def test_forced_read_of_a_file_without_preamble_and_meta(tmp_path: Path) -> None:
    data = sample_file("CT_small.dcm").read_bytes()
    assert data[128:132] == b"DICM"
    meta_group_length = int.from_bytes(data[140:144], "little")  # (0002,0000) UL value
    body = data[144 + meta_group_length :]  # no preamble, no file meta: as old archives write
    path = tmp_path / "ct_no_meta.dcm"
    path.write_bytes(body)
    image = load_image(path)
    np.testing.assert_array_equal(image.pixels, load_image(sample_file("CT_small.dcm")).pixels)
    assert image.modality == "CT"


# --------------------------------------------------------------------------------------------
# Series folders


def _write_series(folder: Path, n: int, series_uid: str, z0: float = 0.0, dz: float = 2.5) -> list[float]:
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(sample_file("CT_small.dcm"))
    positions = []
    order = np.random.default_rng(0).permutation(n)  # written shuffled
    for k in order:
        ds = base.copy()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = int(k) + 1
        ds.ImagePositionPatient = [0.0, 0.0, z0 + dz * int(k)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        arr = ds.pixel_array.copy()
        arr[0, 0] = int(k)  # marks the slice
        ds.PixelData = arr.tobytes()
        ds.save_as(folder / f"slice_{k:03d}.dcm")
        positions.append(z0 + dz * int(k))
    return sorted(positions)


def test_series_folder_is_sorted_by_position(tmp_path: Path) -> None:
    _write_series(tmp_path / "s", 6, generate_uid(), dz=2.5)
    (tmp_path / "s" / "README.txt").write_text("not dicom")
    image = load_series(tmp_path / "s")
    assert image.shape == (6, 128, 128)
    slope = 1.0  # CT_small: stored value k at [0, 0] becomes k*slope+intercept
    marks = image.pixels[:, 0, 0]
    assert np.all(np.diff(marks) == pytest.approx(slope))
    assert image.spacing_mm[0] == pytest.approx(2.5)
    assert image.origin_mm == pytest.approx((0.0, 0.0, 0.0))
    assert image.source.format == "dicom-series"
    assert len(image.source.sop_instance_uids) == 6


def test_folder_with_two_series_asks_for_a_choice(tmp_path: Path) -> None:
    uid_a, uid_b = generate_uid(), generate_uid()
    _write_series(tmp_path / "a", 3, uid_a)
    _write_series(tmp_path / "b", 4, uid_b, z0=100.0)
    with pytest.raises(SeriesChoiceError) as info:
        load_image(tmp_path)
    assert {s.series_uid for s in info.value.series} == {uid_a, uid_b}
    assert "2 series" in info.value.reason
    chosen = load_image(tmp_path, series_uid=uid_b)
    assert chosen.shape[0] == 4


def test_real_series_folder_from_pydicom() -> None:
    folder = pydicom_test_files_dir() / "dicomdirtests" / "98892001" / "CT5N"
    image = load_image(folder)
    assert image.shape == (5, 16, 16)
    assert image.modality == "CT"
    assert len(scan_series(folder)) == 1


def test_duplicate_slice_positions_are_refused(tmp_path: Path) -> None:
    _write_series(tmp_path / "s", 3, "1.2.3.4", dz=0.0)
    with pytest.raises(ImageLoadError, match="share one slice position"):
        load_image(tmp_path / "s")


def test_folder_without_dicom_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageLoadError, match="no DICOM image"):
        load_image(tmp_path)


# --------------------------------------------------------------------------------------------
# Other formats


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_sitk_formats_keep_values_and_geometry(tmp_path: Path, suffix: str) -> None:
    volume = np.random.default_rng(1).normal(0, 100, size=(4, 20, 30)).astype(np.float32)
    volume[0, 0, 0] = -1000.0
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.7, 0.8, 3.0))
    image.SetOrigin((-10.0, 5.0, 30.0))
    direction = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    image.SetDirection(direction)
    path = tmp_path / f"vol{suffix}"
    sitk.WriteImage(image, str(path))
    loaded = load_image(path)
    np.testing.assert_array_equal(loaded.pixels, volume)
    assert loaded.spacing_mm == pytest.approx((3.0, 0.8, 0.7))
    assert loaded.origin_mm == pytest.approx((-10.0, 5.0, 30.0))
    assert loaded.direction == pytest.approx(direction)
    spacing_xyz, origin, direction_back = loaded.sitk_geometry()
    assert spacing_xyz == pytest.approx((0.7, 0.8, 3.0))
    assert direction_back == pytest.approx(direction)


def test_nifti_with_nans_is_cleaned_with_a_note(tmp_path: Path) -> None:
    volume = np.ones((3, 8, 8), dtype=np.float32)
    volume[1, 2, 2] = np.nan
    path = tmp_path / "nan.mha"  # MetaImage keeps NaN (the NIfTI reader maps it to 0)
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(path))
    loaded = load_image(path)
    assert np.isfinite(loaded.pixels).all()
    assert any("NaN" in n for n in loaded.source.notes)


def test_all_nan_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((2, 4, 4), np.nan, np.float32)), str(path))
    with pytest.raises(ImageLoadError, match="NaN"):
        load_image(path)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_keeps_bit_depth(tmp_path: Path, dtype: type) -> None:
    top = np.iinfo(dtype).max
    array = np.linspace(0, top, 40 * 50).reshape(40, 50).astype(dtype)
    path = tmp_path / "img.png"
    assert cv2.imwrite(str(path), array)
    loaded = load_image(path)
    np.testing.assert_array_equal(loaded.pixels, array.astype(np.float32))
    assert loaded.spacing_mm is None
    assert loaded.window_source == "percentile"


def test_colour_png_becomes_luma(tmp_path: Path) -> None:
    bgr = np.zeros((10, 10, 3), np.uint8)
    bgr[..., 2] = 200  # red
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), bgr)
    loaded = load_image(path)
    assert loaded.pixels[0, 0] == pytest.approx(200 * 0.299)


def test_multipage_tiff_is_a_stack(tmp_path: Path) -> None:
    pages = [np.full((12, 16), v, np.uint16) for v in (10, 2000, 60000)]
    path = tmp_path / "stack.tiff"
    assert cv2.imwritemulti(str(path), pages)
    loaded = load_image(path)
    assert loaded.shape == (3, 12, 16)
    assert loaded.pixels[2, 0, 0] == 60000


def test_jpeg_loads(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    cv2.imwrite(str(path), np.tile(np.arange(64, dtype=np.uint8), (32, 1)))
    assert load_image(path).shape == (32, 64)


# --------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("name", ["empty.dcm", "empty.png", "empty.nii.gz"])
def test_empty_files_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty") as info:
        load_image(path)
    assert info.value.path == path


@pytest.mark.parametrize("name", ["noise.dcm", "noise.png", "noise.nii.gz", "noise.tiff", "noise.bin", "noise"])
def test_random_bytes_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "missing.dcm")


def test_truncated_copy_of_a_real_ct_is_refused(tmp_path: Path) -> None:
    data = sample_file("693_UNCR.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.path == path


def test_sample_files_are_not_modified(tmp_path: Path) -> None:
    src = sample_file("CT_small.dcm")
    copy = tmp_path / "ct.dcm"
    shutil.copy(src, copy)
    before = copy.read_bytes()
    load_image(copy)
    assert copy.read_bytes() == before


# --------------------------------------------------------------------------------------------
# Issue 18: no double rescale, NaN in NIfTI, header/pixel-data consistency, pixel budget


def _ct_copy(name: str, tmp_path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(sample_file(name))
    ds.Modality = "CT"
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    path = tmp_path / name
    ds.save_as(path)
    return path


def test_gdcm_fallback_rescales_once_like_pylibjpeg(tmp_path: Path) -> None:
    """JPEG-lossy.dcm (12-bit JPEG Extended) is decoded by GDCM only (pylibjpeg fails on it);
    JPGExtended.dcm is the same image, decoded by pylibjpeg. With intercept −1024 both must
    load as stored − 1024 (GDCM used to apply it too: −2048…)."""
    gdcm = load_image(_ct_copy("JPEG-lossy.dcm", tmp_path))
    pylibjpeg = load_image(_ct_copy("JPGExtended.dcm", tmp_path))
    assert gdcm.pixels.min() == pylibjpeg.pixels.min() == -1024.0
    np.testing.assert_allclose(gdcm.pixels, pylibjpeg.pixels, atol=1)


def test_fallback_is_used_when_pydicom_cannot_decode(tmp_path: Path, monkeypatch) -> None:
    """Force the SimpleITK/GDCM path for a file pydicom can decode: same HU values."""
    path = _ct_copy("693_J2KR.dcm", tmp_path)
    reference = load_image(path).pixels

    def fail(self):  # noqa: ANN001
        raise RuntimeError("no decoder")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(fail))
    np.testing.assert_array_equal(load_image(path).pixels, reference)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_nan_and_inf_are_handled_alike_in_every_sitk_format(tmp_path: Path, suffix: str) -> None:
    """ITK's NIfTI reader turns NaN/Inf into 0 silently; they must be counted and noted as in MHA."""
    volume = np.full((3, 8, 8), 5.0, dtype=np.float32)
    volume[1, 2, 2] = np.nan
    volume[2, 3, 4] = np.inf
    path = tmp_path / f"nan{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(path))
    loaded = load_image(path)
    assert any("2 NaN/infinite" in n for n in loaded.source.notes), loaded.source.notes
    assert (loaded.pixels == 5.0).all()  # replaced by the finite minimum, not 0


def test_all_nan_nifti_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((2, 4, 4), np.nan, np.float32)), str(path))
    with pytest.raises(ImageLoadError, match="NaN") as info:
        load_image(path)
    assert info.value.path == path


@pytest.mark.parametrize(
    "name, changes",
    [
        ("CT_small.dcm", {"Rows": 64}),  # twice the data: pydicom made 2 frames
        ("CT_small.dcm", {"Rows": 32}),
        ("CT_small.dcm", {"BitsAllocated": 1, "BitsStored": 1, "HighBit": 0}),  # made 16 frames
        ("MR_small.dcm", {"BitsAllocated": 1, "BitsStored": 1, "HighBit": 0, "PixelRepresentation": 0}),
    ],
)
def test_header_disagreeing_with_pixel_data_is_refused(tmp_path: Path, name: str, changes: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(sample_file(name))
    for key, value in changes.items():
        setattr(ds, key, value)
    path = tmp_path / name
    ds.save_as(path)
    with pytest.raises(ImageLoadError, match="does not match") as info:
        load_image(path)
    assert info.value.path == path


def test_one_bit_images_decode_as_one_frame(tmp_path: Path) -> None:
    """BitsAllocated = 1 with data of the right length is decoded by pydicom (bits unpacked)."""
    from pydicom.pixels import pack_bits

    bits = (np.indices((16, 24)).sum(axis=0) % 3 == 0).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.Rows, ds.Columns = bits.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    for key in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        if key in ds:
            delattr(ds, key)
    ds.PixelData = pack_bits(bits)
    path = tmp_path / "bits.dcm"
    ds.save_as(path)
    loaded = load_image(path)
    assert loaded.shape == bits.shape
    np.testing.assert_array_equal(loaded.pixels, bits.astype(np.float32))


def test_pixel_budget_refuses_before_decoding(tmp_path: Path, monkeypatch) -> None:
    from lesion_studio.core.imageio import common

    png = tmp_path / "img.png"
    cv2.imwrite(str(png), np.zeros((200, 300), np.uint8))
    tiff = tmp_path / "stack.tiff"
    cv2.imwritemulti(str(tiff), [np.zeros((100, 100), np.uint16)] * 3)
    nifti = tmp_path / "vol.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 100, 100), np.float32)), str(nifti))
    monkeypatch.setattr(common, "MAX_PIXELS", 25_000)
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded despite the budget"))
    monkeypatch.setattr(cv2, "imdecodemulti", lambda *a: pytest.fail("decoded despite the budget"))
    for path in (png, tiff, nifti):
        with pytest.raises(ImageLoadError, match="limit") as info:
            load_image(path)
        assert info.value.path == path
    monkeypatch.setattr(common, "MAX_PIXELS", 29_999)
    with pytest.raises(ImageLoadError, match="limit"):
        load_image(tiff)  # each page fits, the three together do not


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width × height 8-bit gray and whose IDAT holds one row."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [40_000, 32_767])
def test_huge_declared_png_is_refused_clearly(tmp_path: Path, side: int) -> None:
    """40000² used to raise cv2.error; 32767² (2 MB file) allocated 1 GB before failing."""
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(side, side))
    with pytest.raises(ImageLoadError, match="pixels, more than the limit") as info:
        load_image(path)
    assert info.value.path == path


def test_radiograph_with_its_detector_range_as_window_gets_the_percentile_window() -> None:
    """Issue 16 (8): the demo RG1 stores a 30000 wide window (0–30000 of its 15-bit range, 17767
    after the MONOCHROME1 inversion) for pixels that span about 10000–30600, which looks washed
    out; a window the 1–99 % range fills less than 3/4 of is replaced by that range, and the
    image's notes say why."""
    from lesion_studio.core.windowing import MIN_STORED_WINDOW_FILL

    ds, _ = _raw("RG1_UNCR.dcm")
    assert float(ds.WindowWidth) == 30000.0
    image = load_image(sample_file("RG1_UNCR.dcm"))
    assert image.window_source == "percentile"
    lo, hi = np.percentile(image.pixels, [1, 99])
    assert image.window.low == pytest.approx(lo, rel=0.01)
    assert image.window.high == pytest.approx(hi, rel=0.01)
    assert (hi - lo) / image.window.width >= MIN_STORED_WINDOW_FILL
    assert any("too wide" in note for note in image.source.notes), image.source.notes


@pytest.mark.parametrize("name", ["RG3_UNCR.dcm", "MR2_UNCR.dcm", "693_UNCR.dcm"])
def test_plausible_stored_windows_are_kept(name: str) -> None:
    """Reading windows that the data fill (a radiograph, an MR) or deliberately narrow CT
    windows stay the file's own."""
    ds, _ = _raw(name)
    image = load_image(sample_file(name))
    assert image.window_source == "dicom"
    first = ds.WindowWidth[0] if ds["WindowWidth"].VM > 1 else ds.WindowWidth
    assert image.window.width == pytest.approx(float(first), abs=1.0)


def test_stored_window_missing_the_pixels_is_a_problem_for_any_modality() -> None:
    from lesion_studio.core.image import Window
    from lesion_studio.core.windowing import stored_window_problem

    pixels = np.linspace(0.0, 100.0, 10_000).reshape(100, 100)
    assert stored_window_problem(Window(500.0, 100.0), pixels, "MR")
    assert stored_window_problem(Window(50.0, 400.0), pixels, "CT") == ""  # CT: wide is a choice
    assert stored_window_problem(Window(50.0, 400.0), pixels, "DX")  # radiograph: washed out
    assert stored_window_problem(Window(50.0, 110.0), pixels, "DX") == ""
