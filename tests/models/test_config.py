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
