"""Output and run folders (issue 18, items 1 and 4): refused folders, ownership marker,
journal-only cleanup and one run per folder (flock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lesion_studio.core.errors import ConfigError
from lesion_studio.core.export.atomic import JOURNAL_DIR, TempJournal, atomic_file, remove_stale_temps, write_bytes
from lesion_studio.core.output_folder import (
    LOCK_FILE, MARKER, FolderInUseError, FolderLock, OutputFolderRefused, check_output_folder, claim_output_folder,
    lock_holder, open_output_folder, preflight_output_folder,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("folder", ["/", "/etc", "/usr/local/share/x", "/tmp", "/proc/self"])
def test_system_folders_are_refused_even_with_force(folder: str) -> None:
    for force in (False, True):
        with pytest.raises(ConfigError, match="output.dir: refusing to write into"):
            check_output_folder(folder, kind="batch", force=force, key="output.dir")


def test_home_traversal_python_and_git_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="home folder"):
        check_output_folder(Path.home(), kind="batch")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    climb = Path(*[".."] * len(deep.parts)) / "etc"
    with pytest.raises(ConfigError, match=r"system folder .*\.\./etc as given|system folder"):
        check_output_folder(deep / climb, kind="batch")
    with pytest.raises(ConfigError, match="Python installation"):
        check_output_folder(Path(sys.prefix) / "exports", kind="train")
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    with pytest.raises(ConfigError, match="git repository"):
        check_output_folder(tmp_path / "repo", kind="batch", force=True)


def test_foreign_non_empty_folders_need_force_and_owned_ones_do_not(tmp_path: Path) -> None:
    assert check_output_folder(tmp_path / "new", kind="batch") == (tmp_path / "new").resolve()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"not empty \(1 entries: holiday.jpg\).*--force"):
        check_output_folder(foreign, kind="batch")
    assert check_output_folder(foreign, kind="batch", force=True) == foreign.resolve()
    owned = claim_output_folder(tmp_path / "owned", kind="batch")
    (owned / "manifest.jsonl").write_text("")
    assert (owned / MARKER).is_file()
    assert check_output_folder(owned, kind="batch") == owned.resolve()
    with pytest.raises(ConfigError, match="lesion-studio 'batch' folder, not a 'train' one"):
        check_output_folder(owned, kind="train")


def test_refusals_say_whether_force_would_accept_the_folder(tmp_path: Path) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(OutputFolderRefused) as info:
        check_output_folder(foreign, kind="batch")
    assert info.value.overridable and isinstance(info.value, ConfigError)
    owned = claim_output_folder(tmp_path / "owned", kind="batch")
    with pytest.raises(OutputFolderRefused) as info:
        check_output_folder(owned, kind="train")
    assert info.value.overridable
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    for folder in ("/etc", Path.home(), tmp_path / "repo", foreign / "holiday.jpg"):
        with pytest.raises(OutputFolderRefused) as info:
            check_output_folder(folder, kind="batch")
        assert not info.value.overridable, folder
    assert not FolderInUseError("x").overridable


def test_preflight_checks_the_lock_without_writing_anything(tmp_path: Path) -> None:
    new = tmp_path / "new"
    assert preflight_output_folder(new, kind="train") == new.resolve()
    assert not new.exists()  # nothing created
    assert lock_holder(new) is None
    lock = open_output_folder(tmp_path / "busy", kind="train")
    try:
        assert lock_holder(tmp_path / "busy")["pid"] == os.getpid()
        for force in (False, True):  # in use: no force helps, and it is said before the contents
            with pytest.raises(FolderInUseError, match=f"in use by PID {os.getpid()}"):
                preflight_output_folder(tmp_path / "busy", kind="batch", force=force)
    finally:
        lock.release()
    assert lock_holder(tmp_path / "busy") is None and (tmp_path / "busy" / LOCK_FILE).is_file()
    with pytest.raises(OutputFolderRefused, match="not a 'batch' one"):
        preflight_output_folder(tmp_path / "busy", kind="batch")
    assert preflight_output_folder(tmp_path / "busy", kind="batch", force=True) == (tmp_path / "busy").resolve()


def test_a_second_lock_fails_fast_naming_the_holder(tmp_path: Path) -> None:
    first = open_output_folder(tmp_path / "out", kind="batch")
    try:
        with pytest.raises(FolderInUseError, match=rf"in use by PID {os.getpid()} since \d{{4}}-") as info:
            FolderLock(tmp_path / "out").acquire()
        assert info.value.path == (tmp_path / "out").resolve()
    finally:
        first.release()
    with FolderLock(tmp_path / "out"):  # free again once released
        pass


def test_the_kernel_releases_the_lock_of_a_killed_process(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from lesion_studio.core.output_folder import FolderLock
        FolderLock({str(tmp_path)!r}, what="train").acquire()
        print("locked", flush=True)
        sys.stdin.read()
    """)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(FolderInUseError, match=f"in use by PID {child.pid} .*lesion-studio train"):
            FolderLock(tmp_path).acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    FolderLock(tmp_path).acquire().release()


