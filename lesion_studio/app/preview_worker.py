"""Runs previews on a worker thread: the newest request wins, stale results are dropped.

A request submitted while another runs replaces any request still waiting; the running one
finishes, but its result is dropped when a newer request exists. Results arrive on the UI
thread through queued signals, so the event loop never waits for a model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal


def _run_loop(owner: "LatestWinsWorker") -> None:
    """The worker thread: a daemon Python thread, so it never holds the app open at exit.

    Torch releases the GIL inside its kernels, so the UI thread keeps running meanwhile.
    """
    while True:
        with owner._cond:
            while owner._pending is None and not owner._stopping:
                owner._cond.wait()
            if owner._stopping:
                return
            request_id, fn = owner._pending
            owner._pending = None
            owner._running = request_id
        try:
            result, error = fn(), None
        except Exception as exc:  # reported to the UI, never lost
            result, error = None, exc
        try:
            owner._done.emit(request_id, result, error)
        except RuntimeError:  # the owner was deleted (window closed): nobody to tell
            return
        with owner._cond:
            owner._running = None
            owner._cond.notify_all()


class LatestWinsWorker(QObject):
    """`submit(fn)` → request id; `finished(id, result)` / `failed(id, error)` for the newest only."""

    finished = Signal(int, object)
    failed = Signal(int, object)
    busyChanged = Signal(bool)
    _done = Signal(int, object, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: tuple[int, Callable[[], Any]] | None = None
        self._running: int | None = None
        self._stopping = False
        self._latest = 0
        self._busy = False
        self._done.connect(self._on_done)
        self._thread = threading.Thread(target=_run_loop, args=(self,), name="preview-worker", daemon=True)
        self._thread.start()

    @property
    def latest_id(self) -> int:
        return self._latest

    def submit(self, fn: Callable[[], Any]) -> int:
        with self._cond:
            self._latest += 1
            self._pending = (self._latest, fn)
            self._cond.notify_all()
            request_id = self._latest
        self._set_busy(True)
        return request_id

    def cancel_pending(self) -> None:
        """Forget the waiting request and ignore the running one's result."""
        with self._cond:
            self._pending = None
            self._latest += 1
        self._set_busy(self._running is not None)

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Block until nothing runs or waits (tests and shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and self._running is None, timeout_s)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify_all()
        self._thread.join(30.0)

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busyChanged.emit(busy)

    def _on_done(self, request_id: int, result: object, error: object) -> None:
        with self._cond:
            idle = self._pending is None and self._running is None
        if request_id == self._latest:
            if idle:
                self._set_busy(False)
            if error is not None:
                self.failed.emit(request_id, error)
            else:
                self.finished.emit(request_id, result)
        elif idle:
            self._set_busy(False)
