"""Converters from two public lesion collections to lesion-studio dataset folders.

- `build_node21_dataset`: NODE21's LUNA16 / LIDC-IDRI CT nodule patches
  (`node21_ct_axial.npz` + `nodules.csv`) → one axial slice per nodule (its mask centroid),
  HU int16 `.npy`, the nodule mask, `patient_id` = series UID (the scan is the patient).
- `build_kidney_stones_dataset`: the TEZ_ROI_AUG coronal CT slices with kidney-stone boxes
  (`images/*.jpg`, `boxes.csv`) → 8-bit PNG, a stone mask thresholded inside each box, the
  boxes themselves (`boxes_xyxy`, kept but not read by lesion-studio: its detectors take the
  mask components' boxes), `patient_id` = the acquisition session of the slice (see
  `acquisition_sessions`).

Both validate their inputs (a missing or unreadable file, a missing column or a bad value is a
`ConfigError` naming the file), copy the source's attribution into the folder (its licence
requires it) and are idempotent: a folder built from the same bytes with the same settings is
reused; one they built with other settings is rebuilt; any other non-empty folder is refused.
`dataset.json` is written last, so an interrupted build is redone on the next call. Qt-free.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from lesion_studio.core.dataset import DATASET_FILE, IMAGE_DIR, MASK_DIR, write_dataset_json
from lesion_studio.core.errors import ConfigError

NODE21_AXIAL = "node21_ct_axial.npz"
NODE21_CSV = "nodules.csv"
KIDNEY_BOXES = "boxes.csv"
KIDNEY_IMAGES = "images.csv"
ATTRIBUTION = "ATTRIBUTION.md"
#: Marks a folder one of these converters writes (so a rebuild may clear it).
MARKER = ".lesion-studio-build"
#: Bump when a converter's output changes for the same input: existing folders are rebuilt.
BUILDER_VERSION = 1
#: `series` choices of `build_node21_dataset`.
NODE21_SERIES = ("heldout", "all")
#: `patient_proxy` choices of `build_kidney_stones_dataset`.
KIDNEY_PATIENT_PROXIES = ("session", "group")
#: Two slices whose UID timestamps lie further apart than this belong to different sessions.
SESSION_GAP_S = 60.0
#: A box whose pixels span fewer grey levels than this has no stone to threshold: ellipse.
MIN_STONE_CONTRAST = 16
#: How a stone mask is made from its box (written into dataset.json).
STONE_MASK_RULE = (
    "per box: the pixels the box overlaps; Otsu's threshold of those pixels; the largest 8-connected "
    "component above it, holes filled (stones are hyperdense). Fallback, recorded per case: the ellipse "
    f"inscribed in the box when the box spans fewer than {MIN_STONE_CONTRAST} grey levels or nothing lies "
    "above the threshold. The case mask is the union over its boxes, so touching or overlapping stones "
    "form one component (one lesion for lesion-studio's metrics and detectors); n_boxes and n_components "
    "per case say where that happened"
)
SESSION_RULE = (
    "patient proxy: the 7th component of the group UID (1.3.46.670589.33.1.<T>...) starts with an 18-digit "
    ".NET tick count (100 ns) of the slice's creation; slices sorted by it are cut into sessions wherever "
    "two neighbours lie more than {gap:g} s apart (the cut is stable from 1 s to 60 s). A group (one source "
    "slice) never straddles sessions; an unparsable group is its own session"
)


# -- shared helpers -------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    """SHA-256 of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files_sha256(root: Path, names: Sequence[str]) -> str:
    """One SHA-256 over the names and bytes of `root/name` for each name (a missing one names itself)."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode("utf-8") + b"\0" + bytes.fromhex(sha256_of(_require_file(root / name, "image"))))
    return digest.hexdigest()


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"missing: {what} not found", path)
    return path


def read_csv_rows(path: Path, required: Sequence[str], what: str) -> list[dict[str, str]]:
    """The rows of a CSV file with the `required` columns; `ConfigError` naming the file otherwise."""
    _require_file(path, what)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"unreadable {what}: {exc}", path) from exc
    missing = [c for c in required if c not in columns]
    if missing:
        raise ConfigError(f"{what} lacks the column(s) {', '.join(missing)} (has: {', '.join(columns) or 'none'})",
                          path)
    if not rows:
        raise ConfigError(f"{what} has no rows", path)
    return rows


def _number(row: dict[str, str], key: str, path: Path, line: int) -> float:
    try:
        value = float(row[key])
    except (TypeError, ValueError):
        raise ConfigError(f"line {line}: {key} must be a number, got {row.get(key)!r}", path) from None
    if not np.isfinite(value):
        raise ConfigError(f"line {line}: {key} must be finite, got {row[key]!r}", path)
    return value


def prepare_output_folder(out: Path, builder: str, inputs: dict[str, Any]) -> bool:
    """True when `out` already holds a complete build of `builder` from these `inputs` (source
    hashes and settings: nothing to do). Otherwise clears what an earlier build of `builder`
    left and returns False; refuses a non-empty folder it did not make."""
    index = out / DATASET_FILE
    if index.is_file():
        try:
            doc = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            doc = {}
        previous = doc.get("build_summary") if isinstance(doc, dict) else None
        if isinstance(previous, dict) and previous.get("builder") == builder:
            if all(previous.get(k) == v for k, v in inputs.items()) and all(
                    (out / c["image"]).is_file() and (c["mask"] is None or (out / c["mask"]).is_file())
                    for c in doc.get("cases", [])):
                return True
            index.unlink()
            (out / MARKER).write_text(builder + "\n", encoding="utf-8")  # ours, even if made before the marker
    if out.is_dir() and any(out.iterdir()):
        ours = (out / MARKER).is_file() and (out / MARKER).read_text(encoding="utf-8").strip() == builder
        if not ours:
            raise ConfigError(f"the output folder is not empty and was not made by {builder}; "
                              "choose an empty or new folder", out)
        for folder in (IMAGE_DIR, MASK_DIR):  # an interrupted build of ours: start again
            shutil.rmtree(out / folder, ignore_errors=True)
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    (out / MASK_DIR).mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(builder + "\n", encoding="utf-8")
    return False


def _readme_section(readme: Path, folder: str) -> str:
    """The `## <folder>/ ...` section of the data collection's README, or '' when absent."""
    if not readme.is_file():
        return ""
    lines = readme.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    for line in lines:
        if line.startswith("## "):
            if out:
                break
            if line.startswith(f"## {folder}/"):
                out.append(line)
        elif out:
            out.append(line)
    return "\n".join(out).strip()


