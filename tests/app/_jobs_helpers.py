"""Shared pieces of the job tests: a small phantom dataset and tiny training configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.models.config import TrainConfig, default_config

#: pix2pix at 32 px with 8 base channels: a few ms per step on one CPU thread.
TINY_PIX2PIX = dict(base_channels=8, disc_channels=8, patch_px=32, num_downs=5, batch_size=4, lr_g=1e-3, lr_d=1e-4)


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("jobs_phantom")
    generate_phantom_dataset(out, "chest", 10, size_px=96)
    return out


def tiny_config(dataset: Path, out_dir: Path, **run) -> TrainConfig:
    values = dict(dataset=str(dataset), out_dir=str(out_dir), steps=30, val_every=10, checkpoint_every=10,
                  sample_every=10, log_every=1, device="cpu", num_threads=1)
    values.update(run)
    config = default_config("pix2pix", **values)
    config.model = dataclasses.replace(config.model, **TINY_PIX2PIX)
    return config
