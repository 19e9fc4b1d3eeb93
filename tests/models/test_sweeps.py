"""Generated-count sweeps (issue 15, P4 §4.2): the `[sweep]` table and its errors, whole
generated cases from B-SG / MC-SG, the leak check, and a tiny sweep end to end with its
Friedman + Nemenyi section and CD diagrams (untrained or 2-step StyleGAN2s: plumbing only)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_studio.core.dataset import load_dataset
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.metrics.cd_figure import cd_groups
from lesion_studio.core.metrics.statistics import friedman_nemenyi
from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.models.checkpoint import save_checkpoint
from lesion_studio.models.config import RunConfig, TrainConfig, stylegan2_config
from lesion_studio.models.experiments import experiment_config_from_dict, patient_folds, run_experiment
from lesion_studio.models.pair_source import PairSamplerSource
from lesion_studio.models.sweep_analysis import summary_line
from lesion_studio.models.sweep_config import P4_GENERATED_COUNTS, SweepConfig, SweepGenerator
from lesion_studio.models.trainer import STRATEGIES
from tests.models.conftest import TINY_STYLEGAN2, TWO_STEP_RUN, train_toml

#: A StyleGAN2 that builds and samples in milliseconds (tests/models/test_stylegan2.py's size).
TINY_SG = dict(**TINY_STYLEGAN2, batch_size=4, patch_source="image")
#: The same as a train TOML: each fold trains it for 2 steps on its training patients.
BSG_TOML = train_toml("stylegan2-joint", {**TWO_STEP_RUN, "num_threads": 1}, {**TINY_SG, "pl_weight": 0.0})
ELSEWHERE = {"train": ["another-hospital-1"], "val": []}


def save_untrained(family: str, path: Path, seed: int, patients: dict | None) -> Path:
    """A StyleGAN2 checkpoint of freshly built networks that records `patients`."""
    torch.manual_seed(seed)
    model = stylegan2_config(family, "cpu-64", **TINY_SG)
    strategy = STRATEGIES[family](model, 1, torch.device("cpu"), contextlib.nullcontext)
    config = TrainConfig(model=model, run=RunConfig(out_dir=str(path.parent))).to_dict()
    return save_checkpoint(path, family=family, config=config, networks=strategy.networks, step=1,
                           normalization={"lo": 0.0, "hi": 1.0}, patients=patients)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep_phantom")
    generate_phantom_dataset(root, "chest", 12, seed=3, size_px=64)
    return root


@pytest.fixture(scope="module")
def mcsg(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Untrained M-SG and C-SG checkpoints trained on nobody of the phantom dataset."""
    root = tmp_path_factory.mktemp("mcsg")
    return (save_untrained("stylegan2-mask", root / "msg" / "final", 1, ELSEWHERE),
            save_untrained("stylegan2-cond", root / "csg" / "final", 2, ELSEWHERE))


def experiment(dataset: Path, out_dir: Path, sweep: dict, **experiment_keys) -> dict:
    return {"experiment": {"name": "sweep", "dataset": str(dataset), "out_dir": str(out_dir), "folds": 2, "seed": 0,
                           **experiment_keys},
            "model": {"arch": "unet", "base_channels": 6, "depth": 3, "image_size_px": 64, "norm": "instance"},
            "training": {"epochs": 1, "batch_size": 4, "lr": 3e-3, "save_models": False, "num_threads": 1},
            "sweep": sweep}


