"""AnnotationDocument: painting, per-stroke undo/redo, bounded history, table sync, events."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage.measure import label as cc_label
from skimage.measure import regionprops

from lesion_studio.core.annotation import AnnotationDocument, BrushStroke, LesionMeta


def _state(doc: AnnotationDocument):
    return (
        doc.labels.copy(),
        doc.location.copy(),
        {i: doc.lesion_meta(i) for i in doc.lesion_ids},
        doc.lesion_table(),
    )


def _assert_same(state, doc: AnnotationDocument) -> None:
    labels, location, meta, table = state
    np.testing.assert_array_equal(doc.labels, labels)
    np.testing.assert_array_equal(doc.location, location)
    assert {i: doc.lesion_meta(i) for i in doc.lesion_ids} == meta
    assert doc.lesion_table() == table


def _table_from_scratch(doc: AnnotationDocument):
    fresh = AnnotationDocument.from_arrays(
        doc.labels, spacing_mm=doc.spacing_mm, meta={i: doc.lesion_meta(i) for i in doc.lesion_ids}
    )
    return fresh.lesion_table()


# ---------------------------------------------------------------- hypothesis: undo/redo exact

SHAPES = [(29, 37), (3, 21, 26)]
coord = st.floats(min_value=-6, max_value=45, allow_nan=False)
point = st.tuples(coord, coord)

op_strategy = st.one_of(
    st.tuples(
        st.just("brush"),
        st.lists(point, min_size=1, max_size=4),
        st.floats(0, 6),
        st.integers(1, 5),
        st.booleans(),
        st.integers(0, 2),
    ),
    st.tuples(
        st.just("eraser"),
        st.lists(point, min_size=1, max_size=4),
        st.floats(0, 6),
        st.one_of(st.none(), st.integers(1, 5)),
        st.integers(0, 2),
    ),
    st.tuples(st.just("fill"), st.integers(0, 30), st.integers(0, 36), st.integers(0, 5), st.integers(0, 2)),
    st.tuples(st.just("lasso"), st.lists(point, min_size=3, max_size=6), st.integers(0, 5), st.booleans(), st.integers(0, 2)),
    st.tuples(st.just("location"), st.lists(point, min_size=1, max_size=3), st.floats(0, 5), st.booleans(), st.integers(0, 2)),
    st.tuples(st.just("class"), st.integers(1, 5), st.sampled_from(["nodule", "stone", "mass"])),
    st.tuples(st.just("delete"), st.integers(1, 5)),
    st.tuples(st.just("new"), st.sampled_from(["nodule", "hemorrhage"])),
)


def _apply(doc: AnnotationDocument, op) -> None:
    kind = op[0]
    n = doc.n_slices
    if kind == "brush":
        _, points, radius, label, preserve, s = op
        stroke = BrushStroke(doc, label=label, radius_px=radius, slice=s % n, preserve_other=preserve)
        stroke.press(points[0])
        for p in points[1:]:
            stroke.move(p)
        stroke.release()
    elif kind == "eraser":
        _, points, radius, only, s = op
        stroke = BrushStroke(doc, erase=True, radius_px=radius, slice=s % n, only_label=only)
        stroke.press(points[0])
        for p in points[1:]:
            stroke.move(p)
        stroke.release()
    elif kind == "fill":
        _, r, c, label, s = op
        doc.fill((r % doc.plane_shape[0], c % doc.plane_shape[1]), label, slice=s % n)
    elif kind == "lasso":
        _, points, label, preserve, s = op
        doc.fill_polygon(points, label, slice=s % n, preserve_other=preserve)
    elif kind == "location":
        _, points, radius, erase, s = op
        stroke = BrushStroke(doc, label=1, erase=erase, radius_px=radius, slice=s % n, layer="location")
        stroke.press(points[0])
        for p in points[1:]:
            stroke.move(p)
        stroke.release()
    elif kind == "class":
        if doc.lesion_meta(op[1]) is not None:
            doc.set_lesion_class(op[1], op[2])
    elif kind == "delete":
        if doc.lesion_meta(op[1]) is not None:
            doc.delete_lesion(op[1])
    elif kind == "new":
        doc.new_lesion(op[1])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(SHAPES), ops=st.lists(op_strategy, min_size=1, max_size=14))
def test_undo_all_then_redo_all_is_exact(shape, ops):
    doc = AnnotationDocument(shape, (1.0,) * (len(shape) - 2) + (0.5, 0.7), tile_px=8)
    states = [_state(doc)]
    for op in ops:
        before = len(doc.history)
        _apply(doc, op)
        assert not doc.in_transaction
        if len(doc.history) != before:
            states.append(_state(doc))
        else:  # a no-op must leave everything as it was
            _assert_same(states[-1], doc)
        assert doc.lesion_table() == _table_from_scratch(doc)

    final = _state(doc)
    for expected in reversed(states[:-1]):
        assert doc.undo()
        _assert_same(expected, doc)
        assert doc.lesion_table() == _table_from_scratch(doc)
    assert not doc.undo()
    assert not doc.labels.any() and not doc.location.any()
    assert doc.lesion_ids == () and doc.lesion_table() == []

    for expected in states[1:]:
        assert doc.redo()
        _assert_same(expected, doc)
    assert not doc.redo()
    _assert_same(final, doc)


# ---------------------------------------------------------------- strokes and shapes


def test_far_apart_points_give_a_connected_segment():
    doc = AnnotationDocument((200, 300))
    stroke = BrushStroke(doc, label=3, radius_px=2)
    stroke.press((10, 10))
    stroke.move((190, 290))  # one fast mouse move across the image
    stroke.release()
    painted = doc.labels == 3
    assert cc_label(painted, connectivity=1).max() == 1
    # every pixel on the straight line between the points is painted
    t = np.linspace(0, 1, 2000)
    rows = np.rint(10 + 180 * t).astype(int)
    cols = np.rint(10 + 280 * t).astype(int)
    assert painted[rows, cols].all()
    # and nothing farther than the radius (+ rounding) from the line
    rr, cc = np.nonzero(painted)
    dist = np.abs(280 * (rr - 10) - 180 * (cc - 10)) / math.hypot(180, 280)
    assert dist.max() <= 2.0 + 1e-6


def test_brush_in_mm_with_anisotropic_spacing_is_an_ellipse():
    doc = AnnotationDocument((100, 100), spacing_mm=(0.5, 1.0))  # rows 0.5 mm, cols 1 mm
    doc.paint_segment((50, 50), (50, 50), 1, radius_mm=5.0)
    rows = np.flatnonzero(doc.labels.any(axis=1))
    cols = np.flatnonzero(doc.labels.any(axis=0))
    assert (rows[0], rows[-1]) == (40, 60)  # 5 mm / 0.5 mm = 10 px each side
    assert (cols[0], cols[-1]) == (45, 55)  # 5 mm / 1 mm = 5 px each side
    row = doc.lesion(1)
    assert row.area_mm2 == pytest.approx(math.pi * 5 * 5, rel=0.05)


def test_brush_in_mm_without_spacing_is_refused():
    doc = AnnotationDocument((10, 10))
    with pytest.raises(ValueError, match="spacing"):
        doc.paint_segment((5, 5), (5, 5), 1, radius_mm=1.0)


def test_painting_stays_in_the_current_slice():
    doc = AnnotationDocument((4, 30, 30))
    doc.paint_segment((15, 15), (15, 25), 2, radius_px=4, slice=2)
    assert doc.labels[2].any()
    assert not doc.labels[[0, 1, 3]].any()
    assert doc.lesion(2).slice == 2 and doc.lesion(2).slices == (2,)


def test_preserve_other_lesions():
    doc = AnnotationDocument((40, 40))
    doc.paint_segment((20, 10), (20, 30), 1, radius_px=3)
    first = doc.labels == 1
    doc.paint_segment((10, 20), (30, 20), 2, radius_px=3, preserve_other=True)
    np.testing.assert_array_equal(doc.labels == 1, first)
    assert (doc.labels == 2).any()
    doc.paint_segment((10, 20), (30, 20), 2, radius_px=3)  # without it, 2 paints over 1
    assert ((doc.labels == 2) & first).any()


def test_eraser_only_label_leaves_others():
    doc = AnnotationDocument((40, 40))
    doc.paint_segment((20, 10), (20, 30), 1, radius_px=3)
    doc.paint_segment((10, 20), (30, 20), 2, radius_px=3)
    twos = doc.labels == 2
    doc.erase_segment((20, 0), (20, 39), radius_px=5, only_label=1)
    np.testing.assert_array_equal(doc.labels == 2, twos)
    assert not (doc.labels == 1).any()
    assert doc.lesion_ids == (2,)  # an erased-out lesion leaves the table


def test_fill_is_four_connected():
    doc = AnnotationDocument((10, 10))
    # a diagonal line of label 1 splits the plane for 4-connectivity only
    for i in range(10):
        doc.fill_polygon([(i - 0.4, i - 0.4), (i - 0.4, i + 0.4), (i + 0.4, i + 0.4), (i + 0.4, i - 0.4)], 1)
    assert (np.diag(doc.labels) == 1).all() and doc.labels.sum() == 10
    doc.fill((0, 9), 2)
    assert (doc.labels[np.triu_indices(10, 1)] == 2).all()
    assert (doc.labels[np.tril_indices(10, -1)] == 0).all()


def test_lasso_fills_polygon():
    doc = AnnotationDocument((50, 50))
    doc.fill_polygon([(10, 10), (10, 40), (40, 40), (40, 10)], 4)
    # vertices are pixel centres and the boundary is inside: rows and cols 10..40
    assert doc.lesion(4).area_px == 31 * 31
    assert doc.lesion(4).bbox == (10, 41, 10, 41)


# ---------------------------------------------------------------- history


def test_stroke_is_one_undo_step():
    doc = AnnotationDocument((60, 60))
    stroke = BrushStroke(doc, label=1, radius_px=3)
    stroke.press((5, 5))
    for k in range(1, 10):
        stroke.move((5 + 5 * k, 5 + 5 * k))
    stroke.release()
    assert len(doc.history) == 1 and doc.history.undo_name == "brush"
    doc.undo()
    assert not doc.labels.any()


def test_history_memory_is_proportional_to_the_change():
    doc = AnnotationDocument((2048, 2048))
    stroke = BrushStroke(doc, label=1, radius_px=10)
    stroke.press((1000, 1000))
    stroke.move((1000, 1030))
    stroke.release()
    assert 0 < doc.history.nbytes < doc.labels.nbytes / 1000
    # a fill of the whole background stores uniform blocks (one value per tile), not two
    # copies of the map; what is left is per-tile bookkeeping and the tiles around lesion 1
    doc.fill((0, 0), 2)
    assert doc.history.nbytes < doc.labels.nbytes / 20
    doc.undo()
    doc.undo()
    assert not doc.labels.any()


def test_history_cap_drops_oldest():
    doc = AnnotationDocument((40, 40), max_history=5)
    for k in range(8):
        doc.paint_segment((4 * k + 2, 5), (4 * k + 2, 5), k + 1, radius_px=1)
    assert len(doc.history) == 5
    while doc.undo():
        pass
    assert set(np.unique(doc.labels)) == {0, 1, 2, 3}


def test_default_history_keeps_200_steps():
    doc = AnnotationDocument((30, 30))
    for k in range(205):
        doc.paint_segment((k % 30, (k // 30) * 4), (k % 30, (k // 30) * 4), 1 + k % 2, radius_px=0.5)
    assert len(doc.history) == 200


def test_metadata_changes_are_undoable():
    doc = AnnotationDocument((20, 20))
    label = doc.new_lesion("stone")
    doc.paint_segment((10, 10), (10, 10), label, radius_px=3)
    doc.set_lesion_class(label, "mass")
    doc.set_lesion_origin(label, "synthetic")
    assert doc.lesion(label).class_name == "mass" and doc.lesion(label).origin == "synthetic"
    doc.undo()
    assert doc.lesion(label).origin == "drawn"
    doc.undo()
    assert doc.lesion(label).class_name == "stone"
    doc.redo()
    assert doc.lesion(label).class_name == "mass"


def test_delete_lesion_across_slices_and_undo():
    doc = AnnotationDocument((3, 20, 20))
    label = doc.new_lesion("nodule")
    for s in range(3):
        doc.paint_segment((10, 10), (10, 10), label, radius_px=2 + s, slice=s)
    assert doc.lesion(label).slices == (0, 1, 2) and doc.lesion(label).slice == 2
    before = doc.labels.copy()
    doc.delete_lesion(label)
    assert not doc.labels.any() and doc.lesion(label) is None and label not in doc.lesion_ids
    doc.undo()
    np.testing.assert_array_equal(doc.labels, before)
    assert doc.lesion_meta(label) == LesionMeta("nodule", "drawn")


def test_exception_in_transaction_rolls_back():
    doc = AnnotationDocument((20, 20))
    with pytest.raises(RuntimeError):
        with doc.transaction("brush"):
            doc.paint_segment((5, 5), (5, 15), 1, radius_px=2)
            raise RuntimeError("tool crashed")
    assert not doc.labels.any() and not doc.can_undo and doc.lesion_table() == []


def test_cancelled_stroke_leaves_nothing():
    doc = AnnotationDocument((20, 20))
    stroke = BrushStroke(doc, label=1, radius_px=2)
    stroke.press((5, 5))
    stroke.move((15, 15))
    stroke.cancel()
    assert not doc.labels.any() and not doc.can_undo


def test_new_lesion_ids_do_not_collide():
    doc = AnnotationDocument((20, 20))
    doc.paint_segment((5, 5), (5, 5), 7, radius_px=1)
    assert doc.new_lesion() == 8
    assert doc.new_lesion() == 9


# ---------------------------------------------------------------- events


def test_events_report_changed_regions():
    doc = AnnotationDocument((100, 100))
    events = []
    doc.events.connect(events.append)
    stroke = BrushStroke(doc, label=1, radius_px=3)
    stroke.press((50, 50))
    stroke.move((50, 70))
    assert [e.kind for e in events] == ["pixels", "pixels"]
    assert events[-1].bbox == (47, 54, 47, 74)
    stroke.release()
    assert [e.kind for e in events[2:]] == ["lesions", "history"]
    assert events[2].ids == (1,)
    events.clear()
    doc.undo()
    pixels = [e for e in events if e.kind == "pixels"]
    assert len(pixels) == 1 and pixels[0].layer == "labels" and pixels[0].slice == 0
    r0, r1, c0, c1 = pixels[0].bbox
    assert r0 <= 47 and r1 >= 54 and c0 <= 47 and c1 >= 74


# ---------------------------------------------------------------- table


def test_disc_measurements_by_hand():
    doc = AnnotationDocument((101, 101), spacing_mm=(0.5, 0.8))
    doc.paint_segment((50, 50), (50, 50), 1, radius_px=10)
    row = doc.lesion(1)
    # lattice points with dy^2 + dx^2 <= 100: Gauss circle problem N(10) = 317
    assert row.area_px == 317
    assert row.equivalent_diameter_px == pytest.approx(math.sqrt(4 * 317 / math.pi))  # 20.09
    assert row.area_mm2 == pytest.approx(317 * 0.5 * 0.8)  # 126.8 mm^2
    assert row.equivalent_diameter_mm == pytest.approx(math.sqrt(4 * 126.8 / math.pi))  # 12.71 mm
    assert row.bbox == (40, 61, 40, 61)
    assert row.centroid_rc == pytest.approx((50.0, 50.0))
    assert row.slice == 0


def test_table_matches_regionprops_and_unknown_spacing_gives_no_mm():
    rng = np.random.default_rng(0)
    doc = AnnotationDocument((80, 90))
    for label in range(1, 7):
        a, b = rng.uniform(0, 80, 2), rng.uniform(0, 90, 2)
        doc.paint_segment((a[0], b[0]), (a[1], b[1]), label, radius_px=rng.uniform(1, 6))
    rows = {r.id: r for r in doc.lesion_table()}
    props = regionprops(doc.labels.astype(np.int32))
    assert set(rows) == {p.label for p in props}
    for p in props:
        row = rows[p.label]
        assert row.area_px == p.area
        assert row.equivalent_diameter_px == pytest.approx(p.equivalent_diameter_area)
        assert row.bbox == (p.bbox[0], p.bbox[2], p.bbox[1], p.bbox[3])
        assert row.centroid_rc == pytest.approx(p.centroid)
        assert row.moment_diameter_px == pytest.approx((p.axis_major_length + p.axis_minor_length) / 2)
        assert row.area_mm2 is None and row.equivalent_diameter_mm is None
        assert row.moment_diameter_mm is None


def test_both_diameters_of_a_known_ellipse():
    """Semi-axes 24 × 12 px: moment diameter ≈ 24 + 12 = 36, area-equivalent ≈ 2·sqrt(24·12)."""
    from lesion_studio.core.geometry.size_modulation import moment_diameter
    from tests.core._lesion_strategies import ellipse_mask

    spacing = (0.5, 0.8)
    mask = ellipse_mask((101, 121), (50, 60), (24, 12), 0.4)
    doc = AnnotationDocument((101, 121), spacing_mm=spacing)
    doc.paint_mask(mask, 1)
    row = doc.lesion(1)
    # the size control's definition, exactly (P3 d_init), and the disc of equal area
    assert row.moment_diameter_px == pytest.approx(moment_diameter(mask), rel=1e-9)
    assert row.moment_diameter_mm == pytest.approx(moment_diameter(mask, spacing), rel=1e-9)
    assert row.moment_diameter_px == pytest.approx(36.0, rel=0.02)
    assert row.equivalent_diameter_px == pytest.approx(2 * math.sqrt(24 * 12), rel=0.02)
    assert row.equivalent_diameter_mm == pytest.approx(math.sqrt(4 * mask.sum() * 0.4 / math.pi))
    assert row.moment_diameter_px > row.equivalent_diameter_px  # elongated: the two differ


@settings(max_examples=40, deadline=None)
@given(
    seed=st.tuples(st.integers(0, 23), st.integers(0, 31)),
    values=st.lists(st.integers(0, 2), min_size=24 * 32, max_size=24 * 32),
)
def test_flood_region_matches_skimage_flood(seed, values):
    from skimage.segmentation import flood

    from lesion_studio.core.annotation.geometry import flood_region

    plane = np.array(values, dtype=np.uint16).reshape(24, 32)
    (r0, r1, c0, c1), mask = flood_region(plane, seed)
    full = np.zeros(plane.shape, bool)
    full[r0:r1, c0:c1] = mask
    np.testing.assert_array_equal(full, flood(plane, seed, connectivity=1))


def test_press_outside_the_volume_leaves_no_open_transaction():
    doc = AnnotationDocument((2, 10, 10))
    stroke = BrushStroke(doc, label=1, radius_px=2, slice=5)
    with pytest.raises(IndexError):
        stroke.press((5, 5))
    assert not doc.in_transaction and not stroke.active


def test_label_colors_follow_classes():
    doc = AnnotationDocument((10, 10))
    doc.add_class("cyst", (1, 2, 3))
    a = doc.new_lesion("cyst")
    doc.paint_segment((5, 5), (5, 5), a + 2, radius_px=1)  # painted without new_lesion
    lut = doc.label_colors(alpha=200)
    assert lut.shape == (a + 3, 4)
    assert tuple(lut[0]) == (0, 0, 0, 0)
    assert tuple(lut[a]) == (1, 2, 3, 200)
    assert tuple(lut[a + 2]) == (*doc.lesion_class(doc.current_class).color_rgb, 200)
    assert tuple(lut[a + 1]) == (0, 0, 0, 0)  # unused id


def test_model_layer_imports_neither_qt_nor_torch():
    import subprocess
    import sys

    code = (
        "import sys, lesion_studio.core.annotation as a; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'torch', 'qtpy')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
