"""docs/training.md documents every TOML key, generated from the config dataclasses."""

from __future__ import annotations

import dataclasses

from lesion_studio.models.config import FAMILY_CONFIGS, RunConfig
from lesion_studio.models.config_doc import DOC_PATH, field_comments, render


def test_training_doc_is_generated_from_the_config_dataclasses() -> None:
    text = DOC_PATH.read_text(encoding="utf-8")
    assert render(text) == text, "docs/training.md is out of date: run python scripts/gen_training_doc.py"
    assert "## `model.objective` (texture, cascade)" in text  # the hand-written part is kept


def test_every_key_of_every_family_is_in_the_doc() -> None:
    text = DOC_PATH.read_text(encoding="utf-8")
    for cls in (RunConfig, *FAMILY_CONFIGS.values()):
        for f in dataclasses.fields(cls):
            if f.name != "family":
                assert f"| `{f.name}` |" in text, (cls.__name__, f.name)
    assert field_comments(FAMILY_CONFIGS["outpaint"])["invert_masks"].startswith("SPEC §2.5")  # subclass wins
    assert "P0 Eq. 7: λ2 = 50" in text
