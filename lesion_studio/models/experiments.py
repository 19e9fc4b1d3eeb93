"""Downstream experiments (SPEC §3.7): real-only vs. real + synthetic at several counts, data
fractions sampled per patient, with/without classic augmentation, patient-grouped k-fold CV.

`run_experiment(config, progress=..., cancel=...)` is a plain callable: a progress callback
and a cancel token (anything with `.cancelled`, e.g. `models.progress.CancelToken`), so the
GUI job manager can run it as a job and the CLI (`lesion-studio evaluate`) runs it headless.
Every finished (condition, fold) is written to `folds/<condition>__fold<k>.json` at once;
a rerun with the same config skips those (resume per fold).

Results: `results.json` (format `lesion-studio-experiment`, version 1):
  {"format", "version", "config", "config_hash", "conditions": [names], "baseline",
   "folds": [{"condition", "fold", "metrics": {name: value}, "size_groups", "froc", "froc_luna",
              "n_train_real", "n_train_synthetic", "n_test", "seconds", "model_checkpoint",
              "patients": {"train", "val", "test", "synthetic", "generator", "generator_note",
                           "leakage": "none"}, ...}],
   "summary": {condition: {metric: {"mean", "sd", "ci95": [lo, hi], "n",
                                    "p_vs_baseline", "significant"}}},
   "friedman": {metric: friedman_nemenyi(...) or {"skipped": reason}},
   "froc_readouts": {how "froc" and "froc_luna" are defined},
   "patient_isolation": {"leakage": "none", ...}, "determinism": {device, threads, promise},
   "sweep": {...} ([sweep] experiments only: `models.sweep_analysis.sweep_report`),
   "hard_example_mining": {...} (hem experiments only)}
plus `results.csv` (one row per condition × fold × metric) and `summary.csv`.

Patient isolation (issue 14) is enforced, not hoped for: each fold trains on a sampled
fraction of its training patients, its synthetic images come only from those patients, a
generator checkpoint that saw a validation or test patient is refused before training, and a
train TOML as `synthesis_checkpoint` trains one generator per (fraction, fold) on exactly those
patients (`models.patient_isolation`, `models.fold_generators`). Same config + seed gives
bit-identical results and checkpoints on CPU (`models.determinism`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesion_studio.core.classic_augment import augment as classic_augment
from lesion_studio.core.classic_augment import PRESETS as _PRESETS
from lesion_studio.core.classic_augment import preset as classic_preset
from lesion_studio.core.config_schema import (
    Problems, Setting, check_table, check_tables, load_toml, settings_from_dataclass,
)
from lesion_studio.core.dataset import CaseRecord, Dataset, load_dataset
from lesion_studio.core.geometry.crops import resize_image, resize_mask
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.metrics import (
    FROC_FP_RATES, froc_auc, froc_curve, froc_sensitivities, lesion_discs, luna_froc, masks_to_boxes, mean_dice,
    node21_score, pixel_scores, region_counts, region_scores, size_group_recall, thresholded_counts,
    average_precision,
)
from lesion_studio.core.metrics.classification import image_level_scores
from lesion_studio.core.metrics.detection import image_scores_from_boxes
from lesion_studio.core.metrics.statistics import bootstrap_ci, friedman_nemenyi, mean_sd, t_test
from lesion_studio.models.best_weights import BestWeights
from lesion_studio.models.detection import DEFAULT_MIN_PROB, detect_from_probability
from lesion_studio.models.detector_training import OPTIMIZERS as DETECTOR_OPTIMIZERS
from lesion_studio.models.detectors import (
    BACKBONES, BOX_DETECTORS, DEFAULT_BACKBONE, DETECTORS, detector_description,
)
from lesion_studio.models.segmentation import SEGMENTERS, build_loss, build_segmenter
from lesion_studio.models.segmentation.losses import LOSSES as _LOSSES
from lesion_studio.models.synthetic_sources import (
    CheckpointSynthesisSource, DatasetSyntheticSource, PhantomLesionPainter, SyntheticCase,
)
from lesion_studio.models.sweep_config import SWEEP_DEFAULTS, SWEEP_SETTINGS, SweepConfig, sweep_from_table

SEGMENTATION_LOSSES = tuple(_LOSSES)
CLASSIC_PRESETS = tuple(_PRESETS)
RESULTS_FORMAT = "lesion-studio-experiment"
RESULTS_VERSION = 1
RESULTS_FILE = "results.json"
#: 'segmentation' trains the segmenter and reports every metric, its detections from the heatmap
#: detector (the probability map, `models.detection`); 'detection' trains `detector`: a
#: torchvision Faster R-CNN (default) or RetinaNet (`models.detectors`, detection metrics only),
#: or the heatmap detector as a fast baseline; 'hard_example_mining' runs P3 §III-D
#: (`models.hard_example_mining`, heatmap detector).
TASKS = ("segmentation", "detection", "hard_example_mining")
#: Metrics compared across conditions (t-test vs. baseline, Friedman + Nemenyi).
KEY_METRICS = ("pixel_f1", "dice", "region_f1", "region_f2", "region_recall", "froc_auc",
               "luna_cpm", "node21_score", "map50", "image_auc")


# -- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConditionConfig:
    """One arm of the experiment. `synthetic_count` synthetic images join the training set;
    from the experiment's synthetic source, or whole generated cases of the `[sweep]` generator
    named `generator` (`models.sweeps`)."""

    name: str
    synthetic_count: int = 0
    data_fraction: float = 1.0
    classic_augmentation: bool = False
    generator: str = ""

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
    rotation_deg: float = 5.0                  # P0 §IV-B: every training image rotated U[−5°, 5°] (0: off)
    synthetic_per_epoch: float = 0.05          # P0 §IV-B: 5 % of the synthetic pool drawn afresh each epoch (1: all)
    classic_preset: str = "P2"
    prob_threshold: float = 0.5                # segmentation mask = p ≥ this
    min_prob: float = DEFAULT_MIN_PROB         # detection candidates
    device: str = "cpu"
    hem: HemConfig = field(default_factory=HemConfig)
    save_models: bool = True                   # every trained segmenter as models/<condition>__fold<k>
    num_threads: int = 0                       # torch CPU threads (0: torch's default); results depend on it
    detector: str | None = None                # None: the task's (`detector_name`); see models.detectors
    detector_backbone: str = DEFAULT_BACKBONE  # ours: small CPU preset; P3 §IV-A: ResNet-50 = "resnet50_fpn"
    backbone_weights: Path | None = None       # local safetensors ResNet weights; None: from scratch
    detector_optimizer: str = "sgd"            # P3 §IV-A → Ren et al. / Lin et al.: SGD, momentum 0.9
    sweep: SweepConfig | None = None           # [sweep]: P4 §4.2 generated-count sweep (models.sweep_config)

    @property
    def detector_name(self) -> str:
        """The detector that runs: `detector`, else Faster R-CNN (P3's family) for task
        'detection' and the heatmap baseline for the others."""
        if self.detector is not None:
            return self.detector
        return "faster_rcnn" if self.task == "detection" else "heatmap"

    @property
    def box_detector(self) -> bool:
        """True when a torchvision box detector is trained instead of the segmenter."""
        return self.detector_name in BOX_DETECTORS

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; expected one of {TASKS}")
        self._check_detector()
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
        needs_syn = any(c.synthetic_count > 0 and not c.generator for c in self.conditions) \
            or self.task == "hard_example_mining"
        named = {g.name for g in self.sweep.generators} if self.sweep is not None else set()
        for c in self.conditions:
            if c.generator and c.generator not in named:
                raise ConfigError(f"condition {c.name!r}: generator {c.generator!r} is not a [sweep] generator "
                                  f"({', '.join(sorted(named)) or 'none declared'})")
        if needs_syn and self.synthetic_generator == "dataset" and self.synthetic_dataset is None \
                and self.task != "hard_example_mining":
            raise ConfigError("conditions with synthetic_count > 0 need synthetic_dataset "
                              "(or synthetic_generator = 'phantom_painter')")

    def _check_detector(self) -> None:
        if self.detector is not None and self.detector not in DETECTORS:
            raise ConfigError(f"unknown detector {self.detector!r}; expected one of {DETECTORS}")
        if self.box_detector and self.task != "detection":
            raise ConfigError(f"detector = {self.detector!r} needs task = 'detection' ({self.task} runs the "
                              "segmenter and its heatmap detector)")
        if self.detector_backbone not in BACKBONES:
            raise ConfigError(f"unknown detector_backbone {self.detector_backbone!r}; "
                              f"expected one of {tuple(BACKBONES)}")
        if self.detector_optimizer not in DETECTOR_OPTIMIZERS:
            raise ConfigError(f"unknown detector_optimizer {self.detector_optimizer!r}; "
                              f"expected one of {DETECTOR_OPTIMIZERS}")
        if self.backbone_weights is not None and not self.box_detector:
            raise ConfigError("backbone_weights is for the box detectors (detector = 'faster_rcnn' or 'retinanet')")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["backbone_weights"] = None if self.backbone_weights is None else str(self.backbone_weights)
        d["dataset"] = str(self.dataset)
        d["out_dir"] = str(self.out_dir)
        d["synthetic_dataset"] = None if self.synthetic_dataset is None else str(self.synthetic_dataset)
        d["synthesis_checkpoint"] = None if self.synthesis_checkpoint is None else str(self.synthesis_checkpoint)
        for c in d["conditions"]:  # left out when unused: configs (and hashes) from before the sweeps stay the same
            if not c["generator"]:
                del c["generator"]
        if self.sweep is None:
            del d["sweep"]
        else:
            d["sweep"] = self.sweep.to_dict()
        return d

    def hash(self) -> str:
        """Hash of everything that changes results (not `out_dir`): resume only matching folds."""
        d = self.to_dict()
        d.pop("out_dir")
        if self.backbone_weights is not None and Path(self.backbone_weights).is_file():
            from lesion_studio.core.hashing import sha256_file

            d["backbone_weights_sha256"] = sha256_file(self.backbone_weights)  # new weights, new results
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
SECTIONS = ("experiment", "model", "training", "hem", "conditions", "grid", "sweep")
#: The keys of the flat sections: [experiment], [model] and [training] each accept any of them
#: (defaults: `ExperimentConfig`). Checked by `core.config_schema`, like every other config.
_NOT_BLANK = lambda v: None if v.strip() else "must not be empty"  # noqa: E731
_FLAT_SETTINGS: dict[str, Setting] = {
    "name": Setting("str", None, check=_NOT_BLANK, doc="names the experiment; required"),
    "dataset": Setting("path", None, doc="dataset folder; required"),
    "out_dir": Setting("path", None, doc="results folder (default experiments/<name>)"),
    "synthetic_dataset": Setting("path", None), "synthesis_checkpoint": Setting("path", None),
    "task": Setting("str", "segmentation", choices=TASKS),
    "baseline": Setting("str", None),
    "synthetic_generator": Setting("str", "dataset", choices=("dataset", "checkpoint", "phantom_painter")),
    "folds": Setting("int", 5, ge=2), "val_fraction": Setting("float", 0.2, gt=0.0, lt=1.0),
    "seed": Setting("int", 0, ge=0), "image_size_px": Setting("int", 256, ge=16, le=4096),
    "arch": Setting("str", "multiresunet", choices=tuple(SEGMENTERS)),
    "norm": Setting("str", "batch", choices=("batch", "instance")),
    "loss": Setting("str", "focal_tversky", choices=SEGMENTATION_LOSSES),
    "base_channels": Setting("int", 32, ge=1), "depth": Setting("int", 4, ge=1, le=8),
    "epochs": Setting("int", 150, ge=1), "batch_size": Setting("int", 16, ge=1),
    "lr": Setting("float", 1e-3, gt=0.0), "lr_patience": Setting("int", 10, ge=0),
    "min_lr": Setting("float", 5e-4, ge=0.0),
    "rotation_deg": Setting("float", 5.0, ge=0.0, le=180.0,
                            doc="segmenter: rotation U[-r, r] degrees of every training image (P0: 5)"),
    "synthetic_per_epoch": Setting("float", 0.05, gt=0.0, le=1.0,
                                   doc="segmenter: fraction of the synthetic pool drawn afresh each epoch (P0: 0.05)"),
    "classic_preset": Setting("str", "P2", check=lambda v: None if v.upper() in CLASSIC_PRESETS else
                              f"must be one of {', '.join(CLASSIC_PRESETS)}, got {v!r}"),
    "prob_threshold": Setting("float", 0.5, gt=0.0, lt=1.0),
    "min_prob": Setting("float", DEFAULT_MIN_PROB, ge=0.0, le=1.0),
    "device": Setting("str", "cpu", choices=("auto", "cpu", "cuda")),
    "num_threads": Setting("int", 0, ge=0, le=1024,
                           doc="torch CPU threads for the run (0: torch's default); results depend on it"),
    "save_models": Setting("bool", True, doc="save each fold's trained segmenter/detector"),
    "detector": Setting("str", None, nullable=True, choices=DETECTORS,
                        doc="task 'detection': faster_rcnn (default) | retinanet | heatmap (fast baseline)"),
    "detector_backbone": Setting("str", DEFAULT_BACKBONE, choices=tuple(BACKBONES),
                                 doc="box detectors: resnet18_fpn (small CPU preset) | resnet50_fpn (P3)"),
    "backbone_weights": Setting("path", None, nullable=True,
                                doc="local safetensors file with ResNet weights; unset: from scratch"),
    "detector_optimizer": Setting("str", "sgd", choices=DETECTOR_OPTIMIZERS,
                                  doc="box detectors: sgd (the papers) | adamw (short from-scratch runs)"),
}
_CONDITION_SETTINGS = {k: v for k, v in settings_from_dataclass(ConditionConfig, {
    "name": {"check": _NOT_BLANK}, "synthetic_count": {"ge": 0}, "data_fraction": {"gt": 0.0, "le": 1.0}}).items()
    if k != "generator"}  # a generator is a [sweep] generator: [sweep] makes those conditions itself
_HEM_SETTINGS = settings_from_dataclass(HemConfig, {
    "n_synthetic": {"ge": 1}, "finetune_epochs": {"ge": 1}, "finetune_lr": {"gt": 0.0},
    "detection_threshold": {"ge": 0.0, "le": 1.0}})
_GRID_SETTINGS = {
    "synthetic_counts": Setting("list[int]", [0], ge=0, min_len=1),
    "data_fractions": Setting("list[float]", [1.0], gt=0.0, le=1.0, min_len=1),
    "classic_augmentation": Setting("list[bool]", [False], min_len=1),
}
#: The schema of an experiment file ([[conditions]] tables are checked one by one).
EXPERIMENT_SCHEMA = {"experiment": _FLAT_SETTINGS, "model": _FLAT_SETTINGS, "training": _FLAT_SETTINGS,
                     "hem": _HEM_SETTINGS, "grid": _GRID_SETTINGS, "sweep": SWEEP_SETTINGS}


def experiment_config_from_dict(doc: dict, base_dir: Path = Path("."), *, path: Path | None = None,
                                text: str = "") -> ExperimentConfig:
    """Build the config from a TOML-shaped dict; relative paths resolve against `base_dir`.

    Sections: `[experiment]` (name, task, dataset, synthetic_dataset, synthetic_generator,
    out_dir, folds, seed, baseline, ...), `[model]`, `[training]`, `[hem]`, and either
    `[[conditions]]` tables, a `[grid]` (synthetic_counts, data_fractions, classic_augmentation)
    or a `[sweep]` (P4's generated-count sweep, `models.sweep_config`).
    Every key is type- and range-checked by `core.config_schema`; one `ConfigError` lists every
    unknown section or key (with a "did you mean" suggestion) and every bad value, each as
    `FILE:LINE: section.key: reason` when `path` and the file's `text` are given.
    """
    problems = Problems(path, text, "experiment config")
    tables = check_tables(doc, EXPERIMENT_SCHEMA, problems, allow_extra_sections=("conditions",))
    flat: dict[str, Any] = {}
    for section in ("experiment", "model", "training"):  # only the keys given: defaults are ExperimentConfig's
        given = doc.get(section) if isinstance(doc.get(section), dict) else {}
        flat.update({k: v for k, v in tables[section].items() if k in given})
    for key in ("name", "dataset"):
        if key not in flat:
            problems.add(f"experiment.{key}", "is required")
    conditions: list[ConditionConfig] = []
    sweep = None
    if "sweep" in doc:  # P4 §4.2 generated-count sweep: the conditions come from it (models.sweep_config)
        sweep = sweep_from_table(tables["sweep"], doc, base_dir, problems)
        conditions = [ConditionConfig(a.name, a.generated_count, 1.0, a.spatial_augmentation, a.generator)
                      for a in (sweep.arms() if sweep is not None else [])]
    elif "conditions" in doc:
        raw = doc["conditions"] if isinstance(doc["conditions"], list) else [doc["conditions"]]
        for i, table in enumerate(raw):
            where = f"conditions#{i + 1}"
            if not isinstance(table, dict):
                problems.add(where, f"must be a table ([[conditions]]), got {table!r}")
                continue
            values = check_table(table, _CONDITION_SETTINGS, where, problems)
            if "name" in values:
                conditions.append(ConditionConfig(**values))
    elif "grid" in doc:
        conditions = _grid_conditions(tables["grid"])
    elif flat.get("task") == "hard_example_mining":
        conditions = [ConditionConfig("pretrained"), ConditionConfig("hem_finetuned")]
    else:
        conditions = [ConditionConfig("real")]
    problems.raise_if_any()
    if flat.get("device") == "auto":
        from lesion_studio.core.device import resolve_device

        flat["device"] = resolve_device("auto")

    def resolved(value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base_dir / p).resolve()

    flat["dataset"] = resolved(flat["dataset"])
    flat["synthetic_dataset"] = resolved(flat.get("synthetic_dataset"))
    flat["synthesis_checkpoint"] = resolved(flat.get("synthesis_checkpoint"))
    if flat.get("backbone_weights") is not None:
        flat["backbone_weights"] = resolved(flat["backbone_weights"])
    flat["out_dir"] = resolved(flat.get("out_dir") or f"experiments/{flat['name']}")
    flat["conditions"] = tuple(conditions)
    flat["baseline"] = flat.get("baseline") or (conditions[0].name if conditions else "real")
    if sweep is not None:
        flat["sweep"] = sweep
        for key, value in SWEEP_DEFAULTS.items():  # P4's, not P0's, unless the file says otherwise
            flat.setdefault(key, value)
    if "hem" in doc:
        flat["hem"] = HemConfig(**tables["hem"])
    try:
        return ExperimentConfig(**flat)
    except ConfigError as exc:  # the rules that tie keys together (see ExperimentConfig)
        problems.add("experiment", exc.reason)
        raise problems.error() from None


def load_experiment_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment TOML file (see `experiment_config_from_dict`); errors name the file and line."""
    path = Path(path)
    doc, text = load_toml(path, what="experiment config")
    try:
        return experiment_config_from_dict(doc, path.parent, path=path, text=text)
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
    """Resize to `size_px`² and normalise the image.

    The image is area-averaged down / bilinear up; the mask keeps pixels covered at least half
    and every lesion keeps at least one pixel (`core.geometry.crops.resize_mask`), so no small
    lesion vanishes from the labels (an anti-aliased resize dropped every 3 px lesion at
    1024² → 256²).
    """
    size = (size_px, size_px)
    return normalize_image(resize_image(image, size)), resize_mask(np.asarray(mask, bool), size)


def model_spacing_mm(dataset: Dataset, case: CaseRecord, size_px: int) -> tuple[float, float] | None:
    """`(row_mm, col_mm)` of one pixel of `case` at the model size (`size_px`²), from the case's
    own spacing and image size; None when the case has no valid spacing."""
    from lesion_studio.core.geometry.size_modulation import valid_spacing

    spacing = valid_spacing(dataset.spacing_for(case))
    if spacing is None:
        return None
    h, w = dataset.read_image(case).shape
    return (spacing[0] * h / size_px, spacing[1] * w / size_px)


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


def synthetic_epoch_sample(n_synthetic: int, fraction: float, seed: int, epoch: int) -> np.ndarray:
    """Which synthetic images (indices into the pool) train in `epoch` (P0 §IV-B: "5 % of
    G(Isc) and G(Isf) were randomly selected" each epoch): `ceil(fraction · n)` of them, a
    fresh draw per epoch, a function of (seed, epoch) only; all of them when `fraction` >= 1."""
    if n_synthetic <= 0:
        return np.zeros(0, dtype=np.int64)
    if fraction >= 1.0:
        return np.arange(n_synthetic)
    k = min(n_synthetic, max(1, math.ceil(fraction * n_synthetic)))
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), 0x5EC])
    return np.sort(rng.choice(n_synthetic, size=k, replace=False))


