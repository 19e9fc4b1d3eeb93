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
from tests.models.conftest import TINY as TINY_MODELS, TWO_STEP_RUN, train_toml

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
    assert lesion_diameters_px(mask)[0] == pytest.approx(4 * np.sqrt(2 / 3))  # moment diameter of a 3x3 square
    sizes = missed_lesion_diameters(prob[None] * 0, [mask])
    assert sizes.missed_px.size == 1 and sizes.found_px.size == 0 and sizes.missed_mm is None
    sizes = missed_lesion_diameters(prob[None], [mask])
    assert sizes.missed_px.size == 0 and sizes.found_px.size == 1


def test_hem_measures_by_the_moment_diameter_with_each_images_own_spacing():
    """One diameter definition (P3's moment diameter, what the size control synthesizes) and
    every image's own spacing: the same 4x2 px lesion is 2x as large in mm at 2x the spacing."""
    from lesion_studio.core.geometry.size_modulation import moment_diameter

    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:6] = True
    probs = np.zeros((2, 16, 16), np.float32)  # nothing detected: both lesions are missed
    sizes = missed_lesion_diameters(probs, [mask, mask], spacings_mm=[(0.5, 0.5), (1.0, 2.0)])
    assert sizes.missed_px.tolist() == pytest.approx([moment_diameter(mask)] * 2)
    assert sizes.missed_mm.tolist() == pytest.approx([moment_diameter(mask, (0.5, 0.5)),
                                                      moment_diameter(mask, (1.0, 2.0))])
    assert sizes.missed_mm[0] == pytest.approx(0.5 * sizes.missed_px[0])
    # without a spacing for one image there are no mm values at all (no silent mix)
    assert missed_lesion_diameters(probs, [mask, mask], spacings_mm=[(0.5, 0.5), None]).missed_mm is None
    # the painter sizes its lesions by the same definition
    from lesion_studio.models.synthetic_sources import PhantomLesionPainter

    image = np.zeros((96, 96), np.float32)
    painted = PhantomLesionPainter().synthesize([image], [np.zeros((96, 96), bool)], 3, np.random.default_rng(0),
                                                patients=["p"], diameters_px=np.array([12.0, 20.0, 30.0]), draw=False)
    assert [moment_diameter(c.mask) for c in painted] == pytest.approx([12.0, 20.0, 30.0], rel=0.1)
    assert all(c.patients == {"p"} for c in painted)


def test_diameter_file_is_readable_by_batch_export(tmp_path):
    from lesion_studio.core.export.config import read_diameter_file as batch_read

    path = write_diameter_file(tmp_path / "missed.json", np.array([2.0, 4.0]), np.array([1.0, 2.0]), fold=0)
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
    # the LUNA16-style read-out sits next to the box-IoU one, and both are defined in the file
    assert "luna_cpm" in doc["folds"][0]["metrics"] and "cpm" in doc["folds"][0]["froc_luna"]
    assert set(doc["froc_readouts"]) == {"froc", "froc_luna"}
    # patient isolation: per fold the patient sets, checked, and the run's verdict
    assert doc["patient_isolation"]["leakage"] == "none"
    for f in doc["folds"]:
        p = f["patients"]
        assert p["leakage"] == "none" and p["train"] and p["val"] and p["test"]
        assert not (set(p["train"]) & set(p["test"]) or set(p["val"]) & set(p["test"]))
        assert set(p["synthetic"]) <= set(p["train"])
        assert (f["condition"] == "real+synthetic") == bool(p["synthetic"])
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
    diam = read_diameter_file(cfg.out_dir / report["diameter_file"])
    assert diam["diameters_px"] == report["missed_diameters_px"]
    assert diam["diameters_mm"] is not None and diam["diameters_mm"] == report["missed_diameters_mm"]
    assert report["diameter_definition"].startswith("moment diameter")
    # batch export reads the same file for its size sampling (P3: sizes of the missed lesions)
    from lesion_studio.core.export.config import read_diameter_file as batch_read

    if diam["diameters_mm"]:
        assert batch_read(cfg.out_dir / report["diameter_file"]) == pytest.approx(tuple(diam["diameters_mm"]))
    assert doc["folds"][1]["n_train_synthetic"] == 6
    hem_patients = doc["folds"][1]["patients"]
    assert hem_patients["leakage"] == "none" and set(hem_patients["synthetic"]) <= set(hem_patients["train"])
    assert doc["patient_isolation"]["leakage"] == "none"


GENERATOR_TOML = train_toml("texture", TWO_STEP_RUN, TINY_MODELS["texture"])


def test_in_process_synthesis_with_a_generator_trained_per_fold(tmp_path):
    """synthesis_checkpoint = a generator train TOML: each fold trains its own (2-step,
    untrained-quality) texture generator on that fold's training patients only, and the runner
    synthesizes the fold's synthetic training images with it in-process."""
    generate_phantom_dataset(tmp_path / "data", "chest", 8, seed=2, size_px=64)
    toml = tmp_path / "texture.toml"
    toml.write_text(GENERATOR_TOML)
    cfg = ExperimentConfig(name="ck", dataset=tmp_path / "data", out_dir=tmp_path / "out",
                           conditions=(ConditionConfig("real+gan", synthetic_count=3),), baseline="real+gan",
                           **{**TINY, "epochs": 1, "synthetic_generator": "checkpoint"}, synthesis_checkpoint=toml)
    doc = run_experiment(cfg)
    assert [f["n_train_synthetic"] for f in doc["folds"]] == [3, 3]
    for f in doc["folds"]:
        p = f["patients"]
        assert p["leakage"] == "none" and "trained for this fold" in p["generator_note"]
        assert p["generator"] and set(p["generator"]) <= set(p["train"])
        assert set(p["synthetic"]) <= set(p["train"])
    # fold 0's generator saw patients that fold 1 tests: used as a plain checkpoint it is refused
    gen0 = tmp_path / "out" / "generators" / "frac1__fold0" / "final"
    with pytest.raises(ConfigError, match="patient leakage"):
        run_experiment(ExperimentConfig(**{**cfg.__dict__, "out_dir": tmp_path / "out2", "synthesis_checkpoint": gen0}))
    with pytest.raises(ConfigError):
        ExperimentConfig(name="x", dataset=tmp_path, out_dir=tmp_path, synthetic_generator="checkpoint")
    with pytest.raises(ConfigError):
        ExperimentConfig(name="x", dataset=tmp_path, out_dir=tmp_path, task="hard_example_mining",
                         conditions=(ConditionConfig("pretrained"),), baseline="pretrained")


