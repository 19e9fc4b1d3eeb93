"""The provenance manifest: one JSON line per exported item.

Each finished item writes `manifest/parts/ID.json` LAST, after all its files: the part is
the item's "done" marker, so a re-run skips exactly the finished items. `finalize` merges
the parts (sorted by item id) into `manifest.jsonl`, one merged file whatever the number of
ranks. A line holds the source image hash, the requests (mode, centre, diameter_mm, seed),
the model checkpoint hash, the package version and the time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lesion_studio.core.export.atomic import write_bytes, write_json
from lesion_studio.core.hashing import sha256_file  # noqa: F401  (re-exported for the exporter)

PARTS = Path("manifest") / "parts"
MANIFEST = "manifest.jsonl"


def part_path(out_dir: Path, item_id: str) -> Path:
    return out_dir / PARTS / f"{item_id}.json"


def is_done(out_dir: Path, item_id: str, *, settings_sha256: str | None = None,
            formats: tuple[str, ...] = ()) -> bool:
    """True when the item's part exists, was made with the same synthesis settings, covers
    every requested format, and every file it lists is still there."""
    path = part_path(out_dir, item_id)
    if not path.is_file():
        return False
    if settings_sha256 is None and not formats:
        return True
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if settings_sha256 is not None and record.get("settings_sha256") != settings_sha256:
        return False
    if not set(formats) <= set(record.get("formats", ())):
        return False
    return all((out_dir / rel).is_file() for rel in record.get("outputs", ()))


def settings_sha256(settings: dict[str, Any]) -> str:
    """A fingerprint of everything that changes an item's pixels (not where files go)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def write_part(out_dir: Path, record: dict[str, Any]) -> Path:
    return write_json(part_path(out_dir, record["item"]), record, indent=None)


def read_parts(out_dir: Path) -> list[dict[str, Any]]:
    parts = sorted(p for p in (out_dir / PARTS).glob("*.json") if not p.name.startswith("."))
    return [json.loads(p.read_text()) for p in parts]


def finalize(out_dir: Path) -> Path:
    lines = [json.dumps(record, sort_keys=True) for record in read_parts(out_dir)]
    return write_bytes(out_dir / MANIFEST, ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
