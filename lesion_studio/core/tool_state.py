"""The painting tool the user has picked and how masks are displayed (Qt-free, evented).

Widgets show it and controllers change it; painting itself happens on the
`AnnotationDocument`. Sizes carry their unit: a brush radius is in px or in mm.

The tool belongs to a side panel (`PANEL_TOOLS`): the panel the user looks at and the active
tool are one state, so a tool of the other panel is never left active. Picking a tool of the
other panel (P on the Annotate tab) switches the panel; switching the panel keeps a tool the
new panel offers and otherwise brings back the tool last used there. The synthesis hint is derived from the mode and the tool
(`synthesis_hint`), never kept from the previous mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from lesion_studio.core.events import EventEmitter

TOOLS = ("navigate", "brush", "eraser", "fill", "lasso", "select", "place")  # place: a synthetic lesion
#: The tools each side panel offers (navigate and select change nothing, so both offer them).
PANEL_TOOLS = {
    "annotate": ("navigate", "brush", "eraser", "fill", "lasso", "select"),
    "synthesize": ("navigate", "select", "place"),
}
#: What a click with the place tool does, per synthesis mode.
PLACE_ACTIONS = {
    "inpaint": "click on the image to place a new lesion",
    "remove": "click on a lesion to remove it",
    "outpaint": "click on a lesion to outpaint around it",
}
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
    panel: str = "annotate"  # the side panel in use; `tool` is always one it offers

    def __post_init__(self) -> None:
        if self.tool not in TOOLS:
            raise ValueError(f"tool must be one of {TOOLS}, got {self.tool!r}")
        if self.panel not in PANEL_TOOLS:
            raise ValueError(f"panel must be one of {tuple(PANEL_TOOLS)}, got {self.panel!r}")
        if self.tool not in PANEL_TOOLS[self.panel]:
            raise ValueError(f"the {self.panel} panel offers {PANEL_TOOLS[self.panel]}, not {self.tool!r}")
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


def panel_of(tool: str) -> str:
    """The first side panel that offers `tool`."""
    return next(panel for panel, tools in PANEL_TOOLS.items() if tool in tools)


def synthesis_hint(mode: str, tool: str) -> str:
    """What to do next in synthesis `mode` with `tool` active (the panel's idle hint)."""
    action = PLACE_ACTIONS[mode]
    if tool == "place":
        return action[0].upper() + action[1:] + "."
    return f"Press P (Place), then {action}."


@dataclass
class ToolState:
    """Current `ToolSettings`; `changed(names)` fires with the set of changed field names."""

    settings: ToolSettings = field(default_factory=ToolSettings)
    changed: EventEmitter = field(default_factory=EventEmitter)
    _last_tool: dict[str, str] = field(default_factory=dict, repr=False)  # per panel

    def update(self, **changes) -> None:
        """Change fields; a tool of another panel switches the panel, and a panel that does not
        offer the current tool gets back the one last used there (navigate the first time)."""
        old = self.settings
        panel = changes.get("panel", old.panel)
        if panel in PANEL_TOOLS:
            if "tool" in changes and "panel" not in changes and changes["tool"] in TOOLS:
                if changes["tool"] not in PANEL_TOOLS[panel]:
                    changes["panel"] = panel_of(changes["tool"])
            elif "tool" not in changes and old.tool not in PANEL_TOOLS[panel]:
                changes["tool"] = self._last_tool.get(panel, "navigate")
        new = replace(old, **changes)
        diff = {f.name for f in fields(ToolSettings) if getattr(new, f.name) != getattr(old, f.name)}
        if diff:
            if new.panel != old.panel:
                self._last_tool[old.panel] = old.tool
            self.settings = new
            self.changed.emit(diff)

    def scale_radius(self, factor: float) -> None:
        """Grow (>1) or shrink (<1) the brush, clamped to the allowed range."""
        radius = min(MAX_RADIUS, max(MIN_RADIUS, round(self.settings.radius * factor, 2)))
        self.update(radius=radius)
