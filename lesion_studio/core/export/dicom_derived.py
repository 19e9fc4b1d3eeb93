"""Derived DICOM images: `dicom/ID.dcm`, Secondary Capture, marked synthetic, de-identified.

- new Study/Series/SOP Instance/Frame of Reference UIDs, derived deterministically from the
  export seed and item id (a re-run writes the same file; nothing links them to a patient);
- ImageType `DERIVED\\SECONDARY`, ConversionType `SYN` (synthetic image), and a
  DerivationDescription saying the image is synthetic and which model made it;
- with a template (`input.dicom_template`), its header is inherited after the PS3.15 Basic
  Profile de-identification in `deid`; without one, a minimal SC header is built.
Pixels are the rounded values, stored signed 16-bit when negative (CT HU), else unsigned.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from lesion_studio import __version__
from lesion_studio.core.export.atomic import write_bytes
from lesion_studio.core.export.deid import deidentify, hashed_uid
from lesion_studio.core.export.item import ExportItem

FOLDER = "dicom"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SYNTHETIC_MARKER = "SYNTHETIC"
#: Pixel-module attributes of a template that describe its own pixels, not ours.
_PIXEL_KEYWORDS = (
    "PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "RescaleIntercept",
    "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth", "NumberOfFrames", "PixelSpacing",
    "ImagerPixelSpacing", "LargestImagePixelValue", "SmallestImagePixelValue", "LossyImageCompression",
    "LossyImageCompressionRatio", "LossyImageCompressionMethod", "VOILUTSequence", "ModalityLUTSequence",
    "PixelPaddingValue", "ImagePositionPatient", "ImageOrientationPatient", "SliceLocation",
)


def new_uid(seed_text: str, item_id: str, what: str) -> str:
    """A `2.25.` UID from a hash of the export seed, item and role: new, yet reproducible."""
    return hashed_uid("lesion-studio", seed_text, item_id, what)


def derivation_description(model_description: str) -> str:
    text = (f"{SYNTHETIC_MARKER} image: lesions synthesized by lesion-studio {__version__}"
            f" with {model_description or 'a generative model'}; not an acquired image")
    return text[:1024]  # ST holds 1024 characters


def build_dataset(item: ExportItem, *, seed_text: str, template: Path | None = None) -> Dataset:
    """The derived image as a pydicom Dataset (file meta included)."""
    if template is not None:
        ds = pydicom.dcmread(template, force=True)
        for keyword in _PIXEL_KEYWORDS:
            if keyword in ds:
                delattr(ds, keyword)
        deidentify(ds, salt=seed_text)
    else:
        ds = Dataset()
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                        "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"):
            setattr(ds, keyword, "")  # Type 2: present, empty
        ds.PatientIdentityRemoved = "YES"
    uids = {role: new_uid(seed_text, item.item_id, role) for role in ("study", "series", "sop", "frame")}
    # Every synthetic image of one export shares a study and series; instances differ.
    uids["study"] = new_uid(seed_text, "", "study")
    uids["series"] = new_uid(seed_text, "", "series")
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
    ds.BurnedInAnnotation = "NO"
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


def write(item: ExportItem, out_dir: Path, *, seed_text: str, template: Path | None = None) -> list[Path]:
    ds = build_dataset(item, seed_text=seed_text, template=template)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return [write_bytes(out_dir / FOLDER / f"{item.item_id}.dcm", buffer.getvalue())]
