"""Downstream experiments (SPEC §3.7): real-only vs. real + synthetic at several counts, data
fractions sampled per patient, with/without classic augmentation, patient-grouped k-fold CV.

`run_experiment(config, progress=..., cancel=...)` is a plain callable: a progress callback
and a cancel token (anything with `.cancelled`, e.g. `models.progress.CancelToken`), so the
GUI job manager can run it as a job and the CLI (`lesion-studio evaluate`) runs it headless.
Every finished (condition, fold) is written to `folds/<condition>__fold<k>.json` at once;
a rerun with the same config skips those (resume per fold).

Results: `results.json` (format `lesion-studio-experiment`, version 1):
  {"format", "version", "config", "config_hash", "conditions": [names], "baseline",
   "folds": [{"condition", "fold", "metrics": {name: value}, "size_groups", "froc",
              "n_train_real", "n_train_synthetic", "n_test", "seconds", ...}],
   "summary": {condition: {metric: {"mean", "sd", "ci95": [lo, hi], "n",
                                    "p_vs_baseline", "significant"}}},
   "friedman": {metric: friedman_nemenyi(...) or {"skipped": reason}},
   "hard_example_mining": {...} (hem experiments only)}
plus `results.csv` (one row per condition × fold × metric) and `summary.csv`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.transform import resize

from lesion_studio.core.classic_augment import augment as classic_augment
from lesion_studio.core.classic_augment import PRESETS as _PRESETS
from lesion_studio.core.classic_augment import preset as classic_preset
from lesion_studio.core.dataset import CaseRecord, Dataset, load_dataset
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.metrics import (
    FROC_FP_RATES, froc_auc, froc_curve, froc_sensitivities, masks_to_boxes, mean_dice, node21_score,
    pixel_scores, region_counts, region_scores, size_group_recall, thresholded_counts, average_precision,
)
from lesion_studio.core.metrics.classification import image_level_scores
from lesion_studio.core.metrics.detection import image_scores_from_boxes
from lesion_studio.core.metrics.statistics import bootstrap_ci, friedman_nemenyi, mean_sd, t_test
from lesion_studio.models.detection import DEFAULT_MIN_PROB, detect_from_probability
from lesion_studio.models.segmentation import SEGMENTERS, build_loss, build_segmenter
from lesion_studio.models.segmentation.losses import LOSSES as _LOSSES
from lesion_studio.models.synthetic_sources import (
    CheckpointSynthesisSource, DatasetSyntheticSource, PhantomLesionPainter,
)

SEGMENTATION_LOSSES = tuple(_LOSSES)
CLASSIC_PRESETS = tuple(_PRESETS)
RESULTS_FORMAT = "lesion-studio-experiment"
RESULTS_VERSION = 1
RESULTS_FILE = "results.json"
#: 'segmentation' and 'detection' train the same network (the heatmap detector is the
#: segmenter's probability map, `models.detection`) and report the same full metric set;
#: 'hard_example_mining' runs P3 §III-D (`models.hard_example_mining`).
TASKS = ("segmentation", "detection", "hard_example_mining")
#: Metrics compared across conditions (t-test vs. baseline, Friedman + Nemenyi).
KEY_METRICS = ("pixel_f1", "dice", "region_f1", "region_f2", "region_recall", "froc_auc",
               "node21_score", "map50", "image_auc")


# -- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConditionConfig:
    """One arm of the experiment. `synthetic_count` synthetic images join the training set."""

    name: str
    synthetic_count: int = 0
    data_fraction: float = 1.0
    classic_augmentation: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.data_fraction <= 1.0:
            raise ConfigError(f"condition {self.name!r}: data_fraction must be in (0, 1], got {self.data_fraction}")
        if self.synthetic_count < 0:
            raise ConfigError(f"condition {self.name!r}: synthetic_count must be >= 0")


@dataclass(frozen=True)
class HemConfig:
    """P3 §III-D hard-example mining: N synthetic lesions at missed diameters, fine-tune, re-test."""

    n_synthetic: int = 100
    finetune_epochs: int = 10          # P3 §III-D
    finetune_lr: float = 1e-4          # P3 §III-D
    detection_threshold: float = 0.5   # a lesion counts as detected by a candidate scoring ≥ this


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one experiment needs; defaults follow P0 §IV-B (SPEC §3.1) except width/size."""

    name: str
    dataset: Path
    out_dir: Path
    task: str = "segmentation"
    conditions: tuple[ConditionConfig, ...] = (ConditionConfig("real"),)
    baseline: str = "real"
    synthetic_dataset: Path | None = None      # folder in the dataset format (batch export)
    synthetic_generator: str = "dataset"       # "dataset" | "checkpoint" | "phantom_painter" (cheap stand-in)
    synthesis_checkpoint: Path | None = None   # generator checkpoint for synthetic_generator = "checkpoint"
    folds: int = 5                             # P0: 5-fold CV
    val_fraction: float = 0.2                  # P0: 64/16/20 → 16/80 of the training patients
    seed: int = 0
    image_size_px: int = 256                   # P0: 256²
    arch: str = "multiresunet"
    base_channels: int = 32
    depth: int = 4
    norm: str = "batch"                        # "instance" suits a few steps on tiny data
    loss: str = "focal_tversky"
    epochs: int = 150                          # P0
    batch_size: int = 16                       # P0
    lr: float = 1e-3                           # P0 Adam
    lr_patience: int = 10                      # P0: halve lr when val loss stalls 10 epochs
    min_lr: float = 5e-4                       # P0
    classic_preset: str = "P2"
    prob_threshold: float = 0.5                # segmentation mask = p ≥ this
    min_prob: float = DEFAULT_MIN_PROB         # detection candidates
    device: str = "cpu"
    hem: HemConfig = field(default_factory=HemConfig)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; expected one of {TASKS}")
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2, got {self.folds}")
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names) or not names:
            raise ConfigError(f"condition names must be unique and non-empty, got {names}")
        if self.baseline not in names:
            raise ConfigError(f"baseline {self.baseline!r} is not one of the conditions {names}")
        if self.synthetic_generator not in ("dataset", "checkpoint", "phantom_painter"):
            raise ConfigError(f"unknown synthetic_generator {self.synthetic_generator!r}")
        if self.task == "hard_example_mining" and names != ["pretrained", "hem_finetuned"]:
            raise ConfigError("a hard_example_mining experiment has exactly the conditions "
                              "'pretrained' and 'hem_finetuned' (leave [[conditions]] out)")
        if self.task == "hard_example_mining" and self.synthetic_generator == "dataset":
            raise ConfigError("hard-example mining synthesizes at the missed diameters: set synthetic_generator "
                              "to 'checkpoint' (a trained generator) or 'phantom_painter' (cheap stand-in)")
        if self.synthetic_generator == "checkpoint" and self.synthesis_checkpoint is None:
            raise ConfigError("synthetic_generator = 'checkpoint' needs synthesis_checkpoint")
        needs_syn = any(c.synthetic_count > 0 for c in self.conditions) or self.task == "hard_example_mining"
        if needs_syn and self.synthetic_generator == "dataset" and self.synthetic_dataset is None \
                and self.task != "hard_example_mining":
            raise ConfigError("conditions with synthetic_count > 0 need synthetic_dataset "
                              "(or synthetic_generator = 'phantom_painter')")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dataset"] = str(self.dataset)
        d["out_dir"] = str(self.out_dir)
        d["synthetic_dataset"] = None if self.synthetic_dataset is None else str(self.synthetic_dataset)
        d["synthesis_checkpoint"] = None if self.synthesis_checkpoint is None else str(self.synthesis_checkpoint)
        return d

    def hash(self) -> str:
        """Hash of everything that changes results (not `out_dir`): resume only matching folds."""
        d = self.to_dict()
        d.pop("out_dir")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _grid_conditions(grid: dict) -> list[ConditionConfig]:
    """Cross product of `synthetic_counts × data_fractions × classic_augmentation`."""
    out = []
    for frac in grid.get("data_fractions", [1.0]):
        for aug in grid.get("classic_augmentation", [False]):
            for n in grid.get("synthetic_counts", [0]):
                name = ("real" if n == 0 else f"real+syn{n}") + ("" if frac == 1.0 else f"@{frac:g}") + \
                       ("+aug" if aug else "")
                out.append(ConditionConfig(name, int(n), float(frac), bool(aug)))
    return out


