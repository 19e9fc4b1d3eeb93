"""Derived DICOM images: `dicom/ID.dcm`, Secondary Capture, marked synthetic, de-identified.

- new Study/Series/SOP Instance/Frame of Reference UIDs from the export's random UID root
  (`OUTPUT/.dicom_uid_root`, 128 random bits made on first use and kept) and the item id, via
  `pydicom.uid.generate_uid` with entropy sources: a resumed or re-run export into the same
  folder writes the same files, two exports never share UIDs, and no name or seed a stranger
  could guess goes into them;
- ImageType `DERIVED\\SECONDARY`, ConversionType `SYN` (synthetic image), and a
  DerivationDescription saying the image is synthetic and which model made it;
- with a template (`input.dicom_template`), its header is inherited after the PS3.15 Basic
  Profile de-identification in `deid`; without one, a minimal SC header is built. A template
  is refused (`TemplateError`, naming the file and the reason) when it is not a DICOM file
  (no "DICM" marker, nor a bare data set starting with group 0002/0008), big-endian, not an image (no Rows/Columns), or says
  BurnedInAnnotation YES (unless `allow_burned_in=True`; the value is then kept). Its pixel
  data is never read.
Pixels are the rounded values, stored signed 16-bit when negative (CT HU), else unsigned.
"""

from __future__ import annotations

import copy
import functools
import io
import os
import re
import secrets
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

from lesion_studio import __version__
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.export.atomic import temp_path, write_bytes
from lesion_studio.core.export.deid import deidentify, derived_uid
from lesion_studio.core.export.item import ExportItem

FOLDER = "dicom"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SYNTHETIC_MARKER = "SYNTHETIC"
UID_ROOT_FILE = ".dicom_uid_root"
_ROOT_PATTERN = re.compile(r"[0-9a-f]{32}")
#: Pixel-module attributes of a template that describe its own pixels, not ours.
_PIXEL_KEYWORDS = (
    "PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "RescaleIntercept",
    "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth", "NumberOfFrames", "PixelSpacing",
    "ImagerPixelSpacing", "LargestImagePixelValue", "SmallestImagePixelValue", "LossyImageCompression",
    "LossyImageCompressionRatio", "LossyImageCompressionMethod", "VOILUTSequence", "ModalityLUTSequence",
    "PixelPaddingValue", "ImagePositionPatient", "ImageOrientationPatient", "SliceLocation",
)


class TemplateError(ConfigError):
    """A DICOM template that cannot serve as the header of derived images."""


def uid_root(out_dir: Path) -> str:
    """The export's UID root: read from `out_dir/.dicom_uid_root`, or made (128 random bits) and
    stored there on first use. Creation is atomic and never overwrites, so concurrent ranks agree."""
    path = Path(out_dir) / UID_ROOT_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(path)
        try:
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(16) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # fails if another process made it first: theirs wins
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the export's DICOM UID root: {exc}", path) from exc
    if not _ROOT_PATTERN.fullmatch(text):
        raise ConfigError("not a DICOM UID root (32 lowercase hex digits expected); delete it to start a new "
                          "one (DICOM files exported before will then not be reproduced)", path)
    return text


def new_uid(root: str, item_id: str, what: str) -> str:
    """The UID of role `what` ("study", "series", "sop", "frame") for `item_id` under the export's root."""
    return derived_uid(root, "lesion-studio derived", item_id, what)


