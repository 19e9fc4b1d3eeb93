"""Dataset folder format, its validator, and the phantom generator + CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lesion_studio.app.cli import main as cli_main
from lesion_studio.core.dataset import load_dataset, read_array, validate_dataset
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.phantom import LESION_CONTRAST, make_phantom_case

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chest_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "chest"
    assert cli_main(["phantom", "--kind", "chest", "--n", "7", "--out", str(out), "--seed", "3",
                     "--size", "128"]) == 0
    return out


def test_phantom_cli_dataset_is_valid_and_loads(chest_dataset):
    report = validate_dataset(chest_dataset)
    assert report.ok, report.format()
    assert not report.warnings, report.format()
    data = load_dataset(chest_dataset)
    assert len(data.cases) == 7
    assert {c.split for c in data.cases} == {"train", "val", "test"}
    assert any(not c.has_lesion for c in data.cases) and any(c.has_lesion for c in data.cases)
    for case in data.cases:
        image, mask = data.read_image(case), data.read_mask(case)
        assert image.shape == mask.shape == (128, 128) and image.dtype == np.float32
        assert mask.any() == case.has_lesion
        assert data.spacing_for(case) == pytest.approx((360 / 128, 360 / 128))


def test_every_phantom_file_says_phantom(chest_dataset):
    for path in chest_dataset.rglob("*"):
        if path.is_file() and path.name != "dataset.json":
            assert "phantom" in path.name
    doc = json.loads((chest_dataset / "dataset.json").read_text())
    assert "phantom" in doc["description"].lower()
    assert all("phantom" in c["id"] and "phantom" in c["patient_id"] for c in doc["cases"])


def test_phantom_cli_refuses_to_overwrite_without_the_flag(chest_dataset, capsys):
    assert cli_main(["phantom", "--kind", "chest", "--n", "1", "--out", str(chest_dataset)]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_phantom_cli_via_subprocess_is_deterministic(tmp_path):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = subprocess.run(
            [sys.executable, "-m", "lesion_studio", "phantom", "--kind", "ct", "--n", "3",
             "--out", str(out), "--seed", "5", "--size", "96"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        outs.append(out)
    assert validate_dataset(outs[0]).ok
    files_a = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 10
    for rel in files_a:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
    data = load_dataset(outs[0])
    hu = data.read_image(data.cases[0])
    assert hu.min() <= -900 and hu.max() >= 300  # air and bone in Hounsfield units


def test_different_seeds_give_different_phantoms():
    a = make_phantom_case("kub", 0, seed=1, size_px=96)
    b = make_phantom_case("kub", 0, seed=2, size_px=96)
    assert not np.array_equal(a.image, b.image)


@pytest.mark.parametrize("kind", ["chest", "kub", "ct"])
def test_phantom_masks_are_exactly_the_pixels_the_lesions_changed(kind):
    for index in (0, 1, 3):
        case = make_phantom_case(kind, index, seed=0, size_px=128)
        free = make_phantom_case(kind, index, seed=0, size_px=128, with_lesions=False)
        assert case.lesion_mask.any() and case.lesions and not free.lesion_mask.any()
        changed = case.image != free.image
        np.testing.assert_array_equal(changed, case.lesion_mask)
        labels, n = ndimage.label(case.lesion_mask, structure=np.ones((3, 3)))
        assert n == len(case.lesions)
        low_contrast = LESION_CONTRAST[kind][0]
        for lesion in case.lesions:
            r, c = (int(v) for v in lesion.centre_rc)
            assert case.location_map[r, c] and case.lesion_mask[r, c]
            component = labels == labels[r, c]
            added = case.image[component] - free.image[component]
            assert added.min() > 0.5 * low_contrast  # contrast as drawn (noise is small)
            # the diameter recorded in mm matches the mask within a pixel or two
            d_px = 2 * np.sqrt(component.sum() / np.pi)
            assert d_px * case.spacing_mm[0] == pytest.approx(lesion.diameter_mm, abs=2.5 * case.spacing_mm[0])


# -- the validator on a broken copy -----------------------------------------------------------
def _case(doc: dict, index: int) -> dict:
    return doc["cases"][index]


def test_validator_reports_every_injected_defect(chest_dataset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(chest_dataset, broken)
    doc = json.loads((broken / "dataset.json").read_text())
    positives = [i for i, c in enumerate(doc["cases"]) if c["has_lesion"]]
    negatives = [i for i, c in enumerate(doc["cases"]) if not c["has_lesion"]]
    p0, p1, p2 = positives[:3]
    n0 = negatives[0]

    # 1. missing mask file
    missing_mask = broken / _case(doc, p0)["mask"]
    missing_mask.unlink()
    # 2. size mismatch
    mismatched = broken / _case(doc, p1)["mask"]
    mismatched.write_bytes(__import__("cv2").imencode(".png", np.full((50, 60), 255, np.uint8))[1].tobytes())
    # 3. empty positive mask
    emptied = broken / _case(doc, p2)["mask"]
    emptied.write_bytes(__import__("cv2").imencode(".png", np.zeros((128, 128), np.uint8))[1].tobytes())
    # 4. unreadable image
    garbage = broken / _case(doc, n0)["image"]
    garbage.write_bytes(b"this is not a PNG")
    # 5. a patient in two splits: move one of the two cases of patient 0
    _case(doc, 0)["split"] = "test" if _case(doc, 1)["split"] != "test" else "val"
    # 6. duplicated case id, 7. bad split name, 8. missing location map, 9. path escaping
    doc["cases"].append(dict(_case(doc, 0)))
    doc["cases"][-1]["image"] = "images/also_phantom.png"
    shutil.copy(broken / _case(doc, 0)["image"], broken / "images/also_phantom.png")
    _case(doc, 2)["split"] = "training"
    missing_loc = broken / _case(doc, 3)["location_map"]
    missing_loc.unlink()
    _case(doc, 4)["mask"] = "../outside.png"
    (broken / "dataset.json").write_text(json.dumps(doc))

    report = validate_dataset(broken)
    assert not report.ok
    text = report.format()

    def has(path: Path, words: str) -> bool:
        return any(p.path == path and words in p.reason for p in report.problems)

    assert has(missing_mask, "missing"), text
    assert has(mismatched, "size mismatch"), text
    assert has(emptied, "empty positive mask"), text
    assert has(garbage, "not a readable image"), text
    assert any("several splits" in p.reason and "phantom_patient_0000" in p.reason for p in report.errors), text
    assert any("duplicated case id" in p.reason for p in report.errors), text
    assert any("split must be one of" in p.reason for p in report.errors), text
    assert has(missing_loc, "missing"), text
    assert any("inside the dataset folder" in p.reason for p in report.errors), text
    assert len(report.errors) >= 9
    with pytest.raises(ConfigError) as info:
        load_dataset(broken)
    assert "empty positive mask" in str(info.value)


def test_validator_reports_structural_problems(tmp_path):
    assert "dataset folder not found" in validate_dataset(tmp_path / "nope").format()
    assert "dataset.json" in validate_dataset(tmp_path).format()
    (tmp_path / "dataset.json").write_text("{not json")
    assert "unreadable" in validate_dataset(tmp_path).format()
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "x", "version": 1, "cases": [{"id": "a"}]}))
    report = validate_dataset(tmp_path)
    assert any("'format'" in p.reason for p in report.errors)
    assert any("missing image, mask, patient_id, has_lesion, split" in p.reason for p in report.errors)


def test_negative_case_with_lesion_pixels_and_unlisted_files(chest_dataset, tmp_path):
    broken = tmp_path / "neg"
    shutil.copytree(chest_dataset, broken)
    doc = json.loads((broken / "dataset.json").read_text())
    positive = next(c for c in doc["cases"] if c["has_lesion"])
    positive["has_lesion"] = False
    (broken / "dataset.json").write_text(json.dumps(doc))
    (broken / "masks" / "stray.png").write_bytes(b"")
    report = validate_dataset(broken)
    assert any("has_lesion is false" in p.reason for p in report.errors)
    assert any(p.path.name == "stray.png" and p.severity == "warning" for p in report.problems)


def test_read_array_names_the_file(tmp_path):
    from lesion_studio.core.errors import ImageLoadError

    with pytest.raises(ImageLoadError) as info:
        read_array(tmp_path / "missing.png")
    assert info.value.path == tmp_path / "missing.png"
    np.save(tmp_path / "a.npy", np.zeros((2, 3, 4)))
    with pytest.raises(ImageLoadError, match="2D"):
        read_array(tmp_path / "a.npy")


def test_geometry_plans_phantom_and_cli_import_neither_qt_nor_torch():
    modules = [
        "lesion_studio.app.commands.phantom", "lesion_studio.core.synthesis_plan",
        "lesion_studio.core.augmentation_plan", "lesion_studio.core.mask_bank",
        "lesion_studio.core.classic_augment", "lesion_studio.core.dataset", "lesion_studio.core.phantom",
        "lesion_studio.core.geometry.crops", "lesion_studio.core.geometry.size_modulation",
        "lesion_studio.core.geometry.nonlesion", "lesion_studio.core.geometry.composition",
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'torch', 'pyqtgraph'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