#: The sections of an experiment TOML file.
SECTIONS = ("experiment", "model", "training", "hem", "conditions", "grid")
#: The keys of the flat sections ([experiment], [model], [training]) and how each is checked:
#: (kind, (test, reason) or None). Kinds: "str", "path", "int", "float", "bool".
_POS, _NONNEG, _UNIT = (lambda v: v >= 1, "must be >= 1"), (lambda v: v >= 0, "must be >= 0"), \
    (lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]")
_FLAT_KEYS: dict[str, tuple[str, Any]] = {
    "name": ("str", (lambda v: bool(v.strip()), "must not be empty")),
    "dataset": ("path", None), "out_dir": ("path", None), "synthetic_dataset": ("path", None),
    "synthesis_checkpoint": ("path", None),
    "task": ("str", (lambda v: v in TASKS, f"must be one of {', '.join(TASKS)}")),
    "baseline": ("str", None),
    "synthetic_generator": ("str", (lambda v: v in ("dataset", "checkpoint", "phantom_painter"),
                                    "must be dataset, checkpoint or phantom_painter")),
    "folds": ("int", (lambda v: v >= 2, "must be >= 2")),
    "val_fraction": ("float", (lambda v: 0.0 < v < 1.0, "must be in (0, 1)")),
    "seed": ("int", _NONNEG),
    "image_size_px": ("int", (lambda v: 16 <= v <= 4096, "must be in [16, 4096]")),
    "arch": ("str", None), "norm": ("str", (lambda v: v in ("batch", "instance"), "must be batch or instance")),
    "loss": ("str", None),
    "base_channels": ("int", _POS), "depth": ("int", (lambda v: 1 <= v <= 8, "must be in [1, 8]")),
    "epochs": ("int", _POS), "batch_size": ("int", _POS),
    "lr": ("float", (lambda v: v > 0, "must be > 0")), "lr_patience": ("int", _NONNEG),
    "min_lr": ("float", _NONNEG),
    "classic_preset": ("str", None),
    "prob_threshold": ("float", (lambda v: 0.0 < v < 1.0, "must be in (0, 1)")),
    "min_prob": ("float", _UNIT),
    "device": ("str", (lambda v: v in ("auto", "cpu", "cuda"), "must be auto, cpu or cuda")),
}
_CONDITION_KEYS = {"name": ("str", (lambda v: bool(v.strip()), "must not be empty")),
                   "synthetic_count": ("int", _NONNEG),
                   "data_fraction": ("float", (lambda v: 0.0 < v <= 1.0, "must be in (0, 1]")),
                   "classic_augmentation": ("bool", None)}
