"""Mask files: PNG and NIfTI round trips, geometry kept for SimpleITK, import checks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from lesion_studio.core.annotation import AnnotationDocument
from lesion_studio.core.annotation.mask_io import (
    export_layer,
    import_mask,
    load_mask,
    save_mask,
    save_nifti,
    save_png,
)
from lesion_studio.core.errors import MaskError
from lesion_studio.core.image import ImageSource, MedicalImage, Window
from lesion_studio.core.imageio import load_image

# a rotated, anisotropic, shifted volume: any axis or geometry mix-up shows
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _image(shape, spacing_mm=(2.5, 0.7, 0.9), origin=(-120.5, 33.0, 410.25), direction=DIRECTION):
    return MedicalImage(
        pixels=np.zeros(shape, dtype=np.float32),
        spacing_mm=spacing_mm[-len(shape):],
        modality="CT",
        window=Window(40, 400),
        window_source="preset",
        source=ImageSource(path=Path("ct.nii.gz"), format="nifti"),
        unit="HU",
        origin_mm=origin,
        direction=direction,
    )


def _painted(doc: AnnotationDocument) -> AnnotationDocument:
    for s in range(doc.n_slices):
        doc.paint_segment((5 + s, 5), (20, 30 - s), 1 + s, radius_px=3, slice=s)
    doc.paint_segment((25, 8), (25, 8), 300, radius_px=2, slice=0)
    return doc


def test_png_round_trip_picks_dtype(tmp_path):
    small = np.zeros((40, 50), np.uint16)
    small[5:10, 5:20] = 3
    save_png(small, tmp_path / "small.png")
    assert cv2.imread(str(tmp_path / "small.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    big = small.copy()
    big[20:30, 20:30] = 1234
    save_png(big, tmp_path / "big.png")
    on_disk = cv2.imread(str(tmp_path / "big.png"), cv2.IMREAD_UNCHANGED)
    assert on_disk.dtype == np.uint16
    np.testing.assert_array_equal(on_disk, big)
    np.testing.assert_array_equal(load_mask(tmp_path / "small.png")[0], small)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files


def test_document_png_round_trip(tmp_path):
    doc = _painted(AnnotationDocument((40, 50)))
    export_layer(doc, tmp_path / "labels.png")
    array, geometry = load_mask(tmp_path / "labels.png")
    assert geometry is None
    np.testing.assert_array_equal(array, doc.labels)


def test_nifti_keeps_the_source_geometry(tmp_path):
    image = _image((4, 40, 50))
    doc = _painted(AnnotationDocument.for_image(image))
    export_layer(doc, tmp_path / "labels.nii.gz")

    read = sitk.ReadImage(str(tmp_path / "labels.nii.gz"))
    spacing, origin, direction = image.sitk_geometry()
    assert read.GetSize() == (50, 40, 4)
    np.testing.assert_allclose(read.GetSpacing(), spacing, rtol=1e-6)
    np.testing.assert_allclose(read.GetOrigin(), origin, atol=1e-4)
    np.testing.assert_allclose(read.GetDirection(), direction, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), doc.labels)
    # the same voxel lands on the same physical point as in the image
    source = sitk.GetImageFromArray(image.pixels)
    source.SetSpacing(spacing)
    source.SetOrigin(origin)
    source.SetDirection(direction)
    for index in [(0, 0, 0), (49, 39, 3), (7, 21, 2)]:
        np.testing.assert_allclose(
            read.TransformIndexToPhysicalPoint(index), source.TransformIndexToPhysicalPoint(index), atol=1e-3
        )


def test_nifti_geometry_matches_an_image_loaded_from_disk(tmp_path):
    """End to end: a CT volume file -> MedicalImage -> mask over it -> same grid in SimpleITK."""
    ct = sitk.GetImageFromArray(np.zeros((3, 20, 30), dtype=np.int16))
    ct.SetSpacing((0.8, 0.6, 3.0))
    ct.SetOrigin((10.0, -20.0, 30.0))
    ct.SetDirection(DIRECTION)
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    image = load_image(tmp_path / "ct.nii.gz")
    doc = _painted(AnnotationDocument.for_image(image))
    export_layer(doc, tmp_path / "mask.nii.gz")
    mask = sitk.ReadImage(str(tmp_path / "mask.nii.gz"))
    ct_back = sitk.ReadImage(str(tmp_path / "ct.nii.gz"))
    np.testing.assert_allclose(mask.GetSpacing(), ct_back.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(mask.GetOrigin(), ct_back.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(mask.GetDirection(), ct_back.GetDirection(), atol=1e-6)
    assert mask.GetSize() == ct_back.GetSize()


def test_2d_nifti_round_trip(tmp_path):
    image = _image((40, 50), origin=(3.0, 4.0, 0.0), direction=None)
    doc = _painted(AnnotationDocument.for_image(image))
    export_layer(doc, tmp_path / "plane.nii.gz")
    array, geometry = load_mask(tmp_path / "plane.nii.gz")
    np.testing.assert_array_equal(array, doc.labels)
    np.testing.assert_allclose(geometry[0], (0.9, 0.7))
    np.testing.assert_allclose(geometry[1], (3.0, 4.0))


def test_png_cannot_hold_a_volume(tmp_path):
    doc = AnnotationDocument((3, 10, 10))
    with pytest.raises(MaskError, match="nii.gz"):
        export_layer(doc, tmp_path / "v.png")


def test_import_size_mismatch_names_both_sizes(tmp_path):
    save_png(np.zeros((256, 512), np.uint8), tmp_path / "gt.png")
    doc = AnnotationDocument((512, 512))
    with pytest.raises(MaskError) as info:
        import_mask(doc, tmp_path / "gt.png")
    assert "mask is 512×256 but the image is 512×512" in str(info.value)
    assert "gt.png" in str(info.value)
    assert not doc.can_undo


def test_import_geometry_mismatch(tmp_path):
    image = _image((4, 40, 50))
    other = (image.sitk_geometry()[0][:2] + (5.0,),) + image.sitk_geometry()[1:]
    save_nifti(np.zeros((4, 40, 50), np.uint8), tmp_path / "gt.nii.gz", other)
    doc = AnnotationDocument.for_image(image)
    with pytest.raises(MaskError, match=r"spacing is \(0.9, 0.7, 5\) but the image's is \(0.9, 0.7, 2.5\)"):
        import_mask(doc, tmp_path / "gt.nii.gz")


def test_import_binary_mask_makes_components(tmp_path):
    mask = np.zeros((40, 50), np.uint8)
    mask[2:6, 2:6] = 255
    mask[20:30, 10:40] = 255
    mask[35, 45] = 255
    save_png(mask, tmp_path / "gt.png")
    doc = AnnotationDocument((40, 50), spacing_mm=(0.5, 0.5))
    doc.paint_segment((10, 10), (10, 10), 9, radius_px=2)  # replaced by the import
    ids = import_mask(doc, tmp_path / "gt.png", class_name="stone")
    assert ids == [1, 2, 3]
    rows = doc.lesion_table()
    assert [r.area_px for r in rows] == [16, 300, 1]
    assert {(r.origin, r.class_name) for r in rows} == {("imported", "stone")}
    np.testing.assert_array_equal(doc.labels != 0, mask != 0)
    doc.undo()
    assert doc.lesion_ids == (9,)


def test_import_labelled_volume_keeps_ids(tmp_path):
    image = _image((3, 20, 30))
    labels = np.zeros((3, 20, 30), np.uint16)
    labels[0, 2:5, 2:5] = 4
    labels[1:3, 10:15, 10:20] = 700
    save_nifti(labels, tmp_path / "gt.nii.gz", image.sitk_geometry())
    doc = AnnotationDocument.for_image(image)
    assert import_mask(doc, tmp_path / "gt.nii.gz") == [4, 700]
    np.testing.assert_array_equal(doc.labels, labels)
    assert doc.lesion(700).slices == (1, 2)


def test_import_location_map(tmp_path):
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 255
    save_png(mask, tmp_path / "where.png")
    doc = AnnotationDocument((20, 20))
    import_mask(doc, tmp_path / "where.png", layer="location")
    np.testing.assert_array_equal(doc.location, (mask > 0).astype(np.uint8))
    assert doc.lesion_table() == []


def test_unreadable_and_colour_masks(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    doc = AnnotationDocument((10, 10))
    with pytest.raises(MaskError, match="bad.png"):
        import_mask(doc, tmp_path / "bad.png")
    with pytest.raises(MaskError, match="not found"):
        import_mask(doc, tmp_path / "missing.nii.gz")
    colour = np.zeros((10, 10, 3), np.uint8)
    colour[2, 2] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    with pytest.raises(MaskError, match="colour"):
        import_mask(doc, tmp_path / "colour.png")
    with pytest.raises(MaskError, match="unsupported"):
        save_mask(np.zeros((2, 2)), tmp_path / "x.jpg")
