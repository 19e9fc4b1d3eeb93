"""Checkpoint selection per paper (issue 14): blur, real/fake CNN, FCN score, FID/KID's
unavailable path, the record in the best checkpoint's JSON, and the kept `select_at` candidates."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lesion_studio.core.dataset import load_dataset
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.model_catalog import read_model_info
from lesion_studio.models import selection as selection_module
from lesion_studio.models.config import BEST_METRICS, RunConfig, TrainConfig
from lesion_studio.models.data import build_patches, dataset_value_range, split_cases
from lesion_studio.models.metrics import inception_unavailable
from lesion_studio.models.progress import NoteEvent, ValidationEvent
from lesion_studio.models.selection import (
    LOWER_IS_BETTER, FCNScorer, Selection, SelectionJudge, blur_gap, realfake_scores,
)
from lesion_studio.models.trainer import SELECTION_FILE, Trainer, selection_steps
from tests.models.conftest import tiny_config


#: Seeded learning at one thread (another summation order is another result).
pytestmark = pytest.mark.usefixtures("one_thread")


def _tissue(n: int, seed: int, px: int = 32) -> torch.Tensor:
    """Smooth random texture in [-1, 1], `(n, 1, px, px)`: real-looking patches."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, px, px, generator=g)
    x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    return (x / x.abs().amax()).clamp(-1, 1)


