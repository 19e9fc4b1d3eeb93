"""Error types shared by core, models, the CLI and the GUI.

Each carries the offending path (when there is one) and a reason a person can act on; the GUI
and the CLI print them the same way: `<path>: <reason>`.
"""

from __future__ import annotations

from pathlib import Path


class LesionStudioError(Exception):
    """Base class: a readable reason, optionally tied to a file."""

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {reason}" if self.path is not None else reason)


class ImageLoadError(LesionStudioError):
    """An image file or folder could not be read as a medical image."""


class SeriesChoiceError(ImageLoadError):
    """A folder holds several DICOM series; the caller must pick one (see `series`)."""

    def __init__(self, reason: str, path: str | Path, series: list) -> None:
        super().__init__(reason, path)
        self.series = series


class MaskError(LesionStudioError):
    """A mask does not fit its image (size, geometry, dtype) or could not be read/written."""


class ConfigError(LesionStudioError):
    """A configuration file or value is invalid."""


class SessionError(LesionStudioError):
    """A session or recovery file is missing, unreadable or inconsistent."""


class CheckpointError(LesionStudioError):
    """A model checkpoint is missing, not safetensors + JSON, of another family, or does not fit."""
