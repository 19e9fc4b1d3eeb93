"""Issue 16 item 4: the New training dialog's defaults train offline and are remembered."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.models.config import FAMILY_CONFIGS
from lesion_studio.models.trainer import Trainer
from lesion_studio.widgets.new_training_dialog import VGG_WEIGHT_KEYS, NewTrainingDialog


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("offline_ds")
    generate_phantom_dataset(out, "chest", 4, size_px=64)
    return out


@pytest.fixture
def offline(monkeypatch, tmp_path) -> Path:
    """An empty torch hub: no pretrained weights on this computer."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def test_defaults_of_every_family_need_no_download(qtbot, offline, small_dataset, tmp_path) -> None:
    dialog = NewTrainingDialog(out_root=tmp_path, dataset=small_dataset)
    qtbot.addWidget(dialog)
    for family in FAMILY_CONFIGS:
        dialog.set_family(family)
        config = dialog.config()
        keys = [k for k in VGG_WEIGHT_KEYS if hasattr(config.model, k)]
        for key in keys:
            assert getattr(config.model, key) == "disabled", (family, key)
        assert dialog.offline_note.isHidden() == (not keys), family
        if keys:
            assert "not on this computer" in dialog.offline_note.text()


def test_texture_training_with_the_dialog_defaults_runs_offline(qtbot, offline, small_dataset, tmp_path) -> None:
    dialog = NewTrainingDialog(out_root=tmp_path, dataset=small_dataset, family="texture")
    qtbot.addWidget(dialog)
    for key, value in dict(base_channels=4, disc_channels=4, patch_px=32, batch_size=2).items():
        dialog.set_field(f"model.{key}", value)  # only the size: the loss terms stay the defaults
    for key, value in dict(steps=2, val_every=0, sample_every=0, checkpoint_every=0, num_threads=1).items():
        dialog.set_field(f"run.{key}", value)
    dialog.set_device("cpu")
    result = Trainer(dialog.config()).run()
    assert result.step == 2


def test_weights_in_the_hub_keep_the_perceptual_term(qtbot, offline, small_dataset, tmp_path) -> None:
    (offline / "checkpoints").mkdir(parents=True)
    (offline / "checkpoints" / VGG_WEIGHT_KEYS["perceptual_weights"][1]).write_bytes(b"x")
    dialog = NewTrainingDialog(out_root=tmp_path, dataset=small_dataset, family="texture")
    qtbot.addWidget(dialog)
    assert dialog.field_text("model.perceptual_weights") == "auto" and dialog.offline_note.isHidden()


def test_dialog_remembers_the_last_accepted_values(qtbot, offline, small_dataset, tmp_path) -> None:
    first = NewTrainingDialog(out_root=tmp_path, dataset=small_dataset, family="pix2pix")
    qtbot.addWidget(first)
    first.set_field("run.steps", "1234")
    first.set_field("model.batch_size", "3")
    first.set_device("cpu")
    first.accept()
    assert first.result() == first.DialogCode.Accepted
    again = NewTrainingDialog(out_root=tmp_path)
    qtbot.addWidget(again)
    assert again.family == "pix2pix" and again.field_text("run.steps") == "1234"
    assert again.field_text("model.batch_size") == "3" and again.device_combo.currentText() == "cpu"
    assert again.dataset_edit.text() == str(small_dataset)
    qtbot.waitUntil(lambda: again.report is not None and again.report.ok, timeout=30_000)
