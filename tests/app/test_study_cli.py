"""`lesion-studio study build|analyze|machine` end to end, headless."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lesion_studio.app import cli
from tests._study_sources import LIDC_AXIAL, study_toml


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`study build` on the bundled CT patches + real-nodule (1 real, 1 synthetic case)."""
    root = tmp_path_factory.mktemp("cli")
    toml = study_toml(root / "study.toml", out_dir="pilot", source=f'npz = "{LIDC_AXIAL}"', cases_per_class=1,
                      name="CLI pilot")
    code = cli.main(["study", "build", str(toml), "--quiet"])
    assert code == 0
    return root, toml


def _scripted_session(study_dir: Path, reader: str, calls: dict[str, tuple[str, int]]) -> None:
    """A finished reader session written per the format, as the reader app would."""
    study = json.loads((study_dir / "study.json").read_text())
    answers = [{"case_id": c["id"], "call": calls[c["id"]][0], "confidence": calls[c["id"]][1],
                "lesion_present": None, "seconds": 4.0} for c in study["cases"]]
    doc = {"format": "lesion-studio-reader-session", "version": 1, "study_id": study["study_id"],
           "reader": reader, "started": "2026-01-01T00:00:00+00:00", "updated": "2026-01-01T00:10:00+00:00",
           "finished": True, "position": len(answers), "answers": answers}
    (study_dir / "sessions" / f"{reader}.json").write_text(json.dumps(doc), encoding="utf-8")


def test_build_then_analyze_a_scripted_session(built, capsys) -> None:
    root, _ = built
    study_dir, key_path = root / "pilot", root / "pilot.key.json"
    assert (study_dir / "study.json").is_file() and key_path.is_file()
    truth = {cid: entry["truth"] for cid, entry in json.loads(key_path.read_text())["cases"].items()}
    right = {cid: (t, 5) for cid, t in truth.items()}
    wrong = {cid: ("real" if t == "synthetic" else "synthetic", 3) for cid, t in truth.items()}
    _scripted_session(study_dir, "alice", right)
    _scripted_session(study_dir, "bob", wrong)
    capsys.readouterr()
    code = cli.main(["study", "analyze", str(study_dir), "--bootstrap", "200"])
    out = capsys.readouterr().out
    assert code == 0
    assert "alice (human, 2 cases): accuracy 100%" in out and "bob (human, 2 cases): accuracy 0%" in out
    assert "verdict: inconclusive" in out and "power to detect a 65 % accuracy" in out
    results_dir = root / "pilot.results"
    results = json.loads((results_dir / "results.json").read_text())
    assert results["readers"]["alice"]["auc"] == 1.0 and results["readers"]["bob"]["auc"] == 0.0
    assert results["pooled"]["accuracy"] == 0.5 and results["kappa"]["fleiss"]["kappa"] == pytest.approx(-1.0)
    assert results["verdict"].startswith("inconclusive")  # 2 cases prove nothing either way
    for name in ("results.csv", "roc.png", "roc.svg", "confusion.png", "per_model.png"):
        assert (results_dir / name).is_file()
    assert not any(p.name.startswith("results") for p in study_dir.rglob("*"))  # nothing lands with the readers


def test_results_inside_the_study_folder_are_refused(built, capsys) -> None:
    root, _ = built
    code = cli.main(["study", "analyze", str(root / "pilot"), "--out", str(root / "pilot" / "results")])
    assert code == 1 and "outside the study folder" in capsys.readouterr().err


def test_rebuilding_needs_force_and_a_missing_key_is_named(built, capsys, tmp_path) -> None:
    root, toml = built
    assert cli.main(["study", "build", str(toml), "--quiet"]) == 1
    assert "already holds a study" in capsys.readouterr().err
    code = cli.main(["study", "analyze", str(root / "pilot"), "--key", str(tmp_path / "nokey.json"),
                     "--out", str(tmp_path / "res")])
    assert code == 1 and "answer key not found" in capsys.readouterr().err


def test_machine_reader_says_when_the_source_is_too_small(built, capsys) -> None:
    root, _ = built
    assert cli.main(["study", "machine", str(root / "pilot"), "--epochs", "1"]) == 1
    assert "needs at least 4 training patches per class" in capsys.readouterr().err


def test_study_command_does_not_import_qt() -> None:
    code = (
        "import sys; from lesion_studio.app import cli; "
        "rc = cli.main(['study', 'build', 'missing.toml']); assert rc == 1, rc; "
        "import lesion_studio.core.reader_study.analysis, lesion_studio.models.machine_reader; "
        "assert 'PySide6' not in sys.modules, 'Qt imported'; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
