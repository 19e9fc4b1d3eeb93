"""core/config_schema: the one validation layer of every config (train, evaluate, batch, phantom)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from lesion_studio.core.config_schema import (
    REQUIRED, ConfigProblems, Setting, did_you_mean, key_lines, load_toml, setting_field,
    settings_from_dataclass, validate_tables,
)
from lesion_studio.core.errors import ConfigError

SCHEMA = {
    "": {"seed": Setting("int", 0, ge=0)},
    "run": {
        "steps": Setting("int", 100, ge=1),
        "lr": Setting("float", 1e-3, gt=0.0),
        "fraction": Setting("float", 0.5, ge=0.0, lt=1.0),
        "device": Setting("str", "auto", choices=("auto", "cpu", "cuda")),
        "betas": Setting("list[float]", [0.5, 0.999], ge=0.0, lt=1.0, min_len=2, max_len=2),
        "flip": Setting("bool", True),
        "name": Setting("str"),
    },
}


def _problem(data: dict, schema=SCHEMA) -> str:
    with pytest.raises(ConfigError) as info:
        validate_tables(data, schema)
    return str(info.value)


def test_defaults_are_filled_and_ints_become_floats() -> None:
    out = validate_tables({"run": {"name": "a", "lr": 1, "betas": [0, 0.9]}}, SCHEMA)
    assert out[""] == {"seed": 0}
    assert out["run"]["lr"] == 1.0 and isinstance(out["run"]["lr"], float)
    assert out["run"]["betas"] == [0.0, 0.9] and all(isinstance(b, float) for b in out["run"]["betas"])
    assert out["run"]["steps"] == 100 and out["run"]["flip"] is True and out["run"]["device"] == "auto"


@pytest.mark.parametrize("key, value, reason", [
    ("steps", True, "expected an integer, got true"),       # a bool is not an integer
    ("steps", 2.5, "expected an integer, got 2.5"),
    ("lr", False, "expected a number, got false"),
    ("lr", "fast", "expected a number, got 'fast'"),
    ("flip", 1, "expected true or false, got 1"),
    ("name", 3, "expected a string, got 3"),
    ("betas", "auto", "expected a list of numbers, got 'auto'"),
    ("betas", [0.5, "x"], "expected a list of numbers, got [0.5, 'x']"),
    ("steps", {"a": 1}, "expected an integer, got a table"),
])
def test_types_are_checked_and_named_in_words(key: str, value, reason: str) -> None:
    assert _problem({"run": {"name": "a", key: value}}) == f"run.{key}: {reason}"


@pytest.mark.parametrize("key, value", [("lr", math.nan), ("lr", math.inf), ("lr", -math.inf),
                                        ("betas", [0.5, math.nan])])
def test_nan_and_inf_are_refused(key: str, value) -> None:
    assert f"run.{key}: must be a finite number, got" in _problem({"run": {"name": "a", key: value}})


@pytest.mark.parametrize("key, value, reason", [
    ("steps", 0, "must be >= 1, got 0"),
    ("lr", 0.0, "must be > 0, got 0.0"),
    ("fraction", 1.0, "must be in [0, 1), got 1.0"),
    ("fraction", -0.1, "must be in [0, 1), got -0.1"),
    ("betas", [0.5, 1.5], "each value must be in [0, 1), got [0.5, 1.5]"),
    ("betas", [0.5], "must hold at least 2 values, got [0.5]"),
    ("betas", [0.1, 0.2, 0.3], "must hold at most 2 values, got 3"),
    ("device", "cdua", "must be one of 'auto', 'cpu', 'cuda', got 'cdua'; did you mean 'cuda'?"),
])
def test_bounds_lengths_and_choices(key: str, value, reason: str) -> None:
    assert _problem({"run": {"name": "a", key: value}}) == f"run.{key}: {reason}"


def test_custom_check_and_required() -> None:
    schema = {"a": {"pair": Setting("list[int]", [1, 2], check=lambda v: None if v[0] <= v[1] else "low > high"),
                    "must": Setting("str", choices=("x", "y"))}}
    message = _problem({"a": {"pair": [3, 1]}}, schema)
    assert "a.pair: low > high" in message and "a.must: is required (one of 'x', 'y')" in message


def test_unknown_keys_and_sections_get_a_suggestion() -> None:
    assert _problem({"run": {"name": "a", "stesp": 3}}) == "run.stesp: unknown key; did you mean 'steps'?"
    assert _problem({"rn": {"steps": 3}, "run": {"name": "a"}}) == "rn: unknown section; did you mean 'run'?"
    assert _problem({"sed": 3, "run": {"name": "a"}}) == "sed: unknown key; did you mean 'seed'?"
    far = _problem({"run": {"name": "a", "zzz": 3}})
    assert far.startswith("run.zzz: unknown key (expected one of: steps, lr,")
    assert _problem({"run": 3}).startswith("run: must be a table ([run]), got 3")


def test_extra_sections_are_left_to_the_caller() -> None:
    out = validate_tables({"run": {"name": "a"}, "conditions": [{"x": 1}]}, SCHEMA,
                          allow_extra_sections=("conditions",))
    assert "conditions" not in out


def test_every_problem_is_listed_once_with_its_file_and_line(tmp_path: Path) -> None:
    text = 'seed = -1\n[rn]\nsteps = 2\n[run]\n# a comment\nsteps = 0\nlr = nan\ndevise = "cpu"\n'
    path = tmp_path / "c.toml"
    path.write_text(text)
    data, read = load_toml(path)
    assert read == text
    with pytest.raises(ConfigProblems) as info:
        validate_tables(data, SCHEMA, path=path, text=text)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}: 6 problem(s) in the config:"
    assert lines[1:] == [
        f"  {path}:1: seed: must be >= 0, got -1",
        f"  {path}:2: rn: unknown section; did you mean 'run'?",
        f"  {path}:4: run.name: is required",  # a missing key points at its table
        f"  {path}:6: run.steps: must be >= 1, got 0",
        f"  {path}:7: run.lr: must be a finite number, got nan",
        f"  {path}:8: run.devise: unknown key; did you mean 'device'?",
    ]
    assert info.value.path == path and len(info.value.problems) == 6


def test_one_problem_reads_as_one_line(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.json"  # no TOML text (a checkpoint sidecar): the file, no line
    with pytest.raises(ConfigError) as info:
        validate_tables({"run": {"name": "a", "steps": 0}}, SCHEMA, path=path)
    assert str(info.value) == f"{path}: run.steps: must be >= 1, got 0"
    assert info.value.reason == "run.steps: must be >= 1, got 0"


def test_load_toml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_toml(tmp_path / "absent.toml")
    assert info.value.path == tmp_path / "absent.toml"
    bad = tmp_path / "bad.toml"
    bad.write_text("x = [\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_toml(bad)
    assert info.value.path == bad


def test_key_lines_follow_tables_and_arrays_of_tables() -> None:
    text = 'a = 1\n[t]\nb.c = 2\n[[items]]\nname = "x"\n[[items]]\n"name" = "y"\n'
    assert key_lines(text) == {"a": 1, "t": 2, "t.b.c": 3, "items#1": 4, "items#1.name": 5,
                               "items#2": 6, "items#2.name": 7}


def test_did_you_mean() -> None:
    assert did_you_mean("trainig", ["training", "model"]) == "; did you mean 'training'?"
    assert did_you_mean("zzz", ["training", "model"]) == ""


def test_settings_come_from_a_dataclass() -> None:
    @dataclasses.dataclass
    class Example:
        name: str = setting_field(doc="required")
        size_px: int = setting_field(64, ge=16, doc="image side")
        scale: float = 1.0
        tags: list[str] = setting_field(["a"], choices=("a", "b"))
        limits: list[float] | None = None

    settings = settings_from_dataclass(Example, {"scale": {"gt": 0.0}})
    assert settings["size_px"] == Setting("int", 64, ge=16, doc="image side")
    assert settings["scale"].gt == 0.0 and settings["scale"].kind == "float"
    assert settings["tags"].kind == "list[str]" and settings["tags"].default == ["a"]
    assert settings["limits"].nullable and settings["limits"].kind == "list[float]"
    assert settings["name"].default is REQUIRED
    assert Example(name="x").tags == ["a"]
    message = _problem({"e": {"size_px": 8, "tags": ["c"], "scale": 0}}, {"e": settings})
    assert "e.size_px: must be >= 16, got 8" in message and "e.scale: must be > 0, got 0" in message
    assert "e.tags: 'c' is not one of 'a', 'b'" in message and "e.name: is required" in message
    assert validate_tables({"e": {"name": "x", "limits": None}}, {"e": settings})["e"]["limits"] is None


def test_describe_for_help_texts() -> None:
    assert Setting("int", 1, ge=64, le=4096).describe() == "an integer, in [64, 4096]"
    assert Setting("list[float]", gt=0).describe() == "a list of numbers, each > 0"


# -- the same mistakes give the same message shape in every config ------------------------------
def _train(path: Path) -> None:
    from lesion_studio.models.config import load_config

    load_config(path)


def _evaluate(path: Path) -> None:
    from lesion_studio.models.experiments import load_experiment_config

    load_experiment_config(path)


def _batch(path: Path) -> None:
    from lesion_studio.core.export.config import load_batch_config

    load_batch_config(path, check_files=False)


def _phantom(path: Path) -> None:
    from lesion_studio.app.commands.phantom import phantom_settings

    phantom_settings({}, path)


# Each file makes four mistakes: a misspelt section, a misspelt key, a value of the wrong type
# and a number out of range; (line, name, reason) is what each must be reported as.
CASES = {
    "train": (_train, 'family = "texture"\n[rn]\nsteps = 3\n[model]\nbase_chanels = 8\nbatch_size = "big"\n'
                      'lr_g = -1.0\n',
              [(2, "rn", "unknown section; did you mean 'run'?"),
               (5, "model.base_chanels", "unknown key; did you mean 'base_channels'?"),
               (6, "model.batch_size", "expected an integer, got 'big'"),
               (7, "model.lr_g", "must be > 0, got -1.0")]),
    "evaluate": (_evaluate, '[experiment]\nname = "x"\ndataset = "data"\n[trainig]\nepochs = 2\n[training]\n'
                            'epocs = 3\nbatch_size = "big"\nlr = -1.0\n',
                 [(4, "trainig", "unknown section; did you mean 'training'?"),
                  (7, "training.epocs", "unknown key; did you mean 'epochs'?"),
                  (8, "training.batch_size", "expected an integer, got 'big'"),
                  (9, "training.lr", "must be > 0, got -1.0")]),
    "batch": (_batch, '[input]\ndataset = "ds"\n[synthesys]\nper_image = 2\n[synthesis]\nper_imag = 3\n'
                      'per_image = "big"\nremove_probability = -1.0\n[output]\ndir = "out"\n',
              [(3, "synthesys", "unknown section; did you mean 'synthesis'?"),
               (6, "synthesis.per_imag", "unknown key; did you mean 'per_image'?"),
               (7, "synthesis.per_image", "expected an integer, got 'big'"),
               (8, "synthesis.remove_probability", "must be in [0, 1], got -1.0")]),
    "phantom": (_phantom, '[phantm]\nn = 1\n[phantom]\nkind = "chest"\nout = "p"\nsed = 3\nn = "big"\nsize = -1\n',
                [(1, "phantm", "unknown section; did you mean 'phantom'?"),
                 (6, "phantom.sed", "unknown key; did you mean 'seed'?"),
                 (7, "phantom.n", "expected an integer, got 'big'"),
                 (8, "phantom.size", "must be in [64, 4096], got -1")]),
}


@pytest.mark.parametrize("config", sorted(CASES))
def test_every_config_reports_the_same_mistakes_the_same_way(tmp_path: Path, config: str) -> None:
    load, text, expected = CASES[config]
    path = (tmp_path / f"{config}.toml").resolve()
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    what = {"train": "training", "evaluate": "experiment"}.get(config, config)
    assert message.splitlines()[0] == f"{path}: 4 problem(s) in the {what} config:", message
    listed = [line.strip() for line in message.splitlines()[1:]]
    assert listed == [f"{path}:{line}: {name}: {reason}" for line, name, reason in expected], message
    assert info.value.path == path
