"""Dialogs of Tools ▸ Reader study: which study to read and as whom, which to analyze, and
the settings of a new study.

They only collect and check paths, ids and settings (the read and analyze dialogs read
`study.json` and the session files, never the answer key; the build dialog validates and
writes a study TOML); the controller (`app/reader_controller.py`) opens the reader window,
runs the analysis or queues the build.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QRegularExpression
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lesion_studio.core.errors import LesionStudioError
from lesion_studio.core.reader_study.config import default_key_path
from lesion_studio.core.reader_study.session import READER_ID_PATTERN, ReaderSession, Study, load_study


def _path_row(edit: QLineEdit, *buttons: tuple[str, Callable[[], None]]) -> QWidget:
    """`edit` stretched, then one push button per (text, slot) — the Browse… of a path field."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    for text, slot in buttons:
        button = QPushButton(text)
        button.clicked.connect(slot)
        layout.addWidget(button)
    return row


def _browse_folder(parent: QWidget, edit: QLineEdit, caption: str, start: str) -> bool:
    """Ask for an existing folder and put it in `edit`; False when the user cancels."""
    path = QFileDialog.getExistingDirectory(parent, caption, start)
    if path:
        edit.setText(path)
    return bool(path)


def _browse_file(parent: QWidget, edit: QLineEdit, caption: str, start: str, file_filter: str,
                 *, save: bool = False) -> bool:
    """Ask for a file to open (or a path to save to) and put it in `edit`; False when the user cancels."""
    ask = QFileDialog.getSaveFileName if save else QFileDialog.getOpenFileName
    path, _ = ask(parent, caption, start, file_filter)
    if path:
        edit.setText(path)
    return bool(path)


def _status_label(min_width_px: int) -> QLabel:
    """The wrapped line under the form that says what is wrong or what will happen."""
    status = QLabel()
    status.setWordWrap(True)
    status.setMinimumWidth(min_width_px)
    return status


def _dialog_body(dialog: QDialog, form: QFormLayout, status: QLabel, ok_text: str,
                 on_accept: Callable[[], None]) -> QDialogButtonBox:
    """Stack form, status line and OK/Cancel (OK renamed `ok_text`, wired to `on_accept`) in `dialog`."""
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    buttons.button(QDialogButtonBox.StandardButton.Ok).setText(ok_text)
    buttons.accepted.connect(on_accept)
    buttons.rejected.connect(dialog.reject)
    layout = QVBoxLayout(dialog)
    layout.addLayout(form)
    layout.addWidget(status)
    layout.addWidget(buttons)
    return buttons


def _show_check(status: QLabel, buttons: QDialogButtonBox, text: str, ok: bool) -> bool:
    """Show a check's verdict: `text` in the status line, the OK button enabled when `ok`."""
    status.setText(text)
    buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)
    return ok


def _study_or_problem(study_dir: str, missing_text: str) -> tuple[Study | None, str]:
    """The study in `study_dir`, or None and what is wrong (`missing_text` when no folder is given)."""
    if not study_dir:
        return None, missing_text
    try:
        return load_study(study_dir), ""
    except LesionStudioError as exc:
        return None, str(exc)


