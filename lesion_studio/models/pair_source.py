"""Whole generated cases from P4's pair generators as synthetic training cases.

P4 §3.3 adds generated image + mask pairs to the real training cases as extra cases (not
lesions pasted into real images). `PairSamplerSource` draws them from a B-SG checkpoint or an
MC-SG pair (M-SG + C-SG) through `models.inference.load_pair_sampler`, resizes them to the
experiment's image size and returns `SyntheticCase`s in image units (the runner normalises).

Each case names the patients its generator learned from (the checkpoints' recorded training
and validation patients), so the experiment can check patient isolation. Cases are drawn in
fixed batches whose seeds derive from `(seed, batch)`, so the first 20 cases of a 50-case draw
are the 20 cases of a 20-case draw: a larger count extends a smaller one instead of replacing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesion_studio.core.geometry.crops import resize_image, resize_mask
from lesion_studio.models.synthetic_sources import SyntheticCase

#: Cases drawn per generator call (and per derived seed); part of the seed's promise.
BATCH = 16


def batch_seed(seed: int, batch: int) -> int:
    """The sampler seed of batch `batch` of a draw seeded `seed` (independent streams per batch)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(batch), 0x9A1]).generate_state(1)[0])


@dataclass(frozen=True)
class PairSamplerSource:
    """Generated (image, mask) cases from B-SG (`checkpoint` alone) or MC-SG (`checkpoint` = the
    M-SG, `cond_checkpoint` = the C-SG). `patients`: the ids the cases carry; None reads them
    from the checkpoints (`generator_patients`)."""

    checkpoint: Path | str
    cond_checkpoint: Path | str | None = None
    device: str = "cpu"
    psi: float = 1.0
    patients: frozenset[str] | None = None

    def generator_patients(self) -> frozenset[str]:
        """Every patient (train and validation) the checkpoints record; empty when they record none."""
        from lesion_studio.models.patient_isolation import checkpoint_patients

        out: set[str] = set()
        for ck in (self.checkpoint, self.cond_checkpoint):
            if ck is not None:
                out.update(p for ids in (checkpoint_patients(ck) or {}).values() for p in ids)
        return frozenset(out)

    def synthesize(self, n: int, seed: int, size_px: int) -> list[SyntheticCase]:
        """`n` generated cases at `size_px`², image `(size_px, size_px)` float32 in the generator's
        image units, mask bool; a function of `seed` (and the checkpoints) only."""
        if n <= 0:
            return []
        from lesion_studio.models.inference import load_pair_sampler

        sampler = load_pair_sampler(self.checkpoint, self.device, cond_checkpoint=self.cond_checkpoint, psi=self.psi)
        patients = self.patients if self.patients is not None else self.generator_patients()
        size = (int(size_px), int(size_px))
        out = []
        for b in range((n + BATCH - 1) // BATCH):
            images, masks = sampler.sample(BATCH, batch_seed(seed, b))
            for image, mask in zip(images, masks):
                if len(out) == n:
                    break
                out.append(SyntheticCase(resize_image(image, size), resize_mask(mask, size), patients))
        return out
