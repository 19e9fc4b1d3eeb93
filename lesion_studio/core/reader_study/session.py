"""The study folder a reader reads and each reader's session file (Qt-free).

A study folder holds `study.json`, the patches `cases/<case_id>.npy` (2-D float32 in native
units, HU for CT) and `sessions/<reader_id>.json`, one per reader. The answer key lives outside
the folder and is never read here: nothing a reader's app loads can tell real from synthetic.

A session is rewritten atomically after every answer, so a crash or a pause loses at most the
case being read. `position` is the index of the case the reader is on; every case before it has
an answer. Going back is possible only when the study allows it; re-answering a case replaces
its call, confidence and lesion answer and adds the new reading time to the old.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lesion_studio.core.errors import ConfigError, SessionError
from lesion_studio.core.export.atomic import write_json

STUDY_FORMAT = "lesion-studio-reader-study"
SESSION_FORMAT = "lesion-studio-reader-session"
FORMAT_VERSION = 1
STUDY_FILE = "study.json"
SESSIONS_DIR = "sessions"
CALLS = ("real", "synthetic")

#: Reader ids become file names: letters, digits, "-" and "_" only.
READER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_STUDY_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
_CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Confidence keys are the digits 1..N on the keyboard.
MAX_CONFIDENCE_LEVELS = 9


def utc_now() -> str:
    """The current time as ISO 8601 UTC (second resolution), as study and session files store it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_reader_id(reader_id: str) -> str:
    """`reader_id` if it is file-name safe; `SessionError` naming the rule otherwise."""
    if not isinstance(reader_id, str) or not READER_ID_PATTERN.match(reader_id):
        raise SessionError(f"reader id {reader_id!r} is not allowed: use 1-64 letters, digits, '-' or '_'")
    return reader_id


@dataclass(frozen=True)
class StudyCase:
    """One patch of the study, in reading order; nothing here hints whether it is real."""

    id: str
    file: str  # relative to the study folder
    spacing_mm: tuple[float, float] | None  # (row, col)


@dataclass(frozen=True)
class Study:
    """A loaded `study.json`; the patches are read on demand with `case_image`."""

    folder: Path
    study_id: str
    name: str
    created: str
    ask_real_or_synthetic: bool
    ask_lesion_present: bool
    allow_back: bool
    confidence_levels: int
    window_center: float
    window_width: float
    units: str
    field_of_view_mm: float | None
    instructions: str
    cases: tuple[StudyCase, ...]

    @property
    def path(self) -> Path:
        return self.folder / STUDY_FILE

    @property
    def n_cases(self) -> int:
        return len(self.cases)

    def case_index(self, case_id: str) -> int:
        for i, case in enumerate(self.cases):
            if case.id == case_id:
                return i
        raise KeyError(case_id)

    def case_path(self, index: int) -> Path:
        return self.folder / self.cases[index].file

    def case_image(self, index: int) -> np.ndarray:
        """The `(H, W)` float32 patch of case `index`, in the study's units (HU for CT)."""
        path = self.case_path(index)
        try:
            data = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise ConfigError("case file is missing", path) from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"case file is not a readable .npy array ({exc})", path) from None
        if not isinstance(data, np.ndarray) or data.ndim != 2 or min(data.shape) < 2:
            raise ConfigError(f"case file must hold a 2-D image, found shape {getattr(data, 'shape', '?')}", path)
        if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
            raise ConfigError(f"case file holds {data.dtype} values, not real numbers", path)
        image = data.astype(np.float32, copy=False)
        if not np.isfinite(image).all():
            raise ConfigError("case file holds NaN or infinite values", path)
        return image

    def session_path(self, reader_id: str) -> Path:
        return self.folder / SESSIONS_DIR / f"{check_reader_id(reader_id)}.json"

    def session_readers(self) -> list[str]:
        """Reader ids that have a session file in this study (sorted)."""
        folder = self.folder / SESSIONS_DIR
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json") if READER_ID_PATTERN.match(p.stem))


# ---------------------------------------------------------------------------- study.json


def _field(doc: dict, key: str, kinds: type | tuple[type, ...], path: Path, where: str = "") -> Any:
    if key not in doc:
        raise ConfigError(f"{where}{key!r} is missing", path)
    value = doc[key]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ConfigError(f"{where}{key!r} must be {_kind_name(kinds)}, not {value!r}", path)
    if not isinstance(value, kinds):
        raise ConfigError(f"{where}{key!r} must be {_kind_name(kinds)}, not {type(value).__name__}", path)
    return value


