"""An nnU-Net v2 raw dataset: `DatasetNNN_Name/imagesTr/ID_0000.EXT`, `labelsTr/ID.EXT`, `dataset.json`.

Follows nnU-Net v2's documentation/dataset_format.md: one channel (`_0000`), labels
`{"background": 0, "lesion": 1}`, `numTraining` equal to the number of training cases and
`file_ending` shared by every file. `.nii.gz` keeps the source geometry and float values;
`.png` gives 16-bit images read by nnU-Net's NaturalImage2DIO.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lesion_studio.core.annotation.mask_io import encode_png, save_nifti
from lesion_studio.core.export.atomic import write_bytes, write_json
from lesion_studio.core.export.item import LESION_LABEL, ExportItem
from lesion_studio.core.export.nifti import save_image_nifti
from lesion_studio.core.export.png import encode_png16

FOLDER = "nnunet"
REQUIRED_FIELDS = ("channel_names", "labels", "numTraining", "file_ending")


def dataset_dir(out_dir: Path, dataset_id: int, name: str) -> Path:
    return out_dir / FOLDER / f"Dataset{dataset_id:03d}_{name}"


def channel_name(modality: str) -> str:
    """nnU-Net normalizes a channel named "CT" with CT statistics, any other name by z-score."""
    return "CT" if modality.upper() == "CT" else (modality or "xray")


def write(item: ExportItem, out_dir: Path, *, dataset_id: int, name: str, file_ending: str) -> list[Path]:
    root = dataset_dir(out_dir, dataset_id, name)
    image = root / "imagesTr" / f"{item.item_id}_0000{file_ending}"
    label = root / "labelsTr" / f"{item.item_id}{file_ending}"
    if file_ending == ".png":
        write_bytes(image, encode_png16(item.png_image()))
        write_bytes(label, encode_png(item.mask))
    else:
        save_image_nifti(item.image, image, item.geometry)
        label.parent.mkdir(parents=True, exist_ok=True)
        save_nifti(item.mask, label, item.geometry)
    return [image, label]


def dataset_json(root: Path, *, modality: str, file_ending: str, name: str, description: str) -> dict[str, Any]:
    """The dataset.json content for what `labelsTr` holds now."""
    n = sum(1 for p in (root / "labelsTr").glob(f"*{file_ending}") if not p.name.startswith("."))
    return {
        "channel_names": {"0": channel_name(modality)},
        "labels": {"background": 0, "lesion": LESION_LABEL},
        "numTraining": n,
        "file_ending": file_ending,
        "name": name,
        "description": description,
    }


def finalize(out_dir: Path, *, dataset_id: int, name: str, file_ending: str, modality: str,
             description: str) -> Path:
    """Write dataset.json once every item is in place."""
    root = dataset_dir(out_dir, dataset_id, name)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    doc = dataset_json(root, modality=modality, file_ending=file_ending, name=name, description=description)
    return write_json(root / "dataset.json", doc)
