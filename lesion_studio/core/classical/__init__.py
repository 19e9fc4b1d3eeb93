"""Classical synthesis (SPEC §4): OpenCV hole fills and real-nodule insertion, no weights."""

from lesion_studio.core.classical.backends import (
    CLASSICAL_FAMILIES,
    FillBackend,
    RealNoduleBackend,
    classical_backend,
)
from lesion_studio.core.classical.fill import FILL_METHODS, fill_hole
from lesion_studio.core.classical.nodule_library import NoduleLibrary

__all__ = [
    "CLASSICAL_FAMILIES",
    "FILL_METHODS",
    "FillBackend",
    "NoduleLibrary",
    "RealNoduleBackend",
    "classical_backend",
    "fill_hole",
]