def write_attribution(source: Path, out: Path, changes: str, extra_files: Iterable[str] = ()) -> Path:
    """`out/ATTRIBUTION.md`: the source's ATTRIBUTION.md verbatim, its section of the collection
    README when there is one, and what this conversion changed; `extra_files` (licence texts)
    are copied next to it. CC BY requires the attribution to travel with every copy."""
    text = _require_file(source / ATTRIBUTION, "the source's attribution file").read_text(encoding="utf-8")
    parts = [text.rstrip("\n")]
    section = _readme_section(source.parent / "README.md", source.name)
    if section:
        parts.append(f"---\nFrom the data collection's README ({source.name}/ section):\n\n{section}")
    parts.append(f"---\nlesion-studio conversion (lesion_studio/core/public_datasets.py): {changes}")
    path = out / ATTRIBUTION
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    for name in extra_files:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    return path


def split_of(patient: str, val: float = 0.15, test: float = 0.15) -> str:
    """A stable train/val/test split of a patient id (sha256), for the dataset's `split` column.
    Cross-validation (`lesion-studio evaluate`) ignores it and re-splits by patient."""
    u = int(hashlib.sha256(patient.encode("utf-8")).hexdigest()[:12], 16) / float(16 ** 12)
    return "test" if u < test else "val" if u < test + val else "train"


