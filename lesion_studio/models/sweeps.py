"""Generated-count sweeps (issue 15, P4 §4.2): the generators of a `[sweep]` per fold, and the
whole generated cases they add to a condition's training set.

A sweep generator path that is a train TOML trains one generator per fold on exactly that
fold's training patients (`models.fold_generators`, in `out_dir/generators/sweep-<name>...`),
once per fold: every count and augmentation setting of the fold reuses it. MC-SG trains its
M-SG and C-SG that way, each from its own TOML. A checkpoint is used as it is after the leak
check (`models.patient_isolation.refuse_leaking_generator`): one that saw any fold's
validation or test patient, or records no patients, is refused before anything trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lesion_studio.core.dataset import CaseRecord, Dataset
from lesion_studio.core.errors import ConfigError
from lesion_studio.models.pair_source import PairSamplerSource
from lesion_studio.models.sweep_config import FAMILIES, SweepConfig, SweepGenerator
from lesion_studio.models.synthetic_sources import SyntheticCase


def _checkpoint_family(path: Path) -> str:
    """The family a checkpoint's JSON sidecar names (no tensors read)."""
    import json

    from lesion_studio.models.checkpoint import check_sidecar, stem_of

    stem = stem_of(path)
    json_path = stem.with_name(stem.name + ".json")
    try:
        return check_sidecar(json.loads(json_path.read_text(encoding="utf-8")), json_path)["family"]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the checkpoint metadata: {exc}", json_path) from exc


def _family_of(path: Path) -> str:
    """The generator family of a train TOML or a checkpoint."""
    from lesion_studio.models.config import load_config
    from lesion_studio.models.fold_generators import is_train_config

    return load_config(path).family if is_train_config(path) else _checkpoint_family(path)


def check_sweep_before_training(sweep: SweepConfig, held_out: Mapping[int, set[str]]) -> None:
    """Before any fold trains: every sweep generator path holds the family its kind needs
    (stylegan2-joint for B-SG; stylegan2-mask and stylegan2-cond for MC-SG), and every
    checkpoint given directly saw no fold's validation or test patient (`held_out[fold]`).
    `ConfigError` naming the generator, the file and, for a leak, the folds and patients."""
    from lesion_studio.models.fold_generators import is_train_config
    from lesion_studio.models.patient_isolation import refuse_leaking_generator

    for generator in sweep.generators:
        for role, path in generator.paths:
            wanted = FAMILIES[generator.kind][role]
            found = _family_of(path)
            if found != wanted:
                raise ConfigError(f"sweep generator {generator.name!r} ({generator.kind}): {role} must be a {wanted} "
                                  f"train TOML or checkpoint, this one is {found!r}", path)
            if not is_train_config(path):
                refuse_leaking_generator(path, held_out)


def fold_pair_source(generator: SweepGenerator, *, fold_index: int, train_cases: tuple[CaseRecord, ...],
                     held_out: set[str], dataset: Dataset, out_dir: Path, device: str, seed: int, psi: float = 1.0,
                     cancel: Any = None) -> tuple[PairSamplerSource, frozenset[str], str]:
    """The pair source of `generator` for one fold, every patient its generators learned from,
    and a note saying how they came to be (trained for this fold, or which checkpoint).

    The cases carry the dataset's patients among those (a checkpoint trained elsewhere carries
    none: its patients are no patient of this dataset, and the record's `generator` lists them).
    """
    from lesion_studio.models.fold_generators import is_train_config, train_fold_generator
    from lesion_studio.models.patient_isolation import checkpoint_patients, refuse_leaking_generator

    checkpoints: dict[str, Path] = {}
    seen: set[str] = set()
    notes = []
    for role, path in generator.paths:
        if is_train_config(path):
            suffix = "" if generator.kind == "b-sg" else f"-{role}"
            out = out_dir / "generators" / f"sweep-{generator.name}{suffix}__fold{fold_index}"
            checkpoint = train_fold_generator(path, dataset, train_cases, out, seed=seed, device=device, cancel=cancel)
            seen.update(p for ids in (checkpoint_patients(checkpoint) or {}).values() for p in ids)
            notes.append(f"{role} trained for this fold on its training patients from {path.name}")
        else:
            checkpoint = path
            seen.update(refuse_leaking_generator(path, {fold_index: held_out}))
            notes.append(f"{role} checkpoint {path}")
        checkpoints[role] = checkpoint
    ours = {c.patient_id for c in dataset.cases}
    first = checkpoints.get("checkpoint", checkpoints.get("mask"))
    source = PairSamplerSource(first, checkpoints.get("image"), device=device, psi=psi,
                               patients=frozenset(seen & ours))
    return source, frozenset(seen), f"{generator.kind} {generator.name!r}: " + "; ".join(notes)


def generated_cases(sweep: SweepConfig, name: str, count: int, *, fold_index: int,
                    train_cases: tuple[CaseRecord, ...], held_out: set[str], dataset: Dataset, out_dir: Path,
                    size_px: int, device: str, seed: int,
                    cancel: Any = None) -> tuple[list[SyntheticCase], frozenset[str], str]:
    """`count` whole generated cases of sweep generator `name` for one fold, at `size_px`² in
    image units; the patients its generator learned from and the note (see `fold_pair_source`)."""
    source, seen, note = fold_pair_source(sweep.generator(name), fold_index=fold_index, train_cases=train_cases,
                                          held_out=held_out, dataset=dataset, out_dir=out_dir, device=device,
                                          seed=seed, psi=sweep.psi, cancel=cancel)
    return source.synthesize(count, seed, size_px), seen, note