_HEM_KEYS = {"n_synthetic": ("int", _POS), "finetune_epochs": ("int", _POS),
             "finetune_lr": ("float", (lambda v: v > 0, "must be > 0")), "detection_threshold": ("float", _UNIT)}
_GRID_KEYS = {"synthetic_counts": ("int", _NONNEG), "data_fractions": ("float", (lambda v: 0.0 < v <= 1.0,
                                                                                 "must be in (0, 1]")),
              "classic_augmentation": ("bool", None)}
_KIND_WORDS = {"str": "a string", "path": "a path (string)", "int": "an integer", "float": "a number",
               "bool": "true or false"}


def _did_you_mean(key: str, known: Any) -> str:
    import difflib

    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _checked(where: str, key: str, value: Any, spec: tuple[str, Any]) -> Any:
    """`value` of `where key` type- and range-checked (ints accepted as floats); `ConfigError` otherwise."""
    kind, test = spec
    ok = {"str": isinstance(value, str), "path": isinstance(value, str),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "bool": isinstance(value, bool)}[kind]
    if not ok:
        raise ConfigError(f"{where} {key}: expected {_KIND_WORDS[kind]}, got {value!r}")
    if kind == "float":
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} {key}: must be a finite number, got {value}")
    if test is not None and not test[0](value):
        raise ConfigError(f"{where} {key}: {test[1]}, got {value!r}")
    return value


