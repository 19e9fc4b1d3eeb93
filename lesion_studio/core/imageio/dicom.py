"""DICOM reading with pydicom (+ pylibjpeg decoders), SimpleITK/GDCM as a decoding fallback.

Single-frame and multi-frame files become one `MedicalImage`; `load_dicom_series` stacks a
folder holding one series. Pixels leave here in physical units (modality LUT / rescale
applied, CT in HU) with MONOCHROME1 inverted so that larger means denser.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from lesion_studio.core.errors import ImageLoadError, SeriesChoiceError
from lesion_studio.core.image import ImageSource, MedicalImage, Window
from lesion_studio.core.imageio.common import finish_pixels, luma_from_rgb
from lesion_studio.core.windowing import default_window, percentile_window, stored_window_problem

_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: Trailing bytes after the pixel data the header describes that are accepted as padding.
_MAX_PADDING_BYTES = 4096


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a folder: what a person needs to choose it."""

    series_uid: str
    modality: str
    description: str
    files: tuple[Path, ...]

    @property
    def n_files(self) -> int:
        return len(self.files)

    def label(self) -> str:
        desc = self.description or "no description"
        return f"{self.modality or '?'} · {desc} · {self.n_files} file(s) · {self.series_uid}"


# --------------------------------------------------------------------------------------------
# Reading datasets


