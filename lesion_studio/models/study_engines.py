"""Synthesis engines for a reader study's `[synthetic] models`: classical names or checkpoints.

The core builder takes an engine factory so that it stays torch-free; this is the factory the
CLI (and the GUI) pass: classical families need no weights, any other name is a checkpoint
stem (`NAME` for `NAME.safetensors` + `NAME.json`), relative to the study TOML's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from lesion_studio.core.classical.backends import CLASSICAL_FAMILIES
from lesion_studio.core.synthesis_engine import SynthesisEngine


def study_engine_factory(base_dir: Path | None, device: str = "cpu") -> Callable[[str], SynthesisEngine]:
    """`factory(name)` → the engine of a classical family or a checkpoint stem (under `base_dir`)."""
    from lesion_studio.models.inference import load_synthesizer

    def factory(name: str) -> SynthesisEngine:
        if name in CLASSICAL_FAMILIES:
            return load_synthesizer(name)
        stem = Path(name).expanduser()
        if not stem.is_absolute() and base_dir is not None:
            stem = base_dir / stem
        return load_synthesizer(stem, device)

    return factory