# -- the [sweep] table ------------------------------------------------------------------------
def test_sweep_expands_to_p4s_methods(tmp_path: Path) -> None:
    sweep = {"generated_counts": [20, 100], "generators": {
        "bsg": {"kind": "b-sg", "checkpoint": "gens/bsg.toml"},
        "mcsg": {"kind": "mc-sg", "mask": "gens/msg.toml", "image": "gens/csg.toml"}}}
    cfg = experiment_config_from_dict(experiment("data", "out", sweep), tmp_path)
    names = [c.name for c in cfg.conditions]
    assert names == ["baseline", "bsg_n20", "bsg_n100", "mcsg_n20", "mcsg_n100",
                     "baseline_aug", "bsg_n20_aug", "bsg_n100_aug", "mcsg_n20_aug", "mcsg_n100_aug"]
    by = {c.name: c for c in cfg.conditions}
    assert (by["bsg_n100_aug"].generator, by["bsg_n100_aug"].synthetic_count) == ("bsg", 100)
    assert by["bsg_n100_aug"].classic_augmentation and not by["mcsg_n20"].classic_augmentation
    assert by["baseline_aug"].synthetic_count == 0 and not by["baseline_aug"].generator
    assert cfg.baseline == "baseline" and cfg.classic_preset == "P4"  # P4 §4.4's spatial augmentation
    assert cfg.synthetic_per_epoch == 1.0 and cfg.rotation_deg == 0.0  # P4 trains on every case, no P0 rotation
    assert cfg.sweep.generator("mcsg").path("image") == (tmp_path / "gens" / "csg.toml").resolve()
    # P4's counts are the default; the same file gives the same conditions (and config hash)
    default = experiment_config_from_dict(experiment("data", "out", {"generators": sweep["generators"]}), tmp_path)
    assert default.sweep.generated_counts == P4_GENERATED_COUNTS == (20, 50, 100, 200, 400, 500)
    assert len(default.conditions) == 2 * (1 + 2 * 6)  # P4 §4.2: 26 methods
    again = experiment_config_from_dict(experiment("data", "out", sweep), tmp_path)
    assert again.conditions == cfg.conditions and again.hash() == cfg.hash()
    assert json.loads(json.dumps(cfg.to_dict()))["sweep"]["generators"][1]["mask"].endswith("msg.toml")
    # an explicit preset stays
    kept = experiment_config_from_dict(experiment("data", "out", sweep, classic_preset="P2", rotation_deg=5.0),
                                       tmp_path)
    assert kept.classic_preset == "P2" and kept.rotation_deg == 5.0


def test_sweep_errors_name_every_problem(tmp_path: Path) -> None:
    sweep = {"generated_count": [20], "spatial_augmentation": [False],
             "generators": {"bsg": {"kind": "b-sg", "checkpiont": "bsg.toml"},
                            "csg": {"kind": "c-sg", "checkpoint": "csg.toml"},
                            "mcsg": {"kind": "mc-sg", "mask": "msg.toml"}}}
    with pytest.raises(ConfigError) as err:
        experiment_config_from_dict(experiment("data", "out", sweep), tmp_path)
    text = str(err.value)
    assert "sweep.generated_count: unknown key; did you mean 'generated_counts'?" in text
    assert "sweep.generators.bsg.checkpiont: unknown key; did you mean 'checkpoint'?" in text
    assert "sweep.generators.bsg.checkpoint: is required for kind 'b-sg'" in text
    assert "sweep.generators.csg.kind: must be one of 'b-sg', 'mc-sg', got 'c-sg'" in text
    assert "sweep.generators.mcsg.image: is required for kind 'mc-sg'" in text
    for counts in ([-5], [0], []):
        with pytest.raises(ConfigError, match="sweep.generated_counts"):
            experiment_config_from_dict(experiment("data", "out", {"generated_counts": counts, "generators": {
                "bsg": {"kind": "b-sg", "checkpoint": "bsg.toml"}}}), tmp_path)
    with pytest.raises(ConfigError, match="sweep.generators: is required"):
        experiment_config_from_dict(experiment("data", "out", {"generated_counts": [20]}), tmp_path)
    both = experiment("data", "out", {"generators": {"bsg": {"kind": "b-sg", "checkpoint": "bsg.toml"}}})
    both["grid"] = {"synthetic_counts": [0, 10]}
    with pytest.raises(ConfigError, match="leave grid out"):
        experiment_config_from_dict(both, tmp_path)
    with pytest.raises(ConfigError, match="sweep.generators.baseline"):
        experiment_config_from_dict(experiment("data", "out", {"generators": {
            "baseline": {"kind": "b-sg", "checkpoint": "bsg.toml"}}}), tmp_path)


