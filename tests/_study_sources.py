"""Small real-pixel sources for reader-study builds in tests (the LIDC held-out fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LIDC_AXIAL = Path(__file__).parent / "data" / "lidc_heldout_axial.npz"


def lidc_dihedral_dataset(folder: Path) -> Path:
    """A lesion-studio dataset of the 3 held-out LIDC slices in their 8 rotations/flips
    (24 images, each its own "patient", HU as int16 .npy, 1 mm): enough lesions for a build
    with a few cases per class, a no-give-away check and a machine reader, all in seconds.
    Test data only: real and synthetic sides share the 3 underlying nodules."""
    with np.load(LIDC_AXIAL) as data:
        images, masks = data["images"], data["masks"]
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    cases = []
    for i, (image, mask) in enumerate(zip(images, masks)):
        for k in range(8):
            img, msk = np.rot90(image, k % 4), np.rot90(mask, k % 4)
            if k >= 4:
                img, msk = img[:, ::-1], msk[:, ::-1]
            name = f"lidc{i}_{k}"
            np.save(folder / "images" / f"{name}.npy", np.ascontiguousarray(img, dtype=np.int16))
            np.save(folder / "masks" / f"{name}.npy", np.ascontiguousarray(msk > 0, dtype=np.uint8))
            cases.append({"id": name, "image": f"images/{name}.npy", "mask": f"masks/{name}.npy",
                          "patient_id": f"P{i}{k}", "has_lesion": True, "split": "test"})
    doc = {"format": "lesion-studio-dataset", "version": 1, "modality": "CT", "spacing_mm": [1.0, 1.0],
           "description": "test: LIDC held-out slices, rotated and flipped", "cases": cases}
    (folder / "dataset.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return folder


def study_toml(path: Path, *, out_dir: str, source: str, **study_keys) -> Path:
    """Write a study TOML: `source` is the `[real]` line (e.g. 'npz = "..."'), `study_keys` go to [study]."""
    lines = ["[study]", f'out_dir = "{out_dir}"']
    for key, value in study_keys.items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines += ["[real]", source]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
