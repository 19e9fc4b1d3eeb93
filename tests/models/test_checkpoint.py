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


# -- atomic saves (issue 18, items 3 and 5) ---------------------------------------------------
def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_checkpoint(path).weights["generator"].items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Killed(BaseException):
    pass


def test_a_save_interrupted_at_any_step_leaves_the_old_or_no_checkpoint(tmp_path: Path, monkeypatch) -> None:
    from lesion_studio.models import checkpoint as ck

    def save(nets, step):
        return save_checkpoint(tmp_path / "best", family="texture", config={}, networks=nets, step=step,
                               training_state={"rng": torch.arange(step)}, reason="best")

    _, old_nets = _nets("texture")
    _, new_nets = _nets("texture")
    with torch.no_grad():
        for p in new_nets["generator"].parameters():
            p.add_(1.0)
    real_replace, real_unlink = os.replace, Path.unlink
    for k in range(6):  # unlink json, unlink state (no-op), replace state, replace weights, replace json
        save(old_nets, 5)
        old = _weights(tmp_path / "best")
        calls = [0]

        def step(*args, real=None, **kwargs):
            calls[0] += 1
            if calls[0] > k:
                raise _Killed
            return real(*args, **kwargs)

        monkeypatch.setattr(ck.os, "replace", lambda *a, **kw: step(*a, real=real_replace, **kw))
        monkeypatch.setattr(Path, "unlink", lambda self, *a, **kw: (step(self, *a, real=real_unlink, **kw)
                                                                    if self.name.startswith("best") else
                                                                    real_unlink(self, *a, **kw)))
        try:
            save(new_nets, 10)
            finished = True
        except _Killed:
            finished = False
        monkeypatch.undo()
        assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]  # temps removed on the way out
        if not (tmp_path / "best.json").exists():
            assert not finished
            with pytest.raises(CheckpointError, match="no checkpoint metadata"):
                load_checkpoint(tmp_path / "best")
            continue
        loaded = load_checkpoint(tmp_path / "best", with_training_state=True)
        assert (loaded.step, _same(loaded.weights["generator"], old)) in ((5, True), (10, False)), k
        assert loaded.training_state["rng"].numel() == loaded.step
        if loaded.step == 10:
            assert _same(loaded.weights["generator"], {k: v for k, v in new_nets["generator"].state_dict().items()})


