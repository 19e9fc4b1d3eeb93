"""PS3.15 Basic Profile de-identification of DICOM templates and the UIDs of derived DICOM:
a template stuffed with every attribute of Table E.1-1 that pydicom knows (values in sequences,
overlay, curve and private groups too) leaves no identifying value; the whole pydicom test
corpus is written or refused with a clear error; UIDs come from a random per-export root."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian

from lesion_studio.core.errors import ConfigError
from lesion_studio.core.export import deid, dicom_derived, safe_private
from lesion_studio.core.export.item import ExportItem

ROOT = "0123456789abcdef0123456789abcdef"


def _item(item_id: str = "case_s000") -> ExportItem:
    image = np.arange(12 * 16, dtype=np.float32).reshape(12, 16) - 100
    return ExportItem(item_id=item_id, image=image, mask=(image > 0).astype(np.uint8),
                      geometry=((0.5, 0.5), (1.0, 1.0), (1.0, 0.0, 0.0, 1.0)), spacing_mm=(0.5, 0.5),
                      modality="CT", png_offset=1024, model_description="texture model")


# -- the table ---------------------------------------------------------------------------------
def test_the_table_is_table_e1_1_with_its_actions() -> None:
    table = deid.basic_profile()
    assert len(table.exact) > 600 and table.release  # the whole table, not a hand-picked list
    expected = {  # PS3.15 Table E.1-1, Basic Profile column
        "PatientName": "Z", "PatientID": "Z/D", "PatientBirthDate": "Z", "StudyDate": "Z", "AccessionNumber": "Z",
        "InstitutionName": "X/Z/D", "OtherPatientIDs": "X", "SOPInstanceUID": "U", "StudyInstanceUID": "U",
        "FrameOfReferenceUID": "U", "ClinicalTrialSponsorName": "D", "ProtocolName": "X/D",
        "TimezoneOffsetFromUTC": "X", "ReferencedImageSequence": "X/Z/U*",
    }
    assert {k: table.code_for(tag_for_keyword(k)) for k in expected} == expected
    assert table.code_for(0x50020010) == "X" and table.code_for(0x60023000) == "X"  # curves, overlay data
    assert table.code_for(tag_for_keyword("Modality")) is None  # not every attribute is identifying
    assert "PatientName" in deid.ZERO and "OtherPatientIDs" in deid.REMOVE and "SOPInstanceUID" in deid.NEW_UID


# -- the PHI-stuffed template ------------------------------------------------------------------
_INTS = {"US": 31337, "SS": -31337, "UL": 3133731, "SL": -3133731, "SV": 31337313373, "UV": 31337313373,
         "FL": 31337.5, "FD": 31337.25}


def _phi_value(tag: int, vr: str):
    """A value that says where it came from: PHI<tag> for text, recognisable numbers and UIDs."""
    marker = f"PHI{tag:08X}"
    if vr in ("AE", "CS", "SH"):
        return marker[:16]
    if vr in ("LO", "LT", "ST", "UC", "UT", "PN", "UR"):
        return marker + "^Secret" if vr == "PN" else f"{marker} secret text"
    if vr == "DA":
        return "19710203"
    if vr == "TM":
        return "112233"
    if vr == "DT":
        return "19710203112233"
    if vr == "AS":
        return "042Y"
    if vr in ("DS", "IS"):
        return "31337"
    if vr == "UI":
        return f"1.2.826.0.1.3680043.2.1143.{tag}"
    if vr == "AT":
        return 0x00100010
    if vr in _INTS:
        return _INTS[vr]
    return marker.encode("ascii") + b"\x00"  # OB, OW, OD, OF, OL, OV, UN: even length


def _nested_phi() -> Dataset:
    inner = Dataset()
    inner.PatientName = "PHINESTED^Secret"
    inner.LocalNamespaceEntityID = "PHINESTED General Hospital"
    inner.TextValue = "PHINESTED free text"
    return inner


def _stuffed_elements(ds: Dataset) -> dict[int, object]:
    """Every exact tag of the table known to pydicom, with a PHI value; returns tag -> value."""
    stuffed = {}
    for tag in sorted(deid.basic_profile().exact):
        if not keyword_for_tag(tag) or tag >> 16 in (0x0000, 0x0002) or tag >> 16 >= 0xFFFA:
            continue  # command / file meta groups and digital-signature trailers belong elsewhere
        vr = dictionary_VR(tag).split(" or ")[0]
        value = Sequence([_nested_phi()]) if vr == "SQ" else _phi_value(tag, vr)
        ds.add_new(tag, vr, value)
        stuffed[tag] = value
    return stuffed


def _stuffed_template(path: Path) -> tuple[Path, dict[int, object]]:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    stuffed = _stuffed_elements(ds)
    kept = Dataset()  # a sequence the table keeps: the table is applied inside it too
    kept.CodeValue, kept.CodingSchemeDesignator, kept.CodeMeaning = "T-D3000", "SRT", "Chest"
    assert _stuffed_elements(kept) == stuffed  # the same values: found by tag at any depth
    ds.AnatomicRegionSequence = Sequence([kept])
    context = Dataset()  # a text value inside the Acquisition Context Sequence (X/Z)
    context.TextValue = "PHICONTEXT patient said"
    ds.AcquisitionContextSequence = Sequence([context])
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = "PHIISSUER St Elsewhere"
    ds.IssuerOfPatientIDQualifiersSequence = Sequence([issuer])
    ds.IssuerOfAccessionNumberSequence = Sequence([issuer])
    for group in (0x6000, 0x6002):  # overlays: description, label, comments, data
        ds.add_new((group << 16) | 0x0022, "LO", "PHIOVERLAY description")
        ds.add_new((group << 16) | 0x1500, "LO", "PHIOVERLAY label")
        ds.add_new((group << 16) | 0x4000, "LT", "PHIOVERLAY comments")
        ds.add_new((group << 16) | 0x3000, "OW", b"PHIOVERLAYDATA..")
    ds.add_new(0x50002500, "LO", "PHICURVE label")  # curves
    ds.add_new(0x50003000, "OW", b"PHICURVEDATA")
    ds.add_new(0x00290010, "LO", "ACME PRIVATE")  # private block
    ds.add_new(0x00291010, "LO", "PHIPRIVATE patient note")
    ds.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # a class UID: kept
    ds.save_as(path, enforce_file_format=True)
    return path, stuffed


def _survivors(raw: bytes, written: Dataset, stuffed: dict[int, object]) -> list[str]:
    found = []
    for tag, value in stuffed.items():
        if isinstance(value, str) and value.encode("ascii") in raw and not value.isdigit() and len(value) > 8:
            found.append(f"{keyword_for_tag(abs(tag))} (bytes)")
    for elem in written.iterall():
        original = stuffed.get(int(elem.tag))
        if original is None or elem.VR == "SQ" or elem.value in (None, "", b""):
            continue
        if str(elem.value) == str(original):
            found.append(keyword_for_tag(elem.tag))
    for marker in (b"PHINESTED", b"PHICONTEXT", b"PHIISSUER", b"PHIOVERLAY", b"PHICURVE", b"PHIPRIVATE",
                   b"Secret", b"secret", b"1.2.826.0.1.3680043.2.1143."):
        if marker in raw:
            found.append(marker.decode())
    return found


def test_phi_stuffed_template_leaves_no_survivor(tmp_path: Path) -> None:
    template, stuffed = _stuffed_template(tmp_path / "phi.dcm")
    assert len(stuffed) > 550  # every table attribute pydicom knows, at the top level and inside a sequence
    raw_template = template.read_bytes()
    assert b"PHIOVERLAY" in raw_template and b"PHINESTED" in raw_template  # the test would see them
    path = dicom_derived.write(_item(), tmp_path / "out", uid_root=ROOT, template=template)[0]
    raw = path.read_bytes()
    written = pydicom.dcmread(path)
    assert _survivors(raw, written, stuffed) == []
    assert not any(0x5000 <= e.tag.group <= 0x60FF and e.tag.group >> 8 in (0x50, 0x60) for e in written.iterall())
    assert not any(e.tag.is_private for e in written.iterall())
    for keyword in ("PatientName", "PatientID", "StudyDate", "AccessionNumber"):  # Z: present, empty
        assert keyword in written and written.data_element(keyword).value in ("", None), keyword
    assert written.ClinicalTrialSponsorName == "ANONYMIZED"  # D: a dummy value
    assert written.AnatomicRegionSequence[0].CodeMeaning == "Chest"  # non-identifying content stays
    assert written.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert written.PatientIdentityRemoved == "YES"
    assert written.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert deid.basic_profile().release in written.DeidentificationMethod


def test_the_same_attack_through_deidentify_directly(tmp_path: Path) -> None:
    template, stuffed = _stuffed_template(tmp_path / "phi.dcm")
    ds = deid.deidentify(pydicom.dcmread(template), uid_secret="secret")
    out = tmp_path / "direct.dcm"
    ds.save_as(out, enforce_file_format=True)
    assert _survivors(out.read_bytes(), pydicom.dcmread(out), stuffed) == []


def test_names_dates_and_unknown_attributes_the_table_misses_are_removed() -> None:
    ds = Dataset()
    missed = {"SecondaryReviewerName": "Doe^Jane", "EvaluatorName": "Roe^Rick", "SecondaryReviewDate": "20240229",
              "SecondaryReviewTime": "101010", "StudyUpdateDateTime": "20240229101010",
              "IssuerOfAccessionNumberSequence": None}
    table = deid.basic_profile()
    assert all(table.code_for(tag_for_keyword(k)) is None for k in missed)  # the table keeps them
    for keyword, value in missed.items():
        if value is not None:
            setattr(ds, keyword, value)
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = "St Elsewhere"
    ds.IssuerOfAccessionNumberSequence = Sequence([issuer])
    ds.add_new(0x00089998, "LO", "unknown public attribute")
    ds.Modality, ds.BodyPartExamined = "CT", "CHEST"
    out = deid.deidentify(ds, uid_secret="s")
    assert [k for k in missed if k in out] == [] and 0x00089998 not in out
    assert out.Modality == "CT" and out.BodyPartExamined == "CHEST"  # what the table keeps, stays


def test_uids_are_replaced_consistently_and_retain_uids_keeps_them() -> None:
    def source() -> Dataset:
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ref = Dataset()
        ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        ds.AnatomicRegionSequence = Sequence([ref])
        return ds

    original = source()
    a = deid.deidentify(source(), uid_secret="one")
    assert a.SOPInstanceUID != original.SOPInstanceUID and pydicom.uid.UID(a.SOPInstanceUID).is_valid
    assert a.AnatomicRegionSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID  # references still resolve
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert deid.deidentify(source(), uid_secret="one").SOPInstanceUID == a.SOPInstanceUID
    assert deid.deidentify(source(), uid_secret="two").SOPInstanceUID != a.SOPInstanceUID
    kept = deid.deidentify(source(), uid_secret="one", retain_uids=True)
    assert kept.SOPInstanceUID == original.SOPInstanceUID and kept.StudyInstanceUID == original.StudyInstanceUID
    assert "113110" in [c.CodeValue for c in kept.DeidentificationMethodCodeSequence]
    with pytest.raises(ValueError, match="uid_secret"):
        deid.deidentify(source(), uid_secret="")


def test_retain_safe_private_keeps_only_declared_safe_private_attributes() -> None:
    def source() -> Dataset:
        ds = Dataset()
        ds.add_new(0x00290010, "LO", "ACME SAFE")
        ds.add_new(0x00291001, "DS", "2.5")  # declared safe below
        ds.add_new(0x00291002, "LO", "PHI name")  # not declared
        ds.add_new(0x00310010, "LO", "VENDOR X")
        ds.add_new(0x00311005, "LO", "listed by the caller")
        ds.add_new(0x00311006, "LO", "PHI other")
        declaration = Dataset()
        declaration.PrivateGroupReference = 0x0029
        declaration.PrivateCreatorReference = "ACME SAFE"
        declaration.BlockIdentifyingInformationStatus = "MIXED"
        declaration.NonidentifyingPrivateElements = [0x01]
        ds.PrivateDataElementCharacteristicsSequence = Sequence([declaration])
        return ds

    assert not any(e.tag.is_private for e in deid.deidentify(source(), uid_secret="s").iterall())  # default
    kept = deid.deidentify(source(), uid_secret="s", retain_safe_private=True,
                           safe_private=[(0x0031, "VENDOR X", 0x05)])
    private = {int(e.tag) for e in kept if e.tag.is_private}
    assert private == {0x00290010, 0x00291001, 0x00310010, 0x00311005}
    assert "113111" in [c.CodeValue for c in kept.DeidentificationMethodCodeSequence]


def test_retain_safe_private_uses_the_built_in_table_e3_10_1_by_creator_and_offset() -> None:
    def source() -> Dataset:
        ds = Dataset()
        ds.PatientName = "Doe^Jane"
        ds.add_new(0x00190010, "LO", "GEMS_ACQU_01")  # block 0x10
        ds.add_new(0x00190011, "LO", "OTHER VENDOR ")  # block 0x11
        ds.add_new(0x00191023, "DS", "39.375")  # Table E.3.10-1: GEMS_ACQU_01 (0019,xx23) Table Speed
        ds.add_new(0x00191030, "LO", "Doe^Jane")  # same creator, not listed
        ds.add_new(0x00191123, "DS", "1.0")  # the listed offset under another creator
        ds.add_new(0x70530010, "LO", "Philips PET Private Group")
        ds.add_new(0x70531000, "DS", "0.00123")  # SUV Factor
        item = Dataset()  # inside a sequence too
        item.add_new(0x00190012, "LO", "GEMS_ACQU_01")
        item.add_new(0x00191224, "DS", "12.5")  # Mid Scan Time, block 0x12
        item.add_new(0x00191225, "LO", "PHI")
        ds.AnatomicRegionSequence = Sequence([item])
        return ds

    kept = deid.deidentify(source(), uid_secret="s", retain_safe_private=True)
    private = {int(e.tag): e.value for e in kept if e.tag.is_private}
    assert private == {0x00190010: "GEMS_ACQU_01", 0x00191023: "39.375",
                       0x70530010: "Philips PET Private Group", 0x70531000: "0.00123"}
    nested = {int(e.tag) for e in kept.AnatomicRegionSequence[0] if e.tag.is_private}
    assert nested == {0x00190012, 0x00191224}
    removed = deid.deidentify(source(), uid_secret="s")  # option off: every private attribute goes
    assert not any(e.tag.is_private for e in removed.iterall())
    assert all(row.vr and row.meaning and row.group % 2 == 1 and 0 <= row.offset <= 0xFF
               for row in safe_private.SAFE_PRIVATE_TABLE)


# -- templates: refused with a clear error, or written ------------------------------------------
def _corpus() -> list[Path]:
    return [Path(p) for p in get_testdata_files() if Path(p).is_file()]


def test_every_pydicom_test_file_is_written_or_refused_clearly(tmp_path: Path) -> None:
    files = _corpus()
    assert len(files) > 200
    written, refused = 0, 0
    for path in files:  # ~3 s for the whole corpus: no need for a slow marker
        try:
            out = dicom_derived.write(_item(), tmp_path, uid_root=ROOT, template=path)[0]
        except dicom_derived.TemplateError as exc:
            assert exc.path == path and "DICOM template" in exc.reason, (path, exc)
            refused += 1
            continue
        ds = pydicom.dcmread(out)
        assert ds.pixel_array.shape == (12, 16) and ds.PatientIdentityRemoved == "YES", path
        assert not any(e.tag.is_private for e in ds.iterall()), path
        assert [e.keyword for e in ds.iterall() if e.VR in ("DA", "DT", "TM") and e.value] == [], path
        written += 1
    assert written > 100 and refused > 50


def test_big_endian_non_image_non_dicom_and_burned_in_templates_are_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert pydicom.dcmread(get_testdata_file("MR_small_bigendian.dcm")).file_meta.TransferSyntaxUID == \
        ExplicitVRBigEndian
    cases = {
        Path(get_testdata_file("MR_small_bigendian.dcm")): "big-endian",
        Path(get_testdata_file("rtstruct.dcm")): "not an image",
    }
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    cases[png] = "not a DICOM file"
    burned = tmp_path / "burned.dcm"
    ds.BurnedInAnnotation = "YES"
    ds.save_as(burned)
    cases[burned] = "BurnedInAnnotation YES"
    for path, reason in cases.items():
        with pytest.raises(dicom_derived.TemplateError, match=reason) as info:
            dicom_derived.write(_item(), tmp_path / "out", uid_root=ROOT, template=path)
        assert info.value.path == path and str(path) in str(info.value)
    assert not (tmp_path / "out" / "dicom").exists()


def test_burned_in_annotation_is_preserved_and_yes_needs_consent(tmp_path: Path) -> None:
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for value in ("YES", "NO"):
        source.BurnedInAnnotation = value
        template = tmp_path / f"{value}.dcm"
        source.save_as(template)
        out = dicom_derived.write(_item(), tmp_path / value, uid_root=ROOT, template=template,
                                  allow_burned_in=True)[0]
        assert pydicom.dcmread(out).BurnedInAnnotation == value  # never rewritten to NO
    plain = dicom_derived.write(_item(), tmp_path / "none", uid_root=ROOT)[0]
    assert "BurnedInAnnotation" not in pydicom.dcmread(plain)  # unknown without a source: not claimed


def test_a_crafted_element_length_is_refused_without_allocating_it(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    path = tmp_path / "huge.dcm"
    ds.save_as(path, enforce_file_format=True)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"\x08\x00\x80\x00")  # InstitutionName (0008,0080), LO: 2-byte length in explicit VR
    assert raw[at + 4:at + 6] == b"LO"
    raw[at:at + 8] = b"\x08\x00\x80\x00UN\x00\x00"  # turn it into UN with a 4-byte length...
    raw[at + 8:at + 8] = struct.pack("<I", 0xFFFFFFF0)  # ...of ~4 GB
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        with pytest.raises(dicom_derived.TemplateError, match="could not be read|not an image"):
            dicom_derived.load_template(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


# -- UIDs ----------------------------------------------------------------------------------------
def _uids(path: Path) -> tuple[str, ...]:
    ds = pydicom.dcmread(path)
    return (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.FrameOfReferenceUID,
            ds.file_meta.MediaStorageSOPInstanceUID)


def test_two_exports_never_share_uids_and_a_rerun_is_byte_identical(tmp_path: Path) -> None:
    # Two datasets both named "phantom30", same seed, same item ids: only the export folder differs.
    first, second = tmp_path / "a" / "phantom30", tmp_path / "b" / "phantom30"
    paths = {}
    for out in (first, second):
        root = dicom_derived.uid_root(out)
        assert len(root) == 32 and (out / dicom_derived.UID_ROOT_FILE).read_text().strip() == root
        paths[out] = dicom_derived.write(_item(), out, uid_root=root)[0]
    a, b = _uids(paths[first]), _uids(paths[second])
    assert not set(a) & set(b)
    assert all(pydicom.uid.UID(u).is_valid and len(u) <= 64 for u in a)
    assert "phantom30" not in "".join(a)
    before = paths[first].read_bytes()
    again = dicom_derived.write(_item(), first, uid_root=dicom_derived.uid_root(first))[0]  # a rerun / resume
    assert again.read_bytes() == before
    other = dicom_derived.write(_item("case_s001"), first, uid_root=dicom_derived.uid_root(first))[0]
    assert _uids(other)[:2] == a[:2] and _uids(other)[2:] != a[2:]  # one study and series, new instances
    assert not [p for p in first.rglob("*") if ".tmp" in p.name]


def test_a_damaged_uid_root_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / dicom_derived.UID_ROOT_FILE).write_text("phantom30\n")
    with pytest.raises(ConfigError, match="UID root") as info:
        dicom_derived.uid_root(tmp_path)
    assert info.value.path == tmp_path / dicom_derived.UID_ROOT_FILE