def test_cleanup_removes_only_what_a_killed_run_journaled(tmp_path: Path) -> None:
    user_lock = tmp_path / "notes" / ".git" / ".index.tmp.lock"  # a user's git temp: never ours
    user_lock.parent.mkdir(parents=True)
    user_lock.write_text("keep")
    other_program = tmp_path / ".report.pdf.tmp"
    other_program.write_text("keep")
    # a "killed" run: the journal lists its temp, the temp is still there
    killed = TempJournal(tmp_path).open()
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(tmp_path / "img" / "a.nii.gz") as tmp:
            tmp.write_bytes(b"half")
            leftover = tmp.with_name(tmp.name + ".copy")
            killed.record(leftover)
            leftover.write_bytes(b"half")  # what a SIGKILL would have left
            raise KeyboardInterrupt
    killed._fh.close()  # the process is gone: its journal file stays behind
    from lesion_studio.core.export import atomic

    atomic._journals.clear()
    # this run's own temps are never touched
    with TempJournal(tmp_path) as mine:
        own_tmp = atomic.temp_path(tmp_path / "img" / "b.png")
        own_tmp.write_bytes(b"writing")
        assert remove_stale_temps(tmp_path) == 1
        assert own_tmp.is_file() and mine.path.is_file()
        own_tmp.unlink()
    assert not leftover.exists()
    assert user_lock.read_text() == "keep" and other_program.read_text() == "keep"
    assert not (tmp_path / JOURNAL_DIR).exists()  # a finished run leaves no journal


def test_a_journal_cannot_point_outside_its_folder(tmp_path: Path) -> None:
    victim = tmp_path / ".victim.tmp"
    victim.write_text("keep")
    out = tmp_path / "out"
    (out / JOURNAL_DIR).mkdir(parents=True)
    (out / JOURNAL_DIR / "1-x.txt").write_text(f"../.victim.tmp\n{victim}\nplain.txt\n")
    (out / "plain.txt").write_text("keep")
    assert remove_stale_temps(out) == 0
    assert victim.read_text() == "keep" and (out / "plain.txt").read_text() == "keep"


def test_writes_outside_a_journal_folder_are_not_journaled(tmp_path: Path) -> None:
    with TempJournal(tmp_path / "out") as journal:
        write_bytes(tmp_path / "elsewhere" / "x.bin", b"1")
        assert not journal.path.exists()
        write_bytes(tmp_path / "out" / "x.bin", b"1")
        assert journal.path.read_text().startswith(".x.bin.")


# -- the batch exporter and the trainer use all of it ----------------------------------------
def _batch_config(tmp_path: Path, out: str) -> Path:
    from lesion_studio.core.phantom import generate_phantom_dataset

    if not (tmp_path / "ds").is_dir():
        generate_phantom_dataset(tmp_path / "ds", "chest", 1, size_px=128)
    path = tmp_path / "batch.toml"
    path.write_text(f'seed = 1\n[input]\ndataset = "{tmp_path / "ds"}"\n[synthesis]\nper_image = 1\n'
                    f'[output]\ndir = "{out}"\nformats = ["png"]\n')
    return path


def test_batch_refuses_root_and_a_locked_folder_and_keeps_user_temps(tmp_path: Path, capsys) -> None:
    from lesion_studio.app.cli import main

    assert main(["batch", str(_batch_config(tmp_path, "/")), "--quiet"]) == 2
    assert "output.dir: refusing to write into / " in capsys.readouterr().err
    out = tmp_path / "out"
    config = _batch_config(tmp_path, str(out))
    with FolderLock(out, what="batch"):  # another export is running into the same folder
        assert main(["batch", str(config), "--quiet"]) == 2
        assert f"in use by PID {os.getpid()}" in capsys.readouterr().err
    assert not any(out.rglob("*.png"))  # the second run did no work
    assert main(["batch", str(config), "--quiet"]) == 0
    assert (out / MARKER).is_file() and any(out.rglob("*.png"))
    user_lock = out / "notes" / ".git" / ".index.tmp.lock"
    user_lock.parent.mkdir(parents=True)
    user_lock.write_text("keep")
    assert main(["batch", str(config), "--quiet"]) == 0
    assert user_lock.read_text() == "keep"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("mine")
    assert main(["batch", str(_batch_config(tmp_path, str(foreign))), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["batch", str(_batch_config(tmp_path, str(foreign))), "--quiet", "--force"]) == 0
    assert (foreign / "thesis.docx").read_text() == "mine"


def test_train_refuses_root_foreign_and_locked_run_folders(tmp_path: Path) -> None:
    from lesion_studio.models.config import default_config
    from lesion_studio.models.trainer import Trainer

    def config(out: Path | str):
        return default_config("texture", dataset=str(tmp_path / "none"), out_dir=str(out), steps=1, device="cpu")

    with pytest.raises(ConfigError, match="run.out_dir: refusing to write into /"):
        Trainer(config("/")).run()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("1")
    with pytest.raises(ConfigError, match="run.out_dir: .* not empty"):
        Trainer(config(foreign)).run()
    with FolderLock(tmp_path / "run", what="train"):
        with pytest.raises(FolderInUseError, match="in use by PID"):
            Trainer(config(tmp_path / "run")).run()
    # --force takes the foreign folder; the (missing) dataset is the next error, after the lock
    with pytest.raises(ConfigError, match="none"):
        Trainer(config(foreign), force=True).run()
    assert (foreign / MARKER).is_file()
    FolderLock(foreign).acquire().release()  # the failed run released its lock
