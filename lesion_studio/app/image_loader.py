"""Loads images off the UI thread; the newest request wins and stale results are dropped."""

from __future__ import annotations

import itertools
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from lesion_studio.core.errors import ImageLoadError
from lesion_studio.core.imageio import load_image


class _LoadTask(QRunnable):
    def __init__(self, loader: "ImageLoader", request_id: int, path: Path, series_uid: str | None) -> None:
        super().__init__()
        self.loader = loader
        self.request_id = request_id
        self.path = path
        self.series_uid = series_uid

    def run(self) -> None:  # worker thread
        try:
            image = load_image(self.path, series_uid=self.series_uid)
        except ImageLoadError as exc:
            self.loader._finished.emit(self.request_id, None, exc)
        except Exception as exc:  # never let a worker die silently: report as a load error
            error = ImageLoadError(f"unexpected error while loading: {type(exc).__name__}: {exc}", self.path)
            self.loader._finished.emit(self.request_id, None, error)
        else:
            self.loader._finished.emit(self.request_id, image, None)


class ImageLoader(QObject):
    """`load(path)` returns at once; `loaded(image)` or `failed(error)` arrive on the UI thread."""

    busyChanged = Signal(bool)
    loaded = Signal(object)  # MedicalImage
    failed = Signal(object)  # ImageLoadError
    _finished = Signal(int, object, object)  # request id, image, error (queued from workers)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._latest = 0
        self._pending = 0
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._finished.connect(self._on_finished)

    @property
    def busy(self) -> bool:
        return self._pending > 0

    def load(self, path: str | Path, series_uid: str | None = None) -> int:
        request_id = next(self._ids)
        self._latest = request_id
        self._pending += 1
        if self._pending == 1:
            self.busyChanged.emit(True)
        self._pool.start(_LoadTask(self, request_id, Path(path), series_uid))
        return request_id

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until queued loads finish (tests and shutdown only)."""
        return self._pool.waitForDone(timeout_ms)

    def _on_finished(self, request_id: int, image: object, error: object) -> None:
        self._pending -= 1
        if self._pending == 0:
            self.busyChanged.emit(False)
        if request_id != self._latest:
            return  # superseded by a newer request
        if error is not None:
            self.failed.emit(error)
        else:
            self.loaded.emit(image)
