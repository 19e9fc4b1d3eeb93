"""Build the bundled real-stone library from the kidney-stone CT slices.

Reads `kidney_stones_ct/` from a data folder (default `../shared/data`), builds the dataset
(`build_kidney_stones_dataset`: Otsu stone masks in the boxes, patient = acquisition session),
keeps the sessions that `kidney_stone_split` puts in `train` or `val` (never `test`: the
held-out sessions of `benchmarks/stone_realism.py`), and writes

- `lesion_studio/resources/stones/real_stones.npz`: every stone outline of at least
  MIN_STONE_AREA_PX (grown by its 2 px rim) whose peak rises MIN_STONE_PEAK above its
  background, as its contrast over its own background
  (`stone_contrast`, uint8 display units) and its outline, ragged, with its case and session;
- `lesion_studio/resources/stones/ATTRIBUTION.md`: the source's attribution plus what was derived.

Usage: python scripts/build_stone_library.py [DATA_DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT_DIR = REPO / "lesion_studio" / "resources" / "stones"
#: Pixels of background kept around each outline (enough for the Navier-Stokes background).
MARGIN_PX = 6


def build(data: Path, out_dir: Path) -> dict:
    """Write the library and its attribution into `out_dir`; returns the library's meta."""
    import cv2

    from lesion_studio.core.classical.stone_library import (
        LIBRARY_FORMAT, MIN_STONE_AREA_PX, MIN_STONE_PEAK, stone_contrast, stone_outlines,
    )
    from lesion_studio.core.public_datasets import (
        KIDNEY_STONE_SPLIT, STONE_RIM_PX, build_kidney_stones_dataset, kidney_stone_split,
    )

    contrast, outlines, shapes, names, sessions = [], [], [], [], []
    too_faint = 0
    with tempfile.TemporaryDirectory() as tmp:
        ds = Path(tmp) / "kidney_stones_ct"
        summary = build_kidney_stones_dataset(data / "kidney_stones_ct", ds)
        doc = json.loads((ds / "dataset.json").read_text())
        attribution = (ds / "ATTRIBUTION.md").read_text(encoding="utf-8")
        held = sorted({c["patient_id"] for c in doc["cases"] if kidney_stone_split(c["patient_id"]) == "test"})
        for case in doc["cases"]:
            if not case["has_lesion"] or kidney_stone_split(case["patient_id"]) == "test":
                continue
            image = cv2.imread(str(ds / case["image"]), cv2.IMREAD_UNCHANGED).astype(np.float32)
            mask = cv2.imread(str(ds / case["mask"]), cv2.IMREAD_UNCHANGED) > 0
            for k, outline in enumerate(stone_outlines(mask)):
                rows, cols = np.flatnonzero(outline.any(1)), np.flatnonzero(outline.any(0))
                r0, r1 = max(rows[0] - MARGIN_PX, 0), min(rows[-1] + 1 + MARGIN_PX, outline.shape[0])
                c0, c1 = max(cols[0] - MARGIN_PX, 0), min(cols[-1] + 1 + MARGIN_PX, outline.shape[1])
                crop, crop_outline = image[r0:r1, c0:c1], outline[r0:r1, c0:c1]
                stone = np.clip(np.rint(stone_contrast(crop, crop_outline)), 0, 255).astype(np.uint8)
                if stone[crop_outline].max() < MIN_STONE_PEAK:  # not hyperdense: tissue, not a stone
                    too_faint += 1
                    continue
                contrast.append(stone)
                outlines.append(crop_outline.astype(np.uint8))
                shapes.append(crop.shape)
                names.append(f"{case['id']}#{k}")
                sessions.append(case["patient_id"])
    assert not set(sessions) & set(held), "a held-out session reached the stone library"
    offsets = np.concatenate([[0], np.cumsum([int(np.prod(s)) for s in shapes])]).astype(np.int64)
    meta = {
        "format": LIBRARY_FORMAT, "version": 1, "source": "kidney_stones_ct (TEZ_ROI_AUG coronal CT, 8-bit display)",
        "stones": len(names), "sessions": len(set(sessions)), "heldout_sessions_excluded": len(held),
        "split": f"kidney_stone_split: sessions in 'train' or 'val' of split_of(session, {KIDNEY_STONE_SPLIT})",
        "outline": f"Otsu stone mask component >= {MIN_STONE_AREA_PX} px, dilated by {STONE_RIM_PX} px (rim)",
        "contrast": "crop minus its Navier-Stokes-filled outline, clipped at 0, rounded to uint8",
        "min_peak": MIN_STONE_PEAK, "left_out_too_faint": too_faint, "margin_px": MARGIN_PX, "dataset_images_sha256": summary["images_sha256"],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "real_stones.npz", "wb") as fh:
        np.savez_compressed(fh, contrast=np.concatenate([c.ravel() for c in contrast]),
                            outlines=np.concatenate([o.ravel() for o in outlines]), offsets=offsets,
                            shapes=np.asarray(shapes, np.int32), names=np.asarray(names, np.str_),
                            sessions=np.asarray(sessions, np.str_), meta=np.asarray(json.dumps(meta, sort_keys=True)))
    (out_dir / "ATTRIBUTION.md").write_text(
        attribution.rstrip() + "\n\n---\nDerived for lesion-studio's `real-stone` family (`real_stones.npz`): "
        f"{meta['stones']} stones of {meta['sessions']} sessions; {meta['split']}; outline: {meta['outline']}; "
        f"contrast: {meta['contrast']}. Built by scripts/build_stone_library.py.\n", encoding="utf-8")
    return meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    print(json.dumps(build(args.data, args.out), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
