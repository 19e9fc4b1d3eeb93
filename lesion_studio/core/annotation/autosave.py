"""Crash recovery: `AutosaveStore` writes the open document to a recovery folder when asked.

Qt-free: the GUI owns the timer (every <= 10 s) and calls `store.save(doc, state)`, which
writes only when something changed since the last autosave. Each running app has its own
folder `<recovery dir>/<session id>/` holding a session (`recovery.json` + masks) written
atomically, so a SIGKILL or power cut at any moment leaves the previous recovery or the new
one. On start the app calls `find_recoveries()` to list what a crashed run left (folders whose
owning process is gone), offers `restore(recovery)`, and `discard(recovery)` after that; on a
clean save or exit it calls `discard()` for its own folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from lesion_studio.core.annotation.document import AnnotationDocument, DocumentSnapshot
from lesion_studio.core.annotation.session import (
    SessionState,
    load_session,
    read_session_header,
    save_session,
)
from lesion_studio.core.errors import SessionError

RECOVERY_FILE = "recovery.json"


def default_recovery_dir() -> Path:
    """`<user data dir>/recovery`; `LESION_STUDIO_HOME` moves it (tests, portable installs)."""
    home = os.environ.get("LESION_STUDIO_HOME")
    root = Path(home) / "data" if home else Path(platformdirs.user_data_dir("lesion-studio"))
    return root / "recovery"


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a zombie counts as alive)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class AutosaveJob:
    """A copy of the document and view state taken on the GUI thread, written by `write`."""

    snapshot: DocumentSnapshot
    state: SessionState


@dataclass(frozen=True)
class Recovery:
    """What a previous run left: its session file, when it was saved, which image it showed."""

    session_file: Path
    saved_at: float
    image_path: str | None
    pid: int
    n_lesions: int

    @property
    def folder(self) -> Path:
        return self.session_file.parent


class AutosaveStore:
    """Atomic recovery files for one running app, and discovery of those left by crashed runs."""

    def __init__(self, directory: str | Path | None = None, *, session_id: str | None = None) -> None:
        """`directory` defaults to `default_recovery_dir()`; tests pass a temporary folder."""
        self.directory = Path(directory) if directory is not None else default_recovery_dir()
        self.session_id = session_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._saved: tuple[str, int, dict] | None = None  # (doc.uid, revision, state json)

    @property
    def folder(self) -> Path:
        """This run's recovery folder."""
        return self.directory / self.session_id

    @property
    def session_file(self) -> Path:
        return self.folder / RECOVERY_FILE

    def is_dirty(self, doc: AnnotationDocument, state: SessionState) -> bool:
        """Whether the document or view state changed since the last autosave (or mark_saved)."""
        return self._saved != (doc.uid, doc.revision, state.to_json())

    def mark_saved(self, doc: AnnotationDocument, state: SessionState) -> None:
        """Treat the current contents as saved (e.g. right after restoring or a clean save)."""
        self._saved = (doc.uid, doc.revision, state.to_json())

    def save(self, doc: AnnotationDocument, state: SessionState, *, force: bool = False) -> bool:
        """Write the recovery now when dirty (or `force`); returns whether it wrote.

        Skips while a stroke is open (the map holds half a stroke); the next tick catches up.
        A 4096² radiograph takes a few hundred ms: to keep the GUI thread free, use
        `prepare` on the GUI thread and `write` in a worker instead.
        """
        job = self.prepare(doc, state, force=force)
        if job is None:
            return False
        self.write(job)
        return True

    def prepare(
        self, doc: AnnotationDocument, state: SessionState, *, force: bool = False
    ) -> AutosaveJob | None:
        """On the GUI thread: a copy of what to write (~10 ms for 4096²), or None if nothing to do."""
        if doc.in_transaction or not (force or self.is_dirty(doc, state)):
            return None
        state_copy = SessionState(**{**state.__dict__, "extra": json.loads(json.dumps(state.extra))})
        return AutosaveJob(doc.snapshot(copy=True), state_copy)

    def write(self, job: AutosaveJob) -> None:
        """Anywhere (a worker thread): write a prepared job atomically, then mark it saved.

        Run one write at a time per store (a single worker, or wait for the previous one).
        """
        header = {
            "autosave": {
                "pid": os.getpid(),
                "hostname": socket.gethostname(),
                "session_id": self.session_id,
            }
        }
        save_session(self.session_file, job.snapshot, job.state, png_compression=1, header=header)
        self._saved = (job.snapshot.uid, job.snapshot.revision, job.state.to_json())

    def find_recoveries(self) -> list[Recovery]:
        """Recoveries left by runs that are no longer alive, newest first (not this run's own)."""
        found: list[Recovery] = []
        if not self.directory.is_dir():
            return found
        host = socket.gethostname()
        for folder in self.directory.iterdir():
            session_file = folder / RECOVERY_FILE
            if folder.name == self.session_id or not session_file.is_file():
                continue
            try:
                data = read_session_header(session_file)
            except SessionError:
                continue
            owner = data.get("autosave") or {}
            pid = int(owner.get("pid", -1))
            if owner.get("hostname") == host and _pid_alive(pid):
                continue  # another lesion-studio is running and owns it
            found.append(
                Recovery(
                    session_file=session_file,
                    saved_at=float(data.get("saved_at", 0.0)),
                    image_path=data.get("image_path"),
                    pid=pid,
                    n_lesions=len(data.get("lesions", [])),
                )
            )
        found.sort(key=lambda r: r.saved_at, reverse=True)
        return found

    def restore(self, recovery: Recovery | str | Path, **doc_kwargs) -> tuple[AnnotationDocument, SessionState]:
        """Rebuild the document and view state from a recovery (history starts empty)."""
        session_file = recovery.session_file if isinstance(recovery, Recovery) else Path(recovery)
        return load_session(session_file, **doc_kwargs)

    def discard(self, recovery: Recovery | None = None) -> None:
        """Delete a recovery (default: this run's own, after a clean save or exit)."""
        folder = self.folder if recovery is None else recovery.folder
        if folder.parent.resolve() != self.directory.resolve():
            raise ValueError(f"{folder} is not a recovery folder of {self.directory}")
        shutil.rmtree(folder, ignore_errors=True)
