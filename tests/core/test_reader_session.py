"""Reader-study folders and reader sessions: validation, resume, going back, atomic saves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lesion_studio.core.errors import ConfigError, SessionError
from lesion_studio.core.reader_study.session import ReaderSession, load_study
from tests._reader_study import make_study


def _edit_study(folder: Path, **changes) -> None:
    path = folder / "study.json"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def test_load_study_reads_the_format_and_the_case_pixels(tmp_path: Path) -> None:
    study = load_study(make_study(tmp_path / "s", 4))
    assert study.n_cases == 4 and [c.id for c in study.cases] == ["case_0001", "case_0002", "case_0003", "case_0004"]
    assert study.ask_real_or_synthetic and not study.ask_lesion_present and not study.allow_back
    assert (study.window_center, study.window_width, study.units) == (-600.0, 1500.0, "HU")
    image = study.case_image(0)
    assert image.dtype == np.float32 and image.shape == (50, 50)
    assert image.min() < -500 and image.max() > 0  # real CT: lung and soft tissue in HU
    assert study.cases[0].spacing_mm == (1.0, 1.0)


@pytest.mark.parametrize("text, reason", [
    (None, "not found"),
    ("{not json", "not valid JSON"),
    ('{"format": "something-else", "version": 1}', "not a lesion-studio reader study"),
    ('{"format": "lesion-studio-reader-study", "version": 7}', "version 7"),
    ("[1, 2]", "JSON object"),
])
def test_bad_study_file_names_the_file_and_the_reason(tmp_path: Path, text: str | None, reason: str) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    if text is not None:
        (folder / "study.json").write_text(text)
    with pytest.raises(ConfigError, match=reason) as err:
        load_study(folder)
    assert err.value.path == folder / "study.json"


@pytest.mark.parametrize("changes, reason", [
    ({"study_id": "abc"}, "study_id"),
    ({"confidence_levels": 12}, "confidence_levels"),
    ({"confidence_levels": True}, "confidence_levels"),
    ({"window": {"center": 0, "width": 0}}, "window.'width'"),
    ({"cases": []}, "no cases"),
    ({"cases": [{"id": "case_0001", "file": "../escape.npy"}]}, "inside the study folder"),
    ({"questions": {"real_or_synthetic": False, "lesion_present": False}}, "asks no question"),
    ({"allow_back": "yes"}, "allow_back"),
])
def test_invalid_study_fields_are_refused(tmp_path: Path, changes: dict, reason: str) -> None:
    folder = make_study(tmp_path / "s", 2)
    _edit_study(folder, **changes)
    with pytest.raises(ConfigError, match=reason):
        load_study(folder)


def test_missing_and_unreadable_case_files(tmp_path: Path) -> None:
    folder = make_study(tmp_path / "s", 3)
    (folder / "cases" / "case_0002.npy").unlink()
    with pytest.raises(ConfigError, match="missing") as err:
        load_study(folder)
    assert err.value.path == folder / "cases" / "case_0002.npy"

    folder = make_study(tmp_path / "t", 3)
    study = load_study(folder)
    (folder / "cases" / "case_0003.npy").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="readable") as err:
        study.case_image(2)
    assert err.value.path == folder / "cases" / "case_0003.npy"
    np.save(folder / "cases" / "case_0003.npy", np.array([{"a": 1}], dtype=object))  # pickles are never loaded
    with pytest.raises(ConfigError):
        study.case_image(2)
    np.save(folder / "cases" / "case_0003.npy", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ConfigError, match="2-D"):
        study.case_image(2)


def test_a_session_records_saves_and_resumes(tmp_path: Path) -> None:
    study = load_study(make_study(tmp_path / "s", 3))
    session = ReaderSession.open(study, "alice")
    assert session.position == 0 and not session.path.exists()  # nothing written before an answer
    session.record("case_0001", "real", 4, None, 3.5)
    doc = json.loads(session.path.read_text())
    assert session.path == study.folder / "sessions" / "alice.json"
    assert doc["format"] == "lesion-studio-reader-session" and doc["version"] == 1
    assert doc["study_id"] == study.study_id and doc["reader"] == "alice"
    assert doc["position"] == 1 and doc["finished"] is False and doc["started"] and doc["updated"]
    assert doc["answers"] == [{"case_id": "case_0001", "call": "real", "confidence": 4,
                               "lesion_present": None, "seconds": 3.5}]

    again = ReaderSession.open(study, "alice")
    assert again.position == 1 and again.current_case().id == "case_0002"
    again.record("case_0002", "synthetic", 1, None, 1.0)
    again.record("case_0003", "real", 5, None, 2.0)
    assert again.finished and again.current_case() is None
    assert json.loads(again.path.read_text())["finished"] is True
    with pytest.raises(SessionError, match="every case"):
        again.record("case_0003", "real", 5, None, 2.0)


def test_only_the_current_case_and_complete_answers_are_recorded(tmp_path: Path) -> None:
    study = load_study(make_study(tmp_path / "s", 3, lesion_present=True))
    session = ReaderSession.open(study, "bob")
    with pytest.raises(SessionError, match="not the current case"):
        session.record("case_0002", "real", 3, True, 1.0)
    with pytest.raises(SessionError, match="confidence"):
        session.record("case_0001", "real", None, True, 1.0)
    with pytest.raises(SessionError, match="confidence"):
        session.record("case_0001", "real", 6, True, 1.0)
    with pytest.raises(SessionError, match="lesion present"):
        session.record("case_0001", "real", 3, None, 1.0)
    with pytest.raises(SessionError, match="real"):
        session.record("case_0001", "maybe", 3, True, 1.0)
    assert session.position == 0 and not session.path.exists()
    session.record("case_0001", "synthetic", 2, False, 1.0)
    assert json.loads(session.path.read_text())["answers"][0]["lesion_present"] is False


def test_no_going_back_unless_the_study_allows_it(tmp_path: Path) -> None:
    strict = load_study(make_study(tmp_path / "strict", 3))
    session = ReaderSession.open(strict, "alice")
    session.record("case_0001", "real", 3, None, 1.0)
    assert not session.can_go_back
    with pytest.raises(SessionError, match="does not allow"):
        session.back()
    assert session.position == 1


def test_going_back_and_re_answering_replaces_the_answer(tmp_path: Path) -> None:
    study = load_study(make_study(tmp_path / "s", 3, allow_back=True))
    session = ReaderSession.open(study, "alice")
    session.record("case_0001", "real", 3, None, 1.0)
    session.record("case_0002", "real", 3, None, 2.0)
    assert session.can_go_back
    assert session.back().id == "case_0002"
    assert json.loads(session.path.read_text())["position"] == 1  # the step back is saved too
    resumed = ReaderSession.open(study, "alice")
    assert resumed.position == 1 and resumed.answer_for("case_0002").call == "real"
    resumed.record("case_0002", "synthetic", 5, None, 0.5)
    assert [a.case_id for a in resumed.answers] == ["case_0001", "case_0002"]
    changed = resumed.answer_for("case_0002")
    assert (changed.call, changed.confidence, changed.seconds) == ("synthetic", 5, 2.5)  # time summed over visits
    assert resumed.position == 2
    resumed.back()
    resumed.back()
    with pytest.raises(SessionError, match="first case"):
        resumed.back()


def test_finished_session_can_step_back_when_allowed(tmp_path: Path) -> None:
    study = load_study(make_study(tmp_path / "s", 2, allow_back=True))
    session = ReaderSession.open(study, "alice")
    session.record("case_0001", "real", 3, None, 1.0)
    session.record("case_0002", "real", 3, None, 1.0)
    assert session.finished
    session.back()
    assert not session.finished and session.current_case().id == "case_0002"


@pytest.mark.parametrize("reader", ["", "../evil", "a b", "x" * 65, "ali/ce", "é"])
def test_reader_ids_must_be_file_name_safe(tmp_path: Path, reader: str) -> None:
    study = load_study(make_study(tmp_path / "s", 2))
    with pytest.raises(SessionError, match="reader id"):
        ReaderSession.open(study, reader)


def test_a_session_of_another_study_is_refused(tmp_path: Path) -> None:
    study = load_study(make_study(tmp_path / "s", 2))
    ReaderSession.open(study, "alice").record("case_0001", "real", 3, None, 1.0)
    _edit_study(study.folder, study_id="f" * 32)
    other = load_study(study.folder)
    with pytest.raises(SessionError, match="another study"):
        ReaderSession.open(other, "alice")


@pytest.mark.parametrize("edit, reason", [
    (lambda d: d.update(format="x"), "not a lesion-studio reader session"),
    (lambda d: d.update(reader="bob"), "reader 'bob'"),
    (lambda d: d.update(position=2), "has no answer"),
    (lambda d: d.update(position=9), "'position'"),
    (lambda d: d["answers"][0].update(case_id="case_9999"), "not in this study"),
    (lambda d: d["answers"][0].update(confidence=0), "confidence"),
    (lambda d: d["answers"][0].update(seconds=-1), "seconds"),
    (lambda d: d["answers"].append(dict(d["answers"][0])), "twice"),
])
def test_corrupt_session_files_are_refused_with_the_reason(tmp_path: Path, edit, reason: str) -> None:
    study = load_study(make_study(tmp_path / "s", 3))
    session = ReaderSession.open(study, "alice")
    session.record("case_0001", "real", 3, None, 1.0)
    doc = json.loads(session.path.read_text())
    edit(doc)
    session.path.write_text(json.dumps(doc))
    with pytest.raises(SessionError, match=reason) as err:
        ReaderSession.open(study, "alice")
    assert err.value.path == session.path


def test_unparsable_session_file(tmp_path: Path) -> None:
    study = load_study(make_study(tmp_path / "s", 2))
    study.session_path("alice").parent.mkdir()
    study.session_path("alice").write_text("{")
    with pytest.raises(SessionError, match="not valid JSON"):
        ReaderSession.open(study, "alice")


def test_a_failed_save_keeps_the_previous_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lesion_studio.core.reader_study.session as module

    study = load_study(make_study(tmp_path / "s", 2))
    session = ReaderSession.open(study, "alice")

    def disk_full(path, obj, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "write_json", disk_full)
    with pytest.raises(SessionError, match="cannot save") as err:
        session.record("case_0001", "real", 3, None, 1.0)
    assert err.value.path == session.path
    assert session.position == 0 and session.answers == []


def test_several_readers_have_their_own_files(tmp_path: Path) -> None:
    study = load_study(make_study(tmp_path / "s", 2))
    ReaderSession.open(study, "alice").record("case_0001", "real", 3, None, 1.0)
    ReaderSession.open(study, "bob-2").record("case_0001", "synthetic", 2, None, 1.0)
    assert study.session_readers() == ["alice", "bob-2"]
    assert ReaderSession.open(study, "alice").answers[0].call == "real"
