"""The study TOML (`lesion-studio study build study.toml`): schema, defaults and loading.

```toml
[study]
name = "CT nodules pilot"
out_dir = "ct-pilot"            # the folder handed to readers
# key = "ct-pilot.key.json"     # the answer key, outside out_dir (default: <out_dir>.key.json)
seed = 0
cases_per_class = 20            # N real and N synthetic lesions
field_of_view_mm = 40.0
size_bins_mm = [3, 6, 10, 20]   # [3, 6), [6, 10), [10, 20), [20, inf)
window = "CT lung"              # a preset, or "auto"; window_center / window_width override it
lesion_present = false          # also ask "lesion present?" (adds lesion-free patches)
allow_back = false

[real]
npz = "../shared/data/node21_ct_nodules/node21_ct_axial.npz"   # or: dataset = "my_dataset"

[synthetic]
models = ["real-nodule"]        # classical names or checkpoint stems
placement = "matched-site"      # remove a real lesion, insert at its site; or "lesion-free"
removal = "auto-fill"
```

Relative paths resolve against the TOML's folder. Validated by the shared config layer
(`core/config_schema.py`): every problem is reported at once with its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_studio.core.config_schema import Problems, Setting, check_tables, load_toml
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.windowing import CT_PRESETS

#: Default size bins (mm): the Fleischner / Lung-RADS steps for solid nodules (3, 6, 10 mm)
#: and a bin for masses of 20 mm and more.
DEFAULT_SIZE_BINS_MM = [3.0, 6.0, 10.0, 20.0]
PLACEMENTS = ("matched-site", "lesion-free")
REMOVALS = ("auto-fill", "texture-fill", "telea", "navier-stokes")
WINDOW_CHOICES = ("auto", *CT_PRESETS)
#: The reader app maps confidence to the number keys 1..9.
MAX_CONFIDENCE_LEVELS = 9


def _increasing(values: list[float]) -> str | None:
    if any(b <= a for a, b in zip(values, values[1:])):
        return f"must be strictly increasing, got {values}"
    return None


STUDY_SCHEMA: dict[str, dict[str, Setting]] = {
    "study": {
        "name": Setting("str", "reader study", doc="shown to readers"),
        "out_dir": Setting("path", doc="the study folder handed to readers (created)"),
        "key": Setting("path", None, nullable=True,
                       doc="the answer key JSON, outside out_dir (default: <out_dir>.key.json)"),
        "seed": Setting("int", 0, ge=0, doc="draws, synthesis seeds, crop jitter and reading order"),
        "cases_per_class": Setting("int", 20, ge=1, le=5000, doc="N real and N synthetic lesion patches"),
        "field_of_view_mm": Setting("float", 40.0, gt=0, le=500, doc="side of every patch (mm)"),
        "jitter_mm": Setting("float", None, nullable=True, ge=0,
                             doc="lesion offset from the patch centre, uniform ± (default: field of view / 8)"),
        "size_bins_mm": Setting("list[float]", list(DEFAULT_SIZE_BINS_MM), gt=0, min_len=1, check=_increasing,
                                doc="bin edges (mm) of the lesion diameter; the last bin is open"),
        "window": Setting("str", "auto", choices=WINDOW_CHOICES,
                          doc="one display window for every case: a preset, or auto (CT lung for CT, "
                              "1-99 % of all patches otherwise)"),
        "window_center": Setting("float", None, nullable=True, doc="overrides `window` (with window_width)"),
        "window_width": Setting("float", None, nullable=True, gt=0, doc="overrides `window` (with window_center)"),
        "lesion_present": Setting("bool", False, doc="also ask 'lesion present?' and add lesion-free patches"),
        "lesion_free_cases": Setting("int", None, nullable=True, ge=0, le=5000,
                                     doc="lesion-free patches when lesion_present (default: cases_per_class)"),
        "allow_back": Setting("bool", False, doc="may a reader return to an earlier case"),
        "confidence_levels": Setting("int", 5, ge=2, le=MAX_CONFIDENCE_LEVELS, doc="1 = guess ... N = certain"),
        "instructions": Setting("str", "", doc="shown to readers (default: a text for the questions asked)"),
    },
    "real": {
        "npz": Setting("path", None, nullable=True,
                       doc="a patch npz (images, masks, names, spacing_mm; series in series_uids or a "
                           "nodules.csv beside it)"),
        "dataset": Setting("path", None, nullable=True, doc="a lesion-studio dataset folder (images/, masks/)"),
        "splits": Setting("list[str]", [], choices=("train", "val", "test"),
                          doc="dataset splits to draw from (default: all)"),
        "modality": Setting("str", "", doc="CT, CR, DX, ... (default: the dataset's, or detected from the pixels)"),
        "exclude_library_series": Setting("bool", True,
                                          doc="leave out series whose nodules are in the bundled real-nodule "
                                              "library, and keep only its held-out split of LIDC series (a real "
                                              "and a synthetic case never show one nodule)"),
    },
    "synthetic": {
        "models": Setting("list[str]", ["real-nodule"], min_len=1,
                          doc="classical families (real-nodule) or checkpoint stems; cases split evenly"),
        "placement": Setting("str", "matched-site", choices=PLACEMENTS,
                             doc="matched-site: a real lesion is removed and a synthetic one of its size "
                                 "inserted at its centroid; lesion-free: inserted into lesion-free tissue"),
        "removal": Setting("str", "auto-fill", choices=REMOVALS, doc="the removal method of matched sites"),
        "device": Setting("str", "cpu", choices=("cpu", "cuda", "auto"), doc="where learned checkpoints run"),
    },
    "machine": {
        "epochs": Setting("int", 15, ge=1, le=500, doc="training epochs of the machine reader's CNN"),
        "max_train_per_class": Setting("int", 300, ge=4, le=100000,
                                       doc="training patches per class (from series not in the study)"),
    },
}


@dataclass(frozen=True)
class StudyConfig:
    """A validated study TOML; paths are absolute. See the module docstring for the keys."""

    out_dir: Path
    key_path: Path
    name: str = "reader study"
    seed: int = 0
    cases_per_class: int = 20
    field_of_view_mm: float = 40.0
    jitter_mm: float = 5.0
    size_bins_mm: tuple[float, ...] = tuple(DEFAULT_SIZE_BINS_MM)
    window: str = "auto"
    window_center: float | None = None
    window_width: float | None = None
    lesion_present: bool = False
    lesion_free_cases: int = 0
    allow_back: bool = False
    confidence_levels: int = 5
    instructions: str = ""
    real_npz: Path | None = None
    real_dataset: Path | None = None
    real_splits: tuple[str, ...] = ()
    modality: str = ""
    exclude_library_series: bool = True
    models: tuple[str, ...] = ("real-nodule",)
    placement: str = "matched-site"
    removal: str = "auto-fill"
    device: str = "cpu"
    machine_epochs: int = 15
    machine_max_train_per_class: int = 300
    source_toml: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings), for the answer key's design record."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "StudyConfig":
        """The inverse of `to_dict` (the machine reader rebuilds the design from the key)."""
        paths = ("out_dir", "key_path", "real_npz", "real_dataset", "source_toml")
        tuples = ("size_bins_mm", "real_splits", "models")
        kwargs: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name not in doc:
                continue
            value = doc[name]
            if name in paths:
                value = None if value is None else Path(value)
            elif name in tuples:
                value = tuple(value)
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"the study design record is incomplete: {exc}") from exc


def default_key_path(out_dir: Path) -> Path:
    """`<out_dir>.key.json`, beside the study folder (never inside it)."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".key.json")


