"""A generator per experiment fold (issue 14): trained only on that fold's training patients.

When an experiment's `synthesis_checkpoint` is a generator train TOML (`lesion-studio train`'s
format) instead of a checkpoint, each (fold, data fraction) trains its own generator on
exactly the patients whose real images that fold's segmenter trains on, so no generator ever
saw a test or validation patient. The train TOML's `run.dataset`, `run.out_dir`, `run.seed` and
`run.device` are replaced (the experiment's dataset, `out_dir/generators/<fraction>__fold<k>`,
the fold's seed, the experiment's device); its `run.val_fraction` holds out whole patients of
those training patients for the generator's own validation. A finished generator whose
recorded patients and settings match is reused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from lesion_studio.core.dataset import CaseRecord, Dataset
from lesion_studio.core.errors import ConfigError


def is_train_config(path: str | Path | None) -> bool:
    """True when `synthesis_checkpoint` names a generator train TOML (train one per fold)."""
    return path is not None and Path(path).suffix.lower() == ".toml"


def split_by_patient(cases: tuple[CaseRecord, ...], val_fraction: float, seed: int
                     ) -> tuple[list[CaseRecord], list[CaseRecord]]:
    """Train / validation cases, whole patients each (`round(val_fraction · patients)`, ≥ 1 of ≥ 2)."""
    patients = sorted({c.patient_id for c in cases})
    if val_fraction <= 0 or len(patients) < 2:
        return list(cases), []
    n_val = min(max(1, int(round(val_fraction * len(patients)))), len(patients) - 1)
    held = set(np.random.default_rng(seed).choice(patients, size=n_val, replace=False).tolist())
    return [c for c in cases if c.patient_id not in held], [c for c in cases if c.patient_id in held]


class _CancelAdapter:
    """The trainer polls `.cancelled`; the experiment's token may be a callable or an object."""

    def __init__(self, cancel: Any) -> None:
        self._cancel = cancel

    @property
    def cancelled(self) -> bool:
        if self._cancel is None:
            return False
        return bool(self._cancel()) if callable(self._cancel) else bool(getattr(self._cancel, "cancelled", False))


def train_fold_generator(train_toml: Path, dataset: Dataset, cases: tuple[CaseRecord, ...], out_dir: Path, *,
                         seed: int, device: str, cancel: Any = None) -> Path:
    """The final checkpoint of a generator trained on `cases` only (reused when already there).

    Raises `ConfigError` (naming the TOML) when those cases give no training patches.
    """
    from lesion_studio.models.config import load_config
    from lesion_studio.models.data import Normalizer, build_patches, dataset_fingerprint, dataset_value_range
    from lesion_studio.models.patient_isolation import checkpoint_patients
    from lesion_studio.models.presets import resolve_preset
    from lesion_studio.models.trainer import Trainer

    config = load_config(train_toml)
    config.run = dataclasses.replace(config.run, dataset=str(dataset.root), out_dir=str(out_dir), seed=int(seed),
                                     device=device)
    train_cases, val_cases = split_by_patient(cases, config.run.val_fraction, seed)
    final = out_dir / "final"
    wanted = {"train": sorted({c.patient_id for c in train_cases}), "val": sorted({c.patient_id for c in val_cases})}
    sidecar = final.with_name("final.json")
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        recorded = checkpoint_patients(final) or {}
        same_patients = recorded.keys() == wanted.keys() and all(set(recorded[k]) <= set(wanted[k]) for k in wanted)
        # the trainer records the config with the preset's numbers filled in (models/presets.py)
        written = dataclasses.replace(config, model=resolve_preset(config.model))
        if meta.get("config") == json.loads(json.dumps(written.to_dict())) and same_patients:
            return final  # patients without patches (lesion-free cases) are not recorded: subsets match
    run = config.run
    if run.value_range is not None:
        normalizer = Normalizer(float(run.value_range[0]), float(run.value_range[1]))
    else:
        normalizer = dataset_value_range(dataset, train_cases)
    train = build_patches(dataset, train_cases, config.model, normalizer, lesion_label=run.lesion_label, seed=run.seed)
    val = build_patches(dataset, val_cases, config.model, normalizer, lesion_label=run.lesion_label, seed=run.seed)
    if len(train) == 0:
        raise ConfigError(f"the fold's training patients give no {config.family} patches (no lesions?)", train_toml)
    result = Trainer(config, cancel=_CancelAdapter(cancel), force=True,
                     patches=(train, val, normalizer, dataset_fingerprint(dataset))).run()
    if result.cancelled:
        from lesion_studio.models.experiments import ExperimentCancelled

        raise ExperimentCancelled()
    return Path(result.checkpoint)