#: The kidney-stone sessions every default model and benchmark split alike: `test` sessions are
#: held out for the realism benchmark and never trained on (`kidney_stone_split`).
KIDNEY_STONE_SPLIT = {"val": 0.15, "test": 0.20}


def kidney_stone_split(session: str) -> str:
    """`train`, `val` or `test` (held out) for a kidney-stone session id: `split_of` with
    KIDNEY_STONE_SPLIT, so a benchmark recomputes the training script's split from the id alone."""
    return split_of(session, val=KIDNEY_STONE_SPLIT["val"], test=KIDNEY_STONE_SPLIT["test"])


#: Stone masks are Otsu-tight (STONE_MASK_RULE): the stone's bright partial-volume rim lies 1-2 px
#: outside them. A generator trained on those holes learned "the rim is already in the context,
#: fill the core" and painted 3 px dots into a stone-free background (the held-out contact sheet
#: at step 2,000), so synthesis and its benchmark use the mask with the rim.
STONE_RIM_PX = 2


def stone_mask_with_rim(mask: np.ndarray, rim_px: int = STONE_RIM_PX) -> np.ndarray:
    """A stone mask grown by its partial-volume rim (`rim_px`, 8-connected dilation)."""
    return ndimage.binary_dilation(np.asarray(mask, bool), structure=np.ones((3, 3), bool), iterations=rim_px)


# -- NODE21 CT nodules ----------------------------------------------------------------------
def _load_node21(npz_path: Path) -> dict[str, np.ndarray]:
    _require_file(npz_path, "the NODE21 axial nodule patches")
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            missing = [k for k in ("images", "masks", "names") if k not in npz.files]
            if missing:
                raise ConfigError(f"not a NODE21 axial patch file: no {', '.join(missing)} array", npz_path)
            data = {k: npz[k] for k in npz.files}
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ConfigError(f"unreadable or corrupt .npz: {exc}", npz_path) from exc
    images, masks, names = data["images"], data["masks"], data["names"]
    if images.ndim != 4 or masks.shape != images.shape or len(names) != images.shape[0]:
        raise ConfigError(f"expected images and masks [N, slices, H, W] and N names; got images {images.shape}, "
                          f"masks {masks.shape}, {len(names)} names", npz_path)
    return data


