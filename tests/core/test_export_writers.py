"""Export writers: COCO RLE against pycocotools, Basic Profile de-identification, derived DICOM,
nnU-Net dataset.json, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from lesion_studio.core.export import coco, deid, dicom_derived, nnunet
from lesion_studio.core.export.atomic import atomic_file, remove_stale_temps, write_bytes
from lesion_studio.core.export.item import ExportItem

mask_api = pytest.importorskip("pycocotools.mask")


@pytest.mark.parametrize("seed", range(8))
def test_rle_matches_pycocotools(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
    mask = rng.random(shape) < rng.choice([0.02, 0.3, 0.9])
    if seed == 0:
        mask[:] = False
    if seed == 1:
        mask[:] = True
    ours = coco.encode_rle(mask)
    theirs = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert ours["counts"] == theirs["counts"].decode("ascii") and ours["size"] == list(theirs["size"])
    assert np.array_equal(mask_api.decode({"size": ours["size"], "counts": ours["counts"].encode()}), mask)


def test_instances_one_per_component_with_xywh_boxes() -> None:
    mask = np.zeros((20, 30), np.uint8)
    mask[2:5, 3:9] = 1
    mask[10:18, 20:22] = 1
    anns = coco.instances(mask)
    assert [a["bbox"] for a in anns] == [[3.0, 2.0, 6.0, 3.0], [20.0, 10.0, 2.0, 8.0]]
    assert [a["area"] for a in anns] == [18.0, 16.0]


def _identified() -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.InstitutionName, ds.OperatorsName, ds.PatientBirthDate = "General Hospital", "Smith^Op", "19700101"
    ds.OtherPatientIDs, ds.PatientAddress, ds.AccessionNumber = "X123", "1 Main St", "ACC1"
    ds.add_new(0x00091001, "LO", "private secret")
    item = Dataset()
    item.PersonName = "Doe^Jane"
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.AnatomicRegionSequence = Sequence([item])
    ds.ReferringPhysicianName = "Who^Doctor"
    return ds


def test_basic_profile_leaves_no_identifying_attribute() -> None:
    ds = _identified()
    originals = {k: str(ds.get(k)) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}
    deid.deidentify(ds, uid_secret="s")
    for keyword in deid.REMOVE:
        assert keyword not in ds, keyword
    for keyword in deid.ZERO:
        assert keyword not in ds or ds.data_element(keyword).value in ("", None), keyword
    assert not any(elem.tag.is_private for elem in ds.iterall())
    assert not any(elem.VR == "PN" and elem.value and elem.value != "ANONYMIZED" for elem in ds.iterall())
    for keyword, old in originals.items():
        assert str(ds.get(keyword)) != old  # U: replaced
    nested = ds.AnatomicRegionSequence[0]
    assert nested.ReferencedSOPInstanceUID != "1.2.3.4"
    assert nested.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # class UIDs are kept
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    again = deid.deidentify(_identified(), uid_secret="s")
    assert again.SOPInstanceUID == ds.SOPInstanceUID  # deterministic for one secret


def _item(image: np.ndarray) -> ExportItem:
    return ExportItem(item_id="case_s000", image=image.astype(np.float32),
                      mask=(image > image.mean()).astype(np.uint8),
                      geometry=((0.5, 0.7), (1.0, 2.0), (1.0, 0.0, 0.0, 1.0)), spacing_mm=(0.7, 0.5),
                      modality="CT", png_offset=1024, model_description="texture model step 2")


@pytest.mark.parametrize("template", [None, "CT_small.dcm"])
def test_derived_dicom_round_trip(tmp_path: Path, template: str | None) -> None:
    image = np.random.default_rng(0).normal(0, 400, (24, 32)).round()
    item = _item(image)
    path = dicom_derived.write(item, tmp_path, uid_root=dicom_derived.uid_root(tmp_path),
                               template=None if template is None else Path(get_testdata_file(template)))[0]
    ds = pydicom.dcmread(path)
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.array_equal(values, image)
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.ConversionType == "SYN"
    assert dicom_derived.SYNTHETIC_MARKER in ds.DerivationDescription and "texture" in ds.DerivationDescription
    assert [float(v) for v in ds.PixelSpacing] == [0.7, 0.5]
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert ds.get(keyword) and ds.get(keyword) != source.get(keyword)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for keyword in deid.REMOVE:
        if keyword != "SeriesDescription":  # ours says SYNTHETIC
            assert keyword not in ds or keyword == "DerivationDescription", keyword
    assert str(ds.PatientName) == "" and ds.PatientID == ""
    assert not any(elem.tag.is_private for elem in ds.iterall())


def test_nnunet_dataset_json_has_the_documented_fields(tmp_path: Path) -> None:
    item = _item(np.arange(64, dtype=np.float32).reshape(8, 8))
    for ending in (".nii.gz", ".png"):
        out = tmp_path / ending.strip(".")
        nnunet.write(item, out, dataset_id=7, name="Stones", file_ending=ending)
        path = nnunet.finalize(out, dataset_id=7, name="Stones", file_ending=ending, modality="CT", description="d")
        doc = json.loads(path.read_text())
        assert path.parent.name == "Dataset007_Stones"
        assert set(nnunet.REQUIRED_FIELDS) <= set(doc)
        assert doc["channel_names"] == {"0": "CT"} and doc["labels"] == {"background": 0, "lesion": 1}
        assert doc["numTraining"] == 1 and doc["file_ending"] == ending
        assert (path.parent / "imagesTr" / f"case_s000_0000{ending}").is_file()
        assert (path.parent / "labelsTr" / f"case_s000{ending}").is_file()


def test_atomic_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    write_bytes(tmp_path / "a" / "x.bin", b"1")
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "a" / "y.nii.gz") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.bin"]
    # a temp file no journal lists (another program's) is never removed; see test_output_safety
    (tmp_path / "a" / ".z.png.123-abcd.tmp").write_bytes(b"not ours")
    assert remove_stale_temps(tmp_path) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [".z.png.123-abcd.tmp", "x.bin"]


def test_derived_uids_are_valid_reproducible_and_distinct() -> None:
    from pydicom.uid import UID

    a, b = deid.derived_uid("root1", "item", "sop"), deid.derived_uid("root1", "item", "study")
    assert a == deid.derived_uid("root1", "item", "sop") and a != b
    assert a != deid.derived_uid("root2", "item", "sop")
    assert deid.derived_uid("r", "ab", "c") != deid.derived_uid("r", "a", "bc")  # parts cannot run together
    assert len(a) <= 64 and UID(a).is_valid