def _table(where: str, table: Any, specs: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """A TOML table checked against `specs`: unknown keys named with a suggestion."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    out = {}
    for key, value in table.items():
        if key not in specs:
            raise ConfigError(f"{where} {key}: unknown setting{_did_you_mean(key, specs)}")
        out[key] = _checked(where, key, value, specs[key])
    return out


def experiment_config_from_dict(doc: dict, base_dir: Path = Path(".")) -> ExperimentConfig:
    """Build the config from a TOML-shaped dict; relative paths resolve against `base_dir`.

    Sections: `[experiment]` (name, task, dataset, synthetic_dataset, synthetic_generator,
    out_dir, folds, seed, baseline, ...), `[model]`, `[training]`, `[hem]`, and either
    `[[conditions]]` tables or a `[grid]` (synthetic_counts, data_fractions, classic_augmentation).
    Every key is type- and range-checked; an unknown section or key is a `ConfigError` naming
    it, with a "did you mean" suggestion.
    """
    for section in doc:
        if section not in SECTIONS:
            raise ConfigError(f"[{section}]: unknown section{_did_you_mean(section, SECTIONS)} "
                              f"(expected {', '.join(SECTIONS)})")
    flat: dict[str, Any] = {}
    for section in ("experiment", "model", "training"):
        flat.update(_table(f"[{section}]", doc.get(section, {}), _FLAT_KEYS))
    if "dataset" not in flat or "name" not in flat:
        raise ConfigError("[experiment] needs name and dataset")
    if "arch" in flat and flat["arch"] not in SEGMENTERS:
        raise ConfigError(f"arch: must be one of {', '.join(SEGMENTERS)}, got {flat['arch']!r}")
    if "loss" in flat and flat["loss"] not in SEGMENTATION_LOSSES:
        raise ConfigError(f"loss: must be one of {', '.join(SEGMENTATION_LOSSES)}, got {flat['loss']!r}")
    if "classic_preset" in flat and flat["classic_preset"].upper() not in CLASSIC_PRESETS:
        raise ConfigError(f"classic_preset: must be one of {', '.join(CLASSIC_PRESETS)}, got {flat['classic_preset']!r}")
    if flat.get("device") == "auto":
        from lesion_studio.core.device import resolve_device

        flat["device"] = resolve_device("auto")

    def path(value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base_dir / p).resolve()

    flat["dataset"] = path(flat["dataset"])
    flat["synthetic_dataset"] = path(flat.get("synthetic_dataset"))
    flat["synthesis_checkpoint"] = path(flat.get("synthesis_checkpoint"))
    flat["out_dir"] = path(flat.get("out_dir", f"experiments/{flat['name']}"))
    if "conditions" in doc:
        tables = doc["conditions"] if isinstance(doc["conditions"], list) else [doc["conditions"]]
        conditions = []
        for i, table in enumerate(tables):
            values = _table(f"[[conditions]] #{i + 1}", table, _CONDITION_KEYS)
            if "name" not in values:
                raise ConfigError(f"[[conditions]] #{i + 1}: needs a name")
            conditions.append(ConditionConfig(**values))
    elif "grid" in doc:
        grid = doc["grid"]
        if not isinstance(grid, dict):
            raise ConfigError(f"[grid]: expected a table, got {grid!r}")
        for key, values in grid.items():
            if key not in _GRID_KEYS:
                raise ConfigError(f"[grid] {key}: unknown setting{_did_you_mean(key, _GRID_KEYS)}")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"[grid] {key}: expected a non-empty list, got {values!r}")
            for value in values:
                _checked("[grid]", key, value, _GRID_KEYS[key])
        conditions = _grid_conditions(grid)
    elif flat.get("task") == "hard_example_mining":
        conditions = [ConditionConfig("pretrained"), ConditionConfig("hem_finetuned")]
    else:
        conditions = [ConditionConfig("real")]
    flat["conditions"] = tuple(conditions)
    flat.setdefault("baseline", conditions[0].name)
    if "hem" in doc:
        flat["hem"] = HemConfig(**_table("[hem]", doc["hem"], _HEM_KEYS))
    return ExperimentConfig(**flat)


def load_experiment_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment TOML file (see `experiment_config_from_dict`); errors name the file."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read experiment config: {exc}", path) from exc
    try:
        return experiment_config_from_dict(doc, path.parent)
    except ConfigError as exc:
        if exc.path is not None:
            raise
        raise ConfigError(exc.reason, path) from None
    except ValueError as exc:  # resolve_device: "auto" with a broken torch install
        raise ConfigError(str(exc), path) from None


# -- folds and data ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Fold:
    index: int
    train: tuple[CaseRecord, ...]
    val: tuple[CaseRecord, ...]
    test: tuple[CaseRecord, ...]


def patient_folds(cases: tuple[CaseRecord, ...], k: int, seed: int, val_fraction: float = 0.2) -> list[Fold]:
    """k folds grouped by patient: each patient is tested exactly once, never in two sets of a fold.

    The dataset's own `split` is ignored (cross-validation re-splits all cases); the
    non-test patients are split `1 − val_fraction` / `val_fraction` into train/val.
    """
    patients = sorted({c.patient_id for c in cases})
    if len(patients) < k:
        raise ConfigError(f"{k}-fold cross-validation needs at least {k} patients, found {len(patients)}")
    rng = np.random.default_rng(seed)
    order = [patients[i] for i in rng.permutation(len(patients))]
    groups = np.array_split(np.array(order, dtype=object), k)
    folds = []
    for i, test_group in enumerate(groups):
        test_p = set(test_group.tolist())
        rest = [p for p in order if p not in test_p]
        n_val = min(max(1, round(val_fraction * len(rest))), len(rest) - 1) if len(rest) > 1 else 0
        val_p = set(rest[:n_val])
        folds.append(Fold(i, tuple(c for c in cases if c.patient_id not in test_p | val_p),
                          tuple(c for c in cases if c.patient_id in val_p),
                          tuple(c for c in cases if c.patient_id in test_p)))
    return folds


def sample_by_patient(cases: tuple[CaseRecord, ...], fraction: float, seed: int) -> tuple[CaseRecord, ...]:
    """Keep `ceil(fraction · patients)` whole patients (SPEC §3.7: fractions sampled per patient)."""
    if fraction >= 1.0:
        return cases
    patients = sorted({c.patient_id for c in cases})
    n = max(1, math.ceil(fraction * len(patients)))
    keep = {patients[i] for i in np.random.default_rng(seed).permutation(len(patients))[:n]}
    return tuple(c for c in cases if c.patient_id in keep)


def normalize_image(image: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per image (P0 §IV-B), float32."""
    image = np.asarray(image, np.float32)
    return ((image - image.mean()) / (image.std() + 1e-6)).astype(np.float32)


def prepare(image: np.ndarray, mask: np.ndarray, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize to `size_px`² (bilinear image, nearest mask) and normalise the image."""
    if image.shape != (size_px, size_px):
        image = resize(image, (size_px, size_px), order=1, preserve_range=True, anti_aliasing=True)
        mask = resize(mask.astype(np.float32), (size_px, size_px), order=0, preserve_range=True) > 0.5
    return normalize_image(image), np.asarray(mask, bool)


def load_cases(dataset: Dataset, cases: tuple[CaseRecord, ...], size_px: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    pairs = [prepare(dataset.read_image(c), dataset.read_mask(c), size_px) for c in cases]
    return [p[0] for p in pairs], [p[1] for p in pairs]


# -- training and prediction -----------------------------------------------------------------------
def _cancelled(cancel: Any) -> bool:
    if cancel is None:
        return False
    return bool(cancel()) if callable(cancel) else bool(getattr(cancel, "cancelled", False))


class ExperimentCancelled(Exception):
    """Raised inside the runner when the cancel token is set; finished folds stay on disk."""


@dataclass(frozen=True)
class ExperimentProgress:
    """One progress report: `stage` is 'fold', 'epoch', 'evaluate', 'done' or 'skipped'."""

    stage: str
    condition: str
    fold: int
    done_units: int
    total_units: int
    message: str = ""
    epoch: int = 0
    loss: float = float("nan")


def train_segmenter(model: torch.nn.Module, images: list[np.ndarray], masks: list[np.ndarray],
                    val_images: list[np.ndarray], val_masks: list[np.ndarray], *, loss_name: str,
                    epochs: int, batch_size: int, lr: float, seed: int, device: str,
                    augment_preset: str | None = None, lr_patience: int = 10, min_lr: float = 5e-4,
                    on_epoch: Callable[[int, float], None] | None = None, cancel: Any = None) -> torch.nn.Module:
    """Adam + ReduceLROnPlateau (×0.5, patience `lr_patience`, Δ 1e-4, min `min_lr`; P0 §IV-B),
    h-flip always, P2/P4 classic augmentation when `augment_preset` is given; keeps the
    weights of the lowest validation loss (training loss when there is no validation set)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    loss_fn = build_loss(loss_name)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=lr_patience, threshold=1e-4,
                                                       threshold_mode="abs", min_lr=min(min_lr, lr))
    recipe = classic_preset(augment_preset) if augment_preset else None
    best, best_state = math.inf, None
    n = len(images)
    for epoch in range(epochs):
        if _cancelled(cancel):
            raise ExperimentCancelled()
        model.train()
        total = 0.0
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xs, ys = [], []
            for i in idx:
                x, y = images[i], masks[i]
                if recipe is not None:
                    x, y, _ = classic_augment(x, y, recipe, rng)
                if rng.random() < 0.5:
                    x, y = x[:, ::-1], y[:, ::-1]
                xs.append(np.ascontiguousarray(x))
                ys.append(np.ascontiguousarray(y))
            xb = torch.from_numpy(np.stack(xs)[:, None].astype(np.float32)).to(device)
            yb = torch.from_numpy(np.stack(ys)[:, None].astype(np.float32)).to(device)
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        train_loss = total / max(n, 1)
        val_loss = _eval_loss(model, val_images, val_masks, loss_fn, batch_size, device) if val_images else train_loss
        sched.step(val_loss)
        if val_loss < best:
            best = val_loss
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if on_epoch:
            on_epoch(epoch, train_loss)
    if best_state is not None:
        model.load_state_dict(best_state)
    return model


@torch.no_grad()
def _eval_loss(model, images, masks, loss_fn, batch_size, device) -> float:
    model.eval()
    total = 0.0
    for s in range(0, len(images), batch_size):
        xb = torch.from_numpy(np.stack(images[s:s + batch_size])[:, None]).to(device)
        yb = torch.from_numpy(np.stack(masks[s:s + batch_size])[:, None].astype(np.float32)).to(device)
        total += float(loss_fn(model(xb), yb)) * len(xb)
    return total / max(len(images), 1)


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, images: list[np.ndarray], *, batch_size: int = 16,
                          device: str = "cpu") -> np.ndarray:
    """Lesion probability maps `(N, H, W)` float32 in [0, 1]."""
    model.eval()
    out = []
    for s in range(0, len(images), batch_size):
        xb = torch.from_numpy(np.stack(images[s:s + batch_size])[:, None]).to(device)
        out.append(torch.sigmoid(model(xb))[:, 0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0, 0), np.float32)


