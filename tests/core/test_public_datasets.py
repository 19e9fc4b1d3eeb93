"""Converters of the public CT data (core.public_datasets) on tiny fixtures written here: NODE21
nodule patches (npz + csv) and kidney-stone slices (jpg + boxes.csv). Patients never straddle
splits or folds, masks stay inside their boxes, and bad input is refused naming the file."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from lesion_studio.core.classical.nodule_library import heldout_series_uids
from lesion_studio.core.dataset import load_dataset
from lesion_studio.core import public_datasets
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.public_datasets import (
    KIDNEY_STONE_SPLIT, acquisition_sessions, box_slices, build_kidney_stones_dataset, build_node21_dataset,
    kidney_stone_split, stone_mask,
)
from lesion_studio.models.experiments import patient_folds

HELD = sorted(heldout_series_uids())[0]        # a scan the real-nodule library does not use
LIBRARY = "1.3.6.1.4.1.14519.5.2.1.6279.6001.999"  # not held out: a library-side scan


def _node21(root: Path) -> Path:
    """4 nodules: two of the held-out scan, one padded, one of another scan."""
    root.mkdir(parents=True, exist_ok=True)
    n, s = 4, 5
    images = np.full((n, s, 12, 12), -800, np.int16)
    masks = np.zeros((n, s, 12, 12), np.uint8)
    for i in range(n):
        masks[i, 2, 4:7 + i % 2, 5:8] = 1           # centre slice: the nodule
        masks[i, 0, 0, 0] = 1                       # an off-centre slice that must not be used
        images[i][masks[i] > 0] = 40
    names = np.array([f"nod{i}.mha" for i in range(n)])
    np.savez(root / "node21_ct_axial.npz", images=images, masks=masks, names=names,
             spacing_mm=np.ones((n, 2), np.float32), slice_offsets=np.arange(-2, 3, dtype=np.int8))
    with open(root / "nodules.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["idx", "name", "seriesuid", "diameter_mm", "padded"])
        for i, (uid, padded) in enumerate([(HELD, 0), (HELD, 0), (HELD, 1), (LIBRARY, 0)]):
            w.writerow([i, names[i], uid, 5.0 + i, padded])
    (root / "ATTRIBUTION.md").write_text("# Attribution: NODE21 test patches, CC BY 4.0\n")
    (root / "LICENSE-test-Apache-2.0.txt").write_text("Apache 2.0\n")
    return root


def test_node21_one_centre_slice_per_nodule_patient_is_series(tmp_path):
    src = _node21(tmp_path / "node21_ct_nodules")
    out = tmp_path / "all"
    summary = build_node21_dataset(src, out, series="all")
    ds = load_dataset(out)
    assert [c.case_id for c in ds.cases] == ["n0000", "n0001", "n0003"]  # the padded patch is skipped
    assert summary["skipped"] == {"padded": 1} and summary["patients"] == 2
    assert {c.case_id: c.patient_id for c in ds.cases} == {"n0000": HELD, "n0001": HELD, "n0003": LIBRARY}
    npz = np.load(src / "node21_ct_axial.npz")
    for case in ds.cases:
        i = int(case.case_id[1:])
        assert np.array_equal(ds.read_mask(case), npz["masks"][i, 2] > 0)
        assert np.array_equal(np.load(case.image_path), npz["images"][i, 2])
    splits = {}
    for case in ds.cases:  # one patient, one split
        assert splits.setdefault(case.patient_id, case.split) == case.split
    attribution = (out / "ATTRIBUTION.md").read_text()
    assert "NODE21 test patches" in attribution and "lesion-studio conversion" in attribution
    assert (out / "LICENSE-test-Apache-2.0.txt").is_file()

    held = build_node21_dataset(src, tmp_path / "held")  # default: the library's held-out scans only
    assert {c.patient_id for c in load_dataset(tmp_path / "held").cases} == {HELD}
    assert held["skipped"]["library series (real-nodule source)"] == 1


def test_node21_build_is_idempotent_rebuilds_on_new_settings_and_refuses_foreign_folders(tmp_path):
    src = _node21(tmp_path / "node21_ct_nodules")
    out = tmp_path / "ds"
    first = build_node21_dataset(src, out, series="all")
    stamp = (out / "images" / "n0000.npy").stat().st_mtime_ns
    assert build_node21_dataset(src, out, series="all") == first
    assert (out / "images" / "n0000.npy").stat().st_mtime_ns == stamp  # reused, not rewritten
    build_node21_dataset(src, out, series="heldout")                    # other settings: rebuilt
    assert not (out / "images" / "n0003.npy").exists()
    assert len(load_dataset(out).cases) == 2
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty") as err:
        build_node21_dataset(src, foreign)
    assert err.value.path == foreign


def test_node21_bad_input_names_the_file(tmp_path):
    src = _node21(tmp_path / "node21_ct_nodules")
    npz = src / "node21_ct_axial.npz"
    npz.write_bytes(b"not a zip file at all")
    with pytest.raises(ConfigError, match="unreadable or corrupt") as err:
        build_node21_dataset(src, tmp_path / "out")
    assert err.value.path == npz
    npz.unlink()
    with pytest.raises(ConfigError, match="missing") as err:
        build_node21_dataset(src, tmp_path / "out")
    assert err.value.path == npz
    src = _node21(tmp_path / "again")
    table = src / "nodules.csv"
    table.write_text("idx,name,padded\n0,nod0.mha,0\n")
    with pytest.raises(ConfigError, match="seriesuid") as err:
        build_node21_dataset(src, tmp_path / "out2")
    assert err.value.path == table


# -- kidney stones ----------------------------------------------------------------------------
def _uid(seconds: float, tail: int) -> str:
    ticks = int(637000000000000000 + seconds * 1e7)
    return f"1-3-46-670589-33-1-{ticks}00001-{tail}"


#: (id, split, group, boxes): ks0 and ks1 one second apart (one session, different source splits),
#: ks2 an hour later, ks3 a lesion-free slice of its own group. ks1 has two overlapping boxes.
KIDNEY = [
    ("ks0", "train", _uid(0, 1), [(10.0, 8.0, 18.0, 15.0)]),
    ("ks1", "valid", _uid(1, 2), [(20.5, 10.5, 28.5, 17.5), (26.0, 12.0, 31.0, 20.0)]),
    ("ks2", "train", _uid(3600, 3), [(4.0, 20.0, 12.0, 27.0), (30.0, 3.0, 36.0, 8.0)]),
    ("ks3", "train", _uid(7200, 4), []),
]


def _kidney(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(root / "boxes.csv", "w", newline="") as fb, open(root / "images.csv", "w", newline="") as fi:
        wb, wi = csv.writer(fb), csv.writer(fi)
        wb.writerow(["id", "split", "group", "file", "width", "height", "x0", "y0", "x1", "y1", "w_px", "h_px"])
        wi.writerow(["id", "split", "group", "orig_name", "width", "height", "n_boxes"])
        for cid, split, group, boxes in KIDNEY:
            gray = rng.integers(70, 90, (32, 40)).astype(np.uint8)
            for k, (x0, y0, x1, y1) in enumerate(boxes):
                if not (cid == "ks2" and k == 1):      # ks2's second box holds no stone: flat
                    cy, cx = int((y0 + y1) / 2), int((x0 + x1) / 2)
                    gray[cy - 1:cy + 2, cx - 1:cx + 2] = 250
                else:
                    gray[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] = 80
                wb.writerow([cid, split, group, f"images/{cid}.jpg", 40, 32, x0, y0, x1, y1, x1 - x0, y1 - y0])
            cv2.imwrite(str(root / "images" / f"{cid}.jpg"), np.dstack([gray] * 3), [cv2.IMWRITE_JPEG_QUALITY, 100])
            wi.writerow([cid, split, group, f"{cid}.jpg", 40, 32, len(boxes)])
    (root / "ATTRIBUTION.md").write_text("# Attribution: kidney test slices, CC BY 4.0\n")
    (root / "source_README.dataset.txt").write_text("License: CC BY 4.0\n")
    return root


def test_kidney_masks_lie_inside_boxes_and_sessions_keep_groups_together(tmp_path):
    src = _kidney(tmp_path / "kidney_stones_ct")
    summary = build_kidney_stones_dataset(src, tmp_path / "ds")
    ds = load_dataset(tmp_path / "ds")
    cases = {c.case_id: c for c in ds.cases}
    assert summary["patients"] == 3 and summary["lesion_free_cases"] == 1
    assert cases["ks0"].patient_id == cases["ks1"].patient_id != cases["ks2"].patient_id
    assert cases["ks0"].split == cases["ks1"].split                     # one patient, one split
    assert cases["ks1"].extra["source_split"] == "valid"
    assert not cases["ks3"].has_lesion and cases["ks3"].mask_path is None
    assert cases["ks2"].extra["mask_rules"] == ["otsu", "ellipse"]       # the flat box: the ellipse
    for case in ds.cases:
        mask = ds.read_mask(case)
        inside = np.zeros(mask.shape, bool)
        for box in case.extra["boxes_xyxy"]:
            rows, cols = box_slices(box, mask.shape)
            inside[rows, cols] = True
            assert mask[rows, cols].any()                               # every box got a stone
        assert not (mask & ~inside).any(), case.case_id                 # and nothing outside the boxes
    assert "kidney test slices" in (tmp_path / "ds" / "ATTRIBUTION.md").read_text()
    assert (tmp_path / "ds" / "source_README.dataset.txt").is_file()
    # a group never straddles the folds' train / val / test sets
    group_of = {c.case_id: c.extra["group"] for c in ds.cases}
    for fold in patient_folds(ds.cases, 2, seed=0, val_fraction=0.3):
        for group in set(group_of.values()):
            where = [name for name, part in (("train", fold.train), ("val", fold.val), ("test", fold.test))
                     if any(group_of[c.case_id] == group for c in part)]
            assert len(where) == 1, (group, where)
    by_group = build_kidney_stones_dataset(src, tmp_path / "by_group", patient_proxy="group")
    assert by_group["patients"] == 4
    assert all(c.patient_id == c.extra["group"] for c in load_dataset(tmp_path / "by_group").cases)


def _train_script():
    path = Path(__file__).resolve().parents[2] / "scripts" / "train_default_models.py"
    spec = importlib.util.spec_from_file_location("train_default_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kidney_stone_split_holds_out_a_stable_fifth_of_sessions():
    import subprocess
    import sys

    ids = [f"session-{i}" for i in range(2000)]
    splits = [kidney_stone_split(s) for s in ids]
    other = subprocess.run(                                         # another process: no per-process hash salt
        [sys.executable, "-c", "from lesion_studio.core.public_datasets import kidney_stone_split as k; "
         "print(','.join(k(f'session-{i}') for i in range(50)))"], capture_output=True, text=True, check=True)
    assert other.stdout.strip().split(",") == splits[:50]
    share = {name: splits.count(name) / len(ids) for name in ("train", "val", "test")}
    assert abs(share["test"] - KIDNEY_STONE_SPLIT["test"]) < 0.03
    assert abs(share["val"] - KIDNEY_STONE_SPLIT["val"]) < 0.03


def test_stone_training_view_never_holds_a_heldout_session(tmp_path, monkeypatch):
    """The stone inpainter's training data (scripts/train_default_models.py --task stone-inpaint):
    stone slices of train/val sessions only, every file present, split as kidney_stone_split says."""
    script = _train_script()
    src = _kidney(tmp_path / "data" / "kidney_stones_ct")
    build_kidney_stones_dataset(src, tmp_path / "probe")
    first = sorted({c.patient_id for c in load_dataset(tmp_path / "probe").cases})[0]
    # three sessions are too few for the 20 % hash split: hold out the first, whatever its hash says
    monkeypatch.setattr(public_datasets, "kidney_stone_split", lambda s: "test" if s == first else "train")
    summary = script.build_stone_dataset(tmp_path / "data", tmp_path / "work")
    view = load_dataset(tmp_path / "work" / "dataset")
    assert view.cases and all(c.patient_id != first for c in view.cases)
    assert all(c.has_lesion and c.split == "train" for c in view.cases)
    expected = {c.case_id for c in load_dataset(tmp_path / "probe").cases if c.has_lesion and c.patient_id != first}
    assert {c.case_id for c in view.cases} == expected
    assert summary["heldout_sessions"] == 1 and summary["cases"] == len(expected)
    probe = {c.case_id: c for c in load_dataset(tmp_path / "probe").cases}
    probe_ds = load_dataset(tmp_path / "probe")
    for case in view.cases:                                         # the training holes carry the 2 px rim
        tight, trained = probe_ds.read_mask(probe[case.case_id]), view.read_mask(case)
        assert (trained | ~tight).all() and trained.sum() > tight.sum()
    assert "kidney test slices" in (tmp_path / "work" / "dataset" / "ATTRIBUTION.md").read_text()
    assert script.build_stone_dataset(tmp_path / "data", tmp_path / "work") == summary  # idempotent


def test_kidney_bad_input_names_the_file(tmp_path):
    src = _kidney(tmp_path / "a")
    (src / "images" / "ks1.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(ConfigError, match="decoding failed") as err:
        build_kidney_stones_dataset(src, tmp_path / "out")
    assert err.value.path == src / "images" / "ks1.jpg"
    src = _kidney(tmp_path / "b")
    table = src / "boxes.csv"
    text = table.read_text().splitlines()
    text[1] = text[1].replace(",10.0,", ",ten,", 1)
    table.write_text("\n".join(text) + "\n")
    with pytest.raises(ConfigError, match="line 2: x0 must be a number") as err:
        build_kidney_stones_dataset(src, tmp_path / "out2")
    assert err.value.path == table
    table.unlink()
    with pytest.raises(ConfigError, match="missing") as err:
        build_kidney_stones_dataset(src, tmp_path / "out3")
    assert err.value.path == table


def test_sessions_cut_at_time_gaps_and_stone_mask_rules():
    groups = [_uid(0, 1), _uid(30, 2), _uid(200, 3), "not-a-philips-uid"]
    sessions = acquisition_sessions(groups, gap_s=60)
    assert sessions[groups[0]] == sessions[groups[1]] != sessions[groups[2]]
    assert sessions["not-a-philips-uid"] not in {sessions[g] for g in groups[:3]}
    gray = np.full((20, 20), 80, np.uint8)
    gray[8:11, 9:12] = 240
    mask, rule = stone_mask(gray, (7.5, 6.5, 13.5, 12.5))
    assert rule == "otsu" and np.array_equal(np.argwhere(mask), np.argwhere(gray == 240))
    flat, rule = stone_mask(np.full((20, 20), 80, np.uint8), (2.0, 3.0, 8.0, 7.0))
    assert rule == "ellipse" and flat.any() and not flat[:3].any() and not flat[:, 8:].any()


def test_node21_padded_to_a_square_of_air_for_whole_image_generators(tmp_path):
    src = _node21(tmp_path / "node21_ct_nodules")
    summary = build_node21_dataset(src, tmp_path / "pad", series="all", pad_to_px=17, pad_hu=-1024)
    assert summary["padded_to_px"] == 17
    ds = load_dataset(tmp_path / "pad")
    npz = np.load(src / "node21_ct_axial.npz")
    case = ds.cases[0]
    image, mask = np.load(case.image_path), ds.read_mask(case)
    assert image.shape == mask.shape == (17, 17)
    assert np.array_equal(image[2:14, 2:14], npz["images"][0, 2]) and np.array_equal(mask[2:14, 2:14], npz["masks"][0, 2] > 0)
    frame = np.ones((17, 17), bool)
    frame[2:14, 2:14] = False
    assert (image[frame] == -1024).all() and not mask[frame].any()
    with pytest.raises(ConfigError, match="smaller"):
        build_node21_dataset(src, tmp_path / "small", pad_to_px=8)