def test_leaking_generator_is_refused_naming_the_patients(phantom, tmp_path):
    """A generator trained on patients that some fold tests is refused before any training,
    and the error names them; a generator that records no patients cannot be verified."""
    from torch import nn

    from lesion_studio.models.checkpoint import save_checkpoint

    everyone = sorted({c.patient_id for c in load_dataset(phantom).cases})
    leaky = save_checkpoint(tmp_path / "gan" / "final", family="texture", config={}, networks={"g": nn.Linear(1, 1)},
                            step=1, patients={"train": everyone[:2], "val": everyone[2:3]})
    cfg = ExperimentConfig(name="leak", dataset=phantom, out_dir=tmp_path / "out",
                           conditions=(ConditionConfig("real"), ConditionConfig("real+gan", synthetic_count=2)),
                           **{**TINY, "synthetic_generator": "checkpoint"}, synthesis_checkpoint=leaky)
    with pytest.raises(ConfigError, match="patient leakage") as err:
        run_experiment(cfg)
    assert all(p in str(err.value) for p in everyone[:3]) and "fold" in str(err.value)
    assert not list((tmp_path / "out").glob("folds/*.json"))   # refused before the first fold trained
    unrecorded = save_checkpoint(tmp_path / "old" / "final", family="texture", config={},
                                 networks={"g": nn.Linear(1, 1)}, step=1)
    with pytest.raises(ConfigError, match="records no training patients"):
        run_experiment(ExperimentConfig(**{**cfg.__dict__, "synthesis_checkpoint": unrecorded}))


def test_fold_isolation_check_names_the_leaking_patients():
    from lesion_studio.models.patient_isolation import FoldPatients, LeakageError, check_fold_isolation

    ok = FoldPatients(0, frozenset({"a", "b"}), frozenset({"c"}), frozenset({"d"}), frozenset({"a"}))
    assert check_fold_isolation(ok)["leakage"] == "none"
    # a data-fraction arm drawing a synthetic image from a patient outside its fraction
    with pytest.raises(LeakageError, match="outside this fold's training patients.*: x"):
        check_fold_isolation(FoldPatients(0, frozenset({"a"}), frozenset({"c"}), frozenset({"d"}), frozenset({"x"})))
    with pytest.raises(LeakageError, match="generator was trained on test patients: d"):
        check_fold_isolation(FoldPatients(0, frozenset({"a"}), frozenset({"c"}), frozenset({"d"}), frozenset({"a"}),
                                          frozenset({"a", "d"}), "checkpoint"), condition="real+gan")


def test_synthetic_dataset_cases_come_only_from_the_fractions_patients(phantom):
    from lesion_studio.models.synthetic_sources import DatasetSyntheticSource

    ds = load_dataset(phantom)
    fraction = sample_by_patient(ds.cases, 0.5, seed=1)
    allowed = {c.patient_id for c in fraction}
    picked = DatasetSyntheticSource(phantom).select(50, allowed, seed=0)
    assert len(picked) == len(fraction)          # all of them, and nobody else's
    assert set().union(*(c.patients for c in picked)) == allowed


def _stable(doc: dict) -> str:
    """A results document without what may differ between two equal runs: durations, out_dir."""
    doc = json.loads(json.dumps(doc))
    doc["config"].pop("out_dir")
    for f in doc["folds"]:
        f.pop("seconds")
    return json.dumps(doc, sort_keys=True)


def test_same_config_and_seed_give_bit_identical_results_and_checkpoints(phantom, tmp_path):
    """Issue 14: reruns differed (region F1 0.0045 / 0.611 / 0.6875). Two CPU runs of the tiny
    experiment with one config and seed now agree exactly, checkpoints byte for byte."""
    docs = []
    for run in ("a", "b"):
        cfg = ExperimentConfig(name="det", dataset=phantom, out_dir=tmp_path / run,
                               conditions=(ConditionConfig("real+syn", synthetic_count=4),), baseline="real+syn",
                               **{**TINY, "epochs": 2})
        docs.append(run_experiment(cfg))
    assert _stable(docs[0]) == _stable(docs[1])
    assert _stable(load_results(tmp_path / "a")) == _stable(load_results(tmp_path / "b"))
    models_a = sorted(p.name for p in (tmp_path / "a" / "models").iterdir())
    assert models_a and any(name.endswith(".safetensors") for name in models_a)
    for name in models_a:
        assert (tmp_path / "a" / "models" / name).read_bytes() == (tmp_path / "b" / "models" / name).read_bytes()
    assert docs[0]["determinism"]["reproducibility"].startswith("bit-identical")
    assert [f["model_checkpoint"] for f in docs[0]["folds"]] == ["models/real+syn__fold0", "models/real+syn__fold1"]


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
