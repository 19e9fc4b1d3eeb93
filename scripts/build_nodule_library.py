"""Build the bundled real-nodule library from the NODE21 / LIDC-IDRI CT nodule crops.

Reads `node21_ct_nodules_3d.npz` and `nodules.csv` from a data folder (default
`../shared/data/node21_ct_nodules`), splits the scans (series UIDs) deterministically into a
`library` part (~70 %) and a `heldout` part (~30 %) by SERIES, never by nodule, and writes

- `lesion_studio/resources/nodules/real_nodules.npz`: a few hundred library nodules spanning
  4-30 mm, each a 3D HU crop (int16) and its mask (uint8, largest 3D component), ragged;
- `lesion_studio/resources/nodules/split.json`: the rule and the held-out series UIDs, so
  benchmarks and model training can exclude them;
- `lesion_studio/resources/nodules/ATTRIBUTION.md`: the source's attribution, verbatim, plus
  a note on what was derived.

Usage: python scripts/build_nodule_library.py [DATA_DIR] [--count 300]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "lesion_studio" / "resources" / "nodules"
HELDOUT_FRACTION = 0.30
DIAMETER_RANGE_MM = (4.0, 30.0)
#: Diameter strata (mm): the library takes about the same number of nodules from each.
DIAMETER_BINS_MM = (4.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.01)
#: Voxels of context kept around each mask's bounding box (enough for a soft edge).
MARGIN_VOX = 3
#: Smallest usable nodule: voxels in 3D, and pixels in its largest axial / projected view.
MIN_VOXELS = 20
MIN_VIEW_AREA_PX = 12


def split_fraction(series_uid: str) -> float:
    """A stable number in [0, 1) from the series UID (sha256), for the library/held-out split."""
    digest = hashlib.sha256(series_uid.encode("utf-8")).hexdigest()
    return int(digest[:12], 16) / float(16**12)


def is_heldout(series_uid: str) -> bool:
    """True for the ~30 % of scans kept out of the library (benchmarks, model evaluation)."""
    return split_fraction(series_uid) < HELDOUT_FRACTION


def _largest_component_3d(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def _crop(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut image and mask to the mask's bounding box plus `MARGIN_VOX` (clipped at the edge)."""
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - MARGIN_VOX, 0)
    hi = np.minimum(idx.max(0) + 1 + MARGIN_VOX, mask.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    return image[sl], mask[sl]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", default=str(REPO.parent / "shared" / "data" / "node21_ct_nodules"))
    parser.add_argument("--count", type=int, default=300, help="nodules in the library (about)")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir)

    with open(data_dir / "nodules.csv", newline="") as fh:
        rows = {r["name"].removesuffix(".mha"): r for r in csv.DictReader(fh)}
    src = np.load(data_dir / "node21_ct_nodules_3d.npz")
    names = [str(n) for n in src["names"]]
    offsets, shapes = src["offsets"], src["shapes"]
    images, masks = src["images"], src["masks"]

    series_all = sorted({r["seriesuid"] for r in rows.values()})
    heldout = [s for s in series_all if is_heldout(s)]
    heldout_set = set(heldout)

    candidates: list[tuple[float, str, np.ndarray, np.ndarray, str]] = []
    for i, name in enumerate(names):
        row = rows[name]
        series = row["seriesuid"]
        diameter = float(row["diameter_mm"])
        if series in heldout_set or row["padded"] == "1":
            continue
        if not DIAMETER_RANGE_MM[0] <= diameter <= DIAMETER_RANGE_MM[1]:
            continue
        shape = tuple(int(v) for v in shapes[i])
        vol = images[offsets[i] : offsets[i + 1]].reshape(shape)
        msk = masks[offsets[i] : offsets[i + 1]].reshape(shape) > 0
        if msk.sum() < MIN_VOXELS:
            continue
        msk = _largest_component_3d(msk)
        if msk.sum() < MIN_VOXELS or msk.sum(axis=(1, 2)).max() < MIN_VIEW_AREA_PX:
            continue
        if msk.any(axis=1).sum() < MIN_VIEW_AREA_PX:
            continue
        vol, msk = _crop(vol, msk)
        candidates.append((diameter, name, vol.astype(np.int16), msk.astype(np.uint8), series))

    # about the same number from each diameter stratum, picked by a stable hash of the name
    bins = np.digitize([c[0] for c in candidates], DIAMETER_BINS_MM) - 1
    strata = [[c for c, b in zip(candidates, bins) if b == k] for k in range(len(DIAMETER_BINS_MM) - 1)]
    for s in strata:
        s.sort(key=lambda c: hashlib.sha256(c[1].encode()).hexdigest())
    chosen: list = []
    quota = args.count // len(strata)
    leftovers: list = []
    for s in strata:
        chosen += s[:quota]
        leftovers += s[quota:]
    leftovers.sort(key=lambda c: hashlib.sha256(c[1].encode()).hexdigest())
    chosen += leftovers[: max(args.count - len(chosen), 0)]
    chosen.sort(key=lambda c: (c[0], c[1]))  # library order: by diameter, then name

    flat_img = np.concatenate([c[2].ravel() for c in chosen])
    flat_msk = np.concatenate([c[3].ravel() for c in chosen])
    sizes = [c[2].size for c in chosen]
    lib_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    meta = {
        "format": "lesion-studio-nodule-library", "version": 1,
        "source": "NODE21 generation baseline CT nodule patches (LIDC-IDRI via LUNA16)",
        "spacing_mm": [1.0, 1.0, 1.0], "axes": "z, y, x (LUNA16 world axes; z = cranio-caudal)",
        "margin_vox": MARGIN_VOX, "split_rule": "sha256(series UID) < 0.30 -> heldout",
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT_DIR / "real_nodules.npz",
        images=flat_img.astype(np.int16), masks=flat_msk.astype(np.uint8), offsets=lib_offsets,
        shapes=np.asarray([c[2].shape for c in chosen], dtype=np.int32),
        names=np.asarray([c[1] for c in chosen], dtype=np.str_),
        series_uids=np.asarray([c[4] for c in chosen], dtype=np.str_),
        diameter_mm=np.asarray([c[0] for c in chosen], dtype=np.float32),
        meta=np.asarray(json.dumps(meta, sort_keys=True)),
    )
    split = {
        "rule": "fraction = int(sha256(series_uid as UTF-8).hexdigest()[:12], 16) / 16**12; "
                f"heldout when fraction < {HELDOUT_FRACTION}, library otherwise",
        "split_by": "series (scan = patient); never by nodule",
        "source": "node21_ct_nodules (nodules.csv seriesuid)",
        "n_series": len(series_all), "n_heldout_series": len(heldout),
        "heldout_series_uids": heldout,
    }
    (OUT_DIR / "split.json").write_text(json.dumps(split, indent=1) + "\n")
    attribution = (data_dir / "ATTRIBUTION.md").read_text()
    note = (
        "\n\n---\n"
        "lesion-studio: `real_nodules.npz` in this folder is derived from the 3D nodule crops "
        "(`node21_ct_nodules_3d.npz`) of the bundle described above by "
        "`scripts/build_nodule_library.py`: only scans of the `library` split (`split.json`: "
        "sha256 of the series UID, ~70 % of scans) are used; nodules 4-30 mm, not padded, "
        f"stratified by diameter ({len(chosen)} nodules); each mask reduced to its largest 3D "
        f"connected component; each crop cut to the mask's bounding box + {MARGIN_VOX} voxels. "
        "HU kept as int16. Same licences (CC BY 4.0 / CC BY 3.0); keep this file with any copy.\n"
    )
    (OUT_DIR / "ATTRIBUTION.md").write_text(attribution.rstrip("\n") + note)
    print(f"{len(chosen)} nodules from {len({c[4] for c in chosen})} library series; "
          f"{len(heldout)}/{len(series_all)} series held out; "
          f"{(OUT_DIR / 'real_nodules.npz').stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
