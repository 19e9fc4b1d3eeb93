"""Where lesion-studio keeps per-user files (settings, recent files, history, autosave).

`LESION_STUDIO_HOME` overrides the platform folders (tests and portable installs use it).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "lesion-studio"


def _root_override() -> Path | None:
    value = os.environ.get("LESION_STUDIO_HOME")
    return Path(value) if value else None


def config_dir() -> Path:
    root = _root_override()
    path = root / "config" if root else Path(platformdirs.user_config_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    root = _root_override()
    path = root / "data" if root else Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path
