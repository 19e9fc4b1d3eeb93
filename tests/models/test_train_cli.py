"""`lesion-studio train CONFIG.toml` headless, and under torchrun with 2 gloo processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from lesion_studio.app.cli import main
from lesion_studio.models.checkpoint import load_checkpoint
from tests._process import live_group_members, run_group

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
    assert written == ["best.json", "final.json", "selection.json"]  # rank 0 alone writes
    assert (tmp_path / "run" / ".lesion-studio-output.json").is_file()  # rank 0 claimed the folder
    assert load_checkpoint(tmp_path / "run" / "final", family="texture").step == 4


def test_torchrun_ranks_stop_with_rank_0_when_the_run_folder_is_locked(chest_dataset: Path, tmp_path: Path) -> None:
    """Rank 0 cannot lock the run folder: every rank says why and exits non-zero, none hangs or writes."""
    from lesion_studio.core.output_folder import open_output_folder

    config = _config(tmp_path, chest_dataset, 4)
    lock = open_output_folder(tmp_path / "run", kind="train")  # this test process is the other run
    before = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    try:
        proc = run_group(
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
             str(_free_port()), "-m", "lesion_studio", "train", str(config), "--quiet"],
            timeout=240, env=env, cwd=tmp_path,  # a hang guard: a waiting rank would never return
        )
    finally:
        lock.release()
    assert proc.returncode != 0
    message = f"lesion-studio train: {(tmp_path / 'run').resolve()}: in use by PID {os.getpid()} since"
    assert proc.stderr.count(message) == 2, proc.stderr[-3000:]  # rank 0 and rank 1 each say it
    # torchrun's summary lists every rank that failed with its exit code (2, or SIGTERM when
    # torchrun stopped a rank after rank 0 had exited): both ranks, none with exit code 0.
    codes = {int(rank): int(code) for rank, code in
             re.findall(r"rank\s*: (\d+) \(local_rank: \d+\)\s*exitcode\s*: (-?\d+)", proc.stderr)}
    assert set(codes) == {0, 1} and 0 not in codes.values(), proc.stderr[-3000:]
    assert codes[0] == 2 or codes[1] == 2
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == before  # no rank wrote there
    assert live_group_members(proc.pid) == []  # no worker left running

