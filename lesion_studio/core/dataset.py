"""The lesion-studio dataset folder: `images/`, `masks/`, optional `location_maps/`, and
`dataset.json` listing every case. See docs/dataset_format.md for the full description.

`validate_dataset` reads everything and reports EVERY problem it finds, each with the file it
concerns, instead of stopping at the first; `load_dataset` returns the cases of a valid
dataset (or raises ConfigError carrying the whole report).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from lesion_studio.core.errors import ConfigError, ImageLoadError

DATASET_FILE = "dataset.json"
DATASET_FORMAT = "lesion-studio-dataset"
DATASET_VERSION = 1
SPLITS = ("train", "val", "test")
IMAGE_DIR, MASK_DIR, LOCATION_DIR = "images", "masks", "location_maps"
RASTER_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
ITK_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd")
NUMPY_SUFFIXES = (".npy",)
REQUIRED_CASE_KEYS = ("id", "image", "mask", "patient_id", "has_lesion", "split")


# -- reading one 2D array --------------------------------------------------------------------
def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def read_array(path: str | Path) -> np.ndarray:
    """A 2D array from PNG/TIFF/JPEG/BMP, NIfTI/MHA/NRRD (one slice) or `.npy`, as stored.

    Raises ImageLoadError with the path and the reason (missing, unreadable, not 2D).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError("file not found", path)
    suffix = _suffix(path)
    try:
        if suffix in RASTER_SUFFIXES:
            data = np.fromfile(path, dtype=np.uint8)
            array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
            if array is None:
                raise ImageLoadError("not a readable image (decoding failed)", path)
        elif suffix in NUMPY_SUFFIXES:
            array = np.load(path, allow_pickle=False)
        elif suffix in ITK_SUFFIXES:
            import SimpleITK as sitk  # a project dependency, only needed for these formats

            array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
            if array.ndim == 3 and array.shape[0] == 1:
                array = array[0]
        else:
            raise ImageLoadError(f"unsupported file type {suffix!r}", path)
    except ImageLoadError:
        raise
    except Exception as exc:  # decoders raise many types; all mean "unreadable"
        raise ImageLoadError(f"unreadable: {exc}", path) from exc
    if array.ndim != 2:
        raise ImageLoadError(f"expected a single-channel 2D image, got shape {array.shape}", path)
    return array


def read_spacing(path: str | Path) -> tuple[float, float] | None:
    """`(row_mm, col_mm)` stored in a NIfTI/MHA/NRRD file, None for other formats."""
    path = Path(path)
    if _suffix(path) not in ITK_SUFFIXES:
        return None
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    spacing_xyz = reader.GetSpacing()
    return (float(spacing_xyz[1]), float(spacing_xyz[0]))


# -- the records ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseRecord:
    """One case of a dataset, paths resolved against the dataset root."""

    case_id: str
    image_path: Path
    mask_path: Path | None
    patient_id: str
    has_lesion: bool
    split: str
    location_map_path: Path | None = None
    spacing_mm: tuple[float, float] | None = None  # override, else the dataset's default
    extra: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Dataset:
    """A validated dataset: its root, description, default spacing and cases."""

    root: Path
    description: str
    cases: tuple[CaseRecord, ...]
    spacing_mm: tuple[float, float] | None = None
    modality: str | None = None

    def split(self, name: str) -> tuple[CaseRecord, ...]:
        return tuple(c for c in self.cases if c.split == name)

    def spacing_for(self, case: CaseRecord) -> tuple[float, float] | None:
        """The case's spacing: its override, the dataset default, or the file's own."""
        if case.spacing_mm is not None:
            return case.spacing_mm
        if self.spacing_mm is not None:
            return self.spacing_mm
        return read_spacing(case.image_path)

    def read_image(self, case: CaseRecord) -> np.ndarray:
        """The case's image as float32 `(H, W)` in its stored units."""
        return read_array(case.image_path).astype(np.float32)

    def read_mask(self, case: CaseRecord) -> np.ndarray:
        """The case's lesion mask as bool `(H, W)`; all False for a lesion-free case without one."""
        if case.mask_path is None:
            return np.zeros(read_array(case.image_path).shape, dtype=bool)
        return read_array(case.mask_path) > 0

    def read_location_map(self, case: CaseRecord) -> np.ndarray | None:
        """The case's location map as float32 (a probability or 0/1 map), or None."""
        if case.location_map_path is None:
            return None
        return read_array(case.location_map_path).astype(np.float32)


