"""Shared test setup: Qt runs offscreen and user files go to a temporary home."""

from __future__ import annotations

import gc
import os

import pytest
from hypothesis import settings

# The same examples on every run (the brief: same config + seed, same results): a property test
# must not turn red on CI because the random search happened on a new corner that day.
settings.register_profile("lesion-studio", derandomize=True, deadline=None)
settings.load_profile("lesion-studio")

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _isolated_user_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recent files, settings and autosaves of a test never touch the real user folders."""
    monkeypatch.setenv("LESION_STUDIO_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(autouse=True)
def _collect_garbage_on_the_main_thread():
    """With the app's GC guard installed (automatic collection off, see app/gc_guard.py), the
    garbage of each test is collected here, on the main thread, not later on a worker."""
    yield
    if not gc.isenabled():
        gc.collect()