def read_dataset(path: Path, stop_before_pixels: bool = False) -> Dataset:
    """Read a DICOM file; a file without preamble/meta gets a forced read before refusal."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
            except InvalidDicomError:
                ds = pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
                _fill_missing_transfer_syntax(ds)
                if "SOPClassUID" not in ds and not any(k in ds for k in _PIXEL_KEYWORDS):
                    raise ImageLoadError(
                        "not a DICOM file: no 'DICM' preamble/file meta, and a forced read "
                        "found no DICOM image attributes",
                        path,
                    ) from None
                return ds
    except ImageLoadError:
        raise
    except PermissionError as exc:
        raise ImageLoadError(f"cannot read the file: permission denied ({exc.strerror})", path) from exc
    except OSError as exc:
        raise ImageLoadError(f"cannot read the file: {exc.strerror or exc}", path) from exc
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise ImageLoadError(f"corrupt or truncated DICOM file: {exc}", path) from exc


def _fill_missing_transfer_syntax(ds: Dataset) -> None:
    """A forced read of a meta-less file: record the encoding the reader actually used."""
    if not hasattr(ds, "file_meta") or ds.file_meta is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.2")  # explicit big endian


def _transfer_syntax(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    return None if meta is None else meta.get("TransferSyntaxUID")


def _require_image(ds: Dataset, path: Path) -> None:
    if any(k in ds for k in _PIXEL_KEYWORDS):
        return
    sop = ds.get("SOPClassUID")
    kind = sop.name if isinstance(sop, UID) and sop.name else (str(sop) if sop else "unknown")
    raise ImageLoadError(f"not an image: {kind} object without pixel data", path)


# --------------------------------------------------------------------------------------------
# Pixel decoding


def _expected_native_bytes(ds: Dataset) -> int | None:
    """Bytes the header promises for uncompressed pixel data (None: encapsulated or unknown)."""
    ts = _transfer_syntax(ds)
    if ts is not None and ts.is_compressed or "PixelData" not in ds:
        return None
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if min(rows, cols, bits, samples, frames) < 1:
        return None  # pydicom refuses these itself
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric.startswith("YBR_FULL_422"):
        return frames * rows * cols * 2 * bits // 8  # two samples per pixel on average
    return (frames * rows * cols * samples * bits + 7) // 8


def _check_header_matches_data(ds: Dataset, path: Path) -> None:
    """Rows/Columns/BitsAllocated/frames must account for the stored pixel bytes (small
    trailing padding aside).

    pydicom (and GDCM) guess extra frames when there is a whole number of frames too many,
    so a wrong Rows or BitsAllocated = 1 over 16-bit data would load as a 2- or 16-frame
    volume; refuse instead.
    """
    expected = _expected_native_bytes(ds)
    if expected is None:
        return
    actual = len(ds.PixelData)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if actual < expected:
        raise ImageLoadError(f"truncated pixel data: {actual} bytes, the header needs {expected}", path)
    # trailing padding (MR_small_padded.dcm has 128 bytes) is ignored as pydicom does; more than
    # that (a whole frame: pydicom would invent frames) means the header is wrong
    if actual - expected >= min(expected // frames, _MAX_PADDING_BYTES) and actual - expected > 1:
        raise ImageLoadError(
            f"the header does not match the pixel data: {frames} frame(s) of "
            f"{int(ds.Rows)}×{int(ds.Columns)} × {int(ds.get('SamplesPerPixel', 1) or 1)} sample(s) at "
            f"BitsAllocated {int(ds.BitsAllocated)} need {expected} bytes, the file holds {actual} "
            f"(Rows, Columns, BitsAllocated or NumberOfFrames is wrong)",
            path,
        )


def _decode_raw(ds: Dataset, path: Path) -> np.ndarray:
    """Stored pixel values: `(frames, H, W)` or `(frames, H, W, 3)` for colour."""
    _check_header_matches_data(ds, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as pydicom_exc:  # the Rust decoders raise a BaseException on bad data
        reason = str(pydicom_exc)
        if "less than expected" in reason or "length" in reason.lower() and "expected" in reason:
            raise ImageLoadError(f"truncated pixel data: {reason}", path) from pydicom_exc
        arr = _decode_with_sitk(path)
        if arr is None:
            raise ImageLoadError(f"cannot decode pixel data: {reason}", path) from pydicom_exc
    arr = np.asarray(arr)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 1 and arr.ndim == 2 or samples > 1 and arr.ndim == 3:
        arr = arr[np.newaxis]
    expected_ndim = 3 if samples == 1 else 4
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if arr.ndim != expected_ndim or arr.shape[0] != n_frames or (rows, cols) != tuple(arr.shape[1:3]):
        raise ImageLoadError(
            f"decoded pixel array has shape {arr.shape}, which does not match the header's "
            f"{n_frames} frame(s) of {rows}×{cols} × {samples} sample(s)",
            path,
        )
    return arr


def _decode_with_sitk(path: Path) -> np.ndarray | None:
    """Stored values decoded by GDCM through SimpleITK, for syntaxes pylibjpeg cannot decode.

    GDCM applies Rescale Slope/Intercept itself (and by its own rules per SOP class), while
    `_rescale` applies the modality transform afterwards. So GDCM decodes a temporary copy
    without any rescale attributes: what comes back are stored values, rescaled exactly once.
    """
    import os
    import tempfile

    try:
        import SimpleITK as sitk

        work = read_dataset(path)
        for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence"):
            if keyword in work:
                del work[keyword]
        for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            for item in work.get(groups, None) or []:
                if "PixelValueTransformationSequence" in item:
                    del item.PixelValueTransformationSequence
        fd, name = tempfile.mkstemp(suffix=".dcm", prefix="lesion-studio-gdcm-")
        os.close(fd)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    work.save_as(name, enforce_file_format=True)
                except Exception:
                    work.save_as(name)
            image = sitk.ReadImage(name)
            return sitk.GetArrayFromImage(image)
        finally:
            os.unlink(name)
    except Exception:
        return None


def _to_grayscale(arr: np.ndarray, ds: Dataset, notes: list[str]) -> np.ndarray:
    """Colour samples (RGB, YBR, palette) to one channel by the ITU-R BT.601 luma rule."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
        notes.append("palette colour converted to grayscale (BT.601 luma of the RGB lookup)")
        return luma_from_rgb(arr)
    if arr.ndim == 4:
        notes.append(f"{photometric} colour converted to grayscale (BT.601 luma)")
        return luma_from_rgb(arr)
    return arr


def _frame_functional_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """First item of a functional-group sequence for a frame (per-frame, then shared)."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq is not None and len(seq) > index and sequence in seq[index]:
            items = seq[index][sequence].value
            if items:
                return items[0]
    return None


def _rescale(arr: np.ndarray, ds: Dataset) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Apply the modality LUT / rescale; returns float64 values and the linear map if any."""
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64), None
    values = arr.astype(np.float64)
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        return values * slope + intercept, (slope, intercept)
    transforms = [
        _frame_functional_item(ds, i, "PixelValueTransformationSequence") for i in range(values.shape[0])
    ]
    if any(t is not None for t in transforms):
        maps = []
        for i, t in enumerate(transforms):
            slope = float(t.get("RescaleSlope", 1.0)) if t is not None else 1.0
            intercept = float(t.get("RescaleIntercept", 0.0)) if t is not None else 0.0
            values[i] = values[i] * slope + intercept
            maps.append((slope, intercept))
        return values, maps[0] if len(set(maps)) == 1 else None
    return values, (1.0, 0.0)


