"""The painting tool the user has picked and how masks are displayed (Qt-free, evented).

Widgets show it and controllers change it; painting itself happens on the
`AnnotationDocument`. Sizes carry their unit: a brush radius is in px or in mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from lesion_studio.core.events import EventEmitter

TOOLS = ("navigate", "brush", "eraser", "fill", "lasso", "select", "place")  # place: a synthetic lesion
TARGET_LAYERS = ("labels", "location")
SIZE_UNITS = ("px", "mm")
MIN_RADIUS = 0.5
MAX_RADIUS = 500.0
SIZE_STEP_FACTOR = 1.25  # [ and ] shrink/grow the brush by this factor


@dataclass(frozen=True)
class ToolSettings:
    """One immutable snapshot; `ToolState.update` swaps it and emits what changed."""

    tool: str = "navigate"
    radius: float = 5.0
    radius_unit: str = "px"
    target_layer: str = "labels"
    preserve_other: bool = True  # the brush does not overwrite other lesions
    opacity: float = 0.35  # semi-transparent: the tissue under a lesion stays readable
    contour_only: bool = False
    show_labels: bool = True
    show_location: bool = True

    def __post_init__(self) -> None:
        if self.tool not in TOOLS:
            raise ValueError(f"tool must be one of {TOOLS}, got {self.tool!r}")
        if self.radius_unit not in SIZE_UNITS:
            raise ValueError(f"radius unit must be one of {SIZE_UNITS}, got {self.radius_unit!r}")
        if self.target_layer not in TARGET_LAYERS:
            raise ValueError(f"target layer must be one of {TARGET_LAYERS}, got {self.target_layer!r}")
        if not MIN_RADIUS <= self.radius <= MAX_RADIUS:
            raise ValueError(f"brush radius must be within {MIN_RADIUS}..{MAX_RADIUS}, got {self.radius}")
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"opacity must be within 0..1, got {self.opacity}")

    def radius_kwargs(self) -> dict[str, float]:
        """`radius_px=` or `radius_mm=` for the annotation document's painting calls."""
        return {"radius_mm" if self.radius_unit == "mm" else "radius_px": self.radius}


@dataclass
class ToolState:
    """Current `ToolSettings`; `changed(names)` fires with the set of changed field names."""

    settings: ToolSettings = field(default_factory=ToolSettings)
    changed: EventEmitter = field(default_factory=EventEmitter)

    def update(self, **changes) -> None:
        new = replace(self.settings, **changes)
        diff = {f.name for f in fields(ToolSettings) if getattr(new, f.name) != getattr(self.settings, f.name)}
        if diff:
            self.settings = new
            self.changed.emit(diff)

    def scale_radius(self, factor: float) -> None:
        """Grow (>1) or shrink (<1) the brush, clamped to the allowed range."""
        radius = min(MAX_RADIUS, max(MIN_RADIUS, round(self.settings.radius * factor, 2)))
        self.update(radius=radius)