def _kind_name(kinds: type | tuple[type, ...]) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "a list",
             dict: "a table"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _number(doc: dict, key: str, path: Path, where: str = "", *, positive: bool = False) -> float:
    value = float(_field(doc, key, (int, float), path, where))
    if not math.isfinite(value) or (positive and value <= 0):
        raise ConfigError(f"{where}{key!r} must be a {'positive ' if positive else ''}finite number, not {value}", path)
    return value


def _read_json(path: Path, error: type[ConfigError] | type[SessionError], what: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what} cannot be read ({exc})", path) from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise error(f"{what} is not valid JSON ({exc})", path) from None
    if not isinstance(doc, dict):
        raise error(f"{what} must hold a JSON object", path)
    return doc


def _parse_case(entry: Any, index: int, folder: Path, path: Path) -> StudyCase:
    where = f"cases[{index}]: "
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}each case must be a table with 'id' and 'file'", path)
    case_id = _field(entry, "id", str, path, where)
    if not _CASE_ID_PATTERN.match(case_id):
        raise ConfigError(f"{where}case id {case_id!r} must be 1-64 letters, digits, '-' or '_'", path)
    file = _field(entry, "file", str, path, where)
    rel = Path(file)
    if rel.is_absolute() or ".." in rel.parts or not file.endswith(".npy"):
        raise ConfigError(f"{where}file {file!r} must be a .npy path inside the study folder", path)
    spacing = entry.get("spacing_mm")
    if spacing is not None:
        if (not isinstance(spacing, list) or len(spacing) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spacing)
                or not all(math.isfinite(v) and v > 0 for v in spacing)):
            raise ConfigError(f"{where}'spacing_mm' must be two positive numbers (row, col) or null", path)
        spacing = (float(spacing[0]), float(spacing[1]))
    if not (folder / rel).is_file():
        raise ConfigError(f"{where}case file {file} is missing", folder / rel)
    return StudyCase(id=case_id, file=file, spacing_mm=spacing)


def load_study(study_dir: str | Path) -> Study:
    """Read and check `<study_dir>/study.json` and that every case file exists.

    Raises `ConfigError` naming the file and the reason for a missing, corrupt or foreign
    study.json and for a missing case file. The answer key is never looked for.
    """
    folder = Path(study_dir)
    if folder.name == STUDY_FILE and folder.is_file():
        folder = folder.parent
    path = folder / STUDY_FILE
    if not folder.is_dir():
        raise ConfigError("study folder not found", folder)
    doc = _read_json(path, ConfigError, "study file")
    if doc.get("format") != STUDY_FORMAT:
        raise ConfigError(f"not a lesion-studio reader study (format {doc.get('format')!r}, "
                          f"expected {STUDY_FORMAT!r})", path)
    version = doc.get("version")
    if version != FORMAT_VERSION:
        raise ConfigError(f"reader study version {version!r} is not supported (this lesion-studio reads "
                          f"version {FORMAT_VERSION})", path)
    study_id = _field(doc, "study_id", str, path)
    if not _STUDY_ID_PATTERN.match(study_id):
        raise ConfigError(f"'study_id' must be 32 lowercase hex characters, not {study_id!r}", path)
    questions = _field(doc, "questions", dict, path)
    ask_call = _field(questions, "real_or_synthetic", bool, path, "questions.")
    ask_lesion = "lesion_present" in questions and _field(questions, "lesion_present", bool, path, "questions.")
    if not ask_call and not ask_lesion:
        raise ConfigError("the study asks no question (questions.real_or_synthetic and "
                          "questions.lesion_present are both false)", path)
    levels = _field(doc, "confidence_levels", int, path)
    if not 2 <= levels <= MAX_CONFIDENCE_LEVELS:
        raise ConfigError(f"'confidence_levels' must be 2-{MAX_CONFIDENCE_LEVELS}, not {levels}", path)
    window = _field(doc, "window", dict, path)
    fov = doc.get("field_of_view_mm")
    if fov is not None:
        fov = _number(doc, "field_of_view_mm", path, positive=True)
    cases_doc = _field(doc, "cases", list, path)
    if not cases_doc:
        raise ConfigError("the study has no cases", path)
    cases = tuple(_parse_case(entry, i, folder, path) for i, entry in enumerate(cases_doc))
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise ConfigError(f"case id {case.id!r} appears twice", path)
        seen.add(case.id)
    return Study(
        folder=folder,
        study_id=study_id,
        name=str(doc.get("name") or folder.name),
        created=str(doc.get("created") or ""),
        ask_real_or_synthetic=bool(ask_call),
        ask_lesion_present=ask_lesion,
        allow_back=bool(_field(doc, "allow_back", bool, path)),
        confidence_levels=int(levels),
        window_center=_number(window, "center", path, "window."),
        window_width=_number(window, "width", path, "window.", positive=True),
        units=str(doc.get("units") or ""),
        field_of_view_mm=fov,
        instructions=str(doc.get("instructions") or ""),
        cases=cases,
    )