def test_sweep_errors_point_at_the_line(tmp_path: Path) -> None:
    from lesion_studio.models.experiments import load_experiment_config

    path = tmp_path / "sweep.toml"
    path.write_text('[experiment]\nname = "s"\ndataset = "data"\n[sweep]\ngenerated_counts = [20, 50]\n'
                    '[sweep.generators.bsg]\nkind = "bsg"\ncheckpoint = "bsg.toml"\n')
    with pytest.raises(ConfigError) as err:
        load_experiment_config(path)
    assert f"{path}:7: sweep.generators.bsg.kind: must be one of 'b-sg', 'mc-sg', got 'bsg'" in str(err.value)


# -- generated cases --------------------------------------------------------------------------
def test_pair_source_is_seeded_resized_and_names_the_generators_patients(tmp_path: Path, mcsg) -> None:
    bsg = save_untrained("stylegan2-joint", tmp_path / "bsg" / "final", 3, {"train": ["p1", "p2"], "val": ["p3"]})
    source = PairSamplerSource(bsg)
    cases = source.synthesize(20, seed=5, size_px=48)
    assert len(cases) == 20 and cases[0].image.shape == (48, 48) and cases[0].mask.shape == (48, 48)
    assert cases[0].image.dtype == np.float32 and cases[0].mask.dtype == bool
    assert all(c.patients == {"p1", "p2", "p3"} for c in cases)
    again = source.synthesize(20, seed=5, size_px=48)
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) for a, b in zip(cases, again))
    # a larger count extends a smaller one (the same first cases), another seed draws others
    fewer = source.synthesize(7, seed=5, size_px=48)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(fewer, cases))
    other = source.synthesize(7, seed=6, size_px=48)
    assert not np.allclose(other[0].image, cases[0].image)
    pairs = PairSamplerSource(mcsg[0], mcsg[1], patients=frozenset()).synthesize(3, seed=1, size_px=64)
    assert [c.image.shape for c in pairs] == [(64, 64)] * 3 and all(c.patients == frozenset() for c in pairs)


def test_a_b_sg_checkpoint_trained_on_a_test_patient_is_refused(phantom: Path, tmp_path: Path, mcsg) -> None:
    folds = patient_folds(load_dataset(phantom).cases, 2, 0)
    tested = sorted({c.patient_id for c in folds[0].test})[0]
    leaky = save_untrained("stylegan2-joint", tmp_path / "leaky" / "final", 4, {"train": [tested], "val": []})
    cfg = experiment_config_from_dict(experiment(phantom, tmp_path / "out", {
        "generated_counts": [2], "spatial_augmentation": [False],
        "generators": {"bsg": {"kind": "b-sg", "checkpoint": str(leaky)}}}))
    with pytest.raises(ConfigError, match="patient leakage") as err:
        run_experiment(cfg)
    assert tested in str(err.value) and "fold 0" in str(err.value)
    assert not list((tmp_path / "out").glob("folds/*.json"))  # refused before the first fold trained
    # the wrong family for the kind is refused too, naming what it is
    wrong = experiment_config_from_dict(experiment(phantom, tmp_path / "out2", {
        "generated_counts": [2], "spatial_augmentation": [False],
        "generators": {"bsg": {"kind": "b-sg", "checkpoint": str(mcsg[0])}}}))
    with pytest.raises(ConfigError, match="checkpoint must be a stylegan2-joint .* 'stylegan2-mask'"):
        run_experiment(wrong)


