"""Session files: JSON + masks beside it, restored exactly; clear errors when broken."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lesion_studio.core.annotation import AnnotationDocument, BrushStroke
from lesion_studio.core.annotation.mask_io import save_png
from lesion_studio.core.annotation.session import SessionState, load_session, save_session
from lesion_studio.core.errors import MaskError, SessionError
from lesion_studio.core.image import Window


def _doc(shape, spacing_mm) -> AnnotationDocument:
    doc = AnnotationDocument(shape, spacing_mm, geometry=None)
    doc.add_class("calcification", (10, 20, 30))
    a = doc.new_lesion("stone")
    b = doc.new_lesion("calcification", origin="synthetic")
    doc.new_lesion("mass")  # allocated, not painted yet: kept with its metadata
    last = doc.n_slices - 1
    stroke = BrushStroke(doc, label=a, radius_px=3, slice=last)
    stroke.press((5, 5))
    stroke.move((20, 25))
    stroke.release()
    doc.fill_polygon([(22, 2), (22, 12), (30, 12)], b, slice=0)
    doc.paint_segment((10, 30), (25, 30), 1, radius_px=4, layer="location", slice=0)
    doc.paint_segment((2, 2), (2, 2), 300, radius_px=1, slice=0)  # an id above 255: uint16 PNG
    doc.current_class = "calcification"
    return doc


def _assert_same_doc(a: AnnotationDocument, b: AnnotationDocument) -> None:
    assert a.shape == b.shape and a.spacing_mm == b.spacing_mm
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.location, b.location)
    assert a.lesion_ids == b.lesion_ids
    assert [a.lesion_meta(i) for i in a.lesion_ids] == [b.lesion_meta(i) for i in b.lesion_ids]
    assert a.classes == b.classes and a.current_class == b.current_class
    assert a.lesion_table() == b.lesion_table()


@pytest.mark.parametrize("shape,spacing", [((32, 40), (0.4, 0.6)), ((3, 32, 40), (2.0, 0.4, 0.6))])
def test_session_round_trip(tmp_path, shape, spacing):
    doc = _doc(shape, spacing)
    state = SessionState(
        image_path=str(tmp_path / "images" / "ct.dcm"),
        window=Window(center=40.0, width=400.0),
        current_slice=2 if len(shape) == 3 else 0,
        extra={"tool": "brush", "radius_mm": 2.5},
    )
    path = save_session(tmp_path / "case.json", doc, state)
    loaded, loaded_state = load_session(path)
    _assert_same_doc(doc, loaded)
    assert loaded_state == state
    assert not loaded.can_undo  # history is not part of a session
    files = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    suffix = "nii.gz" if len(shape) == 3 else "png"
    assert len(files) == 3 and files[-1] == "case.json"
    assert all(f.endswith(suffix) for f in files[:-1])


def test_saving_again_replaces_masks_and_spares_other_sessions(tmp_path):
    doc = _doc((20, 30), None)
    save_session(tmp_path / "case.b.json", doc, SessionState())
    others = {p.name for p in tmp_path.iterdir()}
    save_session(tmp_path / "case.json", doc, SessionState())
    doc.paint_segment((10, 10), (10, 10), 5, radius_px=2)
    save_session(tmp_path / "case.json", doc, SessionState())
    names = {p.name for p in tmp_path.iterdir()}
    assert others <= names
    mine = names - others
    assert len(mine) == 3  # one JSON and the two masks it names; older masks removed
    data = json.loads((tmp_path / "case.json").read_text())
    assert {data["labels_file"], data["location_file"], "case.json"} == mine
    assert load_session(tmp_path / "case.json")[0].lesion(5) is not None


def test_missing_mask_file_is_a_clear_error(tmp_path):
    path = save_session(tmp_path / "case.json", _doc((20, 30), None), SessionState())
    labels_file = json.loads(path.read_text())["labels_file"]
    (tmp_path / labels_file).unlink()
    with pytest.raises(MaskError, match="missing") as info:
        load_session(path)
    assert labels_file in str(info.value)


def test_mismatched_mask_shape_names_both_sizes(tmp_path):
    path = save_session(tmp_path / "case.json", _doc((20, 30), None), SessionState())
    labels_file = json.loads(path.read_text())["labels_file"]
    save_png(np.zeros((20, 25), np.uint8), tmp_path / labels_file)
    with pytest.raises(MaskError, match="mask is 25×20 but the session's image is 30×20"):
        load_session(path)


def test_broken_session_files(tmp_path):
    with pytest.raises(SessionError, match="not found"):
        load_session(tmp_path / "nope.json")
    (tmp_path / "junk.json").write_text("{ half a file")
    with pytest.raises(SessionError, match="junk.json"):
        load_session(tmp_path / "junk.json")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(SessionError, match="not a lesion-studio session"):
        load_session(tmp_path / "other.json")
    path = save_session(tmp_path / "case.json", _doc((20, 30), None), SessionState())
    data = json.loads(path.read_text())
    data["labels_file"] = "../../etc/passwd"
    path.write_text(json.dumps(data))
    with pytest.raises(SessionError, match="invalid mask file name"):
        load_session(path)


def test_image_path_follows_a_moved_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ct.png").write_bytes(b"x")
    save_session(tmp_path / "a" / "case.json", _doc((20, 30), None), SessionState(image_path=str(tmp_path / "a" / "ct.png")))
    (tmp_path / "a").rename(tmp_path / "b")
    _, state = load_session(tmp_path / "b" / "case.json")
    assert Path(state.image_path) == tmp_path / "b" / "ct.png"
