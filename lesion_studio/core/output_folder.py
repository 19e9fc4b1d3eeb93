"""Output and run folders: refuse dangerous ones, mark the ones lesion-studio owns, lock them.

Rules (see docs/security.md, "Output folders, locks and checkpoints"):
- never "/", the home folder, a system folder (/etc, /usr, ...), anything inside the Python
  installation, or a folder that holds a git repository (`.git`), whatever `force` says;
- a folder is *owned* once it holds the marker `.lesion-studio-output.json` (written on first
  use); an existing non-empty folder without the marker (or with the marker of another kind
  of output) is refused unless `force=True` (CLI `--force`), which then claims it;
- one run at a time: `FolderLock` takes an exclusive `flock` on `.lesion-studio.lock`; a
  second run fails at once with "in use by PID N since ...". The kernel releases the lock
  when the process exits, even on SIGKILL, so a killed run never leaves the folder locked.

Refusals are typed so a caller can offer what the CLI's `--force` offers without reading
message text: `OutputFolderRefused.overridable` is True exactly when `force=True` would accept
the folder; `FolderInUseError` is never overridable. `preflight_output_folder` runs every check
(the lock too) without writing anything, for the GUI to ask before it starts a job.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path
from types import TracebackType

from lesion_studio.core.errors import ConfigError, LesionStudioError

MARKER = ".lesion-studio-output.json"
LOCK_FILE = ".lesion-studio.lock"
MARKER_FORMAT = "lesion-studio-output"
#: Folders refused as such (the folder itself, not what lies below it).
_REFUSED_EXACT = ("/", "/home", "/Users", "/var", "/opt", "/root", "/srv", "/run", "/tmp", "/mnt", "/media",
                  "/private", "/private/tmp", "/private/var", "/Volumes")
#: Folders refused together with everything below them.
_REFUSED_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev",
                  "/proc", "/sys", "/System", "/Library", "/Applications", "/var/lib", "/var/log", "/var/run")
#: Names lesion-studio itself keeps in an owned folder (not counted as "foreign" content).
OWN_NAMES = (MARKER, LOCK_FILE)


class FolderInUseError(LesionStudioError):
    """Another process holds the output/run folder's lock (no `force` overrides that)."""

    overridable = False


class OutputFolderRefused(ConfigError):
    """An output/run folder that may not be used as it is.

    `overridable`: True when `force` (CLI `--force`) would accept it (an existing non-empty
    folder lesion-studio does not own, or owns for another kind of output); False for a
    system, home, Python-installation or git folder, or a path that is not a folder.
    """

    def __init__(self, reason: str, path: str | Path | None = None, *, overridable: bool = False) -> None:
        super().__init__(reason, path)
        self.overridable = overridable


def _refused_reason(folder: Path) -> str | None:
    """Why `folder` (absolute, resolved) may never be written to, or None."""
    text = folder.as_posix()
    home = Path.home().resolve()
    if folder == home:
        return "it is your home folder"
    if text in _REFUSED_EXACT or (os.name == "nt" and folder == Path(folder.anchor)):
        return "it is a system folder"
    for tree in _REFUSED_TREES:
        if text == tree or text.startswith(tree + "/"):
            return f"it is a system folder (inside {tree})"
    for prefix in {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}:
        if folder == prefix or prefix in folder.parents:
            return f"it is inside the Python installation {prefix}"
    if (folder / ".git").exists():
        return "it holds a git repository (.git)"
    return None


def check_output_folder(folder: str | Path, *, kind: str, force: bool = False, key: str = "output folder") -> Path:
    """Validate `folder` for a `kind` ("batch", "train" or "evaluate") run; returns it resolved.

    `OutputFolderRefused` (a `ConfigError`) naming `key` and the folder: a system/home/git
    folder (always), or an existing non-empty folder that lesion-studio does not own (unless
    `force`; only this refusal is `overridable`).
    Nothing is written here; `claim_output_folder` writes the marker.
    """
    raw = Path(folder).expanduser()
    resolved = raw.resolve()
    reason = _refused_reason(resolved)
    if reason is not None:
        raise OutputFolderRefused(f"{key}: refusing to write into {resolved} ({raw} as given): {reason}", resolved)
    if resolved.exists() and not resolved.is_dir():
        raise OutputFolderRefused(f"{key}: {resolved} exists and is not a folder", resolved)
    if force or not resolved.is_dir():
        return resolved
    owner = read_marker(resolved)
    if owner is not None:
        if owner.get("kind") != kind:
            raise OutputFolderRefused(
                f"{key}: {resolved} is a lesion-studio {owner.get('kind')!r} folder, not a {kind!r} one; "
                "choose another folder (or pass --force to reuse it)", resolved, overridable=True)
        return resolved
    foreign = sorted(p.name for p in resolved.iterdir() if p.name not in OWN_NAMES)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise OutputFolderRefused(
            f"{key}: {resolved} is not empty ({len(foreign)} entries: {shown}) and was not made by "
            f"lesion-studio (no {MARKER}); choose an empty or new folder, or pass --force to use it anyway",
            resolved, overridable=True)
    return resolved


