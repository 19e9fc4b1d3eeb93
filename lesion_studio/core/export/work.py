"""The batch's work list: one `WorkItem` per output image, each with its own seed.

An item's seed depends only on the config seed, its case id and its variant number
(`SeedSequence([seed, crc32(case_id), variant])`), never on the order items run in, so a
resumed run, a sharded run and an uninterrupted run make the same images. Items are sorted
by id; rank r of N takes items r, r+N, r+2N, ... (disjoint shards covering everything).
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from lesion_studio.core.dataset import CaseRecord, Dataset
from lesion_studio.core.export.config import BatchConfig

KINDS = ("inpaint", "replace_remove", "outpaint", "real")


@dataclass(frozen=True)
class WorkItem:
    """One output image: `kind` is inpaint (lesion-free source), replace_remove or outpaint
    (lesion source), or real (the source copied unchanged, `output.include_real`)."""

    item_id: str
    case: CaseRecord
    variant: int
    kind: str
    seed: int


def item_seed(seed: int, case_id: str, variant: int) -> int:
    ss = np.random.SeedSequence([int(seed), zlib.crc32(case_id.encode("utf-8")), int(variant) + 1])
    return int(ss.generate_state(1)[0])


def selected_cases(config: BatchConfig, dataset: Dataset) -> list[CaseRecord]:
    if not config.splits:
        return list(dataset.cases)
    return [c for c in dataset.cases if c.split in config.splits]


def plan_items(config: BatchConfig, dataset: Dataset) -> list[WorkItem]:
    """Every item of the export, sorted by id."""
    items: list[WorkItem] = []
    for case in selected_cases(config, dataset):
        if config.include_real:
            items.append(WorkItem(f"{case.case_id}_real", case, -1, "real", 0))
        for k in range(config.per_image):
            seed = item_seed(config.seed, case.case_id, k)
            if not case.has_lesion:
                kind = "inpaint" if config.inpaint else None
            else:
                draw = np.random.default_rng(seed).random()
                kind = "outpaint" if draw < config.outpaint_fraction else (
                    "replace_remove" if config.replace_remove else None)
            if kind is not None:
                items.append(WorkItem(f"{case.case_id}_s{k:03d}", case, k, kind, seed))
    return sorted(items, key=lambda item: item.item_id)


def shard(items: list[WorkItem], rank: int, world_size: int) -> list[WorkItem]:
    return items[rank::world_size]


def summary(items: list[WorkItem], formats: tuple[str, ...]) -> dict:
    """Counts for `--dry-run`: items per kind, cases, and files per format."""
    files_per_item = {"png": 2, "nifti": 2, "nnunet": 2, "coco": 1, "dicom": 1}
    return {
        "items": len(items),
        "cases": len({item.case.case_id for item in items}),
        "by_kind": dict(sorted(Counter(item.kind for item in items).items())),
        "files": {f: files_per_item[f] * len(items) for f in formats},
    }