# -- evaluation -------------------------------------------------------------------------------
def evaluate_probabilities(probs: np.ndarray, masks: list[np.ndarray], *, prob_threshold: float = 0.5,
                           min_prob: float = DEFAULT_MIN_PROB) -> dict[str, Any]:
    """Every SPEC §3 metric of one test set: segmentation masks are `p ≥ prob_threshold`,
    detections are `detect_from_probability(p, min_prob)`, lesion boxes the mask components."""
    preds = [p >= prob_threshold for p in probs]
    shape = masks[0].shape
    pix = pixel_scores(preds, masks)
    counts = [region_counts(p, g) for p, g in zip(preds, masks)]
    reg = region_scores(counts)
    scale = shape[0] * shape[1] / (1024.0 * 1024.0)
    thr = np.array([thresholded_counts(p, g, min_fp_area_px=200 * scale) for p, g in zip(preds, masks)]).sum(0)
    dets = [detect_from_probability(p, min_prob) for p in probs]
    boxes, scores = [d[0] for d in dets], [d[1] for d in dets]
    gt_boxes = [masks_to_boxes(g) for g in masks]
    curve = froc_curve(boxes, scores, gt_boxes)
    sens = froc_sensitivities(curve, FROC_FP_RATES)
    node = node21_score(boxes, scores, gt_boxes)
    labels = np.array([g.any() for g in masks])
    img = image_level_scores(labels, image_scores_from_boxes(scores))
    metrics = {
        "pixel_precision": pix["precision"], "pixel_recall": pix["recall"], "pixel_f1": pix["f1"],
        "pixel_f2": pix["f2"], "dice": mean_dice(preds, masks),
        "region_precision": reg["precision"], "region_recall": reg["recall"], "region_f1": reg["f1"],
        "region_f2": reg["f2"], "region_tp": reg["tp"], "region_fn": reg["fn"], "region_fp": reg["fp"],
        "p2_precision": float(thr[0] / (thr[0] + thr[1])) if thr[0] + thr[1] else 0.0,
        "p2_recall": float(thr[0] / (thr[0] + thr[2])) if thr[0] + thr[2] else 0.0,
        "froc_auc": froc_auc(curve), "node21_score": node["node21_score"],
        "map50": average_precision(boxes, scores, gt_boxes, 0.5),
        "image_auc": img["image_auc"], "image_accuracy": img["image_accuracy"],
    }
    metrics.update({f"sens@{r:g}fp": v for r, v in sens.items()})
    return {"metrics": metrics, "size_groups": size_group_recall(counts, shape), "froc": curve.to_dict()}


