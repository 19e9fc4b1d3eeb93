"""The recent-files list, persisted as JSON in the user config folder."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from lesion_studio.core.app_paths import config_dir

MAX_RECENT = 12


class RecentFiles:
    """Most recent first, no duplicates, at most `limit` entries; survives restarts."""

    def __init__(self, path: Path | None = None, limit: int = MAX_RECENT) -> None:
        self.path = path if path is not None else config_dir() / "recent.json"
        self.limit = limit

    def entries(self) -> list[Path]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        if not isinstance(data, list):
            return []
        return [Path(p) for p in data if isinstance(p, str)][: self.limit]

    def add(self, path: str | os.PathLike[str]) -> None:
        resolved = Path(path).expanduser().resolve()
        items = [resolved] + [p for p in self.entries() if p != resolved]
        self._write(items[: self.limit])

    def remove(self, path: str | os.PathLike[str]) -> None:
        target = Path(path).expanduser().resolve()
        self._write([p for p in self.entries() if p != target])

    def _write(self, items: list[Path]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".recent-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump([str(p) for p in items], fh, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