def read_marker(folder: Path) -> dict | None:
    """The owner marker of `folder`, or None when there is none (or it is unreadable)."""
    try:
        doc = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == MARKER_FORMAT else None


def claim_output_folder(folder: Path, *, kind: str) -> Path:
    """Create `folder` and write its owner marker (kept when it already says `kind`)."""
    from lesion_studio import __version__
    from lesion_studio.core.export.atomic import write_json

    folder.mkdir(parents=True, exist_ok=True)
    owner = read_marker(folder)
    if owner is None or owner.get("kind") != kind:
        write_json(folder / MARKER, {
            "format": MARKER_FORMAT, "kind": kind, "package_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })
    return folder


class FolderLock:
    """An exclusive lock on one folder for this process (`flock` on `.lesion-studio.lock`).

    Use as a context manager, or `acquire()` / `release()`. A second holder — another
    process, or another `FolderLock` in this one — gets `FolderInUseError` at once.
    """

    def __init__(self, folder: str | Path, *, what: str = "run") -> None:
        self.folder = Path(folder)
        self.what = what
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def acquire(self) -> "FolderLock":
        """Take the lock or raise `FolderInUseError` naming the holder's PID and start time."""
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise _in_use(self.folder, holder) from None
        info = {"pid": os.getpid(), "since": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "host": socket.gethostname(), "what": self.what}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (the lock file stays: deleting it would race with a new holder)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _in_use(folder: Path, holder: dict) -> FolderInUseError:
    return FolderInUseError(
        f"in use by PID {holder.get('pid', '?')} since {holder.get('since', '?')}"
        f"{' on ' + holder['host'] if holder.get('host') else ''} (another lesion-studio "
        f"{holder.get('what', 'run')}); wait for it to finish or choose another folder", folder)


def lock_holder(folder: str | Path) -> dict | None:
    """Who holds `folder`'s lock (pid, since, host, what), or None when nobody does.

    Creates nothing: a folder without a lock file is not locked. The probe takes the lock for
    an instant when it is free, so call it to inform a person, never instead of `FolderLock`.
    """
    path = Path(folder) / LOCK_FILE
    fd = None
    for flags in (os.O_RDWR, os.O_RDONLY):  # read-only when the file is not ours to write
        try:
            fd = os.open(path, flags)
            break
        except OSError:
            continue
    if fd is None:
        return None
    try:
        try:
            _lock(fd)
        except OSError:
            return _read_holder(fd)
        _unlock(fd)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> dict:
    try:
        doc = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


if os.name == "nt":  # pragma: no cover - Windows
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def preflight_output_folder(folder: str | Path, *, kind: str, force: bool = False,
                            key: str = "output folder") -> Path:
    """Every check `open_output_folder` makes, writing nothing; returns the folder resolved.

    `OutputFolderRefused` (see its `overridable`) or `FolderInUseError`. A folder that is in
    use is reported before its contents, since `force` cannot help while another run holds it.
    """
    resolved = check_output_folder(folder, kind=kind, force=True, key=key)  # never-allowed folders
    if resolved.is_dir():
        holder = lock_holder(resolved)
        if holder is not None:
            raise _in_use(resolved, holder)
    return check_output_folder(resolved, kind=kind, force=force, key=key)


def open_output_folder(folder: str | Path, *, kind: str, force: bool = False,
                       key: str = "output folder") -> FolderLock:
    """Check, lock and claim `folder` in that order; returns the held lock (release it when done).

    The lock is taken before the marker is written, so two runs racing for a new folder
    cannot both claim it.
    """
    resolved = check_output_folder(folder, kind=kind, force=force, key=key)
    lock = FolderLock(resolved, what=kind).acquire()
    try:
        claim_output_folder(resolved, kind=kind)
    except BaseException:
        lock.release()
        raise
    return lock
