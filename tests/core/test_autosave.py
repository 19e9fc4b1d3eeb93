"""Autosave: dirty tracking, discovery of crashed runs, recovery after SIGKILL in another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lesion_studio.core.annotation import AnnotationDocument
from lesion_studio.core.annotation.autosave import AutosaveStore
from lesion_studio.core.annotation.session import SessionState
from lesion_studio.core.image import Window

REPO = Path(__file__).resolve().parents[2]

# Deterministic edits shared by the crashing child and the checking parent.
STEPS = textwrap.dedent(
    """
    def step(doc, k):
        h, w = doc.plane_shape
        if k % 5 == 4:
            doc.paint_segment(((7 * k) % h, 0), ((7 * k) % h, w - 1), 1, radius_px=1, layer="location")
        else:
            label = doc.new_lesion(("nodule", "stone", "mass")[k % 3])
            r, c = (13 * k + 5) % h, (29 * k + 3) % w
            doc.paint_segment((r, c), ((r + 11) % h, (c + 17) % w), label, radius_px=2 + k % 4)
        if k % 7 == 6:
            doc.undo()
    """
)
namespace: dict = {}
exec(STEPS, namespace)
step = namespace["step"]


def _state(k: int) -> SessionState:
    return SessionState(image_path="/data/case7/cr.dcm", window=Window(100.0 + k, 900.0), current_slice=0)


def _replayed(n_steps: int, shape=(64, 80)) -> AnnotationDocument:
    doc = AnnotationDocument(shape, (0.5, 0.5))
    for k in range(n_steps):
        step(doc, k)
    return doc


def _assert_same(a: AnnotationDocument, b: AnnotationDocument) -> None:
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.location, b.location)
    assert a.lesion_table() == b.lesion_table()
    assert [a.lesion_meta(i) for i in a.lesion_ids] == [b.lesion_meta(i) for i in b.lesion_ids]


def _spawn(code: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", STEPS + textwrap.dedent(code)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_save_writes_only_when_dirty(tmp_path):
    store = AutosaveStore(tmp_path)
    doc = AnnotationDocument((30, 30))
    state = SessionState(current_slice=0)
    assert store.is_dirty(doc, state)
    assert store.save(doc, state)
    assert not store.save(doc, state)
    doc.paint_segment((5, 5), (5, 5), 1, radius_px=2)
    assert store.save(doc, state)
    doc.undo()  # undo is a change too
    assert store.is_dirty(doc, state)
    assert store.save(doc, state)
    state.window = Window(40, 400)  # so is the view state
    assert store.save(doc, state)
    doc.begin("brush")  # never write half a stroke
    doc.paint_segment((5, 5), (9, 9), 1, radius_px=2)
    assert not store.save(doc, state)
    doc.commit()
    assert store.save(doc, state)
    other = AnnotationDocument((30, 30))  # a newly opened image is dirty even if empty
    assert store.is_dirty(other, state)


def test_prepared_job_written_by_a_worker_keeps_the_prepared_state(tmp_path):
    import threading

    store = AutosaveStore(tmp_path)
    doc = _replayed(4)
    expected = AnnotationDocument.from_arrays(
        doc.labels, doc.location, spacing_mm=doc.spacing_mm, meta={i: doc.lesion_meta(i) for i in doc.lesion_ids}
    )
    job = store.prepare(doc, _state(0))
    step(doc, 4)  # the user keeps painting while the worker writes
    worker = threading.Thread(target=store.write, args=(job,))
    worker.start()
    worker.join()
    assert store.is_dirty(doc, _state(0))  # what was painted meanwhile is not saved yet
    restored, state = store.restore(store.session_file)
    _assert_same(restored, expected)
    assert state == _state(0)
    assert store.prepare(restored, state) is not None  # another document: dirty


def test_running_sessions_are_not_recoveries_and_discard_removes(tmp_path):
    mine = AutosaveStore(tmp_path)
    doc = AnnotationDocument((30, 30))
    doc.paint_segment((5, 5), (5, 5), 1, radius_px=2)
    mine.save(doc, SessionState())
    assert mine.session_file.is_file()
    # the process that owns it is alive (this one): another store must not offer it
    assert AutosaveStore(tmp_path).find_recoveries() == []
    assert mine.find_recoveries() == []
    mine.discard()
    assert not mine.folder.exists()
    assert AutosaveStore(tmp_path / "never-created").find_recoveries() == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_recovery_after_sigkill_restores_up_to_last_autosave(tmp_path):
    child = _spawn(
        f"""
        import time
        from lesion_studio.core.annotation import AnnotationDocument, BrushStroke
        from lesion_studio.core.annotation.autosave import AutosaveStore
        from lesion_studio.core.annotation.session import SessionState
        from lesion_studio.core.image import Window
        store = AutosaveStore({str(tmp_path)!r})
        doc = AnnotationDocument((64, 80), (0.5, 0.5))
        state = SessionState(image_path="/data/case7/cr.dcm", window=Window(40.0, 400.0))
        for k in range(6):
            step(doc, k)
        assert store.save(doc, state)
        for k in range(6, 12):
            step(doc, k)
        state.current_slice = 0
        state.window = Window(111.0, 900.0)
        assert store.save(doc, state)          # the last autosave
        for k in range(12, 15):
            step(doc, k)                         # lost: painted after it
        stroke = BrushStroke(doc, label=1, radius_px=5)
        stroke.press((10, 10)); stroke.move((50, 70))  # killed in the middle of a stroke
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    store = AutosaveStore(tmp_path)
    recoveries = store.find_recoveries()
    assert [r.pid for r in recoveries] == [child.pid]
    assert recoveries[0].image_path == "/data/case7/cr.dcm"
    doc, state = store.restore(recoveries[0])
    _assert_same(doc, _replayed(12))
    assert state.window == Window(111.0, 900.0) and state.image_path == "/data/case7/cr.dcm"
    store.discard(recoveries[0])
    assert store.find_recoveries() == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_at_any_moment_leaves_a_complete_recovery(tmp_path):
    """Kill a process that autosaves after every edit, at arbitrary times, several times."""
    shape = (400, 500)  # large enough that writes take a while
    prefixes = [_replayed(0, shape)]
    for k in range(60):
        doc = prefixes[-1]
        nxt = AnnotationDocument.from_arrays(
            doc.labels, doc.location, spacing_mm=doc.spacing_mm,
            meta={i: doc.lesion_meta(i) for i in doc.lesion_ids},
        )
        step(nxt, k)
        prefixes.append(nxt)
    for attempt, delay in enumerate((0.05, 0.13, 0.29)):
        folder = tmp_path / f"run{attempt}"
        child = _spawn(
            f"""
            from lesion_studio.core.annotation import AnnotationDocument
            from lesion_studio.core.annotation.autosave import AutosaveStore
            from lesion_studio.core.annotation.session import SessionState
            store = AutosaveStore({str(folder)!r})
            doc = AnnotationDocument({shape!r}, (0.5, 0.5))
            store.save(doc, SessionState())
            print("ready", flush=True)
            for k in range(60):
                step(doc, k)
                store.save(doc, SessionState())
            import time; time.sleep(60)
            """
        )
        try:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()
            time.sleep(delay)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        recoveries = AutosaveStore(folder).find_recoveries()
        assert len(recoveries) == 1
        doc, _ = AutosaveStore(folder).restore(recoveries[0])
        meta = {i: doc.lesion_meta(i) for i in doc.lesion_ids}
        matches = [
            p for p in prefixes
            if np.array_equal(p.labels, doc.labels) and np.array_equal(p.location, doc.location)
            and {i: p.lesion_meta(i) for i in p.lesion_ids} == meta
        ]
        assert matches, "the recovery is not any state the document went through"
        _assert_same(doc, matches[-1])
