"""Patient isolation of an experiment fold (issue 14): whose images each fold's model saw.

A fold's record lists the patients of its training images (the sampled data fraction), of its
validation and test images, the patients its synthetic images were made from, and those the
generator that made them was trained on. `check_fold_isolation` raises `LeakageError` naming
the patients when a test or validation patient appears anywhere a model learned from, or when
a synthetic image comes from outside the fraction's training patients; only a fold that
passes is recorded, with `"leakage": "none"`.

A generator checkpoint carries its patients in its metadata (`save_checkpoint(patients=...)`,
written by the trainer); `refuse_leaking_generator` refuses one that saw a fold's test or
validation patients, or that records none, before any training starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesion_studio.core.errors import ConfigError, LesionStudioError

#: What the result file says about a fold that passed `check_fold_isolation`.
NO_LEAKAGE = "none"


class LeakageError(LesionStudioError):
    """A fold's model would learn from (or be selected on) a patient it is tested on."""


def _names(ids: Iterable[str], limit: int = 12) -> str:
    ids = sorted(ids)
    shown = ", ".join(ids[:limit])
    return shown + (f" … ({len(ids)} in all)" if len(ids) > limit else "")


def checkpoint_patients(checkpoint: str | Path) -> dict[str, list[str]] | None:
    """`{"train": [...], "val": [...]}` from a checkpoint's JSON sidecar; None when it records none.

    Reads only the sidecar (no tensors), so the refusal costs nothing.
    """
    from lesion_studio.models.checkpoint import check_sidecar, stem_of

    stem = stem_of(checkpoint)
    json_path = stem.with_name(stem.name + ".json")
    try:
        meta = check_sidecar(json.loads(json_path.read_text(encoding="utf-8")), json_path)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the checkpoint metadata: {exc}", json_path) from exc
    patients = meta.get("patients")
    return None if patients is None else {k: list(v) for k, v in patients.items()}


def refuse_leaking_generator(checkpoint: str | Path, held_out: Mapping[int, set[str]]) -> frozenset[str]:
    """The patients `checkpoint` learned from (train ∪ val), after checking them against every
    fold's held-out (test and validation) patients `held_out[fold]`.

    `ConfigError` naming the checkpoint, the folds and the patients when they intersect, or
    when the checkpoint records no patients (made before patient tracking: unverifiable).
    """
    recorded = checkpoint_patients(checkpoint)
    if recorded is None:
        raise ConfigError("this generator checkpoint records no training patients, so the experiment cannot "
                          "check that it never saw a test patient; retrain it with this version, or give "
                          "synthesis_checkpoint a generator train TOML to train one per fold", checkpoint)
    seen = frozenset(p for ids in recorded.values() for p in ids)
    leaks = {fold: seen & set(patients) for fold, patients in held_out.items()}
    leaks = {fold: ids for fold, ids in leaks.items() if ids}
    if leaks:
        detail = "; ".join(f"fold {fold}: {_names(ids)}" for fold, ids in sorted(leaks.items()))
        raise ConfigError(f"patient leakage: this generator was trained on patients that are test or validation "
                          f"patients of the experiment ({detail}). Train the generator on other patients, or give "
                          "synthesis_checkpoint a generator train TOML so that each fold trains its own on that "
                          "fold's training patients", checkpoint)
    return seen


@dataclass(frozen=True)
class FoldPatients:
    """The patient sets of one (condition, fold). `generator` is None when no generator made the
    synthetic images (none, or the phantom painter); `generator_note` says which case it is."""

    fold: int
    train: frozenset[str]
    val: frozenset[str]
    test: frozenset[str]
    synthetic: frozenset[str] = frozenset()
    generator: frozenset[str] | None = None
    generator_note: str = "no generator"

    def problems(self) -> list[str]:
        """Every isolation failure, in words naming the patients; empty when isolated."""
        out = []
        for a, b, what in ((self.train, self.test, "training and test"), (self.train, self.val, "training and validation"),
                           (self.val, self.test, "validation and test")):
            if a & b:
                out.append(f"patients in both the {what} sets: {_names(a & b)}")
        outside = self.synthetic - self.train
        if outside:
            out.append(f"synthetic images made from patients outside this fold's training patients "
                       f"(of the sampled fraction): {_names(outside)}")
        if self.generator is not None:
            for held, what in ((self.test, "test"), (self.val, "validation")):
                if self.generator & held:
                    out.append(f"the generator was trained on {what} patients: {_names(self.generator & held)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"train": sorted(self.train), "val": sorted(self.val), "test": sorted(self.test),
                "synthetic": sorted(self.synthetic),
                "generator": None if self.generator is None else sorted(self.generator),
                "generator_note": self.generator_note, "leakage": NO_LEAKAGE}


def check_fold_isolation(patients: FoldPatients, *, condition: str = "") -> dict[str, Any]:
    """The fold's patient record with `"leakage": "none"`; `LeakageError` naming the patients otherwise."""
    problems = patients.problems()
    if problems:
        where = f"condition {condition!r} fold {patients.fold}" if condition else f"fold {patients.fold}"
        raise LeakageError(f"patient leakage in {where}: " + "; ".join(problems))
    return patients.to_dict()
