"""The real-vs-synthetic CNN and the machine reader of a reader study."""

from __future__ import annotations

import json

import numpy as np
import torch

from lesion_studio.core.reader_study.analysis import analyze_study
from lesion_studio.core.reader_study.answer_key import load_answer_key
from lesion_studio.core.reader_study.builder import build_study
from lesion_studio.core.reader_study.config import load_study_config
from lesion_studio.core.reader_study.session import ReaderSession, load_study
from lesion_studio.models.machine_reader import MACHINE_READER_ID, confidence_of, run_machine_reader
from lesion_studio.models.realism_classifier import normalize_patches, train_realism_classifier
from tests._study_sources import lidc_dihedral_dataset, study_toml


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Lung-like noise (HU); label 1 patches carry a bright 6 px disc."""
    rng = np.random.default_rng(seed)
    x = rng.normal(-800, 60, size=(n, 24, 24)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.float32)
    rr, cc = np.mgrid[:24, :24]
    disc = (rr - 12) ** 2 + (cc - 12) ** 2 <= 9
    x[y == 1] += disc * 700.0
    return x, y


def test_the_cnn_learns_an_obvious_difference_and_is_seeded() -> None:
    from sklearn.metrics import roc_auc_score

    torch.set_num_threads(1)
    x, y = _blobs(64, 0)
    test_x, test_y = _blobs(32, 9)
    plain = train_realism_classifier(x, y, epochs=8, seed=1)
    a = train_realism_classifier(x, y, epochs=8, seed=1, recalibrate=True)
    b = train_realism_classifier(x, y, epochs=8, seed=1, recalibrate=True)
    pa = a.probabilities(test_x)
    assert np.array_equal(pa, b.probabilities(test_x))  # one seed, one model
    assert roc_auc_score(test_y, plain.logits(test_x)) >= 0.95  # the benchmark's use: ranking
    # after 8 short epochs the running batch-norm averages lag: every logit falls on one side of
    # 0 without recalibration, and the calls at p = 0.5 are right only after it
    assert np.mean((pa >= 0.5) == (test_y == 1)) >= 0.9


def test_inputs_are_clipped_to_the_benchmark_range() -> None:
    out = normalize_patches(np.array([[[-3000.0, -1100.0, -300.0, 500.0, 2000.0]]]))
    assert np.allclose(out, [[[-1.0, -1.0, 0.0, 1.0, 1.0]]])


def test_confidence_scale() -> None:
    assert [confidence_of(p, 5) for p in (0.5, 0.55, 0.65, 0.75, 0.85, 0.95, 1.0, 0.0)] == [1, 1, 2, 3, 4, 5, 5, 5]


def test_machine_reader_trains_outside_the_study_and_writes_a_session(tmp_path) -> None:
    torch.set_num_threads(1)
    lidc_dihedral_dataset(tmp_path / "ds")
    config = load_study_config(study_toml(tmp_path / "s.toml", out_dir="study", source='dataset = "ds"',
                                          cases_per_class=4, size_bins_mm=[3.0], field_of_view_mm=24.0))
    result = build_study(config)
    machine = run_machine_reader(result.study_dir, epochs=2, seed=0)
    key = load_answer_key(result.key_path)
    study = load_study(result.study_dir)
    assert machine.session_path == result.study_dir / "sessions" / f"{MACHINE_READER_ID}.json"
    assert machine.n_train_real >= 4 and machine.n_train_synthetic >= 4
    assert machine.train_groups == 24 - len({k.group for k in key.cases.values()})  # none the study shows
    session = ReaderSession.load(study, MACHINE_READER_ID)  # the reader format, complete
    assert session.finished and len(session.answers) == study.n_cases
    doc = json.loads(machine.session_path.read_text())
    assert doc["format"] == "lesion-studio-reader-session" and doc["reader"] == MACHINE_READER_ID
    results = analyze_study(result.study_dir, n_bootstrap=200)
    assert results["readers"][MACHINE_READER_ID]["kind"] == "machine"
    assert results["pooled"] is None  # no human has read yet; the machine is never pooled


def test_a_learned_checkpoint_and_a_classical_model_share_the_synthetic_cases(tmp_path) -> None:
    """`[synthetic] models` mixes a classical family and a checkpoint stem (via the CLI's factory)."""
    from pathlib import Path

    from lesion_studio.models.study_engines import study_engine_factory

    demo = Path(__file__).resolve().parents[2] / "lesion_studio" / "resources" / "models" / "ct_nodule_inpaint"
    lidc_dihedral_dataset(tmp_path / "ds")
    toml = study_toml(tmp_path / "s.toml", out_dir="study", source='dataset = "ds"', cases_per_class=4,
                      size_bins_mm=[3.0], field_of_view_mm=24.0)
    toml.write_text(toml.read_text() + f'[synthetic]\nmodels = ["real-nodule", "{demo}"]\n')
    config = load_study_config(toml)
    result = build_study(config, engine_factory=study_engine_factory(tmp_path, "cpu"))
    key = load_answer_key(result.key_path)
    models = sorted(k.model for k in key.cases.values() if k.truth == "synthetic")
    assert models == ["ct_nodule_inpaint", "ct_nodule_inpaint", "real-nodule", "real-nodule"]
    learned = next(k for k in key.cases.values() if k.model == "ct_nodule_inpaint")
    assert learned.record["request"]["insertion"]["mask_source"]["kind"] == "drawn"  # the removed lesion's shape
