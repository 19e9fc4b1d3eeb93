"""The command line: version, help, --batch, devices, and the demo launch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lesion_studio import __version__
from lesion_studio.app import cli
from lesion_studio.core.device import cuda_available


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lesion_studio", *args], capture_output=True, text=True, timeout=120)


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"lesion-studio {__version__}"


def test_help_lists_the_options() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for option in ("--demo", "--device", "--batch", "--version", "PATH"):
        assert option in result.stdout


def test_batch_config_errors_name_the_file(tmp_path, capsys) -> None:
    missing = tmp_path / "config.toml"
    assert cli.main(["--batch", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    invalid = tmp_path / "bad.toml"
    invalid.write_text("seed = [\n")
    assert cli.main(["--batch", str(invalid)]) == 2
    assert str(invalid) in capsys.readouterr().err


def test_bad_device_choice_is_refused() -> None:
    result = _run("--device", "tpu")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_refused(capsys) -> None:
    assert cli.main(["--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_demo_flag_opens_the_demo_radiograph(qtbot, monkeypatch) -> None:
    from PySide6.QtWidgets import QApplication

    from lesion_studio.app.main_window import MainWindow

    created = []
    monkeypatch.setattr(QApplication, "exec", lambda self=None: 0)
    original_init = MainWindow.__init__

    def remember(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(MainWindow, "__init__", remember)
    assert cli.main(["--demo", "--device", "cpu"]) == 0
    window = created[0]
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=30_000)
    assert window.state.image.source.path.name == "RG1_UNCR.dcm"
    assert window.device == "cpu"


def test_paths_on_the_command_line_are_opened(qtbot, monkeypatch) -> None:
    from PySide6.QtWidgets import QApplication

    from lesion_studio.app.main_window import MainWindow
    from lesion_studio.core.sample_data import sample_file

    created = []
    monkeypatch.setattr(QApplication, "exec", lambda self=None: 0)
    original_init = MainWindow.__init__
    monkeypatch.setattr(MainWindow, "__init__", lambda self, *a, **k: (original_init(self, *a, **k), created.append(self))[0])
    assert cli.main([str(sample_file("693_UNCR.dcm"))]) == 0
    window = created[0]
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=30_000)
    assert window.state.image.modality == "CT"


def test_subcommands_do_not_import_qt() -> None:
    code = (
        "import sys; from lesion_studio.app import cli; "
        "rc = cli.main(['--batch', 'x.toml']); "
        "assert rc == 2; assert 'PySide6' not in sys.modules, 'Qt imported'; "
        "rc = cli.main(['batch', 'x.toml']); "
        "assert rc == 2; assert 'PySide6' not in sys.modules, 'Qt imported'; "
        "import lesion_studio.models.batch_export, lesion_studio.core.export.dicom_derived; "
        "assert 'PySide6' not in sys.modules, 'Qt imported by the batch engine'; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("size", ["100000", "4097", "10"])
def test_phantom_size_is_bounded_with_a_clear_message(tmp_path, capsys, size) -> None:
    """`phantom --size 100000` used to try to allocate 37 GiB."""
    code = cli.main(["phantom", "--kind", "chest", "--n", "1", "--out", str(tmp_path / "p"), "--size", size])
    assert code == 2
    assert f"--size: must be in [64, 4096], got {size}" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
