"""The answer key of a reader study: what each case really is. Kept outside the study folder.

```json
{"format": "lesion-studio-reader-study-key", "version": 1, "study_id": "...",
 "cases": {"case_0001": {"truth": "real" | "synthetic" | "lesion-free",
                         "model": null | "real-nodule" | "<checkpoint name>",
                         "diameter_mm": 7.5, "size_bin": "6-10 mm", "image_type": "ct",
                         "source": "...", "group": "<series / patient>",
                         "request": {...}, "provenance_sha256": "..."}},
 "design": {"config": {...}, "strata": [...], "shortfalls": [...], "groups": {...}}}
```

The builder writes it (`builder.write_study`); the analysis and the machine reader read it;
the reader app never opens it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesion_studio.core.errors import ConfigError

KEY_FORMAT = "lesion-studio-reader-study-key"
KEY_VERSION = 1
TRUTHS = ("real", "synthetic", "lesion-free")


@dataclass(frozen=True)
class KeyCase:
    """One case's truth and what the breakdowns group it by."""

    case_id: str
    truth: str
    model: str | None
    size_bin: str | None
    diameter_mm: float | None
    image_type: str
    group: str
    record: dict[str, Any]  # the whole key entry (request, provenance hash, source, ...)


@dataclass(frozen=True)
class AnswerKey:
    """A loaded answer key."""

    path: Path
    study_id: str
    cases: dict[str, KeyCase]
    design: dict[str, Any]

    def truth(self, case_id: str) -> str:
        return self.cases[case_id].truth


def default_key_for(study_dir: str | Path) -> Path:
    """`<study_dir>.key.json`, where the builder puts the key by default."""
    folder = Path(study_dir).resolve()
    return folder.with_name(folder.name + ".key.json")


def load_answer_key(path: str | Path, study_id: str | None = None) -> AnswerKey:
    """Read and check an answer key (and that it belongs to `study_id`); ConfigError naming the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("answer key not found (pass --key KEY.json)", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"the answer key cannot be read: {exc}", path) from None
    if not isinstance(doc, dict) or doc.get("format") != KEY_FORMAT:
        raise ConfigError(f"not a reader-study answer key (format {doc.get('format') if isinstance(doc, dict) else None!r})",
                          path)
    if doc.get("version") != KEY_VERSION:
        raise ConfigError(f"answer key version {doc.get('version')!r} is not supported", path)
    if study_id is not None and doc.get("study_id") != study_id:
        raise ConfigError(f"this key belongs to study {doc.get('study_id')!r}, not {study_id!r}", path)
    entries = doc.get("cases")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError("'cases' must be a non-empty table", path)
    cases: dict[str, KeyCase] = {}
    for case_id, entry in entries.items():
        if not isinstance(entry, dict) or entry.get("truth") not in TRUTHS:
            raise ConfigError(f"cases.{case_id}.truth must be one of {', '.join(TRUTHS)}", path)
        diameter = entry.get("diameter_mm")
        cases[case_id] = KeyCase(
            case_id=case_id, truth=entry["truth"], model=entry.get("model"), size_bin=entry.get("size_bin"),
            diameter_mm=None if diameter is None else float(diameter), image_type=str(entry.get("image_type", "")),
            group=str(entry.get("group", "")), record=entry)
    design = doc.get("design") if isinstance(doc.get("design"), dict) else {}
    return AnswerKey(path=path, study_id=str(doc.get("study_id", "")), cases=cases, design=design)