# -- validation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetProblem:
    """One problem: how bad, which file, why, and (when known) which case."""

    severity: str  # "error" or "warning"
    path: Path
    reason: str
    case_id: str | None = None

    def __str__(self) -> str:
        case = f" [case {self.case_id}]" if self.case_id else ""
        return f"{self.severity}: {self.path}{case}: {self.reason}"


@dataclass(frozen=True)
class ValidationReport:
    """Every problem found in a dataset folder; `ok` when there is no error."""

    root: Path
    problems: tuple[DatasetProblem, ...]
    n_cases: int = 0

    @property
    def errors(self) -> tuple[DatasetProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[DatasetProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        head = (
            f"{self.root}: {self.n_cases} cases, {len(self.errors)} errors, "
            f"{len(self.warnings)} warnings"
        )
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


def _parse_spacing(value: Any) -> tuple[float, float] | None:
    """A valid `(row_mm, col_mm)` or raise ValueError."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"spacing_mm must be [row_mm, col_mm], got {value!r}")
    row_mm, col_mm = (float(v) for v in value)
    if not (math.isfinite(row_mm) and math.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise ValueError(f"spacing_mm must be two positive numbers, got {value!r}")
    return (row_mm, col_mm)


class _Collector:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[DatasetProblem] = []

    def error(self, path: Path, reason: str, case_id: str | None = None) -> None:
        self.problems.append(DatasetProblem("error", path, reason, case_id))

    def warning(self, path: Path, reason: str, case_id: str | None = None) -> None:
        self.problems.append(DatasetProblem("warning", path, reason, case_id))


def _resolve(root: Path, rel: Any, what: str, json_path: Path, case_id: str, out: _Collector) -> Path | None:
    """A case path inside the root, or None after reporting why it is not one."""
    if not isinstance(rel, str) or not rel.strip():
        out.error(json_path, f"{what} must be a relative path string, got {rel!r}", case_id)
        return None
    posix = PurePosixPath(rel.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts:
        out.error(json_path, f"{what} {rel!r} must be a relative path inside the dataset folder", case_id)
        return None
    return root.joinpath(*posix.parts)


def _read_checked(path: Path, what: str, case_id: str, out: _Collector) -> np.ndarray | None:
    try:
        return read_array(path)
    except ImageLoadError as exc:
        reason = "missing" if exc.reason == "file not found" else exc.reason
        out.error(path, f"{what}: {reason}", case_id)
        return None


def _parse_cases(doc: dict, json_path: Path, out: _Collector) -> tuple[list[dict], tuple[float, float] | None]:
    if doc.get("format") != DATASET_FORMAT:
        out.error(json_path, f"'format' must be {DATASET_FORMAT!r}, got {doc.get('format')!r}")
    version = doc.get("version")
    if not isinstance(version, int) or version < 1:
        out.error(json_path, f"'version' must be a positive integer, got {version!r}")
    elif version > DATASET_VERSION:
        out.error(json_path, f"dataset version {version} is newer than this program ({DATASET_VERSION})")
    if not isinstance(doc.get("description", ""), str):
        out.error(json_path, "'description' must be a string")
    default_spacing = None
    if doc.get("spacing_mm") is not None:
        try:
            default_spacing = _parse_spacing(doc["spacing_mm"])
        except (TypeError, ValueError) as exc:
            out.error(json_path, str(exc))
    cases = doc.get("cases")
    if not isinstance(cases, list):
        out.error(json_path, f"'cases' must be a list, got {type(cases).__name__}")
        return [], default_spacing
    if not cases:
        out.error(json_path, "'cases' is empty")
    return cases, default_spacing


def validate_dataset(root: str | Path) -> ValidationReport:
    """Check a dataset folder and report every problem, each with its file name."""
    root = Path(root)
    out = _Collector(root)
    json_path = root / DATASET_FILE
    if not root.is_dir():
        out.error(root, "dataset folder not found")
        return ValidationReport(root, tuple(out.problems))
    if not json_path.is_file():
        out.error(json_path, "missing: every dataset needs a dataset.json")
        return ValidationReport(root, tuple(out.problems))
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        out.error(json_path, f"unreadable: {exc}")
        return ValidationReport(root, tuple(out.problems))
    if not isinstance(doc, dict):
        out.error(json_path, "the top level must be a JSON object")
        return ValidationReport(root, tuple(out.problems))

    cases, _ = _parse_cases(doc, json_path, out)
    seen_ids: dict[str, int] = {}
    seen_images: dict[Path, str] = {}
    patient_splits: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    referenced: set[Path] = set()
    for index, case in enumerate(cases):
        label = f"#{index}"
        if not isinstance(case, dict):
            out.error(json_path, f"case {label} must be a JSON object")
            continue
        case_id = case.get("id") if isinstance(case.get("id"), str) and case.get("id") else label
        missing = [k for k in REQUIRED_CASE_KEYS if k not in case]
        if missing:
            out.error(json_path, f"case is missing {', '.join(missing)}", case_id)
        if case_id in seen_ids:
            out.error(json_path, f"duplicated case id (also case #{seen_ids[case_id]})", case_id)
        seen_ids.setdefault(case_id, index)
        patient = case.get("patient_id")
        if "patient_id" in case and (not isinstance(patient, str) or not patient):
            out.error(json_path, f"patient_id must be a non-empty string, got {patient!r}", case_id)
            patient = None
        split = case.get("split")
        if "split" in case and split not in SPLITS:
            out.error(json_path, f"split must be one of {SPLITS}, got {split!r}", case_id)
            split = None
        has_lesion = case.get("has_lesion")
        if "has_lesion" in case and not isinstance(has_lesion, bool):
            out.error(json_path, f"has_lesion must be true or false, got {has_lesion!r}", case_id)
            has_lesion = None
        if isinstance(patient, str) and isinstance(split, str):
            patient_splits[patient][split].append(case_id)
        if case.get("spacing_mm") is not None:
            try:
                _parse_spacing(case["spacing_mm"])
            except (TypeError, ValueError) as exc:
                out.error(json_path, str(exc), case_id)

        image = None
        image_path = _resolve(root, case.get("image"), "image", json_path, case_id, out) if "image" in case else None
        if image_path is not None:
            referenced.add(image_path)
            if image_path in seen_images:
                out.error(image_path, f"image listed twice (also case {seen_images[image_path]})", case_id)
            seen_images.setdefault(image_path, case_id)
            image = _read_checked(image_path, "image", case_id, out)
            if image is not None and not np.all(np.isfinite(image.astype(np.float64))):
                out.error(image_path, "image holds NaN or infinite values", case_id)

        mask_rel = case.get("mask")
        if "mask" in case and mask_rel is None:
            if has_lesion is True:
                out.error(json_path, "missing mask: has_lesion is true but mask is null", case_id)
        elif "mask" in case:
            mask_path = _resolve(root, mask_rel, "mask", json_path, case_id, out)
            if mask_path is not None:
                referenced.add(mask_path)
                mask = _read_checked(mask_path, "mask", case_id, out)
                if mask is not None:
                    if image is not None and mask.shape != image.shape:
                        out.error(mask_path, f"size mismatch: mask {mask.shape} vs image {image.shape}", case_id)
                    values = np.unique(mask)
                    if values.size > 2 or (values.size == 2 and values[0] != 0):
                        out.warning(mask_path, f"mask is not binary (values {values[:6].tolist()}...); "
                                    "every nonzero pixel counts as lesion", case_id)
                    n_lesion = int(np.count_nonzero(mask))
                    if has_lesion is True and n_lesion == 0:
                        out.error(mask_path, "empty positive mask: has_lesion is true but the mask is empty", case_id)
                    if has_lesion is False and n_lesion > 0:
                        out.error(mask_path, f"has_lesion is false but the mask has {n_lesion} lesion pixels", case_id)

        if case.get("location_map") is not None:
            loc_path = _resolve(root, case["location_map"], "location_map", json_path, case_id, out)
            if loc_path is not None:
                referenced.add(loc_path)
                loc = _read_checked(loc_path, "location map", case_id, out)
                if loc is not None:
                    if image is not None and loc.shape != image.shape:
                        out.error(loc_path, f"size mismatch: location map {loc.shape} vs image {image.shape}", case_id)
                    loc_f = loc.astype(np.float64)
                    if not np.all(np.isfinite(loc_f)) or np.any(loc_f < 0):
                        out.error(loc_path, "location map values must be finite and >= 0", case_id)
                    elif not np.any(loc_f > 0):
                        out.error(loc_path, "location map is empty: no place for a lesion", case_id)

    for patient, splits in sorted(patient_splits.items()):
        if len(splits) > 1:
            detail = "; ".join(f"{s}: {', '.join(ids)}" for s, ids in sorted(splits.items()))
            out.error(json_path, f"patient {patient!r} appears in several splits ({detail})")

    for folder in (IMAGE_DIR, MASK_DIR, LOCATION_DIR):
        directory = root / folder
        if directory.is_dir():
            for path in sorted(p for p in directory.rglob("*") if p.is_file()):
                if path not in referenced and not path.name.startswith("."):
                    out.warning(path, "file is not listed in dataset.json")
    return ValidationReport(root, tuple(out.problems), n_cases=len(cases))


def load_dataset(root: str | Path) -> Dataset:
    """Validate and load a dataset; ConfigError with the whole report when it has errors."""
    root = Path(root)
    report = validate_dataset(root)
    if not report.ok:
        raise ConfigError(f"invalid dataset:\n{report.format()}", root / DATASET_FILE)
    doc = json.loads((root / DATASET_FILE).read_text(encoding="utf-8"))
    default_spacing = _parse_spacing(doc["spacing_mm"]) if doc.get("spacing_mm") is not None else None
    records = []
    for case in doc["cases"]:
        extra = {k: v for k, v in case.items() if k not in REQUIRED_CASE_KEYS + ("location_map", "spacing_mm")}
        records.append(CaseRecord(
            case_id=case["id"],
            image_path=root / case["image"],
            mask_path=None if case["mask"] is None else root / case["mask"],
            patient_id=case["patient_id"],
            has_lesion=case["has_lesion"],
            split=case["split"],
            location_map_path=None if case.get("location_map") is None else root / case["location_map"],
            spacing_mm=None if case.get("spacing_mm") is None else _parse_spacing(case["spacing_mm"]),
            extra=extra,
        ))
    return Dataset(
        root=root, description=str(doc.get("description", "")), cases=tuple(records),
        spacing_mm=default_spacing, modality=doc.get("modality"),
    )


def write_dataset_json(
    root: str | Path,
    cases: Iterable[dict[str, Any]],
    *,
    description: str,
    spacing_mm: tuple[float, float] | None = None,
    modality: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `dataset.json` (sorted keys, 2-space indent: byte-identical for equal input)."""
    doc: dict[str, Any] = {
        "format": DATASET_FORMAT,
        "version": DATASET_VERSION,
        "description": description,
        "spacing_mm": None if spacing_mm is None else [float(spacing_mm[0]), float(spacing_mm[1])],
        "cases": list(cases),
    }
    if modality is not None:
        doc["modality"] = modality
    doc.update(extra or {})
    path = Path(root) / DATASET_FILE
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
