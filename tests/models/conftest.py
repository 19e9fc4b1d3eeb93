"""Tiny-width configs (as dataclasses or train TOML text), a small phantom dataset and a
one-torch-thread fixture shared by the model tests."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.models.config import TrainConfig, default_config

TINY = {
    "shape": dict(base_channels=16, patch_px=32, lr_g=2e-3, lr_d=2e-3, batch_size=12),
    "texture": dict(base_channels=8, disc_channels=8, patch_px=32, perceptual_weights="disabled", lr_g=3e-3),
    "outpaint": dict(base_channels=8, disc_channels=8, patch_px=32, perceptual_weights="disabled", lr_g=1e-3),
    # lesion patches only (P0's non-lesion pairs, on by default, double the data of a 200-step test)
    "cascade": dict(base_channels=8, disc_channels=8, patch_px=32, local_px=16, content_weights="disabled",
                    batch_size=8, lr_g=1e-3, lr_d=1e-3, nonlesion_pairs=0.0),
    "pix2pix": dict(base_channels=8, disc_channels=8, patch_px=32, num_downs=5, batch_size=4, lr_g=1e-3, lr_d=1e-4),
}
#: A StyleGAN2 small enough to build, train and sample on one CPU thread in a test (the "cpu-64"
#: preset, narrower); each test adds its batch size.
TINY_STYLEGAN2 = dict(patch_px=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=128, channel_max=16)
#: The [run] table of a 2-step training that validates, checkpoints and samples nothing on the way.
TWO_STEP_RUN = dict(steps=2, val_every=0, checkpoint_every=0, sample_every=0, log_every=1)


def train_toml(family: str, run: dict, model: dict) -> str:
    """The text of a train TOML: `family`, then the [run] and [model] tables (str, bool, int, float values)."""
    lines = [f"family = {json.dumps(family)}", "[run]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in run.items()]
    lines.append("[model]")
    lines += [f"{key} = {json.dumps(value)}" for key, value in model.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch):
    """One torch thread whatever earlier tests left, and the code under test may not change it:
    GAN training is chaotic, so another float summation order is another run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    yield
    monkeypatch.undo()
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def chest_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom_chest")
    generate_phantom_dataset(out, "chest", 12, size_px=128)
    return out


def tiny_config(family: str, dataset: Path, out_dir: Path, **run) -> TrainConfig:
    defaults = dict(dataset=str(dataset), out_dir=str(out_dir), steps=20, val_every=0, checkpoint_every=0,
                    sample_every=0, log_every=1, num_threads=0)
    defaults.update(run)
    config = default_config(family, **defaults)
    config.model = dataclasses.replace(config.model, **TINY[family])
    return config
