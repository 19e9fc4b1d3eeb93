"""Experiment runner: config parsing, patient folds, fractions, resume, cancel, hard-example
mining, and the tiny end-to-end experiment through `lesion-studio evaluate` (CPU, < 3 min)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lesion_studio.app.cli import main as cli_main
from lesion_studio.core.dataset import load_dataset
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.models.detection import detect_from_probability, lesion_diameters_px
from lesion_studio.models.experiments import (
    ConditionConfig, ExperimentCancelled, ExperimentConfig, experiment_config_from_dict, load_results,
    patient_folds, run_experiment, sample_by_patient,
)
from lesion_studio.models.hard_example_mining import missed_lesion_diameters, read_diameter_file, write_diameter_file
from lesion_studio.models.progress import CancelToken

TINY = dict(folds=2, image_size_px=64, arch="unet", base_channels=6, depth=3, epochs=4, batch_size=4,
            lr=3e-3, synthetic_generator="phantom_painter")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    generate_phantom_dataset(root, "chest", 12, seed=3, size_px=64)
    return root


def test_patient_folds_are_disjoint_and_cover_everyone(phantom):
    ds = load_dataset(phantom)
    folds = patient_folds(ds.cases, 3, seed=0)
    tested = [c.case_id for f in folds for c in f.test]
    assert sorted(tested) == sorted(c.case_id for c in ds.cases)
    for f in folds:
        sets = [{c.patient_id for c in part} for part in (f.train, f.val, f.test)]
        assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
        assert sets[1]
    with pytest.raises(ConfigError):
        patient_folds(ds.cases, 100, seed=0)


def test_fraction_keeps_whole_patients(phantom):
    ds = load_dataset(phantom)
    half = sample_by_patient(ds.cases, 0.5, seed=1)
    patients = {c.patient_id for c in half}
    assert len(patients) == 3
    assert all(c in half for c in ds.cases if c.patient_id in patients)


def test_config_from_toml_dict_grid_and_errors(tmp_path):
    cfg = experiment_config_from_dict({
        "experiment": {"name": "g", "dataset": "data", "folds": 3, "synthetic_dataset": "syn"},
        "grid": {"synthetic_counts": [0, 20], "data_fractions": [1.0, 0.25], "classic_augmentation": [False]},
    }, tmp_path)
    assert [c.name for c in cfg.conditions] == ["real", "real+syn20", "real@0.25", "real+syn20@0.25"]
    assert cfg.dataset == (tmp_path / "data").resolve() and cfg.baseline == "real"
    with pytest.raises(ConfigError):
        experiment_config_from_dict({"experiment": {"name": "x", "dataset": "d", "bogus": 1}})
    with pytest.raises(ConfigError):   # synthetic images but no source of them
        experiment_config_from_dict({"experiment": {"name": "x", "dataset": "d"},
                                     "conditions": [{"name": "real"}, {"name": "s", "synthetic_count": 5}]})


def test_detection_candidates_and_diameters():
    prob = np.zeros((16, 16), np.float32)
    prob[2:5, 2:5] = 0.9
    prob[10, 10] = 0.2
    boxes, scores = detect_from_probability(prob, 0.1)
    assert boxes.tolist() == [[2, 2, 5, 5], [10, 10, 11, 11]]
    assert scores.tolist() == pytest.approx([0.9, 0.2])
    # a blob at a low level enclosing a peak is not an extra candidate
    blob = np.full((16, 16), 0.06, np.float32)
    blob[6:9, 6:9] = 0.8
    b_boxes, b_scores = detect_from_probability(blob, 0.05)
    assert b_boxes.tolist() == [[6, 6, 9, 9]] and b_scores.tolist() == pytest.approx([0.8])
    mask = prob > 0.5
    assert lesion_diameters_px(mask)[0] == pytest.approx(2 * np.sqrt(9 / np.pi))
    missed, found = missed_lesion_diameters(prob[None] * 0, [mask])
    assert missed.size == 1 and found.size == 0
    missed, found = missed_lesion_diameters(prob[None], [mask])
    assert missed.size == 0 and found.size == 1


def test_diameter_file_is_readable_by_batch_export(tmp_path):
    from lesion_studio.core.export.config import read_diameter_file as batch_read

    path = write_diameter_file(tmp_path / "missed.json", np.array([2.0, 4.0]), 0.5, fold=0)
    assert read_diameter_file(path)["diameters_px"] == [2.0, 4.0]
    assert batch_read(path) == (1.0, 2.0)


def test_cancel_keeps_nothing_half_done(phantom, tmp_path):
    token = CancelToken()
    events = []

    def progress(e):
        events.append(e)
        if e.stage == "epoch":
            token.cancel()

    cfg = ExperimentConfig(name="c", dataset=phantom, out_dir=tmp_path / "out", **TINY)
    with pytest.raises(ExperimentCancelled):
        run_experiment(cfg, progress=progress, cancel=token)
    assert not list((tmp_path / "out").glob("folds/*.json"))


def test_end_to_end_two_conditions_two_folds_via_cli(phantom, tmp_path, monkeypatch):
    """The tiny end-to-end experiment: results files, per-fold values, significance, resume."""
    toml = tmp_path / "tiny.toml"
    toml.write_text(f"""