# -- the tiny sweep end to end -----------------------------------------------------------------
def test_tiny_sweep_runs_end_to_end_with_its_cd_diagrams(phantom: Path, tmp_path: Path, mcsg) -> None:
    """B-SG from a train TOML (2 steps per fold on the fold's training patients); MC-SG with its
    M-SG trained per fold the same way and an untrained C-SG checkpoint of another hospital;
    2 counts, 2 folds, 5 conditions."""
    toml = tmp_path / "bsg.toml"
    toml.write_text(BSG_TOML)
    mask_toml = tmp_path / "msg.toml"
    mask_toml.write_text(BSG_TOML.replace("stylegan2-joint", "stylegan2-mask"))
    cfg = experiment_config_from_dict(experiment(phantom, tmp_path / "out", {
        "generated_counts": [2, 3], "spatial_augmentation": [False],
        "generators": {"bsg": {"kind": "b-sg", "checkpoint": str(toml)},
                       "mcsg": {"kind": "mc-sg", "mask": str(mask_toml), "image": str(mcsg[1])}}}))
    doc = run_experiment(cfg)
    out = tmp_path / "out"
    assert doc["conditions"] == ["baseline", "bsg_n2", "bsg_n3", "mcsg_n2", "mcsg_n3"]
    counts = {(f["condition"], f["fold"]): f["n_train_synthetic"] for f in doc["folds"]}
    assert counts == {(c, k): n for c, n in (("baseline", 0), ("bsg_n2", 2), ("bsg_n3", 3), ("mcsg_n2", 2),
                                             ("mcsg_n3", 3)) for k in (0, 1)}
    for f in doc["folds"]:
        p = f["patients"]
        assert p["leakage"] == "none" and set(p["synthetic"]) <= set(p["train"])
        if f["condition"].startswith("bsg"):  # trained per fold: on that fold's training patients only
            assert "trained for this fold" in p["generator_note"] and set(p["generator"]) <= set(p["train"])
        if f["condition"].startswith("mcsg"):  # M-SG of the fold's patients, C-SG of another hospital
            assert "mask trained for this fold" in p["generator_note"] and "image checkpoint" in p["generator_note"]
            assert "another-hospital-1" in p["generator"] and p["synthetic"]
            assert set(p["generator"]) - {"another-hospital-1"} == set(p["synthetic"]) <= set(p["train"])
    # one generator per fold, shared by both counts
    assert sorted(p.name for p in (out / "generators").iterdir()) == [
        "sweep-bsg__fold0", "sweep-bsg__fold1", "sweep-mcsg-mask__fold0", "sweep-mcsg-mask__fold1"]
    sweep = doc["sweep"]
    assert sweep["conditions"]["bsg_n3"] == {"generator": "bsg", "generated_count": 3, "spatial_augmentation": False,
                                             "baseline": "baseline"}
    dice = sweep["metrics"]["dice"]
    assert set(dice["average_ranks"]) == set(doc["conditions"]) and dice["n_folds"] == 2
    assert dice["critical_difference"] == pytest.approx(doc["friedman"]["dice"]["critical_difference"])
    assert dice["summary"].startswith("dice: ") and "Friedman p" in dice["summary"]
    assert dice["summary"] in sweep["summary"]
    for rel in dice["figures"]:
        assert (out / rel).stat().st_size > 1000
    assert {Path(r).suffix for r in dice["figures"]} == {".png", ".svg"}
    saved = json.loads((out / "results.json").read_text())
    assert saved["sweep"]["metrics"]["dice"]["summary"] == dice["summary"]


# -- the analysis -----------------------------------------------------------------------------
def test_summary_lines_say_what_the_tests_found() -> None:
    sweep = SweepConfig((SweepGenerator("bsg", "b-sg", ()),), generated_counts=(20, 50), spatial_augmentation=(False,))
    arms = sweep.arms()
    folds = 12
    clear = {"baseline": [0.5 + 0.01 * (i % 2) for i in range(folds)],  # bsg_n20 ties with it, bsg_n50 wins
             "bsg_n20": [0.5 + 0.01 * ((i + 1) % 2) for i in range(folds)], "bsg_n50": [0.7] * folds}
    line = summary_line("dice", friedman_nemenyi(clear), arms)
    assert line.startswith("dice: the conditions differ (Friedman p < 0.001")
    assert line.endswith("better than its baseline: bsg_n50; the other GAN condition does not differ from its "
                         "baseline")
    noise = {"baseline": [0.5, 0.6, 0.4], "bsg_n20": [0.6, 0.4, 0.5], "bsg_n50": [0.4, 0.5, 0.6]}
    line = summary_line("dice", friedman_nemenyi(noise), arms)
    assert line.startswith("dice: no significant difference between the baseline and any GAN condition "
                           "(Friedman p = 1.00; 3 conditions, 3 folds)")
    assert summary_line("map50", {"skipped": "NaN values"}, arms) == "map50: not tested (NaN values)"
    assert cd_groups({"a": 1.0, "b": 1.5, "c": 3.0}, 1.0) == [("a", "b")]
