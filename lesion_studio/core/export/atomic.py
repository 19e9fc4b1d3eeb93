"""Atomic file writes for the exporter and the trainer: a temporary name in the same folder, then `os.replace`.

Temporary names start with "." and contain ".tmp" (`.NAME.PID-RANDOM.tmp[.SUFFIX]`). While a
`TempJournal` is open on an output folder, every temporary file created below that folder is
listed in the journal (`.lesion-studio-journal/PID-RANDOM.txt`) *before* it is created.
`remove_stale_temps(folder)` deletes exactly the files those journals list (what a killed run
left behind) and nothing else: never a glob over the tree, so a user's `.git/.index.tmp.lock`
or another program's temporary files are never touched. Call it only while holding the
folder's lock (`core.output_folder.FolderLock`), so no live run's journal is read.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMP_MARKER = ".tmp"
JOURNAL_DIR = ".lesion-studio-journal"

_journals: dict[str, "TempJournal"] = {}
_journals_guard = threading.Lock()


class TempJournal:
    """The list of temporary files this process creates below `root` (one file per process)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(os.path.abspath(root))
        self.path = self.root / JOURNAL_DIR / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.txt"
        self._fh = None
        self._guard = threading.Lock()

    def record(self, tmp: Path) -> None:
        """Append `tmp` (relative to the root) to the journal before the file is created."""
        rel = os.path.relpath(os.path.abspath(tmp), self.root)
        with self._guard:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(rel + "\n")
            self._fh.flush()  # in the page cache: survives a SIGKILL of this process

    def open(self) -> "TempJournal":
        with _journals_guard:
            _journals[str(self.root)] = self
        return self

    def close(self) -> None:
        """Stop journaling; the journal file goes too (every temp was renamed or removed)."""
        with _journals_guard:
            if _journals.get(str(self.root)) is self:
                del _journals[str(self.root)]
        with self._guard:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass

    def __enter__(self) -> "TempJournal":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _journal_for(path: Path) -> TempJournal | None:
    if not _journals:
        return None
    text = os.path.abspath(path)
    with _journals_guard:
        for root, journal in _journals.items():
            if text.startswith(root.rstrip(os.sep) + os.sep):
                return journal
    return None


def temp_path(path: str | Path, suffix: str = "") -> Path:
    """A fresh temporary name beside `path`, recorded in the open journal of its folder (if any)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TEMP_MARKER}{suffix}")
    journal = _journal_for(tmp)
    if journal is not None:
        journal.record(tmp)
    return tmp


def fsync_dir(directory: Path) -> None:
    """Make renames in `directory` durable (no-op where directories cannot be opened)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically (readers see the old file or the whole new one), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """Write JSON (sorted keys, so equal content gives equal bytes) atomically."""
    return write_bytes(path, (json.dumps(obj, indent=indent, sort_keys=True) + "\n").encode("utf-8"))


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path with the same suffixes; renamed onto `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffixes = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    tmp = temp_path(path, suffixes)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _listed_temps(root: Path, journal: Path) -> list[Path]:
    """The temporary files a journal lists, keeping only safe entries (inside `root`, temp names)."""
    try:
        lines = journal.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        rel = Path(line.strip())
        if not line.strip() or rel.is_absolute() or ".." in rel.parts:
            continue
        if not (rel.name.startswith(".") and TEMP_MARKER in rel.name):
            continue
        try:  # no way out of the folder through a symlinked sub-folder
            (root / rel).parent.resolve().relative_to(root.resolve())
        except (OSError, ValueError):
            continue
        out.append(root / rel)
    return out


def remove_stale_temps(root: str | Path) -> int:
    """Delete the temporary files that earlier (killed) runs' journals under `root` list; returns how many.

    Only the journals of `root` are read and only the files they name are removed; the
    journals of this process stay. Hold the folder's lock while calling this.
    """
    root = Path(os.path.abspath(root))
    folder = root / JOURNAL_DIR
    if not folder.is_dir():
        return 0
    own = {j.path for j in list(_journals.values())}
    count = 0
    for journal in sorted(folder.glob("*.txt")):
        if journal in own:
            continue
        for tmp in _listed_temps(root, journal):
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                count += 1
        journal.unlink(missing_ok=True)
    return count
