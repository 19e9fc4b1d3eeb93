"""safetensors + JSON checkpoints: round trip, family/shape checks, pickles refused."""

from __future__ import annotations

import json
import os
import pickle
from collections import Counter
from pathlib import Path

import pytest
import torch

from lesion_studio.core.errors import CheckpointError
from lesion_studio.models.checkpoint import load_checkpoint, save_checkpoint
from lesion_studio.models.networks import build_discriminator, build_generator
from tests.models.conftest import TINY
from lesion_studio.models.config import default_config
import dataclasses


def _nets(family: str, **changes):
    model = dataclasses.replace(default_config(family).model, **{**TINY[family], **changes})
    return model, {"generator": build_generator(model), "discriminator": build_discriminator(model)}


def test_round_trip_with_training_state(tmp_path: Path) -> None:
    model, nets = _nets("texture")
    opt = torch.optim.Adam(nets["generator"].parameters(), lr=1e-3, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 5], gamma=0.1)
    nets["generator"](torch.zeros(1, 1, 32, 32), torch.ones(1, 1, 32, 32))[1].mean().backward()
    opt.step(); sched.step()
    state = {"optimizers": {"generator": opt.state_dict()}, "schedulers": {"generator": sched.state_dict()},
             "rng": {"torch": torch.get_rng_state()}, "best_value": None}
    stem = save_checkpoint(tmp_path / "ck", family="texture", config={"a": 1}, networks=nets, step=7,
                           metrics={"masked_psnr": 20.0}, dataset_fingerprint="abc", training_state=state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.json", "ck.safetensors", "ck.state.safetensors"]
    meta = json.loads((tmp_path / "ck.json").read_text())
    assert meta["family"] == "texture" and meta["step"] == 7 and meta["dataset_fingerprint"] == "abc"
    assert meta["package_version"] and meta["metrics"] == {"masked_psnr": 20.0}
    ck = load_checkpoint(stem.with_suffix(".safetensors"), family="texture", with_training_state=True)
    _, fresh = _nets("texture")
    ck.load_into(fresh)
    for a, b in zip(fresh["generator"].state_dict().values(), nets["generator"].state_dict().values()):
        assert torch.equal(a, b)
    restored = ck.training_state
    assert isinstance(restored["schedulers"]["generator"]["milestones"], Counter)
    assert restored["optimizers"]["generator"]["param_groups"][0]["betas"] == (0.5, 0.999)
    opt2 = torch.optim.Adam(fresh["generator"].parameters(), lr=1e-3)
    opt2.load_state_dict(restored["optimizers"]["generator"])
    assert torch.equal(restored["rng"]["torch"], state["rng"]["torch"])


def test_other_family_and_other_shapes_are_refused(tmp_path: Path) -> None:
    _, nets = _nets("texture")
    save_checkpoint(tmp_path / "tex", family="texture", config={}, networks=nets, step=1)
    with pytest.raises(CheckpointError, match="'texture' checkpoint; a 'cascade'"):
        load_checkpoint(tmp_path / "tex", family="cascade")
    _, wider = _nets("texture", base_channels=16)
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path / "tex").load_into(wider)
    _, other = _nets("pix2pix")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "tex").load_into(other)
    with pytest.raises(CheckpointError, match="cannot resume"):
        load_checkpoint(tmp_path / "tex", with_training_state=True)


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"generator": _Evil(str(marker))})
    for name in ("evil.pt", "evil.safetensors", "evil.bin"):
        (tmp_path / name).write_bytes(payload)
    (tmp_path / "evil.json").write_text(json.dumps({"format": "lesion-studio-checkpoint", "version": 1,
                                                    "family": "texture", "networks": ["generator"], "step": 0}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(tmp_path / "evil.safetensors")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil")
    torch.save({"x": torch.zeros(1)}, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match="never loads pickles"):
        load_checkpoint(tmp_path / "plain.ckpt")
    assert not marker.exists()


def test_missing_or_foreign_metadata(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="metadata"):
        load_checkpoint(tmp_path / "nothing")
    (tmp_path / "x.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="not a lesion-studio checkpoint"):
        load_checkpoint(tmp_path / "x")
