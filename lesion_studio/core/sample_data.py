"""Locate the real sample DICOM files shipped by `pydicom` and the `pydicom-data` package.

Paths are resolved on disk only: nothing is downloaded (pydicom's own `get_testdata_file`
may try the network for files that are not installed).
"""

from __future__ import annotations

from pathlib import Path

#: The demo images offered on the start page: a computed-radiography chest image and a head CT.
DEMO_RADIOGRAPH = "RG1_UNCR.dcm"
DEMO_CT = "693_UNCR.dcm"
DEMO_IMAGES: dict[str, str] = {
    "Chest radiograph (CR)": DEMO_RADIOGRAPH,
    "Head CT slice": DEMO_CT,
}


def pydicom_data_dir() -> Path:
    """Folder of the `pydicom-data` package's files (import name `data_store`)."""
    import data_store

    return Path(data_store.__file__).resolve().parent / "data"


def pydicom_test_files_dir() -> Path:
    """Folder of the small test files that ship inside `pydicom` itself."""
    import pydicom

    return Path(pydicom.__file__).resolve().parent / "data" / "test_files"


def sample_file(name: str) -> Path:
    """Path of a named sample file from either collection; FileNotFoundError when absent."""
    for folder in (pydicom_data_dir(), pydicom_test_files_dir()):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"sample file {name!r} is not installed; it ships with the 'pydicom-data' package "
        "(pip install pydicom-data)"
    )


def demo_image_path(name: str = DEMO_RADIOGRAPH) -> Path:
    """Path of a demo image (default: the chest radiograph)."""
    return sample_file(name)