# -- the runner -------------------------------------------------------------------------------
def _fold_path(out_dir: Path, condition: str, fold: int) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_.+@" else "_" for ch in condition)
    return out_dir / "folds" / f"{safe}__fold{fold}.json"


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=True), encoding="utf-8")
    tmp.replace(path)


def _synthetic_pairs(config: ExperimentConfig, condition: ConditionConfig, fold: Fold, real_images, real_masks,
                     seed: int, dataset: Dataset | None = None, train_cases=()) -> list[tuple[np.ndarray, np.ndarray]]:
    if condition.synthetic_count == 0:
        return []
    if config.synthetic_generator == "checkpoint":
        source = CheckpointSynthesisSource(config.synthesis_checkpoint, config.device)
        pairs = source.synthesize(dataset, list(train_cases), condition.synthetic_count, seed)
        return [prepare(img, m, config.image_size_px) for img, m in pairs]
    if config.synthetic_generator == "phantom_painter":
        painter = PhantomLesionPainter()
        return painter.synthesize(real_images, real_masks, condition.synthetic_count, np.random.default_rng(seed))
    excluded = {c.patient_id for c in fold.val + fold.test}
    pairs = DatasetSyntheticSource(config.synthetic_dataset).select(condition.synthetic_count, excluded, seed)
    return [prepare(img, m, config.image_size_px) for img, m in pairs]