def _stored_range(ds: Dataset, linear: tuple[float, float] | None, values: np.ndarray) -> tuple[float, float]:
    """The representable value range after rescale (MONOCHROME1 inverts within it)."""
    if linear is None or "BitsStored" not in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        return float(np.nanmin(values)), float(np.nanmax(values))
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        lo, hi = 0, 2**bits - 1
    slope, intercept = linear
    a, b = lo * slope + intercept, hi * slope + intercept
    return min(a, b), max(a, b)


def _dicom_window(ds: Dataset) -> Window | None:
    """The stored VOI window (first value when multi-valued), if valid."""
    source: Dataset | None = ds if "WindowCenter" in ds else _frame_functional_item(ds, 0, "FrameVOILUTSequence")
    if source is None or "WindowCenter" not in source or "WindowWidth" not in source:
        return None
    try:
        center = _first_float(source.WindowCenter)
        width = _first_float(source.WindowWidth)
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(center) and np.isfinite(width)) or width <= 0:
        return None
    return Window(center, width)


def _first_float(value: object) -> float:
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0]
    return float(value)


# --------------------------------------------------------------------------------------------
# Geometry


def _valid_pair(value: object) -> tuple[float, float] | None:
    try:
        pair = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    if len(pair) != 2 or not all(np.isfinite(pair)) or min(pair) <= 0:
        return None
    return pair  # type: ignore[return-value]


