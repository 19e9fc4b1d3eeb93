"""Classical synthesis (SPEC §4): OpenCV hole fills, real-nodule and real-stone insertion, no weights."""

from lesion_studio.core.classical.backends import (
    CLASSICAL_FAMILIES,
    FillBackend,
    RealNoduleBackend,
    RealStoneBackend,
    classical_backend,
)
from lesion_studio.core.classical.fill import FILL_METHODS, fill_hole
from lesion_studio.core.classical.nodule_library import NoduleLibrary
from lesion_studio.core.classical.stone_library import StoneLibrary

__all__ = [
    "CLASSICAL_FAMILIES",
    "FILL_METHODS",
    "FillBackend",
    "NoduleLibrary",
    "RealNoduleBackend",
    "RealStoneBackend",
    "StoneLibrary",
    "classical_backend",
    "fill_hole",
]