def p0_rotation(image: np.ndarray, mask: np.ndarray, max_deg: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """P0 §IV-B: rotate an image and its mask by U[−max_deg, max_deg] degrees about the centre
    (image bilinear, border reflected; mask nearest): `(image, mask, angle_deg)`."""
    from lesion_studio.core.classic_augment import ClassicParams, apply_params

    angle = float(rng.uniform(-max_deg, max_deg))
    out, out_mask = apply_params(image, mask, ClassicParams(rotation_deg=angle))
    return out, out_mask, angle


def train_segmenter(model: torch.nn.Module, images: list[np.ndarray], masks: list[np.ndarray],
                    val_images: list[np.ndarray], val_masks: list[np.ndarray], *, loss_name: str,
                    epochs: int, batch_size: int, lr: float, seed: int, device: str,
                    augment_preset: str | None = None, lr_patience: int = 10, min_lr: float = 5e-4,
                    on_epoch: Callable[[int, float], None] | None = None, cancel: Any = None,
                    n_synthetic: int = 0, synthetic_per_epoch: float = 1.0,
                    rotation_deg: float = 0.0) -> torch.nn.Module:
    """Adam + ReduceLROnPlateau (×0.5, patience `lr_patience`, Δ 1e-4, min `min_lr`; P0 §IV-B),
    h-flip always, P2/P4 classic augmentation when `augment_preset` is given, then P0's
    rotation U[−`rotation_deg`, `rotation_deg`]; keeps the weights of the lowest validation
    loss (training loss when there is no validation set).

    The last `n_synthetic` of `images` are the synthetic pool: each epoch trains on every real
    image plus a fresh `synthetic_per_epoch` share of the pool (`synthetic_epoch_sample`)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    loss_fn = build_loss(loss_name)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=lr_patience, threshold=1e-4,
                                                       threshold_mode="abs", min_lr=min(min_lr, lr))
    recipe = classic_preset(augment_preset) if augment_preset else None
    best = BestWeights()
    n_real = len(images) - n_synthetic
    for epoch in range(epochs):
        if _cancelled(cancel):
            raise ExperimentCancelled()
        model.train()
        total = 0.0
        pool = np.r_[np.arange(n_real), n_real + synthetic_epoch_sample(n_synthetic, synthetic_per_epoch, seed, epoch)]
        order = pool[rng.permutation(len(pool))]
        n = len(order)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xs, ys = [], []
            for i in idx:
                x, y = images[i], masks[i]
                if recipe is not None:
                    x, y, _ = classic_augment(x, y, recipe, rng)
                if rotation_deg > 0:
                    x, y, _ = p0_rotation(x, y, rotation_deg, rng)
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
        best.update(model, val_loss)
        if on_epoch:
            on_epoch(epoch, train_loss)
    best.restore(model)
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
    detection = evaluate_detections([d[0] for d in dets], [d[1] for d in dets], masks)
    metrics = {
        "pixel_precision": pix["precision"], "pixel_recall": pix["recall"], "pixel_f1": pix["f1"],
        "pixel_f2": pix["f2"], "dice": mean_dice(preds, masks),
        "region_precision": reg["precision"], "region_recall": reg["recall"], "region_f1": reg["f1"],
        "region_f2": reg["f2"], "region_tp": reg["tp"], "region_fn": reg["fn"], "region_fp": reg["fp"],
        "p2_precision": float(thr[0] / (thr[0] + thr[1])) if thr[0] + thr[1] else 0.0,
        "p2_recall": float(thr[0] / (thr[0] + thr[2])) if thr[0] + thr[2] else 0.0,
        **detection["metrics"],
    }
    return {"metrics": metrics, "size_groups": size_group_recall(counts, shape), "froc": detection["froc"],
            "froc_luna": detection["froc_luna"]}


def evaluate_detections(boxes: list[np.ndarray], scores: list[np.ndarray],
                        masks: list[np.ndarray]) -> dict[str, Any]:
    """The detection metrics of one test set from any detector's boxes `(N, 4)` px and scores per
    image, against the lesion boxes of `masks` (their components): FROC (both read-outs),
    NODE21, mAP@50, image-level AUROC and accuracy (image score = its highest box score)."""
    gt_boxes = [masks_to_boxes(g) for g in masks]
    curve = froc_curve(boxes, scores, gt_boxes)
    sens = froc_sensitivities(curve, FROC_FP_RATES)
    luna = luna_froc(boxes, scores, [lesion_discs(g) for g in masks], FROC_FP_RATES)
    node = node21_score(boxes, scores, gt_boxes)
    labels = np.array([g.any() for g in masks])
    img = image_level_scores(labels, image_scores_from_boxes(scores))
    metrics = {
        "froc_auc": froc_auc(curve), "node21_score": node["node21_score"],
        "map50": average_precision(boxes, scores, gt_boxes, 0.5),
        "image_auc": img["image_auc"], "image_accuracy": img["image_accuracy"],
    }
    metrics.update({f"sens@{r:g}fp": v for r, v in sens.items()})
    metrics["luna_cpm"] = luna.cpm
    metrics.update({f"luna_sens@{r:g}fp": v for r, v in luna.sensitivities.items()})
    return {"metrics": metrics, "froc": curve.to_dict(), "froc_luna": luna.to_dict()}


def train_and_evaluate_box_detector(config: ExperimentConfig, train: tuple[list, list], val: tuple[list, list],
                                    test: tuple[list, list], *, seed: int, augment_preset: str | None,
                                    on_epoch: Callable[[int, float], None],
                                    cancel: Any) -> tuple[torch.nn.Module, dict]:
    """Build (seeded), train and test `config.detector_name` on prepared `(images, masks)`; returns
    the model and its record (the detection metrics; no pixel or region ones: boxes only).

    Anchors come from the training boxes (`models.detectors.anchor_sizes_px`); lesion-free
    images are negatives; the lowest box score kept is `min_prob`.
    """
    from lesion_studio.models.detector_training import WEIGHT_DECAY, predict_boxes, train_detector
    from lesion_studio.models.detectors import anchor_sizes_px, box_sizes_px, build_detector

    def stop() -> None:
        if _cancelled(cancel):
            raise ExperimentCancelled()

    name, preset = config.detector_name, BACKBONES[config.detector_backbone]
    anchors = anchor_sizes_px(box_sizes_px([masks_to_boxes(m) for m in train[1]]), preset.levels(name),
                              preset.finest_stride(name))
    torch.manual_seed(seed)  # the initial weights belong to the seed
    model = build_detector(name, image_size_px=config.image_size_px, backbone=config.detector_backbone,
                           anchors_px=anchors, score_thresh=config.min_prob, backbone_weights=config.backbone_weights)
    train_detector(model, *train, *val, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=seed,
                   device=config.device, optimizer=config.detector_optimizer, weight_decay=WEIGHT_DECAY[name],
                   augment_preset=augment_preset, lr_patience=config.lr_patience, min_lr=config.min_lr,
                   on_epoch=on_epoch, stop=stop)
    boxes, scores = predict_boxes(model, test[0], batch_size=config.batch_size, device=config.device)
    record = evaluate_detections(boxes, scores, test[1])
    record["anchors_px"] = list(model.anchors_px)
    return model, record


# -- the runner -------------------------------------------------------------------------------
def _fold_path(out_dir: Path, condition: str, fold: int) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_.+@" else "_" for ch in condition)
    return out_dir / "folds" / f"{safe}__fold{fold}.json"


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=True), encoding="utf-8")
    tmp.replace(path)


def _model_path(out_dir: Path, condition: str, fold: int) -> Path:
    return out_dir / "models" / _fold_path(out_dir, condition, fold).stem


def held_out_patients(fold: Fold) -> set[str]:
    """The fold's validation and test patients: no model or generator of the fold may learn from them."""
    return {c.patient_id for c in fold.val + fold.test}


def fold_generator(config: ExperimentConfig, dataset: Dataset, fold: Fold, fraction: float,
                   train_cases: tuple[CaseRecord, ...], seed: int, cancel: Any = None) -> tuple[Path, frozenset[str], str]:
    """The generator checkpoint a condition of `fold` synthesizes with, the patients it learned
    from, and a note saying how it came to be.

    `synthesis_checkpoint` a train TOML: a generator trained on `train_cases` only, one per
    (fraction, fold), in `out_dir/generators/` (`models.fold_generators`). A checkpoint: used
    as it is, after `refuse_leaking_generator` (`ConfigError` naming the patients it shares with
    the fold's validation and test sets).
    """
    from lesion_studio.models.fold_generators import is_train_config, train_fold_generator
    from lesion_studio.models.patient_isolation import checkpoint_patients, refuse_leaking_generator

    source = Path(config.synthesis_checkpoint)
    if is_train_config(source):
        out = config.out_dir / "generators" / f"frac{fraction:g}__fold{fold.index}"
        path = train_fold_generator(source, dataset, train_cases, out, seed=seed, device=config.device, cancel=cancel)
        seen = frozenset(p for ids in (checkpoint_patients(path) or {}).values() for p in ids)
        return path, seen, f"trained for this fold on its training patients from {source.name}"
    seen = refuse_leaking_generator(source, {fold.index: held_out_patients(fold)})
    return source, seen, f"checkpoint {source}"


def synthetic_cases(config: ExperimentConfig, count: int, fraction: float, fold: Fold, dataset: Dataset,
                    train_cases: tuple[CaseRecord, ...], images: list[np.ndarray], masks: list[np.ndarray], seed: int,
                    cancel: Any = None, *,
                    generator: str = "") -> tuple[list[SyntheticCase], frozenset[str] | None, str]:
    """`count` synthetic training cases at the model size, made only from `train_cases` (the
    fold's training patients of the sampled fraction; `images`/`masks` are theirs, prepared),
    the patients their generator learned from (None: no generator) and a note about it.
    `generator`: a `[sweep]` generator's whole generated cases instead (`models.sweeps`)."""
    if count == 0:
        return [], None, "no synthetic images"
    patients = [c.patient_id for c in train_cases]

    def prepared(made: list[SyntheticCase]) -> list[SyntheticCase]:
        return [SyntheticCase(*prepare(c.image, c.mask, config.image_size_px), c.patients) for c in made]

    torch.manual_seed(seed)  # a generator's noise is part of the seed's promise too
    if generator:
        from lesion_studio.models.sweeps import generated_cases

        made, seen, note = generated_cases(config.sweep, generator, count, fold_index=fold.index,
                                           train_cases=train_cases, held_out=held_out_patients(fold), dataset=dataset,
                                           out_dir=config.out_dir, size_px=config.image_size_px, device=config.device,
                                           seed=seed, cancel=cancel)
        return prepared(made), seen, note
    if config.synthetic_generator == "checkpoint":
        path, seen, note = fold_generator(config, dataset, fold, fraction, train_cases, seed, cancel)
        made = CheckpointSynthesisSource(path, config.device).synthesize(dataset, list(train_cases), count, seed)
        return prepared(made), seen, note
    if config.synthetic_generator == "phantom_painter":
        made = PhantomLesionPainter().synthesize(images, masks, count, np.random.default_rng(seed), patients=patients)
        return made, None, "phantom painter (no generator)"
    made = DatasetSyntheticSource(config.synthetic_dataset).select(count, set(patients), seed)
    if not made:
        raise ConfigError(f"no case of the synthetic dataset comes from fold {fold.index}'s training patients "
                          "(each case's patient_id must name the real patient its image was made from)",
                          config.synthetic_dataset)
    return prepared(made), None, ("not recorded: cases of the precomputed synthetic_dataset are limited to the "
                                  "fraction's training patients, but who trained their generator is unknown")


def save_segmenter(config: ExperimentConfig, model: torch.nn.Module, condition: str, fold: int,
                   patients: dict[str, list[str]]) -> Path:
    """The trained segmenter as `out_dir/models/<condition>__fold<k>` (safetensors + JSON), with
    the patients it learned from; its path relative to `out_dir`."""
    from lesion_studio.models.checkpoint import save_checkpoint

    stem = save_checkpoint(_model_path(config.out_dir, condition, fold), family="segmenter",
                           config={"arch": config.arch, "base_channels": config.base_channels, "depth": config.depth,
                                   "norm": config.norm, "loss": config.loss, "image_size_px": config.image_size_px,
                                   "experiment_config_hash": config.hash(), "condition": condition, "fold": fold},
                           networks={"segmenter": model}, step=config.epochs, reason="final", patients=patients)
    return stem.relative_to(config.out_dir)


def save_box_detector(config: ExperimentConfig, model: torch.nn.Module, condition: str, fold: int,
                      patients: dict[str, list[str]]) -> Path:
    """The trained box detector as `out_dir/models/<condition>__fold<k>` (family "detector"), with
    what rebuilds it (`models.detectors.build_detector`) and the patients it learned from."""
    from lesion_studio.models.checkpoint import save_checkpoint

    stem = save_checkpoint(_model_path(config.out_dir, condition, fold), family="detector",
                           config={"detector": config.detector_name, "detector_backbone": config.detector_backbone,
                                   "anchors_px": list(model.anchors_px), "image_size_px": config.image_size_px,
                                   "num_classes": 2, "experiment_config_hash": config.hash(),
                                   "condition": condition, "fold": fold},
                           networks={"detector": model}, step=config.epochs, reason="final", patients=patients)
    return stem.relative_to(config.out_dir)


def run_fold(config: ExperimentConfig, dataset: Dataset, fold: Fold, condition: ConditionConfig, *,
             progress: Callable[[ExperimentProgress], None], cancel: Any, unit: int, total: int) -> dict:
    """Train and evaluate one condition on one fold; returns the fold record.

    Raises `LeakageError` (naming the patients) before training when the fold's patient sets
    are not isolated (`models.patient_isolation`); the record's `patients` holds them.
    """
    from lesion_studio.models.patient_isolation import FoldPatients, check_fold_isolation

    t0 = time.monotonic()
    seed = config.seed * 1000 + fold.index
    train_cases = sample_by_patient(fold.train, condition.data_fraction, seed)
    images, masks = load_cases(dataset, train_cases, config.image_size_px)
    val_images, val_masks = load_cases(dataset, fold.val, config.image_size_px)
    test_images, test_masks = load_cases(dataset, fold.test, config.image_size_px)
    synthetic, generator, note = synthetic_cases(config, condition.synthetic_count, condition.data_fraction, fold,
                                                 dataset, train_cases, images, masks, seed + 7, cancel,
                                                 generator=condition.generator)
    isolation = check_fold_isolation(FoldPatients(
        fold.index, frozenset(c.patient_id for c in train_cases), frozenset(c.patient_id for c in fold.val),
        frozenset(c.patient_id for c in fold.test), frozenset().union(*(s.patients for s in synthetic)),
        generator, note), condition=condition.name)
    all_images = images + [s.image for s in synthetic]
    all_masks = masks + [s.mask for s in synthetic]
    torch.manual_seed(seed)  # the initial weights belong to the seed (issue 14: reruns differed)

    def on_epoch(epoch: int, loss: float) -> None:
        progress(ExperimentProgress("epoch", condition.name, fold.index, unit, total,
                                    f"{condition.name} fold {fold.index} epoch {epoch + 1}/{config.epochs}",
                                    epoch + 1, loss))

    augment = config.classic_preset if condition.classic_augmentation else None
    if config.box_detector:  # Faster R-CNN / RetinaNet (models.detectors) instead of the segmenter
        model, record = train_and_evaluate_box_detector(config, (all_images, all_masks), (val_images, val_masks),
                                                        (test_images, test_masks), seed=seed, augment_preset=augment,
                                                        on_epoch=on_epoch, cancel=cancel)
    else:
        model = build_segmenter(config.arch, base_channels=config.base_channels, depth=config.depth, norm=config.norm)
        train_segmenter(model, all_images, all_masks, val_images, val_masks, loss_name=config.loss,
                        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=seed,
                        device=config.device, augment_preset=augment, lr_patience=config.lr_patience,
                        min_lr=config.min_lr, on_epoch=on_epoch, cancel=cancel, n_synthetic=len(synthetic),
                        synthetic_per_epoch=config.synthetic_per_epoch, rotation_deg=config.rotation_deg)
        probs = predict_probabilities(model, test_images, batch_size=config.batch_size, device=config.device)
        record = evaluate_probabilities(probs, test_masks, prob_threshold=config.prob_threshold,
                                        min_prob=config.min_prob)
    record.update({"condition": condition.name, "fold": fold.index, "config_hash": config.hash(),
                   "n_train_real": len(images), "n_train_synthetic": len(synthetic),
                   "n_synthetic_per_epoch": len(synthetic) if config.box_detector else
                   len(synthetic_epoch_sample(len(synthetic), config.synthetic_per_epoch, seed, 0)),
                   "n_val": len(val_images),
                   "n_test": len(test_images), "test_cases": [c.case_id for c in fold.test],
                   "patients": isolation, "seconds": time.monotonic() - t0})
    if config.save_models:
        save = save_box_detector if config.box_detector else save_segmenter
        record["model_checkpoint"] = save(config, model, condition.name, fold.index,
                                          {"train": isolation["train"], "val": isolation["val"]}).as_posix()
    record["_model"] = model  # not serialized; hard-example mining reuses the trained detector
    record["_data"] = (images, masks, test_images, test_masks)
    record["_train_cases"] = train_cases
    record["_isolation"] = (generator, note)
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

    from lesion_studio.models.determinism import deterministic_torch

    lock = open_output_folder(config.out_dir, kind="evaluate", force=force, key="experiment.out_dir")
    try:
        with deterministic_torch(config.device, config.num_threads) as determinism:
            return _run_experiment_locked(config, progress=progress, cancel=cancel, resume=resume,
                                          determinism=determinism)
    finally:
        lock.release()


#: How the two FROC read-outs of every fold are defined (written into results.json).
FROC_READOUTS = {
    "froc": "boxes matched to lesion boxes at IoU >= 0.2, greedy by score, a second hit on a lesion is a false "
            "positive; sensitivity read as a step function (sens@Xfp) and froc_auc over 0.125-8 FP/image on a "
            "log2 axis",
    "froc_luna": "LUNA16-style: a detection hits a lesion when its box centre lies within the lesion's radius "
                 "(half its moment diameter, centred on its centroid); extra hits on a lesion are ignored; "
                 "sensitivity at 1/8..8 FP/image by linear interpolation (luna_sens@Xfp), luna_cpm = their mean",
}


def check_generator_before_training(config: ExperimentConfig, folds: list[Fold]) -> None:
    """Refuse a generator checkpoint that saw any fold's validation or test patients, before
    any fold trains (`ConfigError` naming the folds and patients)."""
    from lesion_studio.models.fold_generators import is_train_config
    from lesion_studio.models.patient_isolation import refuse_leaking_generator

    uses = config.task == "hard_example_mining" or any(c.synthetic_count > 0 for c in config.conditions)
    if uses and config.synthetic_generator == "checkpoint" and not is_train_config(config.synthesis_checkpoint):
        refuse_leaking_generator(config.synthesis_checkpoint, {f.index: held_out_patients(f) for f in folds})
    if config.sweep is not None:  # the [sweep] generators: their families, and no leak (models.sweeps)
        from lesion_studio.models.sweeps import check_sweep_before_training

        check_sweep_before_training(config.sweep, {f.index: held_out_patients(f) for f in folds})


def _isolation_summary(records: list[dict]) -> dict[str, Any]:
    """The result file's `patient_isolation`: `leakage: none` only when every fold record says so."""
    from lesion_studio.models.patient_isolation import NO_LEAKAGE, LeakageError

    unchecked = [f"{r['condition']} fold {r['fold']}" for r in records
                 if (r.get("patients") or {}).get("leakage") != NO_LEAKAGE]
    if unchecked:
        raise LeakageError(f"patient isolation was not checked for {', '.join(unchecked)}")
    return {"leakage": NO_LEAKAGE, "checked": len(records),
            "rule": "per condition x fold: no patient in two of train/val/test; synthetic images only from the "
                    "fold's training patients of the sampled fraction; no generator trained on a validation or "
                    "test patient (folds[*].patients lists the sets)"}


def _headline(metrics: dict[str, float]) -> str:
    """One fold's result in a progress line: region F1 (segmenter), else FROC AUC (box detector)."""
    if "region_f1" in metrics:
        return f"region F1 {metrics['region_f1']:.3f}"
    return f"FROC AUC {metrics.get('froc_auc', float('nan')):.3f}"


def check_detector_before_training(config: ExperimentConfig) -> None:
    """Build the box detector once with its `backbone_weights`, so that a missing or foreign
    weights file is refused (`ConfigError` naming the key) before any fold trains."""
    if config.box_detector and config.backbone_weights is not None:
        from lesion_studio.models.detectors import build_detector

        build_detector(config.detector_name, image_size_px=config.image_size_px, backbone=config.detector_backbone,
                       anchors_px=None, backbone_weights=config.backbone_weights)


def _run_experiment_locked(config: ExperimentConfig, *, progress: Callable[[ExperimentProgress], None] | None,
                           cancel: Any, resume: bool, determinism: dict[str, Any] | None = None) -> dict:
    """`run_experiment` while this process holds the results folder's lock."""
    progress = progress or (lambda event: None)
    dataset = load_dataset(config.dataset)
    folds = patient_folds(dataset.cases, config.folds, config.seed, config.val_fraction)
    check_generator_before_training(config, folds)
    check_detector_before_training(config)
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
                    if saved.get("config_hash") == config.hash() and "patients" in saved:
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
                                            f"{condition.name} fold {fold.index}: {_headline(record['metrics'])}"))
    names = [c.name for c in config.conditions]
    summary, friedman = summarize(config.to_dict(), records, names, config.baseline)
    if config.sweep is not None:  # P4 §4.2: per metric Friedman + Nemenyi, CD diagrams, one line each
        from lesion_studio.models.sweep_analysis import sweep_report

        extra = {**extra, "sweep": sweep_report(config.sweep, friedman, out_dir)}
    doc = {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "name": config.name, "task": config.task,
           "config": config.to_dict(), "config_hash": config.hash(), "conditions": names,
           "baseline": config.baseline, "folds": records, "summary": summary, "friedman": friedman,
           "froc_fp_rates": list(FROC_FP_RATES), "froc_auc_range": [0.125, 8.0],
           "node21_auc": "image-level ROC AUC (highest box score per image)", "froc_readouts": FROC_READOUTS,
           "detector": detector_description(config.detector_name, config.detector_backbone, config.backbone_weights),
           "patient_isolation": _isolation_summary(records), "determinism": determinism or {}, **extra}
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
