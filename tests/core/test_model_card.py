"""Model cards: what a shipped default was trained on and how it compares, in the selector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lesion_studio.core.model_card import card_lines
from lesion_studio.core.model_catalog import builtin_models_dir, read_model_info

CARD = {
    "task": "CT nodule outlines",
    "data": {"source": "node21_ct_axial.npz", "licence": "CC BY 3.0", "series_used": 362,
             "series_validation": 54, "series_held_out": 167},
    "training": {"steps": 7000, "hardware": "CPU", "wall_time_s": 812.5, "selection": "lowest W1 on validation"},
    "shape_benchmark": {"generator": {"w1_sd_mean": 0.31, "auc": 0.71, "n": 400},
                        "lobulated_builtin": {"w1_sd_mean": 0.48, "auc": 0.79}},
    "known_failure_modes": ["outlines only"],
}


def test_a_card_lists_data_series_selection_benchmark_and_failures() -> None:
    text = "\n".join(card_lines(CARD))
    for expected in ("CC BY 3.0", "used 362", "held out 167", "steps 7000", "lowest W1 on validation",
                     "generator: w1_sd_mean 0.31, auc 0.71", "lobulated_builtin: w1_sd_mean 0.48", "- outlines only"):
        assert expected in text, expected
    removal = {"realism_benchmark": {"results": {"telea": {"psnr": {"mean": 29.1, "sd": 2.0}, "ssim": {"mean": 0.8}}}}}
    assert "  telea: psnr 29.1, ssim 0.8" in card_lines(removal)


@pytest.mark.parametrize("card", [None, [], "text", {"data": "x", "training": [1], "known_failure_modes": "x"},
                                  {"shape_benchmark": {"generator": {"auc": [0.5]}}, "task": {"a": 1}}])
def test_a_malformed_card_is_skipped_not_raised(card) -> None:
    assert all(isinstance(line, str) for line in card_lines(card))
    assert not any("auc" in line for line in card_lines(card))


def test_the_selector_tooltip_shows_the_card_of_a_checkpoint(tmp_path: Path) -> None:
    # a sidecar without a card: the phantom demo model's, from before presets (tests/data)
    plain_meta = json.loads((Path(__file__).parents[1] / "data" / "pre_preset_texture_sidecar.json").read_text())
    for stem in ("m", "plain", "alt"):
        (tmp_path / f"{stem}.safetensors").write_bytes(b"")  # the catalog reads sidecars only
    (tmp_path / "m.json").write_text(json.dumps(plain_meta | {"card": CARD}))
    info = read_model_info(tmp_path / "m.json", builtin=True)
    assert info is not None and info.card == CARD
    assert "default, real data" in info.label()
    assert "lowest W1 on validation" in info.summary() and "— model card —" in info.summary()
    (tmp_path / "plain.json").write_text(json.dumps(plain_meta))
    plain = read_model_info(tmp_path / "plain.json", builtin=True)
    assert "model card" not in plain.summary() and "default demo" in plain.label()
    # a bundled model that lost to its classical family says so in its label and card
    alternative = CARD | {"status": "alternative", "status_reason": "real-nodule is closer to real"}
    (tmp_path / "alt.json").write_text(json.dumps(plain_meta | {"card": alternative}))
    alt = read_model_info(tmp_path / "alt.json", builtin=True)
    assert "not the default" in alt.label() and "default, real data" not in alt.label()
    assert "status: alternative (real-nodule is closer to real)" in alt.summary()


def test_every_bundled_generator_is_trained_on_real_data_with_a_card() -> None:
    """No phantom-trained model ships: each bundled checkpoint has a card naming its data, its
    held-out series and its benchmark against the classical method of its task."""
    sidecars = sorted(builtin_models_dir().glob("*.json"))
    assert sidecars
    for sidecar in sidecars:
        meta = json.loads(sidecar.read_text())
        card = meta.get("card")
        assert isinstance(card, dict), f"{sidecar.name} has no model card"
        assert card["data"]["series_held_out"] > 0 and "LIDC" in card["data"]["licence"], sidecar.name
        assert "phantom" not in meta.get("description", "").lower(), sidecar.name
        bench = card.get("realism_benchmark") or card.get("shape_benchmark")
        rows = [row for row in bench.get("results", bench).values() if isinstance(row, dict) and "auc" in row]
        assert len(rows) >= 2, f"{sidecar.name}: its card compares it with nothing"
