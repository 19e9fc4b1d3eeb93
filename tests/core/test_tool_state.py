"""Tool state: the tool belongs to a side panel, and the synthesis hint follows the mode."""

from __future__ import annotations

import pytest

from lesion_studio.core.tool_state import PANEL_TOOLS, PLACE_ACTIONS, ToolSettings, ToolState, synthesis_hint


def test_a_tool_of_the_other_panel_switches_the_panel() -> None:
    state = ToolState()
    seen: list[set[str]] = []
    state.changed.connect(seen.append)
    state.update(tool="place")
    assert (state.settings.panel, state.settings.tool) == ("synthesize", "place")
    assert seen == [{"tool", "panel"}]  # one event: views never see a place tool on Annotate
    state.update(tool="brush")
    assert (state.settings.panel, state.settings.tool) == ("annotate", "brush")


def test_switching_panels_brings_back_each_panels_tool() -> None:
    state = ToolState()
    state.update(tool="lasso")
    state.update(panel="synthesize")
    assert state.settings.tool == "navigate"  # first visit: nothing to paint with
    state.update(tool="place")
    state.update(panel="annotate")
    assert state.settings.tool == "lasso"
    state.update(panel="synthesize")
    assert state.settings.tool == "place"
    state.update(tool="select")  # offered by both panels: it stays when the panel changes
    state.update(panel="annotate")
    assert state.settings.tool == "select"


def test_settings_refuse_a_tool_the_panel_does_not_offer() -> None:
    with pytest.raises(ValueError, match="annotate panel offers"):
        ToolSettings(tool="place", panel="annotate")
    with pytest.raises(ValueError, match="panel must be one of"):
        ToolSettings(panel="reader")
    assert ToolSettings().panel == "annotate" and ToolSettings().tool in PANEL_TOOLS["annotate"]


@pytest.mark.parametrize("mode", sorted(PLACE_ACTIONS))
def test_the_synthesis_hint_names_its_mode_only(mode: str) -> None:
    others = [m for m in PLACE_ACTIONS if m != mode]
    for tool in ("place", "navigate"):
        hint = synthesis_hint(mode, tool).lower()
        assert PLACE_ACTIONS[mode] in hint
        assert not any(PLACE_ACTIONS[o] in hint for o in others)
    assert synthesis_hint(mode, "navigate").startswith("Press P")
