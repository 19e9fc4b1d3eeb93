"""A small reader-study folder for tests, written per the study format with real CT pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LIDC_AXIAL = Path(__file__).parent / "data" / "lidc_heldout_axial.npz"


def make_study(folder: Path, n_cases: int = 4, *, allow_back: bool = False, lesion_present: bool = False,
               study_id: str = "0123456789abcdef0123456789abcdef", confidence_levels: int = 5) -> Path:
    """Write `folder/study.json` and `folder/cases/case_000N.npy` (50 x 50 HU patches of the
    held-out LIDC slices, flipped/rotated so that cases differ); returns the folder."""
    with np.load(LIDC_AXIAL) as data:
        images = data["images"].astype(np.float32)
        spacing = data["spacing_mm"]
    (folder / "cases").mkdir(parents=True, exist_ok=True)
    cases = []
    for i in range(n_cases):
        image = np.rot90(images[i % len(images)], k=i // len(images)).copy()
        case_id = f"case_{i + 1:04d}"
        np.save(folder / "cases" / f"{case_id}.npy", image)
        cases.append({"id": case_id, "file": f"cases/{case_id}.npy",
                      "spacing_mm": [float(v) for v in spacing[i % len(images)]]})
    doc = {
        "format": "lesion-studio-reader-study", "version": 1, "study_id": study_id,
        "name": "test study", "created": "2026-01-01T00:00:00+00:00",
        "questions": {"real_or_synthetic": True, "lesion_present": lesion_present},
        "allow_back": allow_back, "confidence_levels": confidence_levels,
        "window": {"center": -600.0, "width": 1500.0}, "units": "HU", "field_of_view_mm": 50.0,
        "instructions": "Press R for real, S for synthetic, then 1-5 for confidence.",
        "cases": cases,
    }
    (folder / "study.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return folder


def make_key(folder: Path, study_id: str = "0123456789abcdef0123456789abcdef",
             models: tuple[str, ...] = ("real-nodule", "texture-gan")) -> Path:
    """An answer key beside `folder` (`<folder>.key.json`): odd cases real, even synthetic
    (models in turn), sizes across three bins; returns its path."""
    doc = json.loads((folder / "study.json").read_text(encoding="utf-8"))
    bins = ("3-6 mm", "6-10 mm", "10-20 mm")
    cases = {}
    for i, case in enumerate(doc["cases"]):
        synthetic = i % 2 == 1
        cases[case["id"]] = {"truth": "synthetic" if synthetic else "real",
                             "model": models[(i // 2) % len(models)] if synthetic else None,
                             "diameter_mm": 4.0 + i, "size_bin": bins[(i // 2) % len(bins)], "image_type": "ct",
                             "group": f"series-{i // 2}"}
    key = folder.with_name(folder.name + ".key.json")
    key.write_text(json.dumps({"format": "lesion-studio-reader-study-key", "version": 1, "study_id": study_id,
                               "cases": cases, "design": {}}), encoding="utf-8")
    return key


def read_all(folder: Path, reader: str, skill: float, seed: int) -> None:
    """Answer every case of the study as `reader`: right with probability `skill` (needs the key)."""
    from lesion_studio.core.reader_study.session import ReaderSession, load_study

    key = json.loads(folder.with_name(folder.name + ".key.json").read_text(encoding="utf-8"))["cases"]
    rng = np.random.default_rng(seed)
    study = load_study(folder)
    session = ReaderSession.open(study, reader)
    for case in study.cases:
        truth = key[case.id]["truth"]
        right = rng.random() < skill
        call = truth if right else ("real" if truth == "synthetic" else "synthetic")
        session.record(case.id, call, int(rng.integers(1, 6)), None, float(rng.uniform(1.0, 9.0)))
