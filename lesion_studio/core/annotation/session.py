"""Session files: a JSON description plus the mask files beside it.

`case.json` names its masks (`case.<token>.labels.png` / `.nii.gz`, `case.<token>.location...`)
and holds the image path, lesion classes and metadata, the window/level and the current slice.
Saving is atomic as a whole: the masks are written under fresh names first, then the JSON is
replaced in one `os.replace`, then masks no JSON refers to any more are removed. A crash at any
moment leaves the previous session or the new one, each complete.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from lesion_studio.core.annotation.classes import LesionClass, LesionMeta
from lesion_studio.core.annotation.document import AnnotationDocument, DocumentSnapshot
from lesion_studio.core.annotation.mask_io import (
    atomic_write_bytes,
    describe_shape,
    encode_png,
    load_mask,
    save_nifti,
)
from lesion_studio.core.errors import MaskError, SessionError
from lesion_studio.core.image import Window

FORMAT = "lesion-studio-session"
VERSION = 1


@dataclass
class SessionState:
    """View state restored with a session: which image, how it was windowed, which slice."""

    image_path: str | None = None
    window: Window | None = None
    current_slice: int = 0
    extra: dict = field(default_factory=dict)  # JSON-able state a widget wants back

    def to_json(self) -> dict:
        window = None if self.window is None else {"center": self.window.center, "width": self.window.width}
        return {
            "image_path": self.image_path,
            "window": window,
            "current_slice": int(self.current_slice),
            "extra": self.extra,
        }


def _mask_names(stem: str, token: str, volume: bool) -> tuple[str, str]:
    suffix = ".nii.gz" if volume else ".png"
    return f"{stem}.{token}.labels{suffix}", f"{stem}.{token}.location{suffix}"


def _owned_mask_pattern(stem: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(stem)}\.[0-9a-f]{{12}}\.(labels|location)\.(png|nii\.gz)$")


def _session_stem(path: Path) -> str:
    name = path.name
    return name[: -len(".json")] if name.lower().endswith(".json") else name


def save_session(
    path: str | Path,
    doc: AnnotationDocument | DocumentSnapshot,
    state: SessionState,
    *,
    png_compression: int = 3,
    header: dict | None = None,
) -> Path:
    """Write the document (or a snapshot of it) and view state as `path` (JSON) + masks beside it.

    A `DocumentSnapshot` lets a worker thread write while the user keeps painting. `header`
    adds top-level JSON fields (the autosave store records its owner there).
    """
    if isinstance(doc, AnnotationDocument):
        if doc.in_transaction:
            raise RuntimeError("cannot save in the middle of a stroke; commit it first")
        doc = doc.snapshot(copy=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = _session_stem(path)
    token = uuid.uuid4().hex[:12]
    labels_name, location_name = _mask_names(stem, token, doc.is_volume)
    folder = path.parent
    if doc.is_volume:
        save_nifti(doc.labels, folder / labels_name, doc.geometry)
        save_nifti(doc.location, folder / location_name, doc.geometry)
    else:
        atomic_write_bytes(folder / labels_name, encode_png(doc.labels, png_compression))
        atomic_write_bytes(folder / location_name, encode_png(doc.location, png_compression))
    geometry = None
    if doc.geometry is not None:
        spacing, origin, direction = doc.geometry
        geometry = {"spacing_xyz": list(spacing), "origin_xyz": list(origin), "direction": list(direction)}
    image_relative = None
    if state.image_path:
        try:
            image_relative = str(Path(state.image_path).resolve().relative_to(folder.resolve()))
        except ValueError:
            image_relative = None
    data = {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": time.time(),
        **state.to_json(),
        "image_path_relative": image_relative,
        "shape": list(doc.shape),
        "spacing_mm": None if doc.spacing_mm is None else list(doc.spacing_mm),
        "geometry": geometry,
        "classes": [c.to_json() for c in doc.classes],
        "current_class": doc.current_class,
        "lesions": [{"id": i, **doc.meta[i].to_json()} for i in sorted(doc.meta)],
        "labels_file": labels_name,
        "location_file": location_name,
        **(header or {}),
    }
    atomic_write_bytes(path, json.dumps(data, indent=1).encode("utf-8"))
    pattern = _owned_mask_pattern(stem)
    for old in folder.iterdir():
        if pattern.match(old.name) and old.name not in (labels_name, location_name):
            old.unlink(missing_ok=True)
    return path


def read_session_header(path: str | Path) -> dict:
    """The session JSON as a dict, checked for format; SessionError when unreadable."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SessionError("session file not found", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SessionError(f"not a readable session file ({exc})", path) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SessionError("not a lesion-studio session file", path)
    if int(data.get("version", 0)) > VERSION:
        raise SessionError(f"session version {data['version']} is newer than this lesion-studio", path)
    return data


def _mask_file(folder: Path, name, session: Path) -> Path:
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise SessionError(f"invalid mask file name {name!r}", session)
    mask_path = folder / name
    if not mask_path.is_file():
        raise MaskError(f"mask file of session {session.name} is missing", mask_path)
    return mask_path


def load_session(path: str | Path, **doc_kwargs) -> tuple[AnnotationDocument, SessionState]:
    """Rebuild the document and view state saved by `save_session` (history starts empty)."""
    path = Path(path)
    data = read_session_header(path)
    try:
        shape = tuple(int(s) for s in data["shape"])
        labels_path = _mask_file(path.parent, data["labels_file"], path)
        location_path = _mask_file(path.parent, data["location_file"], path)
        arrays = []
        for mask_path in (labels_path, location_path):
            array, _ = load_mask(mask_path)
            if array.shape != shape:
                raise MaskError(
                    f"mask is {describe_shape(array.shape)} but the session's image is {describe_shape(shape)}",
                    mask_path,
                )
            arrays.append(array)
        geometry = None
        if data.get("geometry"):
            g = data["geometry"]
            geometry = (tuple(g["spacing_xyz"]), tuple(g["origin_xyz"]), tuple(g["direction"]))
        classes = [LesionClass.from_json(c) for c in data["classes"]]
        meta = {int(item["id"]): LesionMeta.from_json(item) for item in data["lesions"]}
        doc = AnnotationDocument.from_arrays(
            arrays[0],
            arrays[1],
            spacing_mm=data.get("spacing_mm"),
            geometry=geometry,
            classes=classes,
            meta=meta,
            **doc_kwargs,
        )
        if data.get("current_class") in {c.name for c in doc.classes}:
            doc.current_class = data["current_class"]
        window = data.get("window")
        image_path = data.get("image_path")
        relative = data.get("image_path_relative")
        if image_path and not Path(image_path).exists() and relative and (path.parent / relative).exists():
            image_path = str(path.parent / relative)  # the folder was moved with its image
        state = SessionState(
            image_path=image_path,
            window=None if window is None else Window(float(window["center"]), float(window["width"])),
            current_slice=int(data.get("current_slice", 0)),
            extra=dict(data.get("extra") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SessionError(f"inconsistent session file ({exc})", path) from exc
    if not 0 <= state.current_slice < doc.n_slices:
        state.current_slice = 0
    return doc, state

