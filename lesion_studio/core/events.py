"""A tiny Qt-free observer: models emit, views subscribe (napari's evented-model idea)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Listener = Callable[..., None]


class EventEmitter:
    """Keeps listeners and calls each with the event's arguments, in connection order."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def connect(self, listener: Listener) -> Listener:
        """Call `listener(*args)` on every emit; returns it (usable as a decorator)."""
        if listener not in self._listeners:
            self._listeners.append(listener)
        return listener

    def disconnect(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, *args: Any, **kwargs: Any) -> None:
        for listener in list(self._listeners):
            listener(*args, **kwargs)
