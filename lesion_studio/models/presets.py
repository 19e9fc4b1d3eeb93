"""Texture-generator presets: named architectures resolved into the explicit numbers a checkpoint records.

A texture/outpaint config names a `preset`; every architecture field it leaves unset (`None`,
or `""` for the gate) takes the preset's value. `resolve_preset` fills them in before a network
is built or a checkpoint is written, so a checkpoint's sidecar holds the numbers themselves,
not a name whose meaning could change later.

| preset | kept widths at 1, 1/2, 1/4 resolution | gate | dilated convs | GFLOP per 256² image | params |
| --- | --- | --- | --- | --- | --- |
| `paper` | 48 / 96 / 192 (DeepFill's `cnum` read as the kept width) | full | 192 | 148.1 | 10.35 M |
| `deepfill` | 24 / 48 / 96 (DeepFill v2's real kept widths) | full | 96 | 37.3 | 2.59 M |
| `light` (default) | 24 / 48 / 96 | half (a gate per 2 channels) | 48 | 21.4 | 1.14 M |

A DeepFill v2 network with contextual attention (`benchmarks/reference_networks.py`) measures
54.5 GFLOP per one-channel 256² image with torch's FlopCounterMode: `light` is 0.39× of it.

Checkpoints written before presets existed have no `preset` key; their layout is `paper` (full
gates, 4c-wide dilated convs, at their recorded `base_channels`): `upgrade_sidecar_config`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lesion_studio.core.errors import ConfigError

#: Gate kinds of `networks.gated_conv.GatedConv2d`: one gate per output channel (P3, DeepFill v2),
#: one per pair of channels, or one map shared by all channels (LWGC_sc). Torch-free here.
GATES = ("full", "half", "single")
#: Families whose generator is the gated-conv texture generator.
PRESET_FAMILIES = ("texture", "outpaint")

#: preset -> the architecture fields it sets (any field set explicitly in the config wins).
TEXTURE_PRESETS: dict[str, dict[str, Any]] = {
    # P3 §III-C as first built: 48 kept channels at full resolution, one gate per channel.
    "paper": {"base_channels": 48, "gate": "full", "dilated_mult": 4},
    # DeepFill v2 [P3 ref 26]: cnum = 48 before the feature/gate split, i.e. 24 kept channels.
    "deepfill": {"base_channels": 24, "gate": "full", "dilated_mult": 4},
    # DeepFill's widths, one gate per pair of channels and dilated convs half as wide (48, not 96,
    # channels at 1/4 resolution). Chosen by benchmarks/preset_budget.py (docs/models.md): one gate
    # map per layer (LWGC_sc, 14.6 GFLOP) trained clearly worse; these halves did not.
    "light": {"base_channels": 24, "gate": "half", "dilated_mult": 2},
}
#: The preset the training default uses (see docs/models.md, "Texture presets").
DEFAULT_PRESET = "light"


def preset_names() -> tuple[str, ...]:
    """The preset names, for messages and the config schema."""
    return tuple(TEXTURE_PRESETS)


def resolve_preset(model: Any) -> Any:
    """A copy of a model config with the preset's numbers in every unset field.

    Configs without a `preset` field (shape, cascade, pix2pix) come back unchanged.
    `ConfigError` names `model.preset` for an unknown name.
    """
    preset = getattr(model, "preset", None)
    if preset is None:
        return model
    if preset not in TEXTURE_PRESETS:
        raise ConfigError(f"model.preset: unknown preset {preset!r}; expected one of {', '.join(TEXTURE_PRESETS)}")
    changes = {k: v for k, v in TEXTURE_PRESETS[preset].items() if getattr(model, k) in (None, "")}
    resolved = dataclasses.replace(model, **changes) if changes else model
    if resolved.gate not in GATES:
        raise ConfigError(f"model.gate: unknown gate {resolved.gate!r}; expected one of {', '.join(GATES)}")
    return resolved


def upgrade_sidecar_config(config: Any) -> Any:
    """A checkpoint sidecar's config as this version reads it.

    Texture/outpaint sidecars from before presets (no `model.preset`) describe the `paper`
    layout: full gates and 4c-wide dilated convs at their recorded `base_channels`. Anything else
    comes back unchanged.
    """
    if not isinstance(config, dict) or config.get("family") not in PRESET_FAMILIES:
        return config
    model = config.get("model")
    if not isinstance(model, dict) or "preset" in model:
        return config
    legacy = {"preset": "paper", "gate": "full", "dilated_mult": 4}
    return {**config, "model": {**legacy, **model}}


def is_pre_preset_sidecar(config: Any) -> bool:
    """True for a texture/outpaint sidecar written before presets existed (no `model.preset`)."""
    return upgrade_sidecar_config(config) is not config