def run_fold(config: ExperimentConfig, dataset: Dataset, fold: Fold, condition: ConditionConfig, *,
             progress: Callable[[ExperimentProgress], None], cancel: Any, unit: int, total: int) -> dict:
    """Train and evaluate one condition on one fold; returns the fold record."""
    t0 = time.monotonic()
    seed = config.seed * 1000 + fold.index
    train_cases = sample_by_patient(fold.train, condition.data_fraction, seed)
    images, masks = load_cases(dataset, train_cases, config.image_size_px)
    val_images, val_masks = load_cases(dataset, fold.val, config.image_size_px)
    test_images, test_masks = load_cases(dataset, fold.test, config.image_size_px)
    synthetic = _synthetic_pairs(config, condition, fold, images, masks, seed + 7, dataset, train_cases)
    all_images = images + [s[0] for s in synthetic]
    all_masks = masks + [s[1] for s in synthetic]
    model = build_segmenter(config.arch, base_channels=config.base_channels, depth=config.depth, norm=config.norm)

    def on_epoch(epoch: int, loss: float) -> None:
        progress(ExperimentProgress("epoch", condition.name, fold.index, unit, total,
                                    f"{condition.name} fold {fold.index} epoch {epoch + 1}/{config.epochs}",
                                    epoch + 1, loss))

    train_segmenter(model, all_images, all_masks, val_images, val_masks, loss_name=config.loss,
                    epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=seed,
                    device=config.device, augment_preset=config.classic_preset if condition.classic_augmentation else None,
                    lr_patience=config.lr_patience, min_lr=config.min_lr, on_epoch=on_epoch, cancel=cancel)
    probs = predict_probabilities(model, test_images, batch_size=config.batch_size, device=config.device)
    record = evaluate_probabilities(probs, test_masks, prob_threshold=config.prob_threshold, min_prob=config.min_prob)
    record.update({"condition": condition.name, "fold": fold.index, "config_hash": config.hash(),
                   "n_train_real": len(images), "n_train_synthetic": len(synthetic), "n_val": len(val_images),
                   "n_test": len(test_images), "test_cases": [c.case_id for c in fold.test],
                   "seconds": time.monotonic() - t0})
    record["_model"] = model  # not serialized; hard-example mining reuses the trained detector
    record["_data"] = (images, masks, test_images, test_masks)
    record["_train_cases"] = train_cases
    return record


def summarize(config_dict: dict, folds: list[dict], conditions: list[str], baseline: str) -> tuple[dict, dict]:
    """Mean ± SD, bootstrap 95 % CI and Student t-test against the baseline per metric; Friedman +
    Nemenyi across conditions (blocks = folds) for the key metrics when there are ≥ 3 conditions."""
    metric_names = sorted({m for f in folds for m in f["metrics"]})
    by = {c: {m: [f["metrics"].get(m, float("nan")) for f in sorted(folds, key=lambda f: f["fold"])
                  if f["condition"] == c] for m in metric_names} for c in conditions}
    summary: dict[str, dict] = {}
    for c in conditions:
        summary[c] = {}
        for m in metric_names:
            mean, sd = mean_sd(by[c][m])
            test = t_test(by[c][m], by[baseline][m]) if c != baseline else {"p": float("nan")}
            summary[c][m] = {"mean": mean, "sd": sd, "ci95": list(bootstrap_ci(by[c][m], n_resamples=500)),
                             "n": len(by[c][m]), "p_vs_baseline": test["p"],
                             "significant": bool(test["p"] < 0.05) if not math.isnan(test["p"]) else False}
    friedman: dict[str, dict] = {}
    for m in KEY_METRICS:
        if m not in metric_names:
            continue
        table = {c: by[c][m] for c in conditions}
        lengths = {len(v) for v in table.values()}
        if len(conditions) < 3 or len(lengths) != 1 or min(lengths) < 2:
            friedman[m] = {"skipped": "needs >= 3 conditions with the same >= 2 folds"}
            continue
        if any(math.isnan(x) for v in table.values() for x in v):
            friedman[m] = {"skipped": "NaN values"}
            continue
        try:
            friedman[m] = friedman_nemenyi(table)
        except ValueError as exc:
            friedman[m] = {"skipped": str(exc)}
    return summary, friedman


