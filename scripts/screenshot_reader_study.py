"""Screenshots of reader mode and of the reader-study results dashboard (offscreen, 1366 × 768).

    QT_QPA_PLATFORM=offscreen python scripts/screenshot_reader_study.py [DOCS_DIR]

Builds a small study (10 real + 10 synthetic CT nodules, `real-nodule` insertion at matched
sites) from the NODE21/LIDC axial patches in `../shared/data` (or, without them, from the
three held-out patches of `tests/data` and their rotations), reads six cases by key presses
and captures case 7 with a half-given answer. The results dashboard shows three SIMULATED
readers: seeded random answers that are right with a fixed probability (they look at the
answer key), not a real reading — only the layout is meant.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_NPZ = REPO.parent / "shared" / "data" / "node21_ct_nodules" / "node21_ct_axial.npz"
TEST_NPZ = REPO / "tests" / "data" / "lidc_heldout_axial.npz"
SIZE = (1366, 768)


def _real_source(tmp: Path) -> Path:
    """The shared NODE21 axial patches, or 12 patches made of the three test patches' rotations."""
    import numpy as np

    if SHARED_NPZ.is_file():
        return SHARED_NPZ
    with np.load(TEST_NPZ) as d:
        data = {k: d[k] for k in d.files}
    out = {k: [] for k in ("images", "masks", "names", "spacing_mm", "series_uids")}
    for k in range(4):
        for i in range(len(data["images"])):
            out["images"].append(np.rot90(data["images"][i], k))
            out["masks"].append(np.rot90(data["masks"][i], k))
            out["names"].append(f"{data['names'][i]}-rot{90 * k}")
            out["spacing_mm"].append(data["spacing_mm"][i])
            out["series_uids"].append(f"{data['series_uids'][i]}.{k}")
    path = tmp / "nodules.npz"
    np.savez(path, **{k: np.array(v) for k, v in out.items()})
    return path


def _settle(app, rounds: int = 10) -> None:
    for _ in range(rounds):
        app.processEvents()
        time.sleep(0.03)


def main(docs: Path) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="lesion_studio_reader_shot_"))
    os.environ.setdefault("LESION_STUDIO_HOME", str(tmp / "home"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(REPO))
    import numpy as np
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from lesion_studio.core.reader_study.analysis import analyze_study
    from lesion_studio.core.reader_study.answer_key import load_answer_key
    from lesion_studio.core.reader_study.builder import build_study
    from lesion_studio.core.reader_study.config import load_study_config
    from lesion_studio.core.reader_study.session import ReaderSession, load_study
    from lesion_studio.models.study_engines import study_engine_factory
    from lesion_studio.widgets.reader_results import ReaderResultsDashboard
    from lesion_studio.widgets.reader_study_dialogs import study_toml
    from lesion_studio.widgets.reader_view import ReaderView
    from lesion_studio.widgets.theme import apply_dark_theme

    apply_dark_theme(app)
    source = _real_source(tmp)
    per_class = 10 if source == SHARED_NPZ else 3
    toml = tmp / "ct-pilot.toml"
    toml.write_text(study_toml({
        "study": {"name": "CT nodules pilot", "out_dir": str(tmp / "ct-pilot"), "cases_per_class": per_class,
                  "field_of_view_mm": 40.0, "window": "CT lung", "seed": 3},
        "real": {"npz": str(source)}, "synthetic": {"models": ["real-nodule"]}}), encoding="utf-8")
    config = load_study_config(toml)
    result = build_study(config, engine_factory=study_engine_factory(tmp, "cpu"))
    print(result.summary())
    study = load_study(result.study_dir)

    # Reader mode: six cases answered by key presses, case 7 with "synthetic" chosen.
    view = ReaderView(ReaderSession.open(study, "reader-01"))
    view.resize(*SIZE)
    view.show()
    _settle(app)
    rng = np.random.default_rng(7)
    QTest.keyClick(view, Qt.Key.Key_Return)
    for _ in range(min(6, study.n_cases - 1)):
        QTest.keyClick(view, Qt.Key.Key_R if rng.random() < 0.5 else Qt.Key.Key_S)
        QTest.keyClick(view, Qt.Key(int(Qt.Key.Key_1) + int(rng.integers(0, 5))))
        time.sleep(0.05)
        QTest.keyClick(view, Qt.Key.Key_Return)
    QTest.keyClick(view, Qt.Key.Key_S)
    _settle(app)
    docs.mkdir(parents=True, exist_ok=True)
    view.grab().save(str(docs / "screenshot_reader_mode.png"))
    view.close()

    # Simulated readers (they consult the key: a layout demo, not a result).
    key = {cid: case.truth for cid, case in load_answer_key(result.key_path).cases.items()}
    for reader, skill, seed in (("reader-01", 0.62, 1), ("reader-02", 0.55, 2), ("reader-03", 0.7, 3)):
        session = ReaderSession.open(study, reader)
        sim = np.random.default_rng(seed)
        while not session.finished:
            case = session.current_case()
            truth = key[case.id]
            call = truth if sim.random() < skill else ("real" if truth == "synthetic" else "synthetic")
            session.record(case.id, call, int(sim.integers(1, 6)), None, float(sim.uniform(2.0, 12.0)))
    results = analyze_study(result.study_dir, result.key_path)
    results["name"] = "CT nodules pilot (simulated readers)"
    dashboard = ReaderResultsDashboard()
    dashboard.set_results(results)
    dashboard.resize(*SIZE)
    dashboard.show()
    _settle(app, 20)
    dashboard.grab().save(str(docs / "screenshot_reader_results.png"))
    print(f"wrote {docs / 'screenshot_reader_mode.png'} and {docs / 'screenshot_reader_results.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs"))
