"""Issue 14's acceptance experiments: the real-nodule synthetic pool (models.synthetic_dataset),
its refusal of library patients, the two experiment TOMLs, and the per-fraction comparison of
scripts/run_acceptance_experiments.py."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lesion_studio.core.classical.nodule_library import bundled_library, heldout_series_uids
from lesion_studio.core.dataset import load_dataset, validate_dataset, write_dataset_json
from lesion_studio.core.errors import ConfigError
from lesion_studio.models.experiments import load_experiment_config
from lesion_studio.models.synthetic_dataset import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]


def _ct_dataset(root: Path, patients: list[str]) -> Path:
    """One 48 x 48 HU lung patch with a 6 px nodule per patient."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    cases = []
    yy, xx = np.mgrid[:48, :48]
    for i, patient in enumerate(patients):
        mask = ((yy - 24) ** 2 + (xx - 22 - i) ** 2 <= 9).astype(np.uint8)
        image = np.where(mask > 0, 30, -850).astype(np.int16)
        np.save(root / "images" / f"c{i}.npy", image)
        np.save(root / "masks" / f"c{i}.npy", mask)
        cases.append({"id": f"c{i}", "image": f"images/c{i}.npy", "mask": f"masks/c{i}.npy", "patient_id": patient,
                      "has_lesion": True, "split": "train"})
    write_dataset_json(root, cases, description="test", spacing_mm=(1.0, 1.0), modality="CT")
    (root / "ATTRIBUTION.md").write_text("# test data\n")
    return root


def test_real_nodule_pool_keeps_patients_and_records_library_series(tmp_path):
    held = sorted(heldout_series_uids())[:2]
    real = _ct_dataset(tmp_path / "real", held)
    summary = write_synthetic_dataset(real, tmp_path / "syn", per_case=2, seed=3)
    assert summary["cases"] == 4 and summary["failed"] == 0
    assert validate_dataset(tmp_path / "syn").ok
    syn = load_dataset(tmp_path / "syn")
    library = set(bundled_library().series_uids)
    for case in syn.cases:
        source = case.extra["source_case"]
        assert case.patient_id == held[int(source[1:])]
        others = set(case.extra["source_patients"]) - {case.patient_id}
        assert others and others <= library and not others & set(held)
        assert syn.read_mask(case).any()
    images = [np.load(c.image_path) for c in syn.cases]
    assert not np.array_equal(images[0], np.load(real / "images" / "c0.npy"))
    assert "test data" in (tmp_path / "syn" / "ATTRIBUTION.md").read_text()
    assert write_synthetic_dataset(real, tmp_path / "syn", per_case=2, seed=3) == summary  # reused


def test_real_nodule_pool_refuses_patients_the_library_comes_from(tmp_path):
    leaking = bundled_library().series_uids[0]
    real = _ct_dataset(tmp_path / "real", [sorted(heldout_series_uids())[0], leaking])
    with pytest.raises(ConfigError, match="patient leakage.*" + leaking.replace(".", r"\.")) as err:
        write_synthetic_dataset(real, tmp_path / "syn")
    assert err.value.path == real / "dataset.json"


@pytest.mark.parametrize("name, task", [("node21_seg", "segmentation"), ("kidney_stones_det", "detection")])
def test_acceptance_configs_are_valid(name, task):
    config = load_experiment_config(REPO / "benchmarks" / "experiments" / f"{name}.toml")
    assert config.task == task and config.folds == 3 and config.num_threads == 1
    fractions = sorted({c.data_fraction for c in config.conditions})
    assert fractions == [0.1, 0.25, 0.5, 1.0]
    for f in fractions:  # real only and real + synthetic at every fraction
        assert sorted(c.synthetic_count > 0 for c in config.conditions if c.data_fraction == f) == [False, True]
    text = (REPO / "benchmarks" / "experiments" / f"{name}.toml").read_text()
    assert "TIME:" in text and "SMALL NETWORK ON PURPOSE" in text


def _script():
    spec = importlib.util.spec_from_file_location("run_acceptance_experiments",
                                                  REPO / "scripts" / "run_acceptance_experiments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fraction_comparisons_pair_folds():
    folds = []
    for k, (real, syn) in enumerate([(0.5, 0.6), (0.4, 0.6), (0.6, 0.7)]):
        folds += [{"condition": "real@0.5", "fold": k, "metrics": {"dice": real}},
                  {"condition": "real+syn@0.5", "fold": k, "metrics": {"dice": syn}}]
    doc = {"task": "segmentation", "conditions": ["real@0.5", "real+syn@0.5"], "folds": folds}
    out = _script().fraction_comparisons(doc)["0.5"]["dice"]
    assert out["per_fold_diff"] == pytest.approx([0.1, 0.2, 0.1])
    assert out["diff_mean"] == pytest.approx(0.4 / 3)
    lo, hi = out["diff_ci95"]
    assert lo < out["diff_mean"] < hi and out["n_folds"] == 3 and 0 < out["p_paired_t"] < 1
    assert out["real"] == pytest.approx(0.5) and not math.isnan(out["real+syn"])
    json.dumps(out, allow_nan=False)