def write_results(out_dir: Path, doc: dict) -> Path:
    """results.json, results.csv (long format) and summary.csv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS_FILE
    _write_json(path, doc)
    with open(out_dir / "results.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["condition", "fold", "metric", "value"])
        for f in doc["folds"]:
            for m, v in sorted(f["metrics"].items()):
                w.writerow([f["condition"], f["fold"], m, v])
    with open(out_dir / "summary.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["condition", "metric", "mean", "sd", "ci95_low", "ci95_high", "n", "p_vs_baseline", "significant"])
        for c, metrics in doc["summary"].items():
            for m, s in sorted(metrics.items()):
                w.writerow([c, m, s["mean"], s["sd"], s["ci95"][0], s["ci95"][1], s["n"], s["p_vs_baseline"],
                            s["significant"]])
    return path


def _public(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def run_experiment(config: ExperimentConfig, *, progress: Callable[[ExperimentProgress], None] | None = None,
                   cancel: Any = None, resume: bool = True, force: bool = False) -> dict:
    """Run every condition on every fold (resuming finished folds), write and return the results.

    `cancel`: an object with `.cancelled` or a zero-argument callable; when set the runner
    raises `ExperimentCancelled` at the next epoch, keeping finished folds for a later resume.
    The results folder is checked, locked and marked like batch and train folders
    (`core.output_folder`); `force` accepts a non-empty folder lesion-studio did not make.
    """
    from lesion_studio.core.output_folder import open_output_folder

    lock = open_output_folder(config.out_dir, kind="evaluate", force=force, key="experiment.out_dir")
    try:
        return _run_experiment_locked(config, progress=progress, cancel=cancel, resume=resume)
    finally:
        lock.release()


def _run_experiment_locked(config: ExperimentConfig, *, progress: Callable[[ExperimentProgress], None] | None,
                           cancel: Any, resume: bool) -> dict:
    """`run_experiment` while this process holds the results folder's lock."""
    progress = progress or (lambda event: None)
    dataset = load_dataset(config.dataset)
    folds = patient_folds(dataset.cases, config.folds, config.seed, config.val_fraction)
    out_dir = config.out_dir
    if config.task == "hard_example_mining":
        from lesion_studio.models.hard_example_mining import run_hard_example_mining

        records, extra = run_hard_example_mining(config, dataset, folds, progress=progress, cancel=cancel,
                                                 resume=resume)
    else:
        records, extra = [], {}
        total = len(config.conditions) * len(folds)
        unit = 0
        for condition in config.conditions:
            for fold in folds:
                path = _fold_path(out_dir, condition.name, fold.index)
                if resume and path.exists():
                    saved = json.loads(path.read_text(encoding="utf-8"))
                    if saved.get("config_hash") == config.hash():
                        records.append(saved)
                        unit += 1
                        progress(ExperimentProgress("skipped", condition.name, fold.index, unit, total,
                                                    f"{condition.name} fold {fold.index}: already done"))
                        continue
                if _cancelled(cancel):
                    raise ExperimentCancelled()
                progress(ExperimentProgress("fold", condition.name, fold.index, unit, total,
                                            f"training {condition.name} fold {fold.index}"))
                record = _public(run_fold(config, dataset, fold, condition, progress=progress, cancel=cancel,
                                          unit=unit, total=total))
                _write_json(path, record)
                records.append(record)
                unit += 1
                progress(ExperimentProgress("evaluate", condition.name, fold.index, unit, total,
                                            f"{condition.name} fold {fold.index}: "
                                            f"region F1 {record['metrics']['region_f1']:.3f}"))
    names = [c.name for c in config.conditions]
    summary, friedman = summarize(config.to_dict(), records, names, config.baseline)
    doc = {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "name": config.name, "task": config.task,
           "config": config.to_dict(), "config_hash": config.hash(), "conditions": names,
           "baseline": config.baseline, "folds": records, "summary": summary, "friedman": friedman,
           "froc_fp_rates": list(FROC_FP_RATES), "froc_auc_range": [0.125, 8.0],
           "node21_auc": "image-level ROC AUC (highest box score per image)", **extra}
    write_results(out_dir, doc)
    progress(ExperimentProgress("done", "", -1, len(records), len(records), f"results in {out_dir / RESULTS_FILE}"))
    return doc


def load_results(path: str | Path) -> dict:
    """Read a results.json (or the folder holding one); checks the format tag."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read experiment results: {exc}", path) from exc
    if doc.get("format") != RESULTS_FORMAT:
        raise ConfigError("not a lesion-studio experiment results file", path)
    return doc
