"""Import torch on the GUI thread before any worker thread touches it.

Importing torch for the first time from a worker thread while the Qt event loop runs on the
main thread crashes the process ("none_dealloc: deallocating None") with PySide6 6.12 and
torch 2.14. The GUI therefore imports torch itself, once, on the main thread, right before the
first job or preview needs it (about a second, with a status message), never at start-up.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QCoreApplication, QThread


def ensure_torch_imported() -> bool:
    """Import torch now if it is not yet; returns True when this call imported it."""
    if "torch" in sys.modules:
        return False
    app = QCoreApplication.instance()
    if app is not None and QThread.currentThread() is not app.thread():
        raise RuntimeError("torch must first be imported on the GUI thread")
    import torch  # noqa: F401

    return True