def test_files_of_two_saves_are_refused_naming_the_file(tmp_path: Path) -> None:
    _, a = _nets("texture")
    _, b = _nets("texture")
    save_checkpoint(tmp_path / "step5" / "best", family="texture", config={}, networks=a, step=5)
    save_checkpoint(tmp_path / "step10" / "best", family="texture", config={}, networks=b, step=10)
    # what the old three-rename save left after a kill: step-5 JSON, step-10 weights
    (tmp_path / "step5" / "best.safetensors").write_bytes((tmp_path / "step10" / "best.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not match its checkpoint metadata") as info:
        load_checkpoint(tmp_path / "step5" / "best")
    assert info.value.path == tmp_path / "step5" / "best.safetensors"


def test_shipped_models_without_hashes_still_load() -> None:
    from lesion_studio.core.model_catalog import builtin_models_dir

    stems = sorted(builtin_models_dir().glob("*.json"))
    assert stems
    for path in stems:
        assert load_checkpoint(path).weights


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from lesion_studio.models.trainer import Trainer
from tests.models.conftest import tiny_config

real = os.replace
def replace(src, dst):
    # SIGKILL inside the step-4 save, after its weights were renamed and before its JSON
    if Path(dst).name == "step_0000004.json":
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = replace  # what checkpoint.save_checkpoint calls
config = tiny_config("texture", Path(sys.argv[1]), Path(sys.argv[2]), steps=6, checkpoint_every=2, num_threads=1)
Trainer(config).run()
"""


def test_sigkill_during_a_save_resumes_from_the_newest_complete_checkpoint(chest_dataset: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from lesion_studio.models.checkpoint import latest_checkpoint
    from lesion_studio.models.trainer import Trainer
    from tests.models.conftest import tiny_config

    repo = Path(__file__).resolve().parents[2]
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(chest_dataset), str(tmp_path / "run")],
                            cwd=repo, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = tmp_path / "run"
    assert (run / "step_0000004.safetensors").is_file() and not (run / "step_0000004.json").exists()
    assert [p.name for p in run.glob(".step_0000004.json.*.tmp")]  # the killed save's JSON temp
    newest = latest_checkpoint(run, family="texture")
    assert newest == run / "step_0000002"
    config = tiny_config("texture", chest_dataset, run, steps=6, checkpoint_every=2, num_threads=1)
    resumed = Trainer(config).run(resume=newest)
    assert resumed.step == 6
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]  # the journal-listed temps were cleaned
    straight = Trainer(tiny_config("texture", chest_dataset, tmp_path / "straight", steps=6, checkpoint_every=2,
                                   num_threads=1)).run()
    wa, wb = load_checkpoint(resumed.checkpoint).weights, load_checkpoint(straight.checkpoint).weights
    for net in wa:
        for key in wa[net]:
            assert torch.allclose(wa[net][key], wb[net][key], atol=1e-6), key


def test_keep_last_is_honoured_after_a_resume(chest_dataset: Path, tmp_path: Path) -> None:
    from lesion_studio.models.trainer import Trainer
    from tests.models.conftest import tiny_config

    config = tiny_config("pix2pix", chest_dataset, tmp_path, steps=6, checkpoint_every=1, keep_last=2,
                         num_threads=1)
    first = Trainer(config).run()
    assert sorted(p.name for p in tmp_path.glob("step_*.json")) == ["step_0000004.json", "step_0000005.json"]
    config.run.steps = 10
    Trainer(config).run(resume=first.checkpoint)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == [
        "step_0000008.json", "step_0000008.safetensors", "step_0000008.state.safetensors",
        "step_0000009.json", "step_0000009.safetensors", "step_0000009.state.safetensors"]


# --------------------------------------------------------------------------------------------
# Issue 18 item 12: hostile sidecars are refused before anything is allocated


def _synth_checkpoint(tmp_path: Path) -> Path:
    model, nets = _nets("texture")
    config = default_config("texture")
    config.model = model
    save_checkpoint(tmp_path / "tex", family="texture", config=config.to_dict(),
                    networks={"generator": nets["generator"]}, step=3, normalization={"lo": 0.0, "hi": 1.0})
    return tmp_path / "tex"


def _edit(stem: Path, change) -> Path:
    path = stem.with_name(stem.name + ".json")
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(step="ten"), "step must be a non-negative integer"),
        (lambda m: m.update(version="1.0"), "version must be"),
        (lambda m: m.update(networks="generator"), "networks must be"),
        (lambda m: m.update(metrics=[1, 2]), "metrics must be a table"),
        (lambda m: m.update(normalization={"lo": "a", "hi": 1}), "normalization"),
        (lambda m: m.update(normalization={"lo": float("nan"), "hi": 1}), "normalization"),
        (lambda m: m["config"]["model"].update(base_channels=10**7),
         r"model\.base_channels: must be in \[1, 4096\], got 10000000"),
        (lambda m: m["config"]["model"].update(base_channels="wide"), "base_channels"),
        (lambda m: m["config"]["model"].update(dilations=[2] * 10**5), "dilations"),
    ],
)
def test_a_hostile_sidecar_is_refused_naming_the_file(tmp_path: Path, change, message) -> None:
    from lesion_studio.models.inference import load_synthesizer

    json_path = _edit(_synth_checkpoint(tmp_path), change)
    with pytest.raises(CheckpointError, match=message) as info:
        load_synthesizer(tmp_path / "tex")
    assert str(json_path.with_suffix("")) in str(info.value)


def test_a_huge_network_is_refused_before_it_is_built(tmp_path: Path, monkeypatch) -> None:
    """5.7 TB generators: counted on the meta device and refused; nothing real is built."""
    from lesion_studio.models import checkpoint, inference

    stem = _synth_checkpoint(tmp_path)
    built: list[str] = []
    real_build = inference.build_generator

    def recording_build(config):
        net = real_build(config)
        built.append(next(net.parameters()).device.type)
        return net

    monkeypatch.setattr(inference, "build_generator", recording_build)
    _edit(stem, lambda m: m["config"]["model"].update(base_channels=4096))
    with pytest.raises(CheckpointError, match="parameters, more than the limit") as info:
        inference.load_synthesizer(stem)
    assert "tex.json" in str(info.value)
    assert built == ["meta"]
    # a plausible width whose weights are not the file's: shapes compared before building
    built.clear()
    _edit(stem, lambda m: m["config"]["model"].update(base_channels=16))
    with pytest.raises(CheckpointError, match="does not fit the network its metadata describes"):
        inference.load_synthesizer(stem)
    assert built == ["meta"]
    monkeypatch.setattr(checkpoint, "MAX_NETWORK_PARAMETERS", 10)
    _edit(stem, lambda m: m["config"]["model"].update(base_channels=8))
    with pytest.raises(CheckpointError, match="limit of 10"):
        inference.load_synthesizer(stem)
    monkeypatch.undo()
    assert inference.load_synthesizer(stem) is not None  # the untouched sidecar loads


def test_one_bad_sidecar_does_not_break_the_model_list(tmp_path: Path) -> None:
    from lesion_studio.core.model_catalog import read_model_info, scan_models

    stem = _synth_checkpoint(tmp_path)
    good = read_model_info(stem.with_name("tex.json"))
    assert good is not None and not good.problem and good.serves("inpaint")
    for name, change in (("steps", lambda m: m.update(step="ten")), ("metrics", lambda m: m.update(metrics=[1])),
                         ("family", lambda m: m.update(family=["texture"]))):
        bad = tmp_path / name
        for suffix in (".json", ".safetensors"):
            (tmp_path / f"{name}{suffix}").write_bytes(stem.with_name("tex" + suffix).read_bytes())
        _edit(bad, change)
    (tmp_path / "notjson.json").write_text("{")
    listed = {m.name: m for m in scan_models([tmp_path]) if not m.builtin}
    assert not listed["tex"].problem
    for name in ("steps", "metrics", "family"):
        info = listed[name]
        assert info.problem and not info.modes and "unusable" in info.label()
        assert "cannot be used" in info.summary()
    assert "notjson" not in listed
