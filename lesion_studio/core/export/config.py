"""The batch-export TOML config: what to synthesize from which dataset, into which formats.

`load_batch_config(path)` checks every key and value against `BATCH_SCHEMA` with
`core.config_schema` (the one validation layer of every config), then the files it names and
the rules that tie keys together, and raises one `ConfigError` listing EVERY problem as
`FILE:LINE: section.key: reason`. Relative paths are resolved against the config file's
folder. See docs/batch_export.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_studio.core.augmentation_plan import P0_TARGETS_PER_IMAGE, P0_VARIANTS_PER_IMAGE, REMOVE_PROBABILITY
from lesion_studio.core.config_schema import Problems, Setting, check_tables, load_toml
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.model_catalog import CLASSICAL_MODELS, MODES_BY_FAMILY, builtin_models_dir

#: Classical methods a `[models]` key may name instead of a checkpoint (no weights, SPEC §4).
CLASSICAL_FAMILIES = tuple(name for name, _ in CLASSICAL_MODELS)
#: What a config gets when it names no method: the shipped methods that beat the learned demo
#: models on held-out real images (docs/benchmarks.md, realism).
DEFAULT_INPAINT_METHOD = "real-nodule"
DEFAULT_REMOVE_METHOD = "auto-fill"

FORMATS = ("png", "nifti", "nnunet", "coco", "dicom")
DIAMETER_KINDS = ("bank", "fixed", "uniform", "empirical", "file")
CLASSIC_PRESETS = ("none", "P2", "P4")
MASK_SOURCES = ("bank", "generator", "real")
NNUNET_FILE_ENDINGS = (".nii.gz", ".png")
DEVICES = ("auto", "cpu", "cuda")

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
    outpaint_checkpoint: Path | str | None = None  # a checkpoint, or a classical outpainter's name
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


def _ordered(value: list[int]) -> str | None:
    return None if value[0] <= value[1] else f"low must not exceed high, got {value}"


def _not_blank(value: str) -> str | None:
    return None if value.strip() else "is required"


def _nnunet_name(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_\-]+", value) else f"must be letters, digits, '_' or '-', got {value!r}"


#: Every key of a batch config (checked by `core.config_schema`, like every other config).
BATCH_SCHEMA: dict[str, dict[str, Setting]] = {
    "": {"seed": Setting("int", 0, ge=0)},
    "input": {
        "dataset": Setting("path", check=_not_blank, doc="dataset folder (docs/dataset_format.md)"),
        "splits": Setting("list[str]", [], choices=("train", "val", "test"), doc="empty: every split"),
        "mask_bank": Setting("path", ""),
        "dicom_template": Setting("path", ""),
    },
    "synthesis": {
        "per_image": Setting("int", P0_VARIANTS_PER_IMAGE, ge=1, le=MAX_PER_IMAGE),
        "inpaint": Setting("bool", True),
        "replace_remove": Setting("bool", True),
        "outpaint_fraction": Setting("float", 0.0, ge=0.0, le=1.0),
        "targets_per_image": Setting("list[int]", list(P0_TARGETS_PER_IMAGE), ge=1, le=MAX_TARGETS_PER_IMAGE,
                                     min_len=2, max_len=2, check=_ordered, doc="[low, high] lesions per image"),
        "remove_probability": Setting("float", REMOVE_PROBABILITY, ge=0.0, le=1.0),
        "mask_source": Setting("str", "bank", choices=MASK_SOURCES),
    },
    "diameters": {
        "kind": Setting("str", "bank", choices=DIAMETER_KINDS),
        "values_mm": Setting("list[float]", None, gt=0.0, min_len=1, doc="millimetres"),
        "range_mm": Setting("list[float]", None, gt=0.0, min_len=2, max_len=2, check=_ordered, doc="millimetres"),
        "file": Setting("path", ""),
    },
    "models": {
        "inpaint": Setting("str", "", doc=f"a checkpoint or a classical method (default {DEFAULT_INPAINT_METHOD})"),
        "remove": Setting("str", "", doc=f"a checkpoint or a classical method (default {DEFAULT_REMOVE_METHOD})"),
        "outpaint": Setting("str", "", doc="an outpaint checkpoint or \"texture-fill\" (required when "
                                          "synthesis.outpaint_fraction > 0)"),
        "shape": Setting("path", ""),
        "device": Setting("str", "auto", choices=DEVICES),
    },
    "classic": {"preset": Setting("str", "none", choices=CLASSIC_PRESETS)},
    "output": {
        "dir": Setting("path", check=_not_blank),
        "formats": Setting("list[str]", ["png"], choices=FORMATS, min_len=1),
        "nnunet_id": Setting("int", 501, ge=1, le=999),
        "nnunet_name": Setting("str", "LesionStudio", check=_nnunet_name),
        "nnunet_file_ending": Setting("str", ".nii.gz", choices=NNUNET_FILE_ENDINGS),
        "include_real": Setting("bool", False),
    },
}


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def load_batch_config(path: str | Path, *, check_files: bool = True) -> BatchConfig:
    """Read and validate a batch config; ConfigError listing every problem (line and key)."""
    path = Path(path)
    data, text = load_toml(path, what="batch config")
    return parse_batch_config(data, path=path, text=text, check_files=check_files)


def parse_batch_config(data: dict[str, Any], *, path: Path, text: str = "", check_files: bool = True) -> BatchConfig:
    """Validate parsed TOML (see `load_batch_config`): every key against `BATCH_SCHEMA`, then
    the files it names and the rules that tie keys together, all into one `ConfigError`."""
    path = Path(path).resolve()
    base = path.parent
    p = Problems(path, text, "batch config")
    t = check_tables(data, BATCH_SCHEMA, p)
    values: dict[str, Any] = {}

    def as_path(table: str, key: str, *, required: bool = False, must_exist: bool = True,
                what: str = "file") -> Path | None:
        value = t[table].get(key) or ""
        if value == "":
            if required and not any(q.name == f"{table}.{key}" for q in p.items):
                p.add(f"{table}.{key}", "is required")
            return None
        resolved = _resolve(base, value)
        if must_exist and check_files and not resolved.exists() and not _checkpoint_exists(resolved, what):
            p.add(f"{table}.{key}", f"{what} not found: {resolved}")
        return resolved

    values["seed"] = t[""]["seed"]
    values["dataset"] = as_path("input", "dataset", what="dataset folder")
    values["splits"] = tuple(t["input"]["splits"])
    values["mask_bank"] = as_path("input", "mask_bank", what="mask bank")
    values["dicom_template"] = as_path("input", "dicom_template", what="DICOM template")

    synthesis = t["synthesis"]
    for key in ("per_image", "inpaint", "replace_remove", "outpaint_fraction", "remove_probability", "mask_source"):
        values[key] = synthesis[key]
    values["targets_per_image"] = tuple(synthesis["targets_per_image"])
    if not (values["inpaint"] or values["replace_remove"] or values["outpaint_fraction"] > 0):
        p.add("synthesis", "nothing to do: enable inpaint, replace_remove or a positive outpaint_fraction")

    diameters = t["diameters"]
    given = data.get("diameters") if isinstance(data.get("diameters"), dict) else {}
    kind, values_mm, range_mm = diameters["kind"], diameters["values_mm"], diameters["range_mm"]
    file = as_path("diameters", "file", what="diameter file")
    if kind == "fixed" and "values_mm" not in given:
        p.add("diameters.kind", "'fixed' needs diameters.values_mm = [..]")
    if kind == "uniform" and "range_mm" not in given:
        p.add("diameters.kind", "'uniform' needs diameters.range_mm = [low, high]")
    if kind == "file" and "file" not in given:
        p.add("diameters.kind", "'file' needs diameters.file = \"...\"")
    if kind == "file" and file is not None and check_files and file.exists():
        try:
            read_diameter_file(file)
        except ConfigError as exc:
            p.add("diameters.file", exc.reason)
    values["diameters"] = DiameterSpec(kind=kind, values_mm=tuple(values_mm or ()),
                                       range_mm=None if range_mm is None else (range_mm[0], range_mm[1]), file=file)

    def as_method(key: str, default: str | None) -> Path | str | None:
        value = t["models"][key]
        if value in CLASSICAL_FAMILIES:
            return value
        if value == "":
            return default
        if "/" not in value and "\\" not in value:
            resolved = _resolve(base, value)
            bundled = builtin_models_dir() / value  # a bundled model by name, e.g. "ct_nodule_outpaint"
            if not resolved.exists() and not _checkpoint_exists(resolved, "checkpoint") and \
                    _checkpoint_exists(bundled, "checkpoint"):
                return bundled
            if check_files and not resolved.exists() and not _checkpoint_exists(resolved, "checkpoint"):
                p.add(f"models.{key}", f"{value!r} is neither a checkpoint ({resolved} not found), a bundled model "
                                       f"nor a classical method ({', '.join(CLASSICAL_FAMILIES)})")
                return default
        return as_path("models", key, what="checkpoint")

    values["inpaint_checkpoint"] = as_method("inpaint", DEFAULT_INPAINT_METHOD)
    values["remove_checkpoint"] = as_method("remove", DEFAULT_REMOVE_METHOD)
    values["outpaint_checkpoint"] = (as_method("outpaint", None) if t["models"]["outpaint"] else
                                     as_path("models", "outpaint", required=values["outpaint_fraction"] > 0,
                                             what="checkpoint"))
    outpaint = values["outpaint_checkpoint"]
    if isinstance(outpaint, str) and "outpaint" not in MODES_BY_FAMILY.get(outpaint, ()):
        outpainters = [name for name in CLASSICAL_FAMILIES if "outpaint" in MODES_BY_FAMILY.get(name, ())]
        p.add("models.outpaint", f"{outpaint!r} does not outpaint; classical outpainters: {', '.join(outpainters)}, "
                                 "or give an outpaint checkpoint")
    values["shape_checkpoint"] = as_path("models", "shape", required=values["mask_source"] == "generator",
                                         what="checkpoint")
    values["device"] = t["models"]["device"]
    values["classic_preset"] = t["classic"]["preset"]

    output = t["output"]
    values["output_dir"] = as_path("output", "dir", must_exist=False)
    values["formats"] = tuple(dict.fromkeys(output["formats"]))
    for key in ("nnunet_id", "nnunet_name", "nnunet_file_ending", "include_real"):
        values[key] = output[key]

    p.raise_if_any()
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
