"""TOML configs: paper defaults, overrides, and ConfigError naming the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lesion_studio.core.errors import ConfigError
from lesion_studio.models.config import TextureConfig, TrainConfig, default_config, load_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.toml"
    path.write_text(text)
    return path


def test_defaults_come_from_the_papers() -> None:
    shape = default_config("shape").model
    assert (shape.z_dim, shape.lr_g, shape.lr_d, shape.batch_size, shape.adversarial_loss) == (100, 1e-4, 1e-5, 6, "lsgan")
    tex = default_config("texture").model
    assert (tex.dilations, tex.patch_px, tex.batch_size, tex.lr_g, tex.lr_d_ratio) == ([2, 4, 8, 16], 256, 8, 1e-4, 0.1)
    out = default_config("outpaint").model
    assert isinstance(out, TextureConfig) and out.invert_masks
    cas = default_config("cascade").model
    assert (cas.l1_weight, cas.content_weight, cas.adversarial_weight, cas.d_every, cas.lr_g) == (50.0, 1.0, 1.0, 2, 2e-4)
    p2p = default_config("pix2pix").model
    assert (p2p.l1_weight, p2p.lr_g, p2p.betas[0], p2p.patch_px) == (100.0, 2e-4, 0.5, 256)


def test_toml_round_trip_and_relative_paths(tmp_path: Path) -> None:
    path = _write(tmp_path, 'family = "cascade"\n[run]\ndataset = "data"\nsteps = 7\n[model]\nbase_channels = 8\nl1_weight = 10\n')
    config = load_config(path)
    assert config.family == "cascade" and config.run.steps == 7 and config.model.base_channels == 8
    assert config.model.l1_weight == 10.0 and isinstance(config.model.l1_weight, float)
    assert Path(config.run.dataset) == (tmp_path / "data").resolve()
    again = TrainConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "text, key",
    [
        ('family = "texture"\n[model]\nbase_chanels = 8\n', "model.base_chanels"),
        ('family = "texture"\n[run]\nsteps = "many"\n', "run.steps"),
        ('family = "texture"\n[run]\nsteps = 0\n', "run.steps"),
        ('family = "gan9000"\n', "family"),
        ('[run]\nsteps = 3\n', "family"),
        ('family = "shape"\n[model]\nadversarial_loss = "wgan"\n', "model.adversarial_loss"),
        ('family = "texture"\n[model]\npatch_px = 30\n', "model.patch_px"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        load_config(_write(tmp_path, text))
    assert info.value.path is not None


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TOML"):
        load_config(_write(tmp_path, "family = \n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


# -- issue 18, item 13: every bad value named, no tracebacks ----------------------------------
@pytest.mark.parametrize(
    "text, message",
    [
        ('family = "texture"\n[model]\nbase_channels = 0\n', r"train\.toml:3: model\.base_channels: must be in \[1, 4096\], got 0"),
        ('family = "shape"\n[model]\nbase_channels = -4\n', r"model\.base_channels: must be in \[1, 4096\], got -4"),
        ('family = "cascade"\n[model]\nin_channels = 0\n', r"model\.in_channels: must be in \[1, 64\], got 0"),
        ('family = "texture"\n[model]\nlr_g = -1e-4\n', r"model\.lr_g: must be > 0"),
        ('family = "texture"\n[model]\nbetas = [0.5, 1.5]\n', r"model\.betas: each value must be in \[0, 1\), got \[0\.5, 1\.5\]"),
        ('family = "cascade"\n[model]\ndilations = [0]\n', r"model\.dilations: each value must be in \[1, 4096\], got \[0\]"),
        ('family = "texture"\n[run]\nvalue_range = [nan, 1.0]\n', r"run\.value_range: must be a finite number"),
        ('family = "texture"\n[model]\nlr_g = inf\n', r"model\.lr_g: must be a finite number"),
        ('family = "texture"\n[model]\nbase_chanels = 8\n', r"model\.base_chanels: .*did you mean 'base_channels'\?"),
        ('family = "texture"\n[rn]\nsteps = 8\n', r"train\.toml:2: rn: unknown section; did you mean 'run'\?"),
        ('family = "texture"\n[model]\nbase_channels = "wide"\n', r"model\.base_channels: expected an integer, got 'wide'"),
        ('family = "texture"\n[run]\nvalue_range = "auto"\n', r"run\.value_range: expected a list of numbers, got"),
    ],
)
def test_bad_train_values_are_named_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(_write(tmp_path, text))
    assert "<class" not in str(info.value) and info.value.path is not None


def test_a_pickle_named_safetensors_as_vgg_weights_is_a_config_error(tmp_path: Path) -> None:
    import pickle

    from lesion_studio.models.losses import build_vgg_term

    fake = tmp_path / "vgg16.safetensors"
    fake.write_bytes(pickle.dumps({"features.0.weight": [1.0]}))
    with pytest.raises(ConfigError, match="not a readable safetensors file") as info:
        build_vgg_term("vgg16", str(fake), 1.0, key="model.perceptual_weights")
    assert info.value.path == fake


@pytest.mark.parametrize(
    "extra, message",
    [
        ('[training]\nfolds = "five"\n', r"experiment\.toml:5: training\.folds: expected an integer, got 'five'"),
        ('[training]\nlr = "fast"\n', r"training\.lr: expected a number, got 'fast'"),
        ('[training]\ndevice = "tpu"\n', r"training\.device: must be one of 'auto', 'cpu', 'cuda', got 'tpu'"),
        ('[training]\nbatch_size = 0\n', r"training\.batch_size: must be >= 1, got 0"),
        ('[training]\nepochs = -1\n', r"training\.epochs: must be >= 1, got -1"),
        ('[trainig]\nepochs = 2\n', r"experiment\.toml:4: trainig: unknown section; did you mean 'training'\?"),
        ('[hem]\nn_synth = 3\n', r"hem\.n_synth: unknown key; did you mean 'n_synthetic'\?"),
        ('[[conditions]]\nname = "real"\nsynthetc_count = 2\n',
         r"experiment\.toml:6: conditions#1\.synthetc_count: unknown key; did you mean 'synthetic_count'\?"),
        ('[training]\nepocs = 2\n', r"training\.epocs: unknown key; did you mean 'epochs'\?"),
    ],
)
def test_bad_evaluate_values_are_named_with_the_reason(tmp_path: Path, extra: str, message: str) -> None:
    from lesion_studio.models.experiments import load_experiment_config

    path = tmp_path / "experiment.toml"
    path.write_text('[experiment]\nname = "x"\ndataset = "data"\n' + extra)
    with pytest.raises(ConfigError, match=message) as info:
        load_experiment_config(path)
    assert info.value.path == path


def test_texture_preset_fields_are_checked_with_their_lines(tmp_path: Path) -> None:
    """An unknown preset or gate, or a zero-width bottleneck, is refused when the file is read
    (naming file, line and the allowed values), not later when the trainer builds the network."""
    path = tmp_path / "train.toml"
    path.write_text('family = "texture"\n[run]\ndataset = "d"\n[model]\npreset = "heavy"\n'
                    'gate = "quarter"\ndilated_mult = 0\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert f"{path}:5: model.preset: must be one of 'paper', 'deepfill', 'light'" in text
    assert f"{path}:6: model.gate:" in text and "'half'" in text
    assert f"{path}:7: model.dilated_mult: must be in [1, 16], got 0" in text
    for preset in ("paper", "deepfill", "light"):
        path.write_text(f'family = "texture"\n[run]\ndataset = "d"\n[model]\npreset = "{preset}"\n')
        assert load_config(path).model.preset == preset