def _plane_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    """`(row_mm, col_mm)` from PixelSpacing (or ImagerPixelSpacing, or functional groups)."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in ds:
            pair = _valid_pair(ds[keyword].value)
            if pair is not None:
                return pair, keyword
            return None, f"{keyword} {list(ds[keyword].value or [])} is not a valid spacing"
    measures = _frame_functional_item(ds, 0, "PixelMeasuresSequence")
    if measures is not None and "PixelSpacing" in measures:
        pair = _valid_pair(measures.PixelSpacing)
        if pair is not None:
            return pair, "PixelMeasuresSequence"
    return None, None


def _orientation(ds: Dataset) -> np.ndarray | None:
    """3×3 matrix whose columns are the row direction, column direction and normal."""
    value = ds.get("ImageOrientationPatient")
    if value is None:
        item = _frame_functional_item(ds, 0, "PlaneOrientationSequence")
        value = None if item is None else item.get("ImageOrientationPatient")
    try:
        iop = np.array([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    if iop.shape != (6,) or not np.all(np.isfinite(iop)):
        return None
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    if np.linalg.norm(normal) < 1e-6:
        return None
    return np.stack([row, col, normal / np.linalg.norm(normal)], axis=1)


def _position(ds: Dataset, frame: int = 0) -> np.ndarray | None:
    value = ds.get("ImagePositionPatient")
    if value is None:
        item = _frame_functional_item(ds, frame, "PlanePositionSequence")
        value = None if item is None else item.get("ImagePositionPatient")
    try:
        pos = np.array([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return pos if pos.shape == (3,) and np.all(np.isfinite(pos)) else None


def _slice_spacing_from_tags(ds: Dataset) -> float | None:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(ds.get(keyword))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if np.isfinite(value) and value > 0:
            return value
    return None


# --------------------------------------------------------------------------------------------
# Assembling a MedicalImage


def _identifiers(ds: Dataset, path: Path, fmt: str, sop_uids: Iterable[str], notes: list[str]) -> ImageSource:
    ts = _transfer_syntax(ds)
    return ImageSource(
        path=path,
        format=fmt,
        patient_id=str(ds.get("PatientID")) if ds.get("PatientID") else None,
        study_uid=str(ds.get("StudyInstanceUID")) if ds.get("StudyInstanceUID") else None,
        series_uid=str(ds.get("SeriesInstanceUID")) if ds.get("SeriesInstanceUID") else None,
        sop_instance_uids=tuple(str(u) for u in sop_uids),
        series_description=str(ds.get("SeriesDescription")) if ds.get("SeriesDescription") else None,
        transfer_syntax=(ts.name or str(ts)) if ts is not None else None,
        notes=tuple(notes),
    )


def _display_metadata(ds: Dataset) -> dict:
    keys = ("PhotometricInterpretation", "BitsStored", "BodyPartExamined", "StudyDate", "Manufacturer", "SOPClassUID")
    out = {}
    for key in keys:
        if key in ds and ds.get(key) not in (None, ""):
            value = ds.get(key)
            out[key] = value.name if isinstance(value, UID) and value.name else str(value)
    return out


def _physical_pixels(ds: Dataset, path: Path, notes: list[str]) -> tuple[np.ndarray, Window | None]:
    """Decode, grayscale, rescale and orient polarity; returns float64 frames and the window."""
    raw = _to_grayscale(_decode_raw(ds, path), ds, notes)
    values, linear = _rescale(raw, ds)
    window = _dicom_window(ds)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        lo, hi = _stored_range(ds, linear, values)
        values = (lo + hi) - values
        if window is not None:
            window = Window(lo + hi - window.center, window.width)
        notes.append("MONOCHROME1 inverted so that larger values are denser")
    return values, window


def load_dicom_file(path: Path) -> MedicalImage:
    """One DICOM file (single- or multi-frame) as a `MedicalImage`."""
    try:
        return _load_dicom_file(path)
    except ImageLoadError:
        raise
    except Exception as exc:  # malformed attributes surface as many exception types
        raise ImageLoadError(f"invalid DICOM attributes: {type(exc).__name__}: {exc}", path) from exc


def _load_dicom_file(path: Path) -> MedicalImage:
    ds = read_dataset(path)
    _require_image(ds, path)
    notes: list[str] = []
    values, window = _physical_pixels(ds, path, notes)
    modality = str(ds.get("Modality", "") or "OT").upper()

    plane_spacing, spacing_note = _plane_spacing(ds)
    if spacing_note and plane_spacing is None:
        notes.append(f"spacing unknown: {spacing_note}")
    n_frames = values.shape[0]
    spacing: tuple[float, ...] | None
    if n_frames == 1:
        pixels = values[0]
        spacing = plane_spacing
    else:
        pixels = values
        slice_mm = _frame_slice_spacing(ds, n_frames)
        if plane_spacing is None:
            spacing = None
        else:
            if slice_mm is None:
                notes.append("slice spacing unknown; 1.0 mm assumed between frames")
                slice_mm = 1.0
            spacing = (slice_mm, *plane_spacing)

    return _assemble(
        ds, finish_pixels(pixels, path, notes), spacing, modality, window,
        _identifiers(ds, path, "dicom", [ds.get("SOPInstanceUID", "")], notes),
    )


def _assemble(
    ds: Dataset, pixels: np.ndarray, spacing: tuple[float, ...] | None, modality: str,
    window: Window | None, source: ImageSource,
) -> MedicalImage:
    """The MedicalImage of decoded pixels: stored window or a default, geometry from `ds`."""
    problem = stored_window_problem(window, pixels, modality) if window is not None else ""
    if window is None:
        window, window_source = default_window(pixels, modality)
    elif problem:  # e.g. a radiograph storing its detector's whole range: washed out
        window, window_source = percentile_window(pixels), "percentile"
        source = dataclasses.replace(source, notes=(*source.notes, problem))
    else:
        window_source = "dicom"
    orientation = _orientation(ds)
    origin = _position(ds, 0)
    return MedicalImage(
        pixels=pixels,
        spacing_mm=spacing,
        modality=modality,
        window=window,
        window_source=window_source,
        source=source,
        unit="HU" if modality == "CT" else "",
        origin_mm=tuple(origin) if origin is not None else None,  # type: ignore[arg-type]
        direction=tuple(orientation.ravel()) if orientation is not None else None,
        metadata=_display_metadata(ds),
    )


def _frame_slice_spacing(ds: Dataset, n_frames: int) -> float | None:
    orientation = _orientation(ds)
    positions = [_position(ds, i) for i in range(n_frames)]
    if orientation is not None and all(p is not None for p in positions) and n_frames > 1:
        along = np.array([float(p @ orientation[:, 2]) for p in positions])  # type: ignore[operator]
        steps = np.abs(np.diff(along))
        if np.all(steps > 1e-6):
            return float(np.median(steps))
    return _slice_spacing_from_tags(ds)


# --------------------------------------------------------------------------------------------
# Series folders


def is_dicom_file(path: Path) -> bool:
    """Cheap check: the 'DICM' marker after the 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def scan_series(folder: Path) -> list[SeriesInfo]:
    """Every image series under `folder` (DICOMDIR and non-image objects skipped)."""
    if not folder.is_dir():
        raise ImageLoadError("not a folder", folder)
    groups: dict[str, list[Path]] = defaultdict(list)
    first: dict[str, Dataset] = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        if not is_dicom_file(file):
            continue
        try:
            ds = read_dataset(file, stop_before_pixels=True)
        except ImageLoadError:
            continue
        media = ds.file_meta.get("MediaStorageSOPClassUID") if getattr(ds, "file_meta", None) else None
        if media == _MEDIA_STORAGE_DIRECTORY or "Rows" not in ds:
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or f"no-series-uid:{file.parent}")
        groups[uid].append(file)
        first.setdefault(uid, ds)
    return [
        SeriesInfo(
            series_uid=uid,
            modality=str(first[uid].get("Modality", "") or ""),
            description=str(first[uid].get("SeriesDescription", "") or ""),
            files=tuple(files),
        )
        for uid, files in groups.items()
    ]


