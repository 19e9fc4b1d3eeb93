"""Undo/redo as bounded patches: the bbox of a change and the before/after pixels of it only.

A transaction snapshots fixed-size tiles lazily, the first time a tool is about to write into
them; at commit each touched tile is compared with its snapshot and, where something changed,
cropped to the tight bbox of the difference. Memory per history step is therefore proportional
to the changed area, never to the label map. A block holding a single value (a fill, an erased
patch) is kept as that value and its shape, not as an array.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from lesion_studio.core.annotation.classes import LesionMeta


class Block:
    """A 2D array stored compactly: as one value when all its pixels are equal."""

    __slots__ = ("shape", "dtype", "_array", "_value")

    def __init__(self, array: np.ndarray) -> None:
        self.shape = array.shape
        self.dtype = array.dtype
        first = array.flat[0]
        if (array == first).all():
            self._array = None
            self._value = first
        else:
            self._array = np.ascontiguousarray(array).copy()
            self._value = None

    @property
    def nbytes(self) -> int:
        return 0 if self._array is None else int(self._array.nbytes)

    def array(self) -> np.ndarray:
        if self._array is None:
            return np.full(self.shape, self._value, dtype=self.dtype)
        return self._array

    def values(self) -> np.ndarray:
        """The distinct values in the block (cheap for a uniform one)."""
        if self._array is None:
            return np.array([self._value], dtype=self.dtype)
        return np.unique(self._array)


@dataclass(frozen=True)
class Patch:
    """One changed rectangle: `layer`, `slice`, top-left `(row0, col0)`, before and after pixels."""

    layer: str
    slice: int
    row0: int
    col0: int
    before: Block
    after: Block

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        h, w = self.before.shape
        return (self.row0, self.row0 + h, self.col0, self.col0 + w)

    @property
    def nbytes(self) -> int:
        return self.before.nbytes + self.after.nbytes


@dataclass
class HistoryEntry:
    """One undo step: a stroke or a command, with its pixel patches and metadata changes."""

    name: str
    patches: list[Patch]
    meta_before: dict[int, LesionMeta | None] = field(default_factory=dict)
    meta_after: dict[int, LesionMeta | None] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.patches) + 64 * (len(self.meta_before) + len(self.patches))

    @property
    def is_empty(self) -> bool:
        return not self.patches and self.meta_before == self.meta_after


class TileSnapshot:
    """Before-pixels of the tiles a transaction has touched, taken once per tile."""

    def __init__(self, tile: int) -> None:
        self.tile = tile
        self.tiles: dict[tuple[str, int, int, int], np.ndarray] = {}

    def touch(self, layer: str, slice_: int, plane: np.ndarray, bbox: tuple[int, int, int, int]) -> None:
        """Snapshot every not-yet-saved tile of `plane` that `bbox` overlaps."""
        t = self.tile
        r0, r1, c0, c1 = bbox
        tiles = self.tiles
        for ty in range(r0 // t, (r1 - 1) // t + 1):
            for tx in range(c0 // t, (c1 - 1) // t + 1):
                key = (layer, slice_, ty, tx)
                if key not in tiles:
                    tiles[key] = plane[ty * t : (ty + 1) * t, tx * t : (tx + 1) * t].copy()

    def patches(self, planes: dict[str, np.ndarray]) -> list[Patch]:
        """Compare snapshots with the current `planes[layer][slice]`; patches where they differ."""
        t = self.tile
        out: list[Patch] = []
        for (layer, slice_, ty, tx), before in self.tiles.items():
            current = planes[layer][slice_, ty * t : ty * t + before.shape[0], tx * t : tx * t + before.shape[1]]
            diff = before != current
            if not diff.any():
                continue
            rows = np.flatnonzero(diff.any(axis=1))
            cols = np.flatnonzero(diff.any(axis=0))
            a, b = int(rows[0]), int(rows[-1]) + 1
            c, d = int(cols[0]), int(cols[-1]) + 1
            out.append(
                Patch(layer, slice_, ty * t + a, tx * t + c, Block(before[a:b, c:d]), Block(current[a:b, c:d]))
            )
        return out

    def restore(self, planes: dict[str, np.ndarray]) -> None:
        """Put every snapshot back (aborting a transaction)."""
        t = self.tile
        for (layer, slice_, ty, tx), before in self.tiles.items():
            planes[layer][slice_, ty * t : ty * t + before.shape[0], tx * t : tx * t + before.shape[1]] = before


class History:
    """Bounded undo/redo stacks: at most `max_steps` entries and about `max_bytes` of pixels.

    The oldest entries are dropped first; the newest entry is always kept.
    """

    def __init__(self, max_steps: int = 200, max_bytes: int = 512 * 2**20) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        self.max_steps = max_steps
        self.max_bytes = max_bytes
        self._undo: deque[HistoryEntry] = deque()
        self._redo: list[HistoryEntry] = []
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data held by the undo and redo stacks."""
        return self._bytes + sum(e.nbytes for e in self._redo)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_name(self) -> str | None:
        return self._undo[-1].name if self._undo else None

    @property
    def redo_name(self) -> str | None:
        return self._redo[-1].name if self._redo else None

    def __len__(self) -> int:
        return len(self._undo)

    def push(self, entry: HistoryEntry) -> None:
        self._redo.clear()
        self._undo.append(entry)
        self._bytes += entry.nbytes
        while len(self._undo) > 1 and (len(self._undo) > self.max_steps or self._bytes > self.max_bytes):
            self._bytes -= self._undo.popleft().nbytes

    def pop_undo(self) -> HistoryEntry | None:
        if not self._undo:
            return None
        entry = self._undo.pop()
        self._bytes -= entry.nbytes
        self._redo.append(entry)
        return entry

    def pop_redo(self) -> HistoryEntry | None:
        if not self._redo:
            return None
        entry = self._redo.pop()
        self._undo.append(entry)
        self._bytes += entry.nbytes
        return entry

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self._bytes = 0
