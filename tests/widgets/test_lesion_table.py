"""Lesion table widget: both diameters, with headers that name their definition."""

from __future__ import annotations

import pytest

from lesion_studio.core.annotation import AnnotationDocument
from lesion_studio.widgets.lesion_table import COLUMN_TOOLTIPS, COLUMNS, LesionTable
from tests.core._lesion_strategies import ellipse_mask


def test_moment_and_area_equivalent_diameters_are_shown_in_px_and_mm(qtbot):
    doc = AnnotationDocument((101, 121), spacing_mm=(0.5, 0.5))
    doc.paint_mask(ellipse_mask((101, 121), (50, 60), (24, 12), 0.4), 1)
    record = doc.lesion(1)
    table = LesionTable()
    qtbot.addWidget(table)
    table.show_records([record], 1)
    headers = [table.table.horizontalHeaderItem(c).text() for c in range(table.table.columnCount())]
    assert headers == list(COLUMNS)
    cells = {h: table.table.item(0, c).text() for c, h in enumerate(headers)}
    assert cells["Ø moment (px)"] == f"{record.moment_diameter_px:.1f}"
    assert cells["Ø moment (mm)"] == f"{record.moment_diameter_mm:.2f}"
    assert cells["Ø area-eq. (px)"] == f"{record.equivalent_diameter_px:.1f}"
    assert cells["Ø area-eq. (mm)"] == f"{record.equivalent_diameter_mm:.2f}"
    assert record.moment_diameter_mm == pytest.approx(0.5 * record.moment_diameter_px)
    for title in ("Ø moment (px)", "Ø moment (mm)", "Ø area-eq. (px)", "Ø area-eq. (mm)"):
        tip = table.table.horizontalHeaderItem(headers.index(title)).toolTip()
        assert tip == COLUMN_TOOLTIPS[title] and tip


def test_no_spacing_shows_no_millimetres(qtbot):
    doc = AnnotationDocument((60, 60))
    doc.paint_mask(ellipse_mask((60, 60), (30, 30), (10, 6)), 1)
    table = LesionTable()
    qtbot.addWidget(table)
    table.show_records(doc.lesion_table(), 1)
    mm = [COLUMNS.index("Ø moment (mm)"), COLUMNS.index("Ø area-eq. (mm)"), COLUMNS.index("area mm²")]
    assert [table.table.item(0, c).text() for c in mm] == ["—", "—", "—"]