class _BoundedFile(io.FileIO):
    """A file whose reads never ask for more than what is left: a crafted element length
    (or a PNG parsed as DICOM) cannot make Python allocate gigabytes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "rb")
        self._size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size >= 0:
            size = min(size, max(0, self._size - self.tell()))
        return super().read(size)


def load_template(path: Path, *, allow_burned_in: bool = False) -> Dataset:
    """Read a template's header (never its pixels) and check it can serve; `TemplateError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise TemplateError("DICOM template not found (or not a file)", path)
    try:
        with _BoundedFile(path) as fh:
            head = fh.read(2)
            fh.seek(0)
            # Without the 128-byte preamble and "DICM", accept only a bare data set that starts like
            # one (group 0002 or 0008, little endian); anything else (a PNG...) is not parsed at all.
            bare = head in (b"\x02\x00", b"\x08\x00")
            try:
                ds = pydicom.dcmread(fh, stop_before_pixels=True)
            except InvalidDicomError:
                if not bare:
                    raise
                fh.seek(0)
                ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
    except InvalidDicomError as exc:
        raise TemplateError("DICOM template is not a DICOM file (no 'DICM' marker after the 128-byte "
                            "preamble, nor a bare data set)", path) from exc
    except Exception as exc:  # pydicom raises many types on damaged files
        raise TemplateError(f"DICOM template could not be read: {type(exc).__name__}: {exc}", path) from exc
    syntax = ds.file_meta.get("TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
    _, little = ds.original_encoding
    if syntax == ExplicitVRBigEndian or little is False:
        raise TemplateError("DICOM template is big-endian (Explicit VR Big Endian, retired); convert it to "
                            "little endian, e.g. with `dcmconv +te`", path)
    if "Rows" not in ds or "Columns" not in ds:
        kind = ds.get("SOPClassUID", None)
        what = getattr(kind, "name", None) or "an object without an image"
        raise TemplateError(f"DICOM template is not an image ({what}: no Rows/Columns); use an image of the "
                            "dataset's modality", path)
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if burned == "YES" and not allow_burned_in:
        raise TemplateError("DICOM template says BurnedInAnnotation YES: its images may carry patient text in "
                            "the pixels, which de-identification does not remove; pass allow_burned_in=True "
                            "only after checking the pixels of the exported images", path)
    return ds


def derivation_description(model_description: str) -> str:
    text = (f"{SYNTHETIC_MARKER} image: lesions synthesized by lesion-studio {__version__}"
            f" with {model_description or 'a generative model'}; not an acquired image")
    return text[:1024]  # ST holds 1024 characters


@functools.lru_cache(maxsize=4)
def _deidentified_template(key: tuple, uid_root: str, allow_burned_in: bool) -> Dataset:
    """The template's header without its pixel attributes, de-identified; read once per export
    (`key` holds the path, modification time and size, so an edited file is read again)."""
    ds = load_template(Path(key[0]), allow_burned_in=allow_burned_in)
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    return deidentify(ds, uid_secret=uid_root)


def build_dataset(item: ExportItem, *, uid_root: str, template: Path | None = None,
                  allow_burned_in: bool = False) -> Dataset:
    """The derived image as a pydicom Dataset (file meta included); `uid_root` from `uid_root()`."""
    burned_in = None
    if template is not None:
        stat = Path(template).stat() if Path(template).is_file() else None
        key = (str(template), stat and stat.st_mtime_ns, stat and stat.st_size)
        ds = copy.deepcopy(_deidentified_template(key, uid_root, allow_burned_in))
        burned_in = ds.get("BurnedInAnnotation", None)  # describes the source image: preserved
    else:
        ds = Dataset()
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                        "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"):
            setattr(ds, keyword, "")  # Type 2: present, empty
        ds.PatientIdentityRemoved = "YES"
    uids = {role: new_uid(uid_root, item.item_id, role) for role in ("study", "series", "sop", "frame")}
    # Every synthetic image of one export shares a study and series; instances differ.
    uids["study"] = new_uid(uid_root, "", "study")
    uids["series"] = new_uid(uid_root, "", "series")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = uids["sop"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = uids["sop"]
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.Modality = item.modality or "OT"
    ds.ConversionType = "SYN"  # PS3.3 C.8.6.1: synthetic image
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = derivation_description(item.model_description)
    ds.SeriesDescription = f"{SYNTHETIC_MARKER} lesion-studio export"
    if burned_in:
        ds.BurnedInAnnotation = burned_in  # the source's statement; without a template it is unknown
    elif "BurnedInAnnotation" in ds:
        del ds.BurnedInAnnotation
    ds.SeriesNumber = 999
    ds.InstanceNumber = int(item.provenance.get("instance_number", 1))
    ds.Manufacturer = "lesion-studio"
    ds.SoftwareVersions = __version__

    pixels = np.rint(item.image.astype(np.float64))
    signed = bool(pixels.min() < 0)
    info = np.iinfo(np.int16 if signed else np.uint16)
    stored = np.clip(pixels, info.min, info.max).astype(np.int16 if signed else np.uint16)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(v) for v in stored.shape)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    if item.spacing_mm is not None:
        ds.PixelSpacing = [float(item.spacing_mm[0]), float(item.spacing_mm[1])]  # row, column mm
    ds.add_new(0x7FE00010, "OW", stored.tobytes())  # Pixel Data, 16-bit words
    return ds


def write(item: ExportItem, out_dir: Path, *, uid_root: str, template: Path | None = None,
          allow_burned_in: bool = False) -> list[Path]:
    """Write `dicom/ID.dcm` under `out_dir` (atomically); returns its path in a list."""
    ds = build_dataset(item, uid_root=uid_root, template=template, allow_burned_in=allow_burned_in)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return [write_bytes(out_dir / FOLDER / f"{item.item_id}.dcm", buffer.getvalue())]
