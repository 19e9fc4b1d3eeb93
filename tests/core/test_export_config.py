"""Batch-export config: defaults, every problem reported with its line and key, diameter files."""

from __future__ import annotations

from pathlib import Path

import pytest

from lesion_studio.core.errors import ConfigError
from lesion_studio.core.config_schema import key_lines
from lesion_studio.core.export.config import load_batch_config, read_diameter_file
from lesion_studio.core.model_catalog import builtin_models_dir


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "ds").mkdir(exist_ok=True)
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "run" / "final.safetensors").write_bytes(b"")
    path = tmp_path / "batch.toml"
    path.write_text(text)
    return path


GOOD = """
seed = 3
[input]
dataset = "ds"
[synthesis]
per_image = 4
[models]
inpaint = "run/final"
[output]
dir = "out"
formats = ["png", "coco"]
"""


def test_a_minimal_config_gets_p0_defaults_and_absolute_paths(tmp_path: Path) -> None:
    config = load_batch_config(_write(tmp_path, GOOD))
    assert config.seed == 3 and config.per_image == 4
    assert config.targets_per_image == (1, 3) and config.remove_probability == 0.5  # P0 §IV-A
    assert config.dataset == (tmp_path / "ds").resolve() and config.output_dir == (tmp_path / "out").resolve()
    assert config.inpaint_checkpoint == (tmp_path / "run" / "final").resolve()
    assert config.formats == ("png", "coco") and config.diameters.kind == "bank"
    assert config.to_dict()["diameters"]["kind"] == "bank"


def test_every_problem_is_reported_with_line_and_key(tmp_path: Path) -> None:
    text = """seed = -1
[input]
dataset = "nowhere"
colour = "red"
[synthesis]
per_image = 0
outpaint_fraction = 2
targets_per_image = [3, 1]
[diameters]
kind = "uniform"
range_mm = [9.0, 3.0]
[models]
inpaint = "run/missing"
[output]
dir = "out"
formats = ["png", "jpeg"]
nnunet_id = 1000
"""
    with pytest.raises(ConfigError) as info:
        load_batch_config(_write(tmp_path, text))
    message = str(info.value)
    path = str((tmp_path / "batch.toml").resolve())
    for line, key in [(1, "seed"), (3, "input.dataset"), (4, "input.colour"), (6, "synthesis.per_image"),
                      (7, "synthesis.outpaint_fraction"), (8, "synthesis.targets_per_image"),
                      (11, "diameters.range_mm"), (13, "models.inpaint"), (16, "output.formats"),
                      (17, "output.nnunet_id")]:
        assert f"{path}:{line}: {key}:" in message, (key, message)
    assert "10 problem(s)" in message


def test_toml_syntax_errors_and_missing_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_batch_config(bad)
    assert info.value.path == bad
    with pytest.raises(ConfigError, match="not found"):
        load_batch_config(tmp_path / "absent.toml")


def test_required_keys_and_mode_dependent_checkpoints(tmp_path: Path) -> None:
    text = '[synthesis]\noutpaint_fraction = 0.5\nmask_source = "generator"\n[diameters]\nkind = "fixed"\n'
    with pytest.raises(ConfigError) as info:
        load_batch_config(_write(tmp_path, text))
    message = str(info.value)
    for key in ("input.dataset: is required", "models.outpaint: is required",
                "models.shape: is required", "output.dir: is required", "'fixed' needs diameters.values_mm"):
        assert key in message


def test_methods_default_to_the_classical_winners_and_a_typo_names_the_choices(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    config = load_batch_config(_write(tmp_path, '[input]\ndataset = "data"\n[output]\ndir = "out"\n'))
    assert config.inpaint_checkpoint == "real-nodule" and config.remove_checkpoint == "auto-fill"
    config = load_batch_config(_write(tmp_path, '[input]\ndataset = "data"\n[models]\nremove = "navier-stokes"\n'
                                                '[output]\ndir = "out"\n'))
    assert config.remove_checkpoint == "navier-stokes"
    with pytest.raises(ConfigError, match="models.remove: 'telia' is neither a checkpoint .* nor a classical method"):
        load_batch_config(_write(tmp_path, '[input]\ndataset = "data"\n[models]\nremove = "telia"\n'
                                           '[output]\ndir = "out"\n'))


def test_outpaint_takes_the_classical_texture_fill_or_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    base = '[input]\ndataset = "data"\n[synthesis]\noutpaint_fraction = 0.5\n[output]\ndir = "out"\n'
    config = load_batch_config(_write(tmp_path, base + '[models]\noutpaint = "texture-fill"\n'))
    assert config.outpaint_checkpoint == "texture-fill"
    config = load_batch_config(_write(tmp_path, base + '[models]\noutpaint = "run/final"\n'))
    assert config.outpaint_checkpoint == (tmp_path / "run" / "final").resolve()
    config = load_batch_config(_write(tmp_path, base + '[models]\noutpaint = "ct_nodule_outpaint"\n'))
    assert config.outpaint_checkpoint == builtin_models_dir() / "ct_nodule_outpaint"  # a bundled model by name
    with pytest.raises(ConfigError, match="models.outpaint: 'texture_fill' is neither a checkpoint"):
        load_batch_config(_write(tmp_path, base + '[models]\noutpaint = "texture_fill"\n'))
    with pytest.raises(ConfigError, match="models.outpaint: 'telea' does not outpaint; classical outpainters: "
                                          "texture-fill"):
        load_batch_config(_write(tmp_path, base + '[models]\noutpaint = "telea"\n'))


def test_key_lines_follow_tables() -> None:
    lines = key_lines('seed = 1\n[output]\n# note\ndir = "x"\n[input]\n  dataset = "d"\n')
    assert lines == {"seed": 1, "output": 2, "output.dir": 4, "input": 5, "input.dataset": 6}


def test_diameter_files_in_three_formats(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("# hard examples\n3.5\n7\n")
    (tmp_path / "d.csv").write_text("case,diameter_mm\na,4.0\nb,6.5\n")
    (tmp_path / "d.json").write_text('{"diameters_mm": [2, 3]}')
    assert read_diameter_file(tmp_path / "d.txt") == (3.5, 7.0)
    assert read_diameter_file(tmp_path / "d.csv") == (4.0, 6.5)
    assert read_diameter_file(tmp_path / "d.json") == (2.0, 3.0)
    (tmp_path / "bad.txt").write_text("3\n-1\n")
    with pytest.raises(ConfigError, match="positive"):
        read_diameter_file(tmp_path / "bad.txt")
    text = GOOD + '[diameters]\nkind = "file"\nfile = "bad.txt"\n'
    with pytest.raises(ConfigError, match=r"batch.toml:\d+: diameters.file"):
        load_batch_config(_write(tmp_path, text))


@pytest.mark.parametrize("line, key", [("per_image = 1000000000", "synthesis.per_image"),
                                       ("targets_per_image = [1, 1000000]", "synthesis.targets_per_image")])
def test_absurd_counts_are_refused_before_planning(tmp_path: Path, line: str, key: str) -> None:
    """`per_image = 1e9` used to reach MemoryError while planning, even with --dry-run."""
    text = GOOD.replace("per_image = 4", line)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_batch_config(_write(tmp_path, text), check_files=False)


def test_per_image_bound_in_dry_run(tmp_path: Path, capsys) -> None:
    from lesion_studio.app.cli import main

    path = _write(tmp_path, GOOD.replace("per_image = 4", "per_image = 1000000000"))
    assert main(["batch", str(path), "--dry-run"]) == 2
    assert "synthesis.per_image" in capsys.readouterr().err
