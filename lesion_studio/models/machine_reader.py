"""The machine reader: the realism benchmark's CNN reads a reader study beside the humans.

`run_machine_reader(study_dir, key_path)`:

1. rebuilds the study's design from the answer key (`design.config`) and reads the same real
   source again;
2. makes training patches from groups (series / patients) that the study does not show —
   every group named in the key is left out — half of the groups as real patches, the other
   half as synthetic ones made exactly like the study's (same models, placement, removal,
   field of view, jitter and rounding: `core/reader_study/cases.py`). Series the study left
   out for the library rule are training material here (only the library's own nodules stay
   out): the held-out split alone leaves the CNN too few patches;
3. trains `models/realism_classifier.py` on them (seeded, CPU by default: a few seconds to a
   minute);
4. reads every study case and writes `sessions/machine-cnn.json` in the reader-session format:
   call = synthetic when p(synthetic) >= 0.5, confidence = how far p lies from 0.5 on the
   study's 1..levels scale. The machine does not look for lesions: when the study asks
   "lesion present?" it always answers yes (its lesion-present numbers mean nothing).

The analysis lists it as a reader of kind "machine", never pooled with the humans.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from lesion_studio.core.errors import ConfigError
from lesion_studio.core.reader_study.answer_key import default_key_for, load_answer_key
from lesion_studio.core.reader_study.builder import StudyCancelled, load_sources
from lesion_studio.core.reader_study.cases import (
    classical_engine,
    make_free_site_case,
    make_matched_site_case,
    make_real_case,
)
from lesion_studio.core.reader_study.config import StudyConfig
from lesion_studio.core.reader_study.sources import SourceLesion, bin_of, size_bins
from lesion_studio.core.synthesis_engine import SynthesisEngine
from lesion_studio.models.realism_classifier import CT_VALUE_RANGE, train_realism_classifier

MACHINE_READER_ID = "machine-cnn"
#: Fewer training patches per class than this and the machine reader refuses to run.
MIN_TRAIN_PER_CLASS = 4


@dataclass(frozen=True)
class MachineReaderResult:
    """What the machine reader trained on and where it wrote its session."""

    session_path: Path
    n_train_real: int
    n_train_synthetic: int
    n_cases: int
    train_groups: int
    seconds: float


def confidence_of(probability: float, levels: int) -> int:
    """1 (p near 0.5) .. levels (p near 0 or 1)."""
    return int(min(levels, 1 + math.floor(abs(probability - 0.5) * 2.0 * levels)))


def _value_range(patches: np.ndarray, image_type: str) -> tuple[float, float]:
    """The CNN's input range: the benchmark's HU range for CT, 1-99 % of the patches otherwise."""
    if image_type == "ct":
        return CT_VALUE_RANGE
    lo, hi = np.percentile(patches, [1.0, 99.0])
    return float(lo), float(max(hi, lo + 1e-3))


def _resize_all(patches: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Stack patches at one shape (study patches differ only where spacings differ)."""
    import cv2

    out = [p if p.shape == shape else cv2.resize(p, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
           for p in patches]
    return np.stack(out).astype(np.float32)


def training_patches(config: StudyConfig, excluded_groups: set[str], *, max_per_class: int, seed: int,
                     engine_factory: Callable[[str], SynthesisEngine],
                     cancel: Callable[[], bool] | None = None) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """`(real, synthetic, groups used)` patches from groups outside the study, made like its cases."""
    rng = np.random.default_rng([seed, 7])
    sources = load_sources(config, training=True)
    bins = size_bins(config.size_bins_mm)
    quantum = 1.0 if all(im.integer_valued for im in sources.images) else 0.0
    by_group: dict[str, list[SourceLesion]] = defaultdict(list)
    for les in sources.lesions:
        if les.group not in excluded_groups and bin_of(bins, les.diameter_mm) is not None:
            by_group[les.group].append(les)
    groups = sorted(by_group)
    rng.shuffle(groups)
    real_groups, host_groups = groups[0::2], groups[1::2]
    engines = {m: engine_factory(m) for m in config.models}
    removal = classical_engine(config.removal) if config.placement == "matched-site" else None
    real: list[np.ndarray] = []
    diameters: list[float] = []
    for g in real_groups:
        for les in by_group[g]:
            if len(real) >= max_per_class:
                break
            if cancel is not None and cancel():
                raise StudyCancelled("the machine reader was cancelled")
            case = make_real_case(les, "", config, rng, quantum)
            if case is not None:
                real.append(case.pixels)
                diameters.append(les.diameter_mm)
    synthetic: list[np.ndarray] = []
    if config.placement == "matched-site":
        hosts = [les for g in host_groups for les in by_group[g]]
    else:
        hosts = [im for im in sources.images if im.group in set(host_groups)]
    for item in hosts:
        if len(synthetic) >= max_per_class or not diameters:
            break
        if cancel is not None and cancel():
            raise StudyCancelled("the machine reader was cancelled")
        model = config.models[len(synthetic) % len(config.models)]
        if config.placement == "matched-site":
            case = make_matched_site_case(item, "", model, engines[model], removal, config, rng, quantum)
        else:
            d = diameters[len(synthetic) % len(diameters)]
            case = make_free_site_case(item, d, "", model, engines[model], config, rng, quantum, None)
        if case is not None:
            synthetic.append(case.pixels)
    return real, synthetic, len(groups)


def run_machine_reader(study_dir: str | Path, key_path: str | Path | None = None, *, epochs: int | None = None,
                       max_train_per_class: int | None = None, seed: int = 0, device: str = "cpu",
                       engine_factory: Callable[[str], SynthesisEngine] | None = None,
                       progress: Callable[[str], None] | None = None,
                       cancel: Callable[[], bool] | None = None) -> MachineReaderResult:
    """Train the CNN outside the study and write its session (see the module docstring)."""
    from lesion_studio.core.reader_study.session import Answer, ReaderSession, load_study

    t0 = time.perf_counter()
    study = load_study(study_dir)
    key = load_answer_key(key_path if key_path is not None else default_key_for(study.folder), study.study_id)
    design = key.design.get("config")
    if not isinstance(design, dict):
        raise ConfigError("the answer key has no design record; rebuild the study with this version", key.path)
    config = StudyConfig.from_dict(design)
    excluded = {c.group for c in key.cases.values()}
    for role in ("real", "synthetic", "lesion-free"):
        excluded |= set(key.design.get("groups", {}).get(role, []))
    say = progress or (lambda message: None)
    say("making training patches from series/patients outside the study")
    factory = engine_factory or classical_engine
    real, synthetic, n_groups = training_patches(
        config, excluded, max_per_class=max_train_per_class or config.machine_max_train_per_class,
        seed=seed, engine_factory=factory, cancel=cancel)
    if min(len(real), len(synthetic)) < MIN_TRAIN_PER_CLASS:
        raise ConfigError(
            f"the machine reader needs at least {MIN_TRAIN_PER_CLASS} training patches per class from series/"
            f"patients the study does not show; this source leaves {len(real)} real and {len(synthetic)} "
            f"synthetic ({n_groups} unused groups): use a larger source or fewer cases per class", key.path)
    cases = [study.case_image(i) for i in range(study.n_cases)]
    shapes = [p.shape for p in cases]
    shape = max(set(shapes), key=shapes.count)
    x = _resize_all(real + synthetic, shape)
    y = np.array([0] * len(real) + [1] * len(synthetic), dtype=np.float32)
    image_type = "ct" if study.units == "HU" else "radiograph"
    say(f"training the CNN on {len(real)} real and {len(synthetic)} synthetic patches")
    classifier = train_realism_classifier(x, y, epochs=epochs or config.machine_epochs, seed=seed,
                                          value_range=_value_range(x, image_type), device=device,
                                          recalibrate=True)
    say(f"reading {study.n_cases} cases")
    t1 = time.perf_counter()
    probs = classifier.probabilities(_resize_all(cases, shape))
    per_case = (time.perf_counter() - t1) / max(study.n_cases, 1)
    levels = study.confidence_levels
    answers = []
    for case, p in zip(study.cases, probs):
        call = "synthetic" if p >= 0.5 else "real"
        answers.append(Answer(case.id, call if study.ask_real_or_synthetic else None,
                              confidence_of(float(p), levels) if study.ask_real_or_synthetic else None,
                              True if study.ask_lesion_present else None, per_case))
    session = ReaderSession(study=study, reader=MACHINE_READER_ID, answers=answers, position=study.n_cases)
    path = session.save()
    return MachineReaderResult(session_path=path, n_train_real=len(real), n_train_synthetic=len(synthetic),
                               n_cases=study.n_cases, train_groups=n_groups, seconds=time.perf_counter() - t0)