# ---------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Answer:
    """One reader's answer to one case. `seconds`: reading time, summed over visits."""

    case_id: str
    call: str | None  # "real" / "synthetic"; None when the study does not ask
    confidence: int | None  # 1 (guess) .. confidence_levels (certain); None with the call
    lesion_present: bool | None  # None when the study does not ask
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "call": self.call, "confidence": self.confidence,
                "lesion_present": self.lesion_present, "seconds": round(float(self.seconds), 3)}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds_ok(value: Any) -> bool:
    """A reading time: a finite number >= 0 (not a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value >= 0)


def check_answer(study: Study, call: str | None, confidence: int | None,
                 lesion_present: bool | None) -> str:
    """Why this answer is incomplete or invalid for the study ("" when it is complete)."""
    if study.ask_real_or_synthetic:
        if call not in CALLS:
            return "call real (R) or synthetic (S)"
        if not _whole(confidence) or not 1 <= confidence <= study.confidence_levels:
            return f"give a confidence 1-{study.confidence_levels}"
    elif call is not None or confidence is not None:
        return "this study does not ask real or synthetic"
    if study.ask_lesion_present:
        if not isinstance(lesion_present, bool):
            return "answer lesion present (Y / N)"
    elif lesion_present is not None:
        return "this study does not ask whether a lesion is present"
    return ""


def _parse_answer(study: Study, entry: Any, index: int, path: Path) -> Answer:
    where = f"answers[{index}]"
    if not isinstance(entry, dict):
        raise SessionError(f"{where} must be a table", path)
    case_id = entry.get("case_id")
    try:
        study.case_index(case_id)
    except (KeyError, TypeError):
        raise SessionError(f"{where}: case {case_id!r} is not in this study", path) from None
    call, confidence, present = entry.get("call"), entry.get("confidence"), entry.get("lesion_present")
    problem = check_answer(study, call, confidence, present)
    if problem:
        raise SessionError(f"{where} (case {case_id}) is invalid: {problem}", path)
    seconds = entry.get("seconds")
    if not _seconds_ok(seconds):
        raise SessionError(f"{where}: 'seconds' must be a number >= 0, not {seconds!r}", path)
    return Answer(case_id, call, confidence, present, float(seconds))


@dataclass
class ReaderSession:
    """One reader's progress through a study; every change is saved before it takes effect."""

    study: Study
    reader: str
    answers: list[Answer] = field(default_factory=list)
    position: int = 0
    started: str = field(default_factory=utc_now)
    updated: str = ""

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, study: Study, reader_id: str) -> "ReaderSession":
        """The reader's saved session (resumed at its position), or a new one (not yet written)."""
        path = study.session_path(reader_id)
        if path.exists():
            return cls.load(study, reader_id)
        return cls(study=study, reader=reader_id)

    @classmethod
    def load(cls, study: Study, reader_id: str) -> "ReaderSession":
        """Read and check `sessions/<reader_id>.json`; `SessionError` for a foreign or corrupt file."""
        path = study.session_path(reader_id)
        doc = _read_json(path, SessionError, "reader session")
        if doc.get("format") != SESSION_FORMAT:
            raise SessionError(f"not a lesion-studio reader session (format {doc.get('format')!r})", path)
        if doc.get("version") != FORMAT_VERSION:
            raise SessionError(f"reader session version {doc.get('version')!r} is not supported", path)
        if doc.get("study_id") != study.study_id:
            raise SessionError(f"this session belongs to another study ({doc.get('study_id')!r}, this study is "
                               f"{study.study_id})", path)
        if doc.get("reader") != reader_id:
            raise SessionError(f"the session is of reader {doc.get('reader')!r}, not {reader_id!r}", path)
        entries = doc.get("answers")
        if not isinstance(entries, list):
            raise SessionError("'answers' must be a list", path)
        answers = [_parse_answer(study, e, i, path) for i, e in enumerate(entries)]
        ids = [a.case_id for a in answers]
        if len(set(ids)) != len(ids):
            raise SessionError("a case is answered twice", path)
        position = doc.get("position")
        if not _whole(position) or not 0 <= position <= study.n_cases:
            raise SessionError(f"'position' must be 0-{study.n_cases}, not {position!r}", path)
        answered = set(ids)
        missing = [c.id for c in study.cases[:position] if c.id not in answered]
        if missing:
            raise SessionError(f"'position' is {position} but case {missing[0]} before it has no answer", path)
        return cls(study=study, reader=reader_id, answers=answers, position=position,
                   started=str(doc.get("started") or utc_now()), updated=str(doc.get("updated") or ""))

    def __post_init__(self) -> None:
        check_reader_id(self.reader)

    # -- state ---------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.study.session_path(self.reader)

    @property
    def n_answered(self) -> int:
        return len(self.answers)

    @property
    def finished(self) -> bool:
        """Every case answered and the reader past the last one."""
        return self.position >= self.study.n_cases and self.n_answered == self.study.n_cases

    @property
    def can_go_back(self) -> bool:
        return self.study.allow_back and self.position > 0

    def current_case(self) -> StudyCase | None:
        """The case to read now (None once the reader is past the last one)."""
        return self.study.cases[self.position] if self.position < self.study.n_cases else None

    def answer_for(self, case_id: str) -> Answer | None:
        return next((a for a in self.answers if a.case_id == case_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {"format": SESSION_FORMAT, "version": FORMAT_VERSION, "study_id": self.study.study_id,
                "reader": self.reader, "started": self.started, "updated": self.updated,
                "finished": self.finished, "position": self.position,
                "answers": [a.to_dict() for a in self.answers]}

    # -- changes (each saved atomically before it is kept) -------------------------------------
    def record(self, case_id: str, call: str | None, confidence: int | None, lesion_present: bool | None,
               seconds: float) -> Answer:
        """Answer the current case and move to the next; saved before it takes effect.

        Only the case at `position` can be answered. Answering it again (after going back)
        replaces the answer and adds `seconds` to the time already recorded for it.
        """
        case = self.current_case()
        if case is None:
            raise SessionError("every case is answered already", self.path)
        if case_id != case.id:
            raise SessionError(f"case {case_id!r} is not the current case ({case.id})", self.path)
        problem = check_answer(self.study, call, confidence, lesion_present)
        if problem:
            raise SessionError(f"incomplete answer for case {case_id}: {problem}", self.path)
        if not _seconds_ok(seconds):
            raise SessionError(f"reading time must be a number >= 0, not {seconds!r}", self.path)
        previous = self.answer_for(case_id)
        total = float(seconds) + (previous.seconds if previous is not None else 0.0)
        answer = Answer(case_id, call, confidence, lesion_present, total)
        if previous is None:
            answers = [*self.answers, answer]
        else:
            answers = [answer if a.case_id == case_id else a for a in self.answers]
        self._commit(answers, self.position + 1)
        return answer

    def back(self) -> StudyCase:
        """Return to the previous case (only when the study allows going back)."""
        if not self.study.allow_back:
            raise SessionError("this study does not allow going back to an earlier case", self.study.path)
        if self.position == 0:
            raise SessionError("already at the first case", self.path)
        self._commit(self.answers, self.position - 1)
        return self.study.cases[self.position]

    def save(self) -> Path:
        """Write the session as it is (pause); atomic, sorted keys."""
        self.updated = utc_now()
        try:
            return write_json(self.path, self.to_dict())
        except OSError as exc:
            raise SessionError(f"cannot save the reader session ({exc})", self.path) from None

    def _commit(self, answers: list[Answer], position: int) -> None:
        old = (self.answers, self.position, self.updated)
        self.answers, self.position = answers, position
        try:
            self.save()
        except SessionError:
            self.answers, self.position, self.updated = old
            raise
