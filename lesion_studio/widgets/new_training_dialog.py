"""The "New training" dialog: dataset folder (validated first, every problem listed), family,
the paper's hyperparameters as editable defaults, device and output folder.

The dialog only builds a `TrainConfig` (`config()`); it never trains. Values are parsed as TOML
literals and checked by `TrainConfig.from_dict`, so the dialog accepts exactly what a training
TOML file accepts and reports the same `ConfigError` (naming the key).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import tomllib
import typing
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from lesion_studio.core.app_paths import config_dir, data_dir
from lesion_studio.core.dataset import DatasetProblem, ValidationReport, validate_dataset
from lesion_studio.core.errors import ConfigError
from lesion_studio.models.config import FAMILY_CONFIGS, RunConfig, TrainConfig

#: Run settings shown in the dialog (the rest keep RunConfig's defaults).
RUN_FIELDS = ("steps", "seed", "val_fraction", "checkpoint_every", "val_every", "sample_every",
              "log_every", "keep_last", "amp", "num_threads")
FAMILY_HELP = {
    "shape": "P3: DCGAN lesion masks from noise",
    "texture": "P3: gated-conv inpainting of the lesion texture",
    "outpaint": "P1: regenerate everything around a kept lesion",
    "cascade": "P0: cascaded dilated U-Net inpainter",
    "pix2pix": "P2: mask → image cGAN",
    "stylegan2-joint": "P4 B-SG: StyleGAN2 image + mask pairs",
    "stylegan2-mask": "P4 M-SG: StyleGAN2 lesion masks",
    "stylegan2-cond": "P4 C-SG: mask-conditional StyleGAN2 (mask → image)",
}


#: Model keys naming pretrained VGG weights, with the file torchvision keeps in its hub cache.
VGG_WEIGHT_KEYS = {"perceptual_weights": ("VGG16", "vgg16-397923af.pth"),
                   "content_weights": ("VGG19", "vgg19-dcbb9e9d.pth")}


def hub_checkpoints_dir() -> Path:
    """torch's hub checkpoint folder, without importing torch when it is not loaded yet."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return Path(torch.hub.get_dir()) / "checkpoints"
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(cache, "torch")))
    return Path(home) / "hub" / "checkpoints"


def remembered_path() -> Path:
    """Where the dialog keeps the values of its last accepted training."""
    return config_dir() / "new_training.json"


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value).replace("'", '"')


def _parse_value(text: str, annotation: Any, key: str) -> Any:
    """A field's text as a TOML literal (strings raw; empty means None where allowed)."""
    text = text.strip()
    if annotation is str:
        return text
    if text == "":
        if type(None) in typing.get_args(annotation):
            return None
        raise ConfigError(f"{key}: a value is needed")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(f"{key}: {text!r} is not a number, list or true/false") from None