def _discs(n: int, seed: int, px: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Tissue with one bright disc each, and the disc masks."""
    rng = np.random.default_rng(seed)
    images = _tissue(n, seed, px) * 0.3 - 0.4
    masks = torch.zeros(n, 1, px, px)
    rr, cc = np.mgrid[:px, :px]
    for i in range(n):
        r, c, rad = rng.integers(8, px - 8), rng.integers(8, px - 8), rng.integers(3, 7)
        disc = torch.from_numpy(((rr - r) ** 2 + (cc - c) ** 2 <= rad * rad).astype(np.float32))
        masks[i, 0] = disc
        images[i, 0] = torch.where(disc > 0, torch.tensor(0.8), images[i, 0])
    return images, masks


def test_the_criteria_table_matches_the_config_choices() -> None:
    assert set(LOWER_IS_BETTER) == set(BEST_METRICS)


def test_blur_ranks_a_blurred_output_worse_than_a_sharp_one() -> None:
    real = _tissue(8, 0)
    blurred = F.avg_pool2d(F.pad(real, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    noisy = (real + 0.5 * torch.randn(real.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    region = torch.zeros_like(real)
    region[..., 8:24, 8:24] = 1
    assert blur_gap(real.clone(), real, region) == pytest.approx(0.0, abs=1e-9)
    assert blur_gap(blurred, real, region) > 1.0  # P2 §3.2.2: blurrier = smaller Laplacian variance
    assert blur_gap(noisy, real, region) > 0.5  # too sharp counts too
    assert blur_gap(blurred, real) > blur_gap(real * 0.99, real)  # whole image (pix2pix)


def test_realfake_ranks_a_copy_of_real_patches_better_than_noise() -> None:
    real_train, real_val = _tissue(48, 2), _tissue(24, 3)
    noise_train = torch.rand(48, 1, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    noise_val = torch.rand(24, 1, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    state = torch.get_rng_state()
    copy = realfake_scores(real_train, _tissue(48, 2), real_val, _tissue(24, 6), seed=0)
    noise = realfake_scores(real_train, noise_train, real_val, noise_val, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # the training's random stream is untouched
    assert noise["realfake"] > 0.9 and copy["realfake"] < noise["realfake"] - 0.2
    assert 0.0 <= copy["realfake_fooled"] <= 1.0 and copy["realfake_fooled"] >= noise["realfake_fooled"]


def test_fcn_ranks_images_with_the_lesion_better_than_blank_ones() -> None:
    images, masks = _discs(32, 7)
    fcn = FCNScorer(images, masks, seed=0)
    test_images, test_masks = _discs(12, 8)
    blank = torch.where(test_masks > 0, torch.tensor(-0.4), test_images)  # the lesion painted over
    with_lesion = fcn.score(test_images, test_masks)
    assert with_lesion > 0.5 and fcn.score(blank, test_masks) < with_lesion - 0.4


def test_an_outpainters_lesion_is_the_unmasked_part_inside_its_context_band() -> None:
    """The FCN score needs the lesion of an outpainting patch: what its mask leaves out, less the
    outer band the model keeps as context (that is tissue, not lesion)."""
    masks = torch.ones(1, 1, 32, 32)
    masks[..., :4, :] = masks[..., -4:, :] = masks[..., :, :4] = masks[..., :, -4:] = 0  # the 4 px band
    masks[..., 14:18, 14:18] = 0  # the lesion
    judge = SelectionJudge("masked_l1", "outpaint", invert_masks=True, context_fraction=0.125)
    assert judge.lesion_of(masks).sum() == 16
    plain = SelectionJudge("masked_l1", "outpaint", invert_masks=True)  # P1's whole crop: no band
    assert plain.lesion_of(masks).sum() == (masks <= 0.5).sum()


def test_selection_ranks_records_the_runner_up_and_never_picks_nan() -> None:
    sel = Selection(requested="fid", criterion="realfake", note="model selection: FID unavailable")
    for step, value in ((10, 0.9), (50, 0.6), (100, float("nan")), (200, 0.7)):
        sel.add(step, value, f"select_step_{step:07d}")
    assert not sel.is_better(float("nan"), 0.9) and sel.is_better(0.5, 0.6) and sel.is_better(0.5, None)
    summary = sel.summary()
    assert summary["best_step"] == 50 and summary["best_value"] == 0.6 and summary["better"] == "lower"
    assert summary["runner_up"] == {"step": 200, "value": 0.7, "checkpoint": "select_step_0000200"}
    assert [c["value"] for c in summary["candidates"]][2] is None  # JSON has no NaN
    again = Selection("fid", "realfake")
    again.restore(sel.state())
    assert again.candidates[0] == sel.candidates[0] and len(again.candidates) == 4


def test_fid_and_kid_fall_back_to_a_stated_criterion_when_inception_is_unavailable(monkeypatch) -> None:
    monkeypatch.setattr(selection_module, "inception_unavailable",
                        lambda name, weights="auto": f"{name} unavailable: Inception weights not found (test)")
    images, masks = _discs(6, 1)
    judge = SelectionJudge("kid", "texture", train_images=images, train_masks=masks, n_val=4)
    assert judge.selection.criterion == "realfake"
    assert judge.selection.note == ("model selection: KID unavailable: Inception weights not found (test); "
                                    "selecting by realfake instead")
    small = SelectionJudge("fid", "texture", train_images=images[:1], train_masks=masks[:1], n_val=1)
    assert small.selection.criterion == "masked_psnr" and "realfake unavailable" in small.selection.note
    # a local weights file that is not there is named, never downloaded
    reason = inception_unavailable("FID", "/nonexistent/weights.pth")
    assert reason.startswith("FID unavailable:") and ("not installed" in reason or "/nonexistent" in reason)


def test_criteria_a_family_cannot_use_are_refused_by_key(tmp_path: Path) -> None:
    for family, metric, objective in (("shape", "fid", "inpaint"), ("stylegan2-joint", "blur", "inpaint"),
                                      ("texture", "fcn", "remove")):
        data = {"family": family, "run": {"out_dir": str(tmp_path)}, "model": {"best_metric": metric}}
        if family == "texture":
            data["model"]["objective"] = objective
        with pytest.raises(ConfigError, match="model.best_metric"):
            TrainConfig.from_dict(data)
    with pytest.raises(ConfigError, match="select_unit"):
        TrainConfig.from_dict({"family": "pix2pix", "run": {"select_unit": "minute"}})


def test_select_at_counts_steps_or_epochs() -> None:
    assert selection_steps(RunConfig(select_at=[50, 10, 10]), 100, 4) == [10, 50]
    # P2 §4.2: epochs 10/50/100/200 of 40 patches at batch 4 (10 steps per epoch)
    assert selection_steps(RunConfig(select_at=[10, 50, 100, 200], select_unit="epoch"), 40, 4) == [100, 500, 1000, 2000]


def _run(family: str, dataset: Path, out: Path, metric: str, **run):
    """A tiny run validated on its own training patches (enough of them for every criterion)."""
    config = tiny_config(family, dataset, out, **{"steps": 4, "val_every": 2, **run})
    config.model = dataclasses.replace(config.model, best_metric=metric)
    ds = load_dataset(dataset)
    cases, _ = split_cases(ds, 0.0, 0)
    normalizer = dataset_value_range(ds, cases)
    train = build_patches(ds, cases, config.model, normalizer)
    events: list = []
    result = Trainer(config, callback=events.append, patches=(train, train, normalizer, "test")).run()
    return result, events


@pytest.mark.parametrize("family, metric", [("texture", "masked_psnr"), ("texture", "blur"),
                                            ("cascade", "realfake"), ("pix2pix", "fcn")])
def test_each_criterion_is_recorded_in_the_best_checkpoint(family: str, metric: str, chest_dataset: Path,
                                                          tmp_path: Path) -> None:
    torch.manual_seed(0)
    result, events = _run(family, chest_dataset, tmp_path, metric)
    vals = [e for e in events if isinstance(e, ValidationEvent)]
    assert [e.step for e in vals] == [2, 4] and all(e.criterion == metric and metric in e.metrics for e in vals)
    assert "blur" in vals[0].metrics
    meta = json.loads((tmp_path / "best.json").read_text(encoding="utf-8"))
    sel = meta["selection"]
    assert sel["criterion"] == metric and sel["requested"] == metric and sel["note"] == ""
    assert sel["best_step"] == meta["step"] and [c["step"] for c in sel["candidates"]] == [2, 4]
    assert sel["runner_up"]["step"] == ({2, 4} - {meta["step"]}).pop()
    assert sel["best_value"] == pytest.approx(meta["metrics"][metric])
    summary = json.loads((tmp_path / SELECTION_FILE).read_text(encoding="utf-8"))
    assert summary["best_checkpoint"] == "best" and summary["best_step"] == meta["step"]
    assert result.selection["best_step"] == meta["step"]
    card = read_model_info(tmp_path / "best.json")
    assert card is not None and f"selected by {metric}" in card.summary()
    assert f"at step {meta['step']}" in card.selection_line()


def test_fid_without_weights_notes_the_reason_and_selects_by_the_fallback(chest_dataset: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    monkeypatch.setattr(selection_module, "inception_unavailable",
                        lambda name, weights="auto": f"{name} unavailable: no weights here (test)")
    torch.manual_seed(0)
    _, events = _run("texture", chest_dataset, tmp_path, "fid")
    notes = [e.text for e in events if isinstance(e, NoteEvent)]
    assert "model selection: FID unavailable: no weights here (test); selecting by realfake instead" in notes
    sel = json.loads((tmp_path / "best.json").read_text(encoding="utf-8"))["selection"]
    assert sel["requested"] == "fid" and sel["criterion"] == "realfake" and "FID unavailable" in sel["note"]
    assert all(isinstance(c["value"], float) for c in sel["candidates"])


def test_select_at_checkpoints_are_kept_beside_keep_last(chest_dataset: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    _, events = _run("pix2pix", chest_dataset, tmp_path, "masked_l1", steps=6, val_every=0,
                     checkpoint_every=1, keep_last=1, select_at=[1, 3, 50])
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert "select_step_0000001.json" in names and "select_step_0000003.json" in names
    assert [n for n in names if n.startswith("step_")] == ["step_0000005.json"]  # keep_last = 1
    assert any(isinstance(e, NoteEvent) and "select_at" in e.text and "50" in e.text for e in events)
    sel = json.loads((tmp_path / SELECTION_FILE).read_text(encoding="utf-8"))
    assert [(c["step"], c["checkpoint"]) for c in sel["candidates"]] == [
        (1, "select_step_0000001"), (3, "select_step_0000003")]


def test_a_resumed_run_keeps_its_candidates(chest_dataset: Path, tmp_path: Path) -> None:
    from lesion_studio.models.progress import CancelToken, StepEvent

    config = tiny_config("pix2pix", chest_dataset, tmp_path, steps=6, val_every=2)
    config.model = dataclasses.replace(config.model, best_metric="masked_l1")
    token = CancelToken()
    torch.manual_seed(0)
    half = Trainer(config, cancel=token,
                   callback=lambda e: token.cancel() if isinstance(e, StepEvent) and e.step == 4 else None).run()
    assert half.cancelled and [c["step"] for c in half.selection["candidates"]] == [2, 4]
    resumed = Trainer(config).run(resume=half.checkpoint)
    assert [c["step"] for c in resumed.selection["candidates"]] == [2, 4, 6]
    sel = json.loads((tmp_path / SELECTION_FILE).read_text(encoding="utf-8"))
    assert sel["best_step"] == resumed.selection["best_step"] and len(sel["candidates"]) == 3