def study_config_from_tables(tables: dict[str, dict[str, Any]], base: Path, problems: Problems,
                             source_toml: Path | None = None) -> StudyConfig | None:
    """A `StudyConfig` from validated tables, with the cross-key rules added to `problems`;
    None when anything is wrong (the caller raises `problems`)."""
    s, r, y, m = tables["study"], tables["real"], tables["synthetic"], tables["machine"]

    def resolve(value: str | None) -> Path | None:
        return None if value is None else (base / Path(value).expanduser()).resolve()

    out_dir = resolve(s.get("out_dir"))
    key = resolve(s.get("key"))
    npz, dataset = resolve(r.get("npz")), resolve(r.get("dataset"))
    if (npz is None) == (dataset is None):
        problems.add("real", "give exactly one of npz = \"...\" and dataset = \"...\"")
    if npz is not None and not npz.is_file():
        problems.add("real.npz", f"file not found: {npz}")
    if dataset is not None and not dataset.is_dir():
        problems.add("real.dataset", f"folder not found: {dataset}")
    if out_dir is not None:
        key = key if key is not None else default_key_path(out_dir)
        if key == out_dir or out_dir in key.parents:
            problems.add("study.key", f"the answer key must lie outside the study folder {out_dir}, got {key}")
    if (s["window_center"] is None) != (s["window_width"] is None):
        problems.add("study.window_center", "give window_center and window_width together")
    if r["splits"] and dataset is None:
        problems.add("real.splits", "splits apply to a dataset source only")
    if y["placement"] == "lesion-free" and npz is not None:
        problems.add("synthetic.placement", "lesion-free placement needs a dataset source (npz patches are "
                                            "centred on their nodule); use matched-site")
    if len(set(y["models"])) != len(y["models"]):
        problems.add("synthetic.models", f"a model is listed twice: {y['models']}")
    if problems or out_dir is None or key is None:
        return None
    fov = float(s["field_of_view_mm"])
    jitter = fov / 8.0 if s["jitter_mm"] is None else float(s["jitter_mm"])
    if jitter >= fov / 2:
        problems.add("study.jitter_mm", f"must be less than half the field of view ({fov / 2:g} mm), got {jitter:g}")
        return None
    n_free = 0
    if s["lesion_present"]:
        n_free = int(s["cases_per_class"]) if s["lesion_free_cases"] is None else int(s["lesion_free_cases"])
    return StudyConfig(
        out_dir=out_dir, key_path=key, name=s["name"], seed=int(s["seed"]),
        cases_per_class=int(s["cases_per_class"]), field_of_view_mm=fov, jitter_mm=jitter,
        size_bins_mm=tuple(float(v) for v in s["size_bins_mm"]), window=s["window"],
        window_center=s["window_center"], window_width=s["window_width"],
        lesion_present=bool(s["lesion_present"]), lesion_free_cases=n_free, allow_back=bool(s["allow_back"]),
        confidence_levels=int(s["confidence_levels"]), instructions=s["instructions"],
        real_npz=npz, real_dataset=dataset, real_splits=tuple(r["splits"]), modality=r["modality"],
        exclude_library_series=bool(r["exclude_library_series"]), models=tuple(y["models"]),
        placement=y["placement"], removal=y["removal"], device=y["device"],
        machine_epochs=int(m["epochs"]), machine_max_train_per_class=int(m["max_train_per_class"]),
        source_toml=source_toml,
    )


def study_config_from_dict(data: dict[str, Any], base_dir: str | Path, *, path: Path | None = None,
                           text: str = "") -> StudyConfig:
    """Validate `{section: {key: value}}` as a study TOML would be (the GUI dialog builds one);
    relative paths resolve against `base_dir`. ONE ConfigError listing every problem."""
    problems = Problems(path, text, what="study config")
    tables = check_tables(data, STUDY_SCHEMA, problems)
    problems.raise_if_any()
    config = study_config_from_tables(tables, Path(base_dir), problems, source_toml=path)
    problems.raise_if_any()
    assert config is not None
    return config


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study TOML; ONE ConfigError listing every problem with its line."""
    path = Path(path).resolve()
    data, text = load_toml(path, what="study config")
    return study_config_from_dict(data, path.parent, path=path, text=text)
