"""The batch-export TOML config: what to synthesize from which dataset, into which formats.

`load_batch_config(path)` parses with `tomllib`, checks every key and value, and raises one
`ConfigError` listing EVERY problem as `FILE:LINE: section.key: reason` (the line comes
from a small scan of the TOML text for `key =` lines inside their `[section]`). Relative
paths are resolved against the config file's folder. See docs/batch_export.md.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_studio.core.augmentation_plan import P0_TARGETS_PER_IMAGE, P0_VARIANTS_PER_IMAGE, REMOVE_PROBABILITY
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.model_catalog import CLASSICAL_MODELS

#: Classical methods a `[models]` key may name instead of a checkpoint (no weights, SPEC §4).
CLASSICAL_FAMILIES = tuple(name for name, _ in CLASSICAL_MODELS)
#: What a config gets when it names no method: the shipped methods that beat the learned demo
#: models on held-out real images (docs/benchmarks.md, realism).
DEFAULT_INPAINT_METHOD = "real-nodule"
DEFAULT_REMOVE_METHOD = "auto-fill"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FORMATS = ("png", "nifti", "nnunet", "coco", "dicom")
DIAMETER_KINDS = ("bank", "fixed", "uniform", "empirical", "file")
CLASSIC_PRESETS = ("none", "P2", "P4")
MASK_SOURCES = ("bank", "generator", "real")
NNUNET_FILE_ENDINGS = (".nii.gz", ".png")
DEVICES = ("auto", "cpu", "cuda")

#: Every accepted key, by table ("" is the top level).
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "": ("seed", "input", "synthesis", "diameters", "models", "classic", "output"),
    "input": ("dataset", "splits", "mask_bank", "dicom_template"),
    "synthesis": ("per_image", "inpaint", "replace_remove", "outpaint_fraction", "targets_per_image",
                  "remove_probability", "mask_source"),
    "diameters": ("kind", "values_mm", "range_mm", "file"),
    "models": ("inpaint", "remove", "outpaint", "shape", "device"),
    "classic": ("preset",),
    "output": ("dir", "formats", "nnunet_id", "nnunet_name", "nnunet_file_ending", "include_real"),
}


#: Upper bounds that keep a typo (`per_image = 1000000000`) from planning billions of items:
#: the plan is built even for `--dry-run`.
MAX_PER_IMAGE = 10_000
MAX_TARGETS_PER_IMAGE = 100


@dataclass(frozen=True)
class DiameterSpec:
    """How new lesion sizes are drawn: `bank` keeps each bank mask's recorded size; `fixed`
    draws from `values_mm`; `uniform` from U[range_mm]; `empirical` from the dataset's own
    lesion diameters; `file` from a list of diameters in mm (txt/csv/json)."""

    kind: str = "bank"
    values_mm: tuple[float, ...] = ()
    range_mm: tuple[float, float] | None = None
    file: Path | None = None


@dataclass(frozen=True)
class BatchConfig:
    """A validated batch-export config; paths are absolute."""

    path: Path
    dataset: Path
    output_dir: Path
    inpaint_checkpoint: Path | str | None  # a checkpoint stem, or a classical family name
    seed: int = 0
    splits: tuple[str, ...] = ()  # empty: every split
    mask_bank: Path | None = None
    dicom_template: Path | None = None
    per_image: int = P0_VARIANTS_PER_IMAGE  # P0 §IV-A: 10 synthetic images per real image
    inpaint: bool = True
    replace_remove: bool = True
    outpaint_fraction: float = 0.0
    targets_per_image: tuple[int, int] = P0_TARGETS_PER_IMAGE  # P0 §IV-A: 1-3
    remove_probability: float = REMOVE_PROBABILITY
    mask_source: str = "bank"
    diameters: DiameterSpec = field(default_factory=DiameterSpec)
    outpaint_checkpoint: Path | None = None
    remove_checkpoint: Path | str | None = DEFAULT_REMOVE_METHOD
    shape_checkpoint: Path | None = None
    device: str = "auto"
    classic_preset: str = "none"
    formats: tuple[str, ...] = ("png",)
    nnunet_id: int = 501
    nnunet_name: str = "LesionStudio"
    nnunet_file_ending: str = ".nii.gz"
    include_real: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the manifest and `--dry-run`."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, DiameterSpec):
                value = {k: (str(v) if isinstance(v, Path) else v) for k, v in value.__dict__.items()}
            out[key] = value
        return out


# -- line numbers -------------------------------------------------------------------------------
_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-]+)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")


def key_lines(text: str) -> dict[str, int]:
    """`{"section.key": line}` for every `key = ...` line, and `{"section": line}` for tables."""
    lines: dict[str, int] = {}
    table = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        match = _TABLE.match(raw)
        if match:
            table = match.group(1)
            lines.setdefault(table, number)
            continue
        match = _KEY.match(raw)
        if match:
            key = match.group(1).strip('"')
            lines.setdefault(f"{table}.{key}" if table else key, number)
    return lines


class _Problems:
    def __init__(self, path: Path, lines: dict[str, int]) -> None:
        self.path, self.lines, self.items = path, lines, []

    def add(self, key: str, reason: str) -> None:
        line = self.lines.get(key) or self.lines.get(key.split(".")[0])
        where = f"{self.path}:{line}" if line else str(self.path)
        self.items.append(f"{where}: {key}: {reason}")


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def load_batch_config(path: str | Path, *, check_files: bool = True) -> BatchConfig:
    """Read and validate a batch config; ConfigError listing every problem (line and key)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("batch config not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"batch config cannot be read ({exc})", path) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path) from exc
    return parse_batch_config(data, path=path, text=text, check_files=check_files)


def parse_batch_config(data: dict[str, Any], *, path: Path, text: str = "", check_files: bool = True) -> BatchConfig:
    """Validate parsed TOML (see `load_batch_config`)."""
    path = Path(path).resolve()
    base = path.parent
    p = _Problems(path, key_lines(text))
    values: dict[str, Any] = {}

    for table, keys in KNOWN_KEYS.items():
        section = data if table == "" else data.get(table, {})
        if table and table in data and not isinstance(section, dict):
            p.add(table, "must be a table ([" + table + "])")
            continue
        for key in section:
            if key not in keys:
                name = f"{table}.{key}" if table else key
                p.add(name, f"unknown key (expected one of: {', '.join(keys)})")

    def get(table: str, key: str, default: Any = None) -> Any:
        section = data.get(table, {}) if table else data
        return section.get(key, default) if isinstance(section, dict) else default

    def as_int(table: str, key: str, default: int, low: int | None = None, high: int | None = None) -> int:
        value = get(table, key, default)
        name = f"{table}.{key}" if table else key
        if isinstance(value, bool) or not isinstance(value, int):
            p.add(name, f"must be an integer, got {value!r}")
            return default
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in {low}..{high}"
            p.add(name, f"must be {bounds}, got {value}")
            return default
        return value

    def as_bool(table: str, key: str, default: bool) -> bool:
        value = get(table, key, default)
        if not isinstance(value, bool):
            p.add(f"{table}.{key}", f"must be true or false, got {value!r}")
            return default
        return value

    def as_float(table: str, key: str, default: float, low: float, high: float) -> float:
        value = get(table, key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
            p.add(f"{table}.{key}", f"must be a number in [{low}, {high}], got {value!r}")
            return default
        return float(value)

    def as_choice(table: str, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = get(table, key, default)
        if value not in choices:
            p.add(f"{table}.{key}", f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
            return default
        return value

    def as_path(table: str, key: str, *, required: bool = False, must_exist: bool = True,
                what: str = "file") -> Path | None:
        value = get(table, key, "")
        name = f"{table}.{key}"
        if not isinstance(value, str):
            p.add(name, f"must be a path string, got {value!r}")
            return None
        if value == "":
            if required:
                p.add(name, "is required")
            return None
        resolved = _resolve(base, value)
        if must_exist and check_files and not resolved.exists() and not _checkpoint_exists(resolved, what):
            p.add(name, f"{what} not found: {resolved}")
        return resolved

    def as_numbers(table: str, key: str, n: int | None = None) -> tuple[float, ...] | None:
        value = get(table, key)
        name = f"{table}.{key}"
        if value is None:
            return None
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            p.add(name, f"must be a list of numbers, got {value!r}")
            return None
        if n is not None and len(value) != n:
            p.add(name, f"must hold {n} numbers, got {len(value)}")
            return None
        if not all(math.isfinite(v) and v > 0 for v in value):
            p.add(name, "every value must be a positive number (millimetres)")
            return None
        return tuple(float(v) for v in value)

    values["seed"] = as_int("", "seed", 0, low=0)
    values["dataset"] = as_path("input", "dataset", required=True, what="dataset folder")
    splits = get("input", "splits", [])
    if not isinstance(splits, list) or not all(s in ("train", "val", "test") for s in splits):
        p.add("input.splits", f"must be a list of 'train', 'val', 'test', got {splits!r}")
        splits = []
    values["splits"] = tuple(splits)
    values["mask_bank"] = as_path("input", "mask_bank", what="mask bank")
    values["dicom_template"] = as_path("input", "dicom_template", what="DICOM template")

    values["per_image"] = as_int("synthesis", "per_image", P0_VARIANTS_PER_IMAGE, low=1, high=MAX_PER_IMAGE)
    values["inpaint"] = as_bool("synthesis", "inpaint", True)
    values["replace_remove"] = as_bool("synthesis", "replace_remove", True)
    values["outpaint_fraction"] = as_float("synthesis", "outpaint_fraction", 0.0, 0.0, 1.0)
    values["remove_probability"] = as_float("synthesis", "remove_probability", REMOVE_PROBABILITY, 0.0, 1.0)
    values["mask_source"] = as_choice("synthesis", "mask_source", "bank", MASK_SOURCES)
    targets = get("synthesis", "targets_per_image", list(P0_TARGETS_PER_IMAGE))
    if (not isinstance(targets, list) or len(targets) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in targets)
            or not 1 <= targets[0] <= targets[1] <= MAX_TARGETS_PER_IMAGE):
        p.add("synthesis.targets_per_image",
              f"must be [low, high] with 1 <= low <= high <= {MAX_TARGETS_PER_IMAGE}, got {targets!r}")
        targets = list(P0_TARGETS_PER_IMAGE)
    values["targets_per_image"] = (int(targets[0]), int(targets[1]))
    if not (values["inpaint"] or values["replace_remove"] or values["outpaint_fraction"] > 0):
        p.add("synthesis", "nothing to do: enable inpaint, replace_remove or a positive outpaint_fraction")

    kind = as_choice("diameters", "kind", "bank", DIAMETER_KINDS)
    values_mm = as_numbers("diameters", "values_mm")
    range_mm = as_numbers("diameters", "range_mm", 2)
    file = as_path("diameters", "file", what="diameter file")
    if kind == "fixed" and values_mm is None and "values_mm" not in data.get("diameters", {}):
        p.add("diameters.kind", "'fixed' needs diameters.values_mm = [..]")
    if kind == "uniform":
        if range_mm is None and "range_mm" not in data.get("diameters", {}):
            p.add("diameters.kind", "'uniform' needs diameters.range_mm = [low, high]")
        elif range_mm is not None and range_mm[0] > range_mm[1]:
            p.add("diameters.range_mm", f"low must not exceed high, got {list(range_mm)}")
    if kind == "file" and file is None and "file" not in data.get("diameters", {}):
        p.add("diameters.kind", "'file' needs diameters.file = \"...\"")
    if kind == "file" and file is not None and check_files and file.exists():
        try:
            read_diameter_file(file)
        except ConfigError as exc:
            p.add("diameters.file", exc.reason)
    values["diameters"] = DiameterSpec(kind=kind, values_mm=values_mm or (), range_mm=range_mm, file=file)

    def as_method(key: str, default: str) -> Path | str | None:
        value = get("models", key, default)
        if isinstance(value, str) and value in CLASSICAL_FAMILIES:
            return value
        if value in ("", None):
            return default
        if isinstance(value, str) and check_files and "/" not in value and "\\" not in value:
            resolved = _resolve(base, value)
            if not resolved.exists() and not _checkpoint_exists(resolved, "checkpoint"):
                p.add(f"models.{key}", f"{value!r} is neither a checkpoint ({resolved} not found) nor a classical "
                                       f"method ({', '.join(CLASSICAL_FAMILIES)})")
                return default
        return as_path("models", key, what="checkpoint")

    values["inpaint_checkpoint"] = as_method("inpaint", DEFAULT_INPAINT_METHOD)
    values["remove_checkpoint"] = as_method("remove", DEFAULT_REMOVE_METHOD)
    values["outpaint_checkpoint"] = as_path("models", "outpaint", required=values["outpaint_fraction"] > 0,
                                            what="checkpoint")
    values["shape_checkpoint"] = as_path("models", "shape", required=values["mask_source"] == "generator",
                                         what="checkpoint")
    values["device"] = as_choice("models", "device", "auto", DEVICES)
    values["classic_preset"] = as_choice("classic", "preset", "none", CLASSIC_PRESETS)

    out_dir = as_path("output", "dir", required=True, must_exist=False)
    values["output_dir"] = out_dir
    formats = get("output", "formats", ["png"])
    if not isinstance(formats, list) or not formats or not all(f in FORMATS for f in formats):
        p.add("output.formats", f"must be a non-empty list of {', '.join(map(repr, FORMATS))}, got {formats!r}")
        formats = ["png"]
    values["formats"] = tuple(dict.fromkeys(formats))
    values["nnunet_id"] = as_int("output", "nnunet_id", 501, low=1, high=999)
    name = get("output", "nnunet_name", "LesionStudio")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        p.add("output.nnunet_name", f"must be letters, digits, '_' or '-', got {name!r}")
        name = "LesionStudio"
    values["nnunet_name"] = name
    values["nnunet_file_ending"] = as_choice("output", "nnunet_file_ending", ".nii.gz", NNUNET_FILE_ENDINGS)
    values["include_real"] = as_bool("output", "include_real", False)

    if p.items:
        raise ConfigError(
            f"{len(p.items)} problem(s) in the batch config:\n  " + "\n  ".join(p.items), path,
        )
    return BatchConfig(path=path, **values)


def _checkpoint_exists(path: Path, what: str) -> bool:
    """Checkpoints are named by stem: `run/final` stands for `final.safetensors` + `final.json`."""
    return what == "checkpoint" and path.with_name(path.name + ".safetensors").is_file()


def read_diameter_file(path: str | Path) -> tuple[float, ...]:
    """Diameters in mm from `.json` (a list, or `{"diameters_mm": [...]}`), `.csv` (a
    `diameter_mm` column) or text (one number per line, `#` comments)."""
    import csv
    import json

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the diameter file ({exc})", path) from exc
    values: list[Any]
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(text)
            values = doc.get("diameters_mm", []) if isinstance(doc, dict) else doc
        elif path.suffix.lower() == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
            if not rows or "diameter_mm" not in rows[0]:
                raise ConfigError("a CSV diameter file needs a 'diameter_mm' column", path)
            values = [float(r["diameter_mm"]) for r in rows if r["diameter_mm"].strip()]
        else:
            values = [float(line.split("#")[0]) for line in text.splitlines() if line.split("#")[0].strip()]
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"the diameter file holds something that is not a number ({exc})", path) from exc
    if not values or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values):
        raise ConfigError("the diameter file must list at least one positive diameter in mm", path)
    return tuple(float(v) for v in values)