def load_dicom_series(folder: Path, series_uid: str | None = None) -> MedicalImage:
    """Stack one series from a folder, sorted by ImagePositionPatient then InstanceNumber.

    A folder with several series raises `SeriesChoiceError` listing them unless `series_uid`
    picks one; a folder with one file of one series loads as that file.
    """
    series = scan_series(folder)
    if not series:
        raise ImageLoadError("the folder holds no DICOM image files", folder)
    if series_uid is None and len(series) > 1:
        listing = "; ".join(s.label() for s in series)
        raise SeriesChoiceError(f"the folder holds {len(series)} series, choose one: {listing}", folder, series)
    chosen = series[0] if series_uid is None else next((s for s in series if s.series_uid == series_uid), None)
    if chosen is None:
        raise ImageLoadError(f"series {series_uid} is not in the folder", folder)
    if chosen.n_files == 1:
        return load_dicom_file(chosen.files[0])

    datasets = [read_dataset(f) for f in chosen.files]
    for f, ds in zip(chosen.files, datasets):
        _require_image(ds, f)
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise ImageLoadError("multi-frame files inside a series folder: open the file itself", f)
    order, slice_mm, notes = _sort_slices(datasets, chosen.files, folder)
    datasets = [datasets[i] for i in order]
    files = [chosen.files[i] for i in order]
    shape = (int(datasets[0].Rows), int(datasets[0].Columns))
    planes = []
    window = None
    for f, ds in zip(files, datasets):
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise ImageLoadError(
                f"slice size {int(ds.Rows)}×{int(ds.Columns)} differs from the series' {shape[0]}×{shape[1]}", f
            )
        slice_notes: list[str] = []
        values, slice_window = _physical_pixels(ds, f, slice_notes)
        planes.append(values[0])
        window = window or slice_window
        for n in slice_notes:
            if n not in notes:
                notes.append(n)
    volume = finish_pixels(np.stack(planes), folder, notes)
    ref = datasets[0]
    modality = str(ref.get("Modality", "") or "OT").upper()
    plane_spacing, _ = _plane_spacing(ref)
    spacing = None if plane_spacing is None else (slice_mm, *plane_spacing)
    source = _identifiers(ref, folder, "dicom-series", [ds.get("SOPInstanceUID", "") for ds in datasets], notes)
    return _assemble(ref, volume, spacing, modality, window, source)


def _sort_slices(datasets: list[Dataset], files: tuple[Path, ...], folder: Path) -> tuple[list[int], float, list[str]]:
    """Slice order (position along the normal, then InstanceNumber) and the slice spacing."""
    notes: list[str] = []
    instance = [int(ds.get("InstanceNumber", 0) or 0) for ds in datasets]
    orientation = _orientation(datasets[0])
    positions = [_position(ds) for ds in datasets]
    if orientation is not None and all(p is not None for p in positions):
        along = [float(p @ orientation[:, 2]) for p in positions]  # type: ignore[operator]
        order = sorted(range(len(datasets)), key=lambda i: (along[i], instance[i], str(files[i])))
        steps = np.diff([along[i] for i in order])
        if np.any(np.abs(steps) < 1e-4):
            raise ImageLoadError(
                "several files share one slice position (mixed echoes or duplicates): "
                "the folder is not a single stack",
                folder,
            )
        slice_mm = float(np.median(steps))
        if np.max(steps) - np.min(steps) > 0.01 * slice_mm + 1e-3:
            notes.append(f"slice spacing varies ({steps.min():.3g}–{steps.max():.3g} mm); median used")
        return order, slice_mm, notes
    order = sorted(range(len(datasets)), key=lambda i: (instance[i], str(files[i])))
    slice_mm = _slice_spacing_from_tags(datasets[0])
    if slice_mm is None:
        notes.append("slice positions unknown; 1.0 mm assumed between slices")
        slice_mm = 1.0
    else:
        notes.append("slice positions unknown; sorted by InstanceNumber")
    return order, slice_mm, notes
