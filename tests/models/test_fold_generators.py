"""Per-fold generators (`models.fold_generators`): a finished generator is reused, not retrained."""

from pathlib import Path

import pytest

from lesion_studio.core.dataset import load_dataset
from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.models import fold_generators
from lesion_studio.models.fold_generators import train_fold_generator
from tests.models.conftest import TWO_STEP_RUN, train_toml

#: base_channels left to the preset on purpose (see the test).
GENERATOR_TOML = train_toml("texture", {**TWO_STEP_RUN, "num_threads": 1},
                            dict(disc_channels=8, patch_px=32, perceptual_weights="disabled", best_metric=""))


def test_a_finished_fold_generator_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The preset fields the TOML leaves unset (base_channels, gate, dilated_mult) are resolved
    into the checkpoint's config; the reuse check must compare like with like."""
    generate_phantom_dataset(tmp_path / "data", "chest", 6, seed=2, size_px=64)
    toml = tmp_path / "texture.toml"
    toml.write_text(GENERATOR_TOML)
    dataset = load_dataset(tmp_path / "data")
    out = tmp_path / "generators" / "frac1__fold0"
    first = train_fold_generator(toml, dataset, dataset.cases, out, seed=3, device="cpu")
    assert first.with_name(first.name + ".json").is_file()

    class NoTraining:
        def __init__(self, *args, **kwargs) -> None:
            raise AssertionError("the finished generator was trained again")

    monkeypatch.setattr("lesion_studio.models.trainer.Trainer", NoTraining)
    assert train_fold_generator(toml, dataset, dataset.cases, out, seed=3, device="cpu") == first