class NewTrainingDialog(QDialog):
    """Collects a training configuration; `accept` only once the dataset validates."""

    validated = Signal(object)  # ValidationReport
    _validated_async = Signal(str, object)  # root, ValidationReport (from the validation thread)

    def __init__(self, parent: QWidget | None = None, *, dataset: str | Path | None = None,
                 family: str = "texture", out_root: str | Path | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New training")
        self.resize(620, 720)
        self.report: ValidationReport | None = None
        self._out_root = Path(out_root) if out_root else data_dir() / "runs"
        self._out_edited = False
        self._fields: dict[str, tuple[QWidget, Any]] = {}
        self._remembered = self._load_remembered() if dataset is None else {}
        if self._remembered.get("family") in FAMILY_CONFIGS and family == "texture":
            family = self._remembered["family"]

        self.dataset_edit = QLineEdit()
        self.dataset_edit.setPlaceholderText("folder with dataset.json, images/, masks/")
        self.dataset_edit.editingFinished.connect(self.validate_async)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_dataset)
        self.validate_button = QPushButton("Validate")
        self.validate_button.clicked.connect(self.validate_async)
        self._validated_async.connect(self._apply_report)
        self._pending_root: str | None = None
        self.report_label = QLabel("Choose a dataset folder; it is validated before training.")
        self.report_label.setWordWrap(True)
        self.problems = QListWidget()
        self.problems.setMaximumHeight(120)
        self.problems.setVisible(False)

        self.family_combo = QComboBox()
        for name in FAMILY_CONFIGS:
            self.family_combo.addItem(f"{name} — {FAMILY_HELP.get(name, '')}", name)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self.out_edit = QLineEdit()
        self.out_edit.textEdited.connect(lambda _t: setattr(self, "_out_edited", True))
        out_browse = QPushButton("Browse…")
        out_browse.clicked.connect(self._browse_out)

        dataset_row = QHBoxLayout()
        dataset_row.addWidget(self.dataset_edit, 1)
        dataset_row.addWidget(browse)
        dataset_row.addWidget(self.validate_button)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(out_browse)

        top = QFormLayout()
        top.addRow("Dataset", dataset_row)
        top.addRow("", self.report_label)
        top.addRow("", self.problems)
        top.addRow("Family", self.family_combo)
        top.addRow("Device", self.device_combo)
        top.addRow("Output folder", out_row)

        self.run_box = QGroupBox("Run")
        self.model_box = QGroupBox("Hyperparameters (paper defaults)")
        self.offline_note = QLabel("")
        self.offline_note.setWordWrap(True)
        self.offline_note.setStyleSheet("color: #ffd166;")
        self.offline_note.setVisible(False)
        params = QWidget()
        params_layout = QVBoxLayout(params)
        params_layout.addWidget(self.run_box)
        params_layout.addWidget(self.model_box)
        params_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(params)

        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #ff6b6b;")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Start training")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.offline_note)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)

        self._build_run_fields()
        self.family_combo.currentIndexChanged.connect(lambda _i: self._family_changed())
        self.set_family(family)
        self._family_changed()
        self._restore_remembered()
        if dataset is not None:
            self.set_dataset(dataset)
        self._update_ok()

    # ------------------------------------------------------------------ fields
    def _field_widget(self, value: Any, annotation: Any) -> QWidget:
        if annotation is bool:
            box = QCheckBox()
            box.setChecked(bool(value))
            return box
        edit = QLineEdit(_format_value(value))
        edit.textChanged.connect(lambda _t: self.error_label.clear())
        return edit

    def _add_fields(self, box: QGroupBox, prefix: str, instance: Any, names: tuple[str, ...] | None = None) -> None:
        form = QFormLayout(box) if box.layout() is None else box.layout()
        hints = typing.get_type_hints(type(instance))
        for f in dataclasses.fields(instance):
            if f.name == "family" or (names is not None and f.name not in names):
                continue
            widget = self._field_widget(getattr(instance, f.name), hints[f.name])
            self._fields[f"{prefix}.{f.name}"] = (widget, hints[f.name])
            form.addRow(f.name, widget)

    def _build_run_fields(self) -> None:
        self._add_fields(self.run_box, "run", RunConfig(), RUN_FIELDS)

    def _family_changed(self) -> None:
        form = self.model_box.layout()
        if form is not None:
            while form.rowCount():
                form.removeRow(0)
        for key in [k for k in self._fields if k.startswith("model.")]:
            del self._fields[key]
        self._add_fields(self.model_box, "model", FAMILY_CONFIGS[self.family]())
        remembered = self._remembered.get("model", {}).get(self.family, {})
        for name, text in remembered.items():
            if f"model.{name}" in self._fields:
                self.set_field(f"model.{name}", text)
        self._offline_defaults()
        self._suggest_out_dir()

    def _offline_defaults(self) -> None:
        """Pretrained VGG weights that are not on this machine: the term is off by default
        (training would stop at once offline), and the dialog says so."""
        notes = []
        for name, (arch, file_name) in VGG_WEIGHT_KEYS.items():
            key = f"model.{name}"
            if key not in self._fields or self.field_text(key).strip() != "auto":
                continue
            where = hub_checkpoints_dir() / file_name
            if where.is_file():
                continue
            self.set_field(key, "disabled")
            notes.append(f"{name} = \"disabled\": the {arch} weights are not on this computer ({where}). "
                         f"The feature-matching term is off; put {file_name} there and set \"auto\" to use it.")
        self.offline_note.setText("\n".join(notes))
        self.offline_note.setVisible(bool(notes))

    # ------------------------------------------------------------------ remembered values
    def _load_remembered(self) -> dict[str, Any]:
        try:
            data = json.loads(remembered_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _restore_remembered(self) -> None:
        data = self._remembered
        for name, text in data.get("run", {}).items():
            if f"run.{name}" in self._fields:
                self.set_field(f"run.{name}", text)
        if data.get("device") in ("auto", "cpu", "cuda"):
            self.set_device(data["device"])
        if data.get("dataset"):
            self.dataset_edit.setText(str(data["dataset"]))
            self._suggest_out_dir()
            self.validate_async()

    def remember(self) -> None:
        """Keep the values of this (accepted) dialog for the next one."""
        data = self._load_remembered()
        texts = {key: (self._fields[key][0].isChecked() if isinstance(self._fields[key][0], QCheckBox)
                       else self.field_text(key)) for key in self._fields}
        data["family"] = self.family
        data["device"] = self.device_combo.currentText()
        data["dataset"] = self.dataset_edit.text().strip()
        data["run"] = {k[4:]: v for k, v in texts.items() if k.startswith("run.")}
        data.setdefault("model", {})[self.family] = {k[6:]: v for k, v in texts.items() if k.startswith("model.")}
        try:
            remembered_path().write_text(json.dumps(data, indent=1), encoding="utf-8")
        except OSError:
            pass  # remembering is a convenience; never block a training for it

    @property
    def family(self) -> str:
        return self.family_combo.currentData()

    def set_family(self, family: str) -> None:
        index = self.family_combo.findData(family)
        if index < 0:
            raise ConfigError(f"family: unknown family {family!r}")
        self.family_combo.setCurrentIndex(index)

    def set_field(self, key: str, value: Any) -> None:
        """Set `run.<name>` or `model.<name>` as a user would type it."""
        widget, _ = self._fields[key]
        if isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        else:
            widget.setText(value if isinstance(value, str) else _format_value(value))

    def field_text(self, key: str) -> str:
        widget, _ = self._fields[key]
        return str(widget.isChecked()) if isinstance(widget, QCheckBox) else widget.text()

    def set_device(self, device: str) -> None:
        self.device_combo.setCurrentText(device)

    def set_out_dir(self, path: str | Path) -> None:
        self.out_edit.setText(str(path))
        self._out_edited = True

    def _suggest_out_dir(self) -> None:
        if not self._out_edited:
            name = Path(self.dataset_edit.text().strip()).name or "dataset"
            self.out_edit.setText(str(self._out_root / f"{self.family}_{name}"))

    # ------------------------------------------------------------------ dataset
    def set_dataset(self, path: str | Path) -> ValidationReport:
        self.dataset_edit.setText(str(path))
        return self.validate()

    def validate(self) -> ValidationReport | None:
        """Run the dataset validator now and list every problem it finds (blocks)."""
        text = self.dataset_edit.text().strip()
        if not text:
            return self._apply_report("", None)
        self.setCursor(Qt.CursorShape.WaitCursor)
        try:
            report = validate_dataset(text)
        finally:
            self.unsetCursor()
        return self._apply_report(text, report)

    def validate_async(self) -> None:
        """Validate in a background thread (a large dataset reads every image); the report
        is listed when it arrives, unless the folder was changed meanwhile."""
        text = self.dataset_edit.text().strip()
        if not text:
            self._apply_report("", None)
            return
        if text == self._pending_root or (self.report is not None and str(self.report.root) == text):
            return
        self._pending_root = text
        self.report = None
        self._update_ok()
        self.report_label.setText("Validating…")

        def work() -> None:
            try:
                report = validate_dataset(text)
            except Exception as exc:  # noqa: BLE001 - shown as one problem, never lost in a thread
                report = ValidationReport(Path(text), (DatasetProblem("error", Path(text), str(exc)),))
            try:
                self._validated_async.emit(text, report)
            except RuntimeError:
                pass  # the dialog was closed before the validation finished

        threading.Thread(target=work, name="validate-dataset", daemon=True).start()

    def _apply_report(self, root: str, report: ValidationReport | None) -> ValidationReport | None:
        if root and root != self.dataset_edit.text().strip():
            return report  # a result for a folder that is no longer chosen
        self._pending_root = None
        self.report = report
        self.problems.clear()
        if report is None:
            self.report_label.setText("Choose a dataset folder; it is validated before training.")
            self.problems.setVisible(False)
            self._update_ok()
            return None
        verdict = "ready" if report.ok else "cannot be used"
        self.report_label.setText(
            f"{report.n_cases} cases, {len(report.errors)} errors, {len(report.warnings)} warnings: {verdict}"
        )
        for problem in report.problems:
            self.problems.addItem(str(problem))
        self.problems.setVisible(bool(report.problems))
        self._suggest_out_dir()
        self._update_ok()
        self.validated.emit(report)
        return report

    def _update_ok(self) -> None:
        ok = self.report is not None and self.report.ok
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)

    def _browse_dataset(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Dataset folder", self.dataset_edit.text())
        if path:
            self.set_dataset(path)

    def _browse_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Output folder", self.out_edit.text())
        if path:
            self.set_out_dir(path)

    # ------------------------------------------------------------------ result
    def config(self) -> TrainConfig:
        """The configuration as entered; `ConfigError` names the first bad key."""
        tables: dict[str, dict[str, Any]] = {"run": {}, "model": {}}
        for key, (widget, annotation) in self._fields.items():
            table, name = key.split(".", 1)
            if isinstance(widget, QCheckBox):
                tables[table][name] = widget.isChecked()
            else:
                tables[table][name] = _parse_value(widget.text(), annotation, key)
        tables["run"]["dataset"] = self.dataset_edit.text().strip()
        tables["run"]["out_dir"] = self.out_edit.text().strip()
        tables["run"]["device"] = self.device_combo.currentText()
        return TrainConfig.from_dict({"family": self.family, **tables})

    def accept(self) -> None:
        if self.report is None or not self.report.ok:
            self.error_label.setText("The dataset has errors; fix them or choose another folder.")
            return
        try:
            self.config()
        except ConfigError as exc:
            self.error_label.setText(str(exc))
            return
        self.remember()
        super().accept()
