"""Real images in three unit systems: an 8-bit NIH chest PNG, the 16-bit chest CR RG1_UNCR and
a CT slice in HU (pydicom-data / pydicom test files)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def real_images():
    from pydicom.data import get_testdata_file

    from lesion_studio.core.imageio import load_image

    return {
        "png": load_image(DATA / "nih_cxr_00000001_000.png"),
        "cr": load_image(get_testdata_file("RG1_UNCR.dcm")),
        "ct": load_image(get_testdata_file("CT_small.dcm")),
    }