class ReadStudyDialog(QDialog):
    """Study folder and reader id; says how far this reader got before."""

    def __init__(self, study_dir: str = "", reader: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Read a study")
        self.folder_edit = QLineEdit(study_dir)
        self.folder_edit.setPlaceholderText("the study folder (holds study.json)")
        self.reader_edit = QLineEdit(reader)
        self.reader_edit.setPlaceholderText("e.g. alice or reader-01")
        self.reader_edit.setValidator(QRegularExpressionValidator(QRegularExpression(READER_ID_PATTERN.pattern)))
        self.reader_edit.setToolTip("letters, digits, '-' and '_' (the session file is named after it)")
        self.status = _status_label(460)
        form = QFormLayout()
        form.addRow("Study folder", _path_row(self.folder_edit, ("Browse…", self._browse)))
        form.addRow("Reader id", self.reader_edit)
        self.buttons = _dialog_body(self, form, self.status, "Start reading", self.accept)
        self.folder_edit.textChanged.connect(self.check)
        self.reader_edit.textChanged.connect(self.check)
        self.check()

    def study_dir(self) -> str:
        return self.folder_edit.text().strip()

    def reader(self) -> str:
        return self.reader_edit.text().strip()

    def check(self) -> bool:
        """Validate both fields; the OK button follows. Reads study.json and the reader's session."""
        ok = False
        study, text = _study_or_problem(self.study_dir(), "Choose the study folder you were given.")
        if study is not None:
            text = f"“{study.name}”: {study.n_cases} cases."
            reader = self.reader()
            if not reader:
                text += " Enter your reader id."
            elif not READER_ID_PATTERN.match(reader):
                text += " The reader id may hold letters, digits, '-' and '_' only."
            else:
                text += " " + _progress_text(study, reader)
                ok = True
        return _show_check(self.status, self.buttons, text, ok)

    def _browse(self) -> None:
        _browse_folder(self, self.folder_edit, "Study folder", self.study_dir())


def _progress_text(study: Study, reader: str) -> str:
    try:
        session = ReaderSession.open(study, reader)
    except LesionStudioError as exc:
        return f"Reader {reader}'s session cannot be used: {exc}"
    if session.finished:
        return f"{reader} has answered every case."
    if session.n_answered:
        return f"{reader} has answered {session.n_answered}; reading resumes at case {session.position + 1}."
    return f"{reader} starts at case 1."


class AnalyzeStudyDialog(QDialog):
    """Study folder (its reader sessions) and the answer key kept outside it."""

    def __init__(self, study_dir: str = "", key_file: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Analyze a study")
        self.folder_edit = QLineEdit(study_dir)
        self.folder_edit.setPlaceholderText("the study folder (holds study.json and sessions/)")
        self.key_edit = QLineEdit(key_file)
        self.key_edit.setPlaceholderText("the answer key (default: <study folder>.key.json)")
        self.status = _status_label(460)
        form = QFormLayout()
        form.addRow("Study folder", _path_row(self.folder_edit, ("Browse…", self._browse_folder)))
        form.addRow("Answer key", _path_row(self.key_edit, ("Browse…", self._browse_key)))
        self.buttons = _dialog_body(self, form, self.status, "Analyze", self.accept)
        self._auto_key = not key_file
        self.folder_edit.textChanged.connect(self._folder_changed)
        self.key_edit.textEdited.connect(lambda _: setattr(self, "_auto_key", False))
        self.key_edit.textChanged.connect(self.check)
        self._folder_changed()

    def study_dir(self) -> str:
        return self.folder_edit.text().strip()

    def key_file(self) -> str:
        return self.key_edit.text().strip()

    def _folder_changed(self) -> None:
        if self._auto_key and self.study_dir():
            self.key_edit.setText(str(default_key_path(Path(self.study_dir()))))
        self.check()

    def check(self) -> bool:
        ok = False
        study, text = _study_or_problem(self.study_dir(), "Choose the study folder.")
        if study is not None:
            readers = study.session_readers()
            text = f"“{study.name}”: {study.n_cases} cases, "
            text += (f"{len(readers)} reader session(s): {', '.join(readers)}." if readers
                     else "no reader sessions yet.")
            if not self.key_file():
                text += " Choose the answer key."
            elif not Path(self.key_file()).is_file():
                text += f" The answer key {self.key_file()} does not exist."
            elif not readers:
                pass
            else:
                ok = True
        return _show_check(self.status, self.buttons, text, ok)

    def _browse_folder(self) -> None:
        _browse_folder(self, self.folder_edit, "Study folder", self.study_dir())

    def _browse_key(self) -> None:
        if _browse_file(self, self.key_edit, "Answer key", self.key_file(), "Answer key (*.json)"):
            self._auto_key = False


# ---------------------------------------------------------------------------- building


def toml_literal(value: object) -> str:
    """A TOML literal for a str, bool, int, float or a list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    raise TypeError(f"no TOML literal for {type(value).__name__}")


def study_toml(tables: dict[str, dict[str, object]]) -> str:
    """The text of a study TOML (`core.reader_study.config`) from `{table: {key: value}}`;
    None values are left out (the builder's default applies)."""
    lines = ["# Reader study, written by lesion-studio (Tools ▸ Reader study ▸ Build a study).",
             "# Build it again headless with: lesion-studio study build THIS_FILE", ""]
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {toml_literal(value)}" for key, value in values.items() if value is not None]
        lines.append("")
    return "\n".join(lines)


class BuildStudyDialog(QDialog):
    """The keys of a study TOML that matter most; writes the TOML, the controller builds it."""

    def __init__(self, last: dict[str, dict[str, object]] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from lesion_studio.core.reader_study.config import PLACEMENTS, REMOVALS, WINDOW_CHOICES

        self.setWindowTitle("Build a reader study")
        last = last or {}
        study, real, synthetic = last.get("study", {}), last.get("real", {}), last.get("synthetic", {})
        self.name_edit = QLineEdit(str(study.get("name", "CT nodules pilot")))
        self.out_edit = QLineEdit(str(study.get("out_dir", "")))
        self.out_edit.setPlaceholderText("the new study folder handed to readers")
        self.source_edit = QLineEdit(str(real.get("npz") or real.get("dataset") or ""))
        self.source_edit.setPlaceholderText("a patch .npz or a lesion-studio dataset folder")
        self.models_edit = QLineEdit(", ".join(synthetic.get("models", ["real-nodule"])))
        self.models_edit.setToolTip("classical methods (real-nodule) or checkpoint paths, comma-separated; "
                                    "the synthetic cases are split evenly between them")
        self.cases_spin = QSpinBox()
        self.cases_spin.setRange(1, 5000)
        self.cases_spin.setValue(int(study.get("cases_per_class", 20)))
        self.fov_spin = QDoubleSpinBox()
        self.fov_spin.setRange(4.0, 500.0)
        self.fov_spin.setSuffix(" mm")
        self.fov_spin.setValue(float(study.get("field_of_view_mm", 40.0)))
        self.bins_edit = QLineEdit(", ".join(f"{float(v):g}" for v in study.get("size_bins_mm", [3, 6, 10, 20])))
        self.bins_edit.setToolTip("increasing lesion-diameter edges in mm; the last bin is open")
        self.window_combo = QComboBox()
        self.window_combo.addItems(list(WINDOW_CHOICES))
        self.window_combo.setCurrentText(str(study.get("window", "auto")))
        self.placement_combo = QComboBox()
        self.placement_combo.addItems(list(PLACEMENTS))
        self.placement_combo.setCurrentText(str(synthetic.get("placement", "matched-site")))
        self.removal_combo = QComboBox()
        self.removal_combo.addItems(list(REMOVALS))
        self.removal_combo.setCurrentText(str(synthetic.get("removal", "auto-fill")))
        self.levels_spin = QSpinBox()
        self.levels_spin.setRange(2, 9)
        self.levels_spin.setValue(int(study.get("confidence_levels", 5)))
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setValue(int(study.get("seed", 0)))
        self.lesion_check = QCheckBox("also ask “lesion present?” (adds lesion-free patches)")
        self.lesion_check.setChecked(bool(study.get("lesion_present", False)))
        self.back_check = QCheckBox("readers may go back to earlier cases")
        self.back_check.setChecked(bool(study.get("allow_back", False)))
        self.force_check = QCheckBox("replace a study already in that folder (its sessions no longer fit)")
        self.toml_edit = QLineEdit()
        self.toml_edit.setPlaceholderText("default: <study folder>.toml, beside the folder")
        self.status = _status_label(520)

        form = QFormLayout()
        form.addRow("Name (shown to readers)", self.name_edit)
        form.addRow("Study folder", _path_row(self.out_edit, ("Browse…", self._browse_out)))
        form.addRow("Real lesions", _path_row(self.source_edit, ("File…", self._browse_npz),
                                              ("Folder…", self._browse_dataset)))
        form.addRow("Synthetic models", self.models_edit)
        form.addRow("Placement", self.placement_combo)
        form.addRow("Removal (matched sites)", self.removal_combo)
        form.addRow("Cases per class", self.cases_spin)
        form.addRow("Field of view", self.fov_spin)
        form.addRow("Size bins (mm)", self.bins_edit)
        form.addRow("Window", self.window_combo)
        form.addRow("Confidence levels", self.levels_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow(self.lesion_check)
        form.addRow(self.back_check)
        form.addRow(self.force_check)
        form.addRow("Study TOML", self.toml_edit)
        self.buttons = _dialog_body(self, form, self.status, "Build", self.try_accept)
        self.config_path: Path | None = None
        self.force = False

    def tables(self) -> dict[str, dict[str, object]]:
        """The study TOML's tables as the dialog stands (absolute paths)."""
        out = self.out_edit.text().strip()
        source = self.source_edit.text().strip()
        is_folder = bool(source) and Path(source).expanduser().is_dir()
        try:
            bins = [float(v) for v in self.bins_edit.text().replace(";", ",").split(",") if v.strip()]
        except ValueError:
            bins = []
        return {
            "study": {"name": self.name_edit.text().strip() or "reader study",
                      "out_dir": str(Path(out).expanduser().resolve()) if out else None,
                      "seed": self.seed_spin.value(), "cases_per_class": self.cases_spin.value(),
                      "field_of_view_mm": self.fov_spin.value(), "size_bins_mm": bins or None,
                      "window": self.window_combo.currentText(), "lesion_present": self.lesion_check.isChecked(),
                      "allow_back": self.back_check.isChecked(), "confidence_levels": self.levels_spin.value()},
            "real": {("dataset" if is_folder else "npz"): str(Path(source).expanduser().resolve()) if source else None},
            "synthetic": {"models": [m.strip() for m in self.models_edit.text().split(",") if m.strip()],
                          "placement": self.placement_combo.currentText(),
                          "removal": self.removal_combo.currentText()},
        }

    def toml_path(self) -> Path | None:
        text = self.toml_edit.text().strip()
        if text:
            return Path(text).expanduser().resolve()
        out = self.out_edit.text().strip()
        if not out:
            return None
        folder = Path(out).expanduser().resolve()
        return folder.with_name(folder.name + ".toml")

    def validate(self) -> str:
        """Check the config as the builder will ("" when it may be built); writes nothing."""
        import tempfile

        from lesion_studio.core.reader_study.builder import check_study_outputs
        from lesion_studio.core.reader_study.config import load_study_config

        if not self.out_edit.text().strip():
            return "Choose the study folder to create."
        if not self.source_edit.text().strip():
            return "Choose the real lesions: a patch .npz file or a dataset folder."
        text = study_toml(self.tables())
        with tempfile.TemporaryDirectory(prefix="lesion_studio_study_") as tmp:
            path = Path(tmp) / "study.toml"
            path.write_text(text, encoding="utf-8")
            try:
                config = load_study_config(path)
                check_study_outputs(config, self.force_check.isChecked())
            except LesionStudioError as exc:
                text = str(exc).replace(str(path), "the study settings")
                return text.replace("pass --force", "tick “replace a study already in that folder”")
        return ""

    def try_accept(self) -> None:
        """Validate, write the study TOML and accept; a problem stays in the dialog."""
        from lesion_studio.core.export.atomic import write_bytes

        problem = self.validate()
        target = self.toml_path()
        if not problem and target is None:
            problem = "Choose where to save the study TOML."
        if problem:
            self.status.setText(problem)
            self.status.setStyleSheet("color: #ff8a80;")
            return
        try:
            write_bytes(target, study_toml(self.tables()).encode("utf-8"))
        except OSError as exc:
            self.status.setText(f"{target}: cannot write the study TOML ({exc})")
            return
        self.config_path = target
        self.force = self.force_check.isChecked()
        self.accept()

    def _browse_out(self) -> None:
        _browse_file(self, self.out_edit, "New study folder", self.out_edit.text(), "Folder (*)", save=True)

    def _browse_npz(self) -> None:
        _browse_file(self, self.source_edit, "Real lesion patches", self.source_edit.text(), "Patches (*.npz)")

    def _browse_dataset(self) -> None:
        _browse_folder(self, self.source_edit, "Dataset folder", self.source_edit.text())