[experiment]
name = "tiny"
task = "segmentation"
dataset = "{phantom}"
out_dir = "out"
folds = 2
seed = 0
synthetic_generator = "phantom_painter"   # cheap non-GAN stand-in for synthetic images
[model]
arch = "unet"
base_channels = 6
depth = 3
loss = "focal_tversky"
image_size_px = 64
[training]
epochs = 4
batch_size = 4
lr = 3e-3
[[conditions]]
name = "real"
[[conditions]]
name = "real+synthetic"
synthetic_count = 8
""")
    assert cli_main(["evaluate", str(toml), "--quiet"]) == 0
    out = tmp_path / "out"
    doc = load_results(out)
    assert doc["conditions"] == ["real", "real+synthetic"]
    assert len(doc["folds"]) == 4 and {f["fold"] for f in doc["folds"]} == {0, 1}
    syn = [f for f in doc["folds"] if f["condition"] == "real+synthetic"]
    assert all(f["n_train_synthetic"] == 8 for f in syn)
    s = doc["summary"]["real+synthetic"]["region_f1"]
    assert s["n"] == 2 and 0 <= s["mean"] <= 1 and "p_vs_baseline" in s
    assert doc["friedman"]["region_f1"]["skipped"]            # two conditions: no Friedman
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["condition"] for r in rows} == {"real", "real+synthetic"}
    assert (out / "summary.csv").exists() and len(list(out.glob("folds/*.json"))) == 4
    curve = doc["folds"][0]["froc"]
    assert curve["fp_per_image"][0] == 0 and len(curve["sensitivity"]) == len(curve["fp_per_image"])
    # resume: a second run recomputes nothing (no fold is trained again; no clock involved)
    import lesion_studio.models.experiments as experiments

    def no_training(*_args, **_kwargs):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(experiments, "run_fold", no_training)
    assert cli_main(["evaluate", str(toml), "--quiet"]) == 0
    assert load_results(out)["summary"] == json.loads(json.dumps(doc["summary"]))


def test_cli_reports_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment]\nname = 'x'\n")
    assert cli_main(["evaluate", str(bad)]) == 1
    assert "dataset" in capsys.readouterr().err


def test_hard_example_mining_experiment(phantom, tmp_path):
    cfg = ExperimentConfig(name="hem", dataset=phantom, out_dir=tmp_path / "hem", task="hard_example_mining",
                           conditions=(ConditionConfig("pretrained"), ConditionConfig("hem_finetuned")),
                           baseline="pretrained", **{**TINY, "epochs": 3})
    cfg = cfg.__class__(**{**cfg.__dict__, "hem": cfg.hem.__class__(n_synthetic=6, finetune_epochs=2)})
    doc = run_experiment(cfg)
    assert [f["condition"] for f in doc["folds"]] == ["pretrained", "hem_finetuned"] * 2
    report = doc["hard_example_mining"]["fold0"]
    assert len(report["drawn_diameters_px"]) == 6
    source = report["missed_diameters_px"] or report["detected_diameters_px"]
    assert set(report["drawn_diameters_px"]) <= set(source)
    diam = read_diameter_file(report["diameter_file"])
    assert diam["diameters_px"] == report["missed_diameters_px"]
    assert diam["diameters_mm"] is not None
    # batch export reads the same file for its size sampling (P3: sizes of the missed lesions)
    from lesion_studio.core.export.config import read_diameter_file as batch_read

    if diam["diameters_mm"]:
        assert batch_read(report["diameter_file"]) == pytest.approx(tuple(diam["diameters_mm"]))
    assert doc["folds"][1]["n_train_synthetic"] == 6


def test_in_process_synthesis_with_a_trained_generator(tmp_path):
    """synthetic_generator = 'checkpoint': a (2-step, untrained-quality) texture generator
    synthesizes the synthetic training images inside the runner via load_synthesizer."""
    from lesion_studio.models.trainer import Trainer
    from tests.models.conftest import tiny_config

    generate_phantom_dataset(tmp_path / "data", "chest", 8, seed=2, size_px=64)
    Trainer(tiny_config("texture", tmp_path / "data", tmp_path / "gan", steps=2)).run()
    cfg = ExperimentConfig(name="ck", dataset=tmp_path / "data", out_dir=tmp_path / "out",
                           conditions=(ConditionConfig("real+gan", synthetic_count=3),), baseline="real+gan",
                           **{**TINY, "epochs": 1, "synthetic_generator": "checkpoint"},
                           synthesis_checkpoint=tmp_path / "gan" / "final")
    doc = run_experiment(cfg)
    assert [f["n_train_synthetic"] for f in doc["folds"]] == [3, 3]
    with pytest.raises(ConfigError):
        ExperimentConfig(name="x", dataset=tmp_path, out_dir=tmp_path, synthetic_generator="checkpoint")
    with pytest.raises(ConfigError):
        ExperimentConfig(name="x", dataset=tmp_path, out_dir=tmp_path, task="hard_example_mining",
                         conditions=(ConditionConfig("pretrained"),), baseline="pretrained")


def test_results_folder_is_checked_and_locked_like_batch_and_train(phantom, tmp_path):
    from lesion_studio.core.output_folder import FolderLock

    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("mine")
    cfg = ExperimentConfig(name="c", dataset=phantom, out_dir=foreign, **TINY)
    with pytest.raises(ConfigError, match="experiment.out_dir: .* not empty"):
        run_experiment(cfg)
    assert [p.name for p in foreign.iterdir()] == ["chapter1.tex"]  # nothing written, nothing removed
    with pytest.raises(ConfigError, match="refusing"):
        run_experiment(ExperimentConfig(name="c", dataset=phantom, out_dir=Path("/"), **TINY))
    busy = tmp_path / "busy"
    busy.mkdir()
    lock = FolderLock(busy, what="evaluate").acquire()  # another run holds it
    try:
        with pytest.raises(Exception, match="in use"):
            run_experiment(ExperimentConfig(name="c", dataset=phantom, out_dir=busy, **TINY))
    finally:
        lock.release()