def build_node21_dataset(source: str | Path, out: str | Path, *, series: str = "heldout",
                         pad_to_px: int | None = None, pad_hu: int = -1024) -> dict[str, Any]:
    """Write the NODE21 CT nodule segmentation dataset into `out`; returns its build summary.

    One case per nodule: the centre axial slice (offset 0, the mask centroid), not all five.
    The neighbouring slices are 1 mm apart, so five cases per nodule would be near-copies that
    inflate the test set (one nodule counted five times, CIs too narrow) and cost five times the
    training time for little new information. Patches cut by the scan border (`padded`) are
    skipped. `series = "heldout"` keeps only the scans that the bundled real-nodule library
    (`core.classical.nodule_library`, ~70 % of the scans) does not come from, so that nodules
    the `real-nodule` synthesis inserts never belong to an experiment patient; "all" keeps
    every scan (then `real-nodule` synthesis would leak test patients' nodules into training).
    `pad_to_px` centres each 50² slice in a square of that size filled with `pad_hu` (the
    whole-image StyleGAN2 generators of P4's sweep draw 64² slices framed in air, −1024 HU).
    """
    from lesion_studio.core.classical.nodule_library import heldout_series_uids

    if series not in NODE21_SERIES:
        raise ConfigError(f"series must be one of {NODE21_SERIES}, got {series!r}")
    source, out = Path(source), Path(out)
    npz_path, csv_path = source / NODE21_AXIAL, source / NODE21_CSV
    rows = read_csv_rows(csv_path, ("name", "seriesuid", "padded", "diameter_mm"), "the NODE21 nodule table")
    data = _load_node21(npz_path)
    by_name = {r["name"]: r for r in rows}
    names = [str(n) for n in data["names"]]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"{len(unknown)} nodule(s) of {npz_path.name} have no row here, e.g. {unknown[0]}", csv_path)
    n_slices = data["images"].shape[1]
    offsets = [int(v) for v in data.get("slice_offsets", np.arange(n_slices) - n_slices // 2)]
    if 0 not in offsets:
        raise ConfigError(f"slice_offsets {offsets} has no centre slice (offset 0)", npz_path)
    centre = offsets.index(0)
    held = heldout_series_uids()
    spacing = np.asarray(data.get("spacing_mm", np.ones((len(names), 2))), float)
    summary = {
        "builder": "node21_ct_nodules", "builder_version": BUILDER_VERSION, "series": series,
        "slice": "centre (offset 0) only", "npz_sha256": sha256_of(npz_path), "csv_sha256": sha256_of(csv_path),
    }
    pad = ((0, 0), (0, 0))
    if pad_to_px is not None:
        size = int(data["images"].shape[-1])
        if pad_to_px < size:
            raise ConfigError(f"pad_to_px {pad_to_px} is smaller than the {size}² patches", npz_path)
        before = (pad_to_px - size) // 2
        pad = ((before, pad_to_px - size - before),) * 2
        summary |= {"padded_to_px": int(pad_to_px), "pad_hu": int(pad_hu)}
    if prepare_output_folder(out, "node21_ct_nodules", summary):
        return json.loads((out / DATASET_FILE).read_text(encoding="utf-8"))["build_summary"]
    skipped: Counter[str] = Counter()
    cases = []
    for i, name in enumerate(names):
        row = by_name[name]
        uid = row["seriesuid"].strip()
        if not uid:
            raise ConfigError(f"nodule {name}: empty seriesuid", csv_path)
        if row["padded"].strip() not in ("0", ""):
            skipped["padded"] += 1
            continue
        if series == "heldout" and uid not in held:
            skipped["library series (real-nodule source)"] += 1
            continue
        mask = (data["masks"][i, centre] > 0).astype(np.uint8)
        if not mask.any():
            skipped["empty centre mask"] += 1
            continue
        cid = f"n{i:04d}"
        np.save(out / IMAGE_DIR / f"{cid}.npy", np.pad(data["images"][i, centre].astype(np.int16), pad,
                                                       constant_values=pad_hu))
        np.save(out / MASK_DIR / f"{cid}.npy", np.pad(mask, pad))
        cases.append({"id": cid, "image": f"{IMAGE_DIR}/{cid}.npy", "mask": f"{MASK_DIR}/{cid}.npy",
                      "patient_id": uid, "has_lesion": True, "split": split_of(uid), "nodule": name,
                      "diameter_mm": float(row["diameter_mm"]) if row["diameter_mm"] else None,
                      "spacing_mm": [float(spacing[i][0]), float(spacing[i][1])]})
    if not cases:
        raise ConfigError("no nodule left after the filters (padded, series, empty masks)", npz_path)
    summary.update({"cases": len(cases), "patients": len({c["patient_id"] for c in cases}),
                    "skipped": dict(sorted(skipped.items()))})
    write_attribution(source, out, (
        f"one axial slice per nodule (the centre one of {NODE21_AXIAL}), HU as int16 .npy, mask binarised; "
        f"patches cut by the scan border skipped; series: {series}"
        + (f"; padded to {pad_to_px}² with {pad_hu} HU" if pad_to_px is not None else "")
        + (" (only the ~30 % of scans the bundled real-nodule library does not use)" if series == "heldout" else "")
        + "; patient_id = series UID."), extra_files=[p.name for p in source.glob("LICENSE*")])
    write_dataset_json(out, cases, description=(
        "Real CT lung nodules (LIDC-IDRI via LUNA16 / NODE21 generation baseline patches): the centre axial "
        "slice of each 50 x 50 mm patch, 1 mm pixels, HU; patient = series UID. CC BY 4.0 (LUNA16) / CC BY 3.0 "
        "(LIDC-IDRI); see ATTRIBUTION.md."), spacing_mm=None, modality="CT", extra={"build_summary": summary})
    return summary


# -- kidney stones (coronal CT, boxes) -------------------------------------------------------
_TICKS = re.compile(r"^\d{18}")


def slice_time_s(group: str) -> float | None:
    """Creation time (s since year 1) of a slice from its Philips-style UID group
    (`1-3-46-670589-33-1-<ticks...>-<n>`): the first 18 digits of the 7th part are .NET ticks."""
    parts = re.split(r"[-.]", group)
    if len(parts) < 7 or not _TICKS.match(parts[6]):
        return None
    return int(parts[6][:18]) / 1e7


def acquisition_sessions(groups: Iterable[str], gap_s: float = SESSION_GAP_S) -> dict[str, str]:
    """`{group: session id}`: groups whose UID times (`slice_time_s`) chain with gaps ≤ `gap_s`
    share a session (a scan exported at one sitting, the best patient proxy the data offer);
    an unparsable group is its own session. Ids are `s000`, `s001`, ... in time order."""
    timed, alone = [], []
    for g in sorted(set(groups)):
        t = slice_time_s(g)
        (alone if t is None else timed).append((t, g))
    timed.sort()
    out: dict[str, str] = {}
    k, last = -1, None
    for t, g in timed:
        if last is None or t - last > gap_s:
            k += 1
        out[g] = f"s{k:03d}"
        last = t
    for _, g in alone:
        out[g] = f"g-{g}"
    return out


def box_slices(box: Sequence[float], shape: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns of the pixels a box `(x0, y0, x1, y1)` (pixel-corner coordinates)
    overlaps, clipped to the image; at least one pixel each way."""
    x0, y0, x1, y1 = (float(v) for v in box)
    h, w = shape
    r0, r1 = max(0, int(np.floor(y0))), min(h, int(np.ceil(y1)))
    c0, c1 = max(0, int(np.floor(x0))), min(w, int(np.ceil(x1)))
    return slice(r0, max(r1, r0 + 1)), slice(c0, max(c1, c0 + 1))


def inscribed_ellipse(box: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres lie in the ellipse inscribed in the box (at least its centre pixel)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    rows, cols = box_slices(box, shape)
    rr, cc = np.mgrid[rows, cols]
    cy, cx, ay, ax = (y0 + y1) / 2, (x0 + x1) / 2, max((y1 - y0) / 2, 0.5), max((x1 - x0) / 2, 0.5)
    inside = ((rr + 0.5 - cy) / ay) ** 2 + ((cc + 0.5 - cx) / ax) ** 2 <= 1.0
    mask = np.zeros(shape, bool)
    mask[rows, cols] = inside
    if not mask.any():
        mask[min(int(cy), shape[0] - 1), min(int(cx), shape[1] - 1)] = True
    return mask


def stone_mask(gray: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, str]:
    """The stone inside one box of an 8-bit slice: `(mask, "otsu" | "ellipse")` (STONE_MASK_RULE).
    The mask never leaves the pixels the box overlaps."""
    from skimage.filters import threshold_otsu

    rows, cols = box_slices(box, gray.shape)
    sub = np.asarray(gray, np.float64)[rows, cols]
    if sub.size < 2 or float(np.ptp(sub)) < MIN_STONE_CONTRAST:
        return inscribed_ellipse(box, gray.shape), "ellipse"
    fg = sub > threshold_otsu(sub)
    labels, n = ndimage.label(fg, structure=np.ones((3, 3), bool))
    if n == 0:
        return inscribed_ellipse(box, gray.shape), "ellipse"
    sizes = ndimage.sum(fg, labels, index=np.arange(1, n + 1))
    mask = np.zeros(gray.shape, bool)
    mask[rows, cols] = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)) + 1)
    return mask, "otsu"


def read_gray(path: Path) -> np.ndarray:
    """An 8-bit image as one grey channel (colour JPEGs of grey slices: their first channel);
    `ConfigError` naming the file when it is missing or does not decode."""
    _require_file(path, "image")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ConfigError("not a readable image (decoding failed)", path)
    if image.ndim == 3:
        image = image[..., 0] if image.shape[2] == 1 or np.array_equal(image[..., 0], image[..., 1]) \
            else cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)
    if image.dtype != np.uint8:
        raise ConfigError(f"expected an 8-bit image, got {image.dtype}", path)
    return image


def build_kidney_stones_dataset(source: str | Path, out: str | Path, *, patient_proxy: str = "session",
                                session_gap_s: float = SESSION_GAP_S) -> dict[str, Any]:
    """Write the kidney-stone dataset (masks thresholded inside the boxes) into `out`; returns
    its build summary.

    `patient_proxy`: "session" (default) groups slices by acquisition session
    (`acquisition_sessions`); "group" uses the `group` column as is. In this export every
    group is a single slice (655 groups for 655 images), so "group" splits neighbouring slices
    of one scan across folds; the sessions (237) keep a scan together and contain whole groups,
    so a group never straddles folds either way. The source's own train/valid split is kept as
    `source_split`; `split` is the majority split of each patient (the source's split mixes
    slices of one session). Images without boxes (in `images.csv`) are lesion-free cases.
    """
    if patient_proxy not in KIDNEY_PATIENT_PROXIES:
        raise ConfigError(f"patient_proxy must be one of {KIDNEY_PATIENT_PROXIES}, got {patient_proxy!r}")
    if not session_gap_s > 0:
        raise ConfigError(f"session_gap_s must be > 0, got {session_gap_s}")
    source, out = Path(source), Path(out)
    boxes_path = source / KIDNEY_BOXES
    box_rows = read_csv_rows(boxes_path, ("id", "split", "group", "file", "width", "height", "x0", "y0", "x1", "y1"),
                             "the kidney-stone box table")
    images: dict[str, dict[str, Any]] = {}
    boxes: dict[str, list[list[float]]] = defaultdict(list)
    for line, row in enumerate(box_rows, start=2):
        cid = row["id"].strip()
        if not cid or not row["group"].strip() or not row["file"].strip():
            raise ConfigError(f"line {line}: id, group and file must not be empty", boxes_path)
        size = (int(_number(row, "height", boxes_path, line)), int(_number(row, "width", boxes_path, line)))
        info = {"file": row["file"].strip(), "group": row["group"].strip(), "split": row["split"].strip(), "size": size}
        if images.setdefault(cid, info) != info:
            raise ConfigError(f"line {line}: image {cid} has another file, group, split or size than on an earlier "
                              "line", boxes_path)
        box = [_number(row, k, boxes_path, line) for k in ("x0", "y0", "x1", "y1")]
        if not (box[0] < box[2] and box[1] < box[3]) or box[0] >= size[1] or box[1] >= size[0] \
                or box[2] <= 0 or box[3] <= 0:
            raise ConfigError(f"line {line}: box {box} is empty or outside the {size[1]} x {size[0]} image", boxes_path)
        boxes[cid].append(box)
    index_path = source / KIDNEY_IMAGES
    if index_path.is_file():  # images without a box: lesion-free cases
        for line, row in enumerate(read_csv_rows(index_path, ("id", "split", "group", "width", "height"),
                                                 "the kidney-stone image table"), start=2):
            cid = row["id"].strip()
            if cid and cid not in images:
                images[cid] = {"file": f"images/{cid}.jpg", "group": row["group"].strip(),
                               "split": row["split"].strip(),
                               "size": (int(_number(row, "height", index_path, line)),
                                        int(_number(row, "width", index_path, line)))}
    groups = {cid: info["group"] for cid, info in images.items()}
    sessions = acquisition_sessions(groups.values(), session_gap_s)
    patient = {cid: (sessions[g] if patient_proxy == "session" else g) for cid, g in groups.items()}
    summary = {
        "builder": "kidney_stones_ct", "builder_version": BUILDER_VERSION, "patient_proxy": patient_proxy,
        "session_gap_s": float(session_gap_s), "boxes_sha256": sha256_of(boxes_path),
        "images_csv_sha256": sha256_of(index_path) if index_path.is_file() else None,
        "images_sha256": _files_sha256(source, sorted(info["file"] for info in images.values())),
    }
    if prepare_output_folder(out, "kidney_stones_ct", summary):
        return json.loads((out / DATASET_FILE).read_text(encoding="utf-8"))["build_summary"]
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for cid, info in images.items():
        votes[patient[cid]]["val" if info["split"] in ("valid", "val") else "test" if info["split"] == "test"
                            else "train"] += 1
    split = {p: max(sorted(v), key=lambda s: v[s]) for p, v in votes.items()}
    rules: Counter[str] = Counter()
    merged = 0
    cases = []
    for cid in sorted(images):
        info = images[cid]
        image_path = source / info["file"]
        gray = read_gray(image_path)
        if gray.shape != info["size"]:
            raise ConfigError(f"image is {gray.shape[1]} x {gray.shape[0]}, the tables say "
                              f"{info['size'][1]} x {info['size'][0]}", image_path)
        mask = np.zeros(gray.shape, bool)
        case_rules = []
        for box in boxes.get(cid, []):
            m, rule = stone_mask(gray, box)
            mask |= m
            case_rules.append(rule)
            rules[rule] += 1
        n_components = int(ndimage.label(mask, structure=np.ones((3, 3), bool))[1])
        merged += len(case_rules) - n_components
        cv2.imwrite(str(out / IMAGE_DIR / f"{cid}.png"), gray)
        has = bool(mask.any())
        if has:
            cv2.imwrite(str(out / MASK_DIR / f"{cid}.png"), mask.astype(np.uint8))
        cases.append({"id": cid, "image": f"{IMAGE_DIR}/{cid}.png", "mask": f"{MASK_DIR}/{cid}.png" if has else None,
                      "patient_id": patient[cid], "has_lesion": has, "split": split[patient[cid]],
                      "group": info["group"], "source_split": info["split"], "source_file": info["file"],
                      "boxes_xyxy": boxes.get(cid, []), "mask_rules": case_rules,
                      "n_boxes": len(case_rules), "n_components": n_components})
    summary.update({"cases": len(cases), "patients": len(set(patient.values())), "boxes": sum(rules.values()),
                    "mask_rules": dict(sorted(rules.items())), "boxes_merged_into_other_components": merged,
                    "lesion_free_cases": sum(not c["has_lesion"] for c in cases)})
    write_attribution(source, out, (
        "images decoded to one 8-bit grey channel and stored as PNG (pixels unchanged); a stone mask per box "
        f"({STONE_MASK_RULE}); patient_id = " + ("acquisition session (" + SESSION_RULE.format(gap=session_gap_s)
                                                 + ")" if patient_proxy == "session" else "the source's group")
        + "; boxes kept as boxes_xyxy."), extra_files=("source_README.dataset.txt", "source_README.roboflow.txt"))
    write_dataset_json(out, cases, description=(
        "Real non-contrast coronal CT slices with kidney stones (TEZ_ROI_AUG, Roboflow; images like Yildirim et al. "
        "2021), 8-bit windowed display values (not HU), no pixel spacing; stone masks thresholded inside the "
        "annotated boxes. CC BY 4.0 as declared; see ATTRIBUTION.md."), modality="CT",
        extra={"build_summary": summary, "mask_rule": STONE_MASK_RULE,
               "patient_rule": SESSION_RULE.format(gap=session_gap_s) if patient_proxy == "session"
               else "patient_id = the source's group column (one source slice)",
               "units": "8-bit display values of an unknown CT window, not HU"})
    return summary
