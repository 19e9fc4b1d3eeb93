"""Python's cyclic garbage collector runs on the GUI thread only.

Automatic collection starts in whichever thread happens to allocate past the threshold: a
training QThread, the image loader, an autosave thread. When the garbage holds Qt wrappers
(a closed window kept alive by a lambda cycle, a dialog), their C++ objects are then destroyed
on that thread while the GUI thread uses them: a segfault, or a deadlock between the GIL and
Qt's signal lock (seen in the test suite: `QMenu::~QMenu` on the `_Worker` thread waiting for
the GIL, the GUI thread in `QObject::~QObject` waiting for Qt's lock).

`install_gc_guard()` turns automatic collection off and collects from a GUI-thread timer with
Python's own generation thresholds, so garbage is still collected, but only where Qt objects
may die. Calling it again is harmless.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer

INTERVAL_MS = 250


class GcGuard(QObject):
    """Collects garbage on the GUI thread when Python's thresholds say so."""

    def __init__(self, parent: QObject, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect_due)
        self._timer.start()

    def collect_due(self) -> int:
        """Collect the oldest generation whose count passed its threshold (as gc would)."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        generation = -1
        for g in range(3):
            if counts[g] > thresholds[g]:
                generation = g
        return gc.collect(generation) if generation >= 0 else 0


def install_gc_guard() -> GcGuard | None:
    """Install the guard on the running QCoreApplication (once); None without one."""
    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() is not app.thread():
        return None
    guard = app.findChild(GcGuard)
    return guard if guard is not None else GcGuard(app)
