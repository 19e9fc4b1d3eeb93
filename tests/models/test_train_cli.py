"""`lesion-studio train CONFIG.toml` headless, and under torchrun with 2 gloo processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from lesion_studio.app.cli import main
from lesion_studio.models.checkpoint import load_checkpoint
from tests._process import run_group

TOML = """
family = "texture"
[run]
dataset = "{dataset}"
out_dir = "{out}"
steps = {steps}
val_every = 2
checkpoint_every = 0
log_every = 1
device = "cpu"
num_threads = 1
[model]
base_channels = 4
disc_channels = 4
patch_px = 32
batch_size = 2
perceptual_weights = "disabled"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(tmp_path: Path, dataset: Path, steps: int) -> Path:
    path = tmp_path / "train.toml"
    path.write_text(TOML.format(dataset=dataset, out=tmp_path / "run", steps=steps))
    return path


def test_train_command_runs_headless(chest_dataset: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", str(_config(tmp_path, chest_dataset, 3)), "--quiet"]) == 0
    ck = load_checkpoint(tmp_path / "run" / "final", family="texture")
    assert ck.step == 3 and ck.meta["config"]["model"]["base_channels"] == 4
    assert "checkpoint:" in capsys.readouterr().out


def test_train_command_reports_config_errors(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('family = "texture"\n[model]\nwidth = 3\n')
    assert main(["train", str(bad)]) == 2
    assert "model.width" in capsys.readouterr().err


def test_torchrun_two_gloo_processes(chest_dataset: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, chest_dataset, 4)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = run_group(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
         "-m", "lesion_studio", "train", str(config), "--quiet"],
        timeout=240, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("checkpoint:") == 2  # both ranks ran to the end
    written = sorted(p.name for p in (tmp_path / "run").glob("*.json") if not p.name.startswith("."))
    assert written == ["best.json", "final.json"]  # rank 0 alone writes
    assert (tmp_path / "run" / ".lesion-studio-output.json").is_file()  # rank 0 claimed the folder
    assert load_checkpoint(tmp_path / "run" / "final", family="texture").step == 4
