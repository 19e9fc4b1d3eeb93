"""P4's StyleGAN2 family (B-SG, M-SG, C-SG): networks, training, checkpoints, sampling, CLI."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_studio.app.cli import main
from lesion_studio.core.errors import CheckpointError, ConfigError
from lesion_studio.core.geometry.shape_cleanup import is_clean
from lesion_studio.models.checkpoint import load_checkpoint, save_checkpoint
from lesion_studio.models.config import (
    STYLEGAN2_FAMILIES,
    RunConfig,
    TrainConfig,
    load_config,
    stylegan2_config,
)
from lesion_studio.models.data import Normalizer, PatchSet
from lesion_studio.models.inference import load_pair_sampler, load_shape_sampler, load_synthesizer
from lesion_studio.models.metrics import lesion_contrast
from lesion_studio.models.networks import build_discriminator, build_generator
from lesion_studio.models.networks.stylegan2 import ModulatedConv2d, StyleGAN2Generator
from lesion_studio.models.progress import (
    CancelToken,
    ConsoleProgress,
    NoteEvent,
    SampleEvent,
    StepEvent,
    ValidationEvent,
)
from lesion_studio.models.stylegan2_losses import soft_mask
from lesion_studio.models.trainer import STRATEGIES, Trainer
from tests.models.conftest import TINY_STYLEGAN2, train_toml

TINY = dict(**TINY_STYLEGAN2, batch_size=8)


def tiny(family: str, **changes):
    return stylegan2_config(family, "cpu-64", **{**TINY, **changes})


def tiny_generator(cond_channels: int = 0, out_channels: int = 1) -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(16, 16, 32, out_channels, cond_channels, mapping_layers=2, channel_base=128,
                              channel_max=16).eval()


def disc_patches(n: int, px: int, seed: int) -> PatchSet:
    """Bright discs (0.6) on a dark noisy background (−0.5), the mask marking each disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:px, :px]
    images, masks = [], []
    for _ in range(n):
        r = rng.uniform(px * 0.12, px * 0.25)
        cy, cx = rng.uniform(r, px - r, 2)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image = -0.5 + 0.1 * rng.standard_normal((px, px))
        image[mask] = 0.6 + 0.1 * rng.standard_normal(int(mask.sum()))
        images.append(image)
        masks.append(mask)

    def t(a):
        return torch.from_numpy(np.stack(a)[:, None].astype(np.float32))

    return PatchSet(t(images), t(masks), [f"c{i}" for i in range(n)], [f"p{i}" for i in range(n)])


def run_config(model, out_dir: Path, dataset: str = "unused", **run) -> TrainConfig:
    defaults = dict(dataset=dataset, out_dir=str(out_dir), steps=4, val_every=0, checkpoint_every=0, sample_every=0,
                    log_every=1, num_threads=0, device="cpu")
    return TrainConfig(model=model, run=RunConfig(**{**defaults, **run}))


# -- networks ---------------------------------------------------------------------------------
def test_demodulation_keeps_a_unit_variance_input_at_unit_variance() -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 64, 3, w_dim=16)
    plain = ModulatedConv2d(64, 64, 3, w_dim=16, demodulate=False)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(8, 64, 24, 24)
    with torch.no_grad():
        for scale in (0.1, 1.0, 10.0):  # the style's size must not matter once demodulated (StyleGAN2 Eq. 3)
            w = scale * torch.randn(8, 16)
            inner = conv(x, w)[..., 1:-1, 1:-1]  # the zero-padded border sees fewer inputs
            assert abs(float(inner.std()) - 1.0) < 0.05, scale
            assert abs(float(inner.mean())) < 0.05
        assert float(plain(x, 10.0 * torch.randn(8, 16)).std()) > 2.0  # without demodulation it scales


def test_style_mixing_respects_the_crossover() -> None:
    g = tiny_generator()
    z1, z2 = torch.randn(2, 16), torch.randn(2, 16)
    crossover = 3
    with torch.no_grad():
        ws1, ws2 = g.ws(z1), g.ws(z2)
        mixed = g.mixed_ws(z1, z2, crossover)
        assert torch.equal(mixed[:, :crossover], ws1[:, :crossover])
        assert torch.equal(mixed[:, crossover:], ws2[:, crossover:])
        out1 = g(z1, noise_mode="const")
        out2 = g(z2, noise_mode="const")
        out_mix = g(z1, z2=z2, crossover=crossover, noise_mode="const")
        assert torch.allclose(out_mix, g.synthesis(mixed, noise_mode="const"))
        assert (out_mix - out1).abs().mean() > 1e-3 and (out_mix - out2).abs().mean() > 1e-3
        # the two ends: every layer from z1, or every layer from z2
        assert torch.equal(g(z1, z2=z2, crossover=g.num_ws, noise_mode="const"), out1)
        assert torch.allclose(g(z1, z2=z2, crossover=0, noise_mode="const"), out2)
    with pytest.raises(ValueError, match="crossover"):
        g.mixed_ws(z1, z2, g.num_ws + 1)


def test_truncation_psi_zero_gives_the_mean_latent_image_for_any_z() -> None:
    g = tiny_generator()
    with torch.no_grad():
        for _ in range(5):  # a running mean of w that is not zero
            g.mapping(torch.randn(64, 16), track_w_avg=True)
        assert float(g.mapping.w_avg.abs().sum()) > 0
        mean_image = g.synthesis(g.mapping.w_avg[None, None].expand(1, g.num_ws, -1), noise_mode="const")
        a = g(torch.randn(1, 16), psi=0.0, noise_mode="const")
        b = g(torch.randn(1, 16) * 3, psi=0.0, noise_mode="const")
        assert torch.allclose(a, mean_image, atol=1e-6) and torch.allclose(b, mean_image, atol=1e-6)
        z = torch.randn(1, 16)
        assert (g(z, psi=1.0, noise_mode="const") - mean_image).abs().mean() > 1e-3


def test_conditional_networks_see_the_mask() -> None:
    g = tiny_generator(cond_channels=1)
    model = tiny("stylegan2-cond")
    d = build_discriminator(model).eval()
    z = torch.randn(2, 16)
    m1 = torch.zeros(2, 1, 32, 32) - 1
    m2 = m1.clone()
    m2[..., 8:20, 10:24] = 1
    with torch.no_grad():
        assert (g(z, m1, noise_mode="const") - g(z, m2, noise_mode="const")).abs().mean() > 1e-3
        x = torch.randn(2, 1, 32, 32)
        assert (d(x, m1) - d(x, m2)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="condition"):
        g(z)
    with pytest.raises(ValueError, match="condition"):
        d(x)


@pytest.mark.parametrize("family, channels", [("stylegan2-joint", 2), ("stylegan2-mask", 1), ("stylegan2-cond", 1)])
def test_p4_size_networks(family: str, channels: int) -> None:
    model = stylegan2_config(family, "p4")
    with torch.device("meta"):
        g, d = build_generator(model), build_discriminator(model)
        cond = torch.zeros(2, 1, 256, 256) if family == "stylegan2-cond" else None
        out = g(torch.randn(2, 512), cond)
        assert tuple(out.shape) == (2, channels, 256, 256) and g.num_ws == 14
        assert tuple(d(out, cond).shape) == (2, 1)
    # StyleGAN2 config-f at 256²: ~30 M generator and ~29 M discriminator parameters
    assert 29.5e6 < sum(p.numel() for p in g.parameters()) < 30.5e6
    assert 28.5e6 < sum(p.numel() for p in d.parameters()) < 29.5e6


# -- training ---------------------------------------------------------------------------------
def test_c_sg_losses_move_as_expected_and_images_follow_the_mask(one_thread, tmp_path: Path) -> None:
    """200 steps of a 16² C-SG on bright discs (one thread, seed 0; seeds 0-2 all pass).

    Expected, and asserted: D separates real from generated early (its logistic loss falls from
    ~2·ln 2 = 1.39 well below it, real logits above generated ones), G's non-saturating loss
    responds by rising far above ln 2, and G nevertheless learns the condition: its images are
    brighter inside the mask than outside, as the real patches are (untrained: either sign)."""
    steps = 200
    model = tiny("stylegan2-cond", patch_px=16, channel_max=32)
    train, val = disc_patches(64, 16, 0), disc_patches(16, 16, 1)
    config = run_config(model, tmp_path / "run", steps=steps, val_every=steps, log_every=steps)
    events = []
    result = Trainer(config, callback=events.append, patches=(train, val, Normalizer(0.0, 1.0), "discs")).run()
    history = result.history

    def mean(key: str, a: int, b: int) -> float:
        values = [h[key] for h in history[a:b] if key in h]
        return sum(values) / len(values)

    chance = 2 * math.log(2)
    assert mean("d_adv", 0, 10) > 0.8 * chance  # D cannot tell yet
    assert mean("d_adv", 50, 100) < 0.8 * chance  # ... and soon separates
    assert mean("d_real", 50, 100) - mean("d_fake", 50, 100) > 0.5
    assert mean("g_adv", 100, 200) > 2 * math.log(2) > mean("g_adv", 0, 10)  # G's loss responds
    assert any("r1" in h for h in history) and "pl" not in history[0]  # lazy R1 on, path length off
    (validation,) = [e.metrics for e in events if isinstance(e, ValidationEvent)]
    assert validation["lesion_contrast"] > 0.5 and validation["real_lesion_contrast"] > 1.0


def test_every_family_trains_reports_and_checkpoints(chest_dataset: Path, tmp_path: Path) -> None:
    for family in STYLEGAN2_FAMILIES:
        # every regulariser runs within 3 steps: R1 and path length every 2nd step
        model = tiny(family, r1_every=2, pl_weight=2.0, pl_every=2)
        config = run_config(model, tmp_path / family, dataset=str(chest_dataset), steps=3, val_every=3,
                            sample_every=3)
        events = []
        result = Trainer(config, callback=events.append).run()
        assert result.step == 3 and not result.cancelled
        steps = [e for e in events if isinstance(e, StepEvent)]
        assert {"d_adv", "d_real", "d_fake", "g_adv", "r1", "pl"} <= set(steps[0].losses), family
        (sample,) = [e for e in events if isinstance(e, SampleEvent)]
        assert sample.images.shape[1:] == (32, 32) and sample.images.shape[0] % 3 == 0
        assert len(sample.titles) == sample.images.shape[0]
        (validation,) = [e for e in events if isinstance(e, ValidationEvent)]
        expected = {"stylegan2-joint": {"mask_fraction", "lesion_contrast"}, "stylegan2-mask": {"mean_mask_l1"},
                    "stylegan2-cond": {"lesion_contrast", "real_lesion_contrast"}}[family]
        assert expected <= set(validation.metrics), (family, validation.metrics)
        notes = [e.text for e in events if isinstance(e, NoteEvent)]
        assert ("fid" in validation.metrics) == (not notes)  # FID/KID, or one line saying why not
        assert all(n.startswith("FID/KID unavailable: ") for n in notes)
        ck = load_checkpoint(result.checkpoint, family=family, with_training_state=True)
        assert set(ck.weights) == {"generator", "discriminator", "generator_ema", "path_length"}
        assert float(ck.weights["path_length"]["pl_mean"]) > 0


def test_resume_gives_the_weights_of_an_uninterrupted_run(chest_dataset: Path, tmp_path: Path) -> None:
    n = 8
    # mixing p = 0.9, random noise, DiffAugment: every random draw must resume where it stopped
    model = tiny("stylegan2-joint", r1_every=2, pl_weight=2.0, pl_every=3, diffaugment=["translation", "cutout"])
    straight = run_config(model, tmp_path / "a", dataset=str(chest_dataset), steps=n)
    torch.manual_seed(123)
    Trainer(straight).run()
    halved = run_config(model, tmp_path / "b", dataset=str(chest_dataset), steps=n)
    token = CancelToken()
    half = Trainer(halved, cancel=token,
                   callback=lambda e: token.cancel() if isinstance(e, StepEvent) and e.step == n // 2 else None).run()
    assert half.cancelled and half.step == n // 2
    torch.manual_seed(999)  # resuming must not depend on the caller's RNG
    Trainer(halved).run(resume=half.checkpoint)
    wa = load_checkpoint(tmp_path / "a" / "final").weights
    wb = load_checkpoint(tmp_path / "b" / "final").weights
    assert set(wa) == set(wb) == {"generator", "discriminator", "generator_ema", "path_length"}
    for net in wa:
        for key in wa[net]:
            assert torch.allclose(wa[net][key].float(), wb[net][key].float(), atol=1e-6), (net, key)


# -- checkpoints and sampling -----------------------------------------------------------------
def _save_untrained(family: str, path: Path, seed: int, **changes) -> Path:
    """A checkpoint of freshly built networks (EMA moved off G so the two differ)."""
    torch.manual_seed(seed)
    model = tiny(family, **changes)
    strategy = STRATEGIES[family](model, 1, torch.device("cpu"), contextlib.nullcontext)
    with torch.no_grad():
        for p in strategy.generator_ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
    config = run_config(model, path.parent).to_dict()
    return save_checkpoint(path, family=family, config=config, networks=strategy.networks, step=1,
                           normalization={"lo": -1000.0, "hi": 400.0})


def test_checkpoint_round_trip_samples_with_the_ema_generator(tmp_path: Path) -> None:
    stem = _save_untrained("stylegan2-joint", tmp_path / "bsg", seed=1)
    ck = load_checkpoint(stem)
    model = tiny("stylegan2-joint")
    ema = build_generator(model).eval()
    ema.load_state_dict(ck.weights["generator_ema"])
    sampler = load_pair_sampler(stem, clean=False)
    images, masks = sampler.sample(3, seed=7)
    z = torch.randn(3, model.z_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = ema(z, noise_mode="const").numpy()
    norm = Normalizer(-1000.0, 400.0)
    assert np.allclose(images, norm.to_units(np.clip(expected[:, 0], -1, 1)), atol=1e-3)  # units, EMA weights
    assert np.array_equal(masks, expected[:, 1] > 0)
    again, again_masks = load_pair_sampler(stem, clean=False).sample(3, seed=7)
    assert np.array_equal(again, images) and np.array_equal(again_masks, masks)  # a function of the seed
    g = build_generator(model).eval()
    g.load_state_dict(ck.weights["generator"])
    with torch.no_grad():
        assert not np.allclose(g(z, noise_mode="const").numpy(), expected)  # the EMA, not G, samples


def test_mc_sg_pipeline_and_m_sg_as_a_shape_source(tmp_path: Path) -> None:
    mask_ck = _save_untrained("stylegan2-mask", tmp_path / "msg", seed=2)
    cond_ck = _save_untrained("stylegan2-cond", tmp_path / "csg", seed=3, patch_px=64)
    sampler = load_pair_sampler(mask_ck, cond_checkpoint=cond_ck)
    images, masks = sampler.sample(4, seed=11)
    assert images.shape == masks.shape == (4, 64, 64) and images.dtype == np.float32 and masks.dtype == bool
    assert any(m.any() for m in masks) and all(is_clean(m) for m in masks if m.any())  # cleaned like every shape
    assert images.min() >= -1000.0 - 1e-3 and images.max() <= 400.0 + 1e-3 and images.std() > 0
    assert set(sampler.identity) == {"mask", "cond"}
    again = sampler.sample(4, seed=11)
    assert np.array_equal(again[0], images) and np.array_equal(again[1], masks)
    shapes = load_shape_sampler(mask_ck).sample(3, seed=5)
    assert shapes.shape == (3, 32, 32) and any(m.any() for m in shapes) and all(is_clean(m) for m in shapes if m.any())
    engine = load_synthesizer("telea", shape_checkpoint=mask_ck)
    assert np.array_equal(engine.shape_sampler.sample(3, seed=5), shapes)
    with pytest.raises(CheckpointError, match="pairs"):
        load_pair_sampler(cond_ck)
    with pytest.raises(CheckpointError, match="load_pair_sampler"):
        load_synthesizer(cond_ck)
    with pytest.raises(CheckpointError, match="shape generator"):
        load_shape_sampler(cond_ck)


# -- configuration and CLI --------------------------------------------------------------------
@pytest.mark.parametrize("family", ["stylegan2-mask", "stylegan2-cond"])
def test_train_cli_accepts_the_stylegan2_families(family: str, chest_dataset: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "train.toml"
    run = dict(dataset=str(chest_dataset), out_dir=str(tmp_path / "run"), steps=2, val_every=0, checkpoint_every=0,
               device="cpu", num_threads=1)
    path.write_text(train_toml(family, run, {**TINY_STYLEGAN2, "batch_size": 4, "pl_weight": 0.0}))
    assert main(["train", str(path), "--quiet"]) == 0
    ck = load_checkpoint(tmp_path / "run" / "final", family=family)
    assert ck.step == 2 and ck.meta["config"]["model"]["channel_max"] == 16
    assert "checkpoint:" in capsys.readouterr().out


def test_stylegan2_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('family = "stylegan2-joint"\n[model]\npatch_px = 48\nstyle_mixing_prob = 1.5\n')
    with pytest.raises(ConfigError, match="style_mixing_prob"):
        load_config(path)
    path.write_text('family = "stylegan2-joint"\n[model]\npatch_px = 48\n')
    with pytest.raises(ConfigError, match="power of two"):
        load_config(path)
    with pytest.raises(ConfigError, match="preset"):
        stylegan2_config("stylegan2-mask", "gpu-9000")
    assert stylegan2_config("stylegan2-mask", "cpu-128").patch_px == 128


def test_notes_reach_the_console_and_job_log() -> None:
    stream = io.StringIO()
    ConsoleProgress(stream=stream)(NoteEvent("FID/KID unavailable: no weights"))
    assert stream.getvalue() == "FID/KID unavailable: no weights\n"


def test_lesion_contrast() -> None:
    images = torch.full((2, 1, 8, 8), -1.0)
    masks = torch.zeros(2, 1, 8, 8)
    masks[:, :, 2:5, 2:5] = 1
    images[masks.bool()] = 1.0
    assert lesion_contrast(images, masks) == pytest.approx(2.0)
    assert lesion_contrast(images, torch.zeros_like(masks)) is None  # no sample with a lesion


def test_diffaugment_changes_what_the_discriminator_sees(chest_dataset: Path, tmp_path: Path) -> None:
    """Same seed, same data: with DiffAugment D's first logits differ (it judged transformed images)."""
    first = {}
    for policies in ([], ["translation", "cutout"]):
        config = run_config(tiny("stylegan2-cond", diffaugment=policies), tmp_path / "-".join(policies or ["none"]),
                            dataset=str(chest_dataset), steps=1)
        torch.manual_seed(0)
        events = []
        Trainer(config, callback=events.append).run()
        first[tuple(policies)] = next(e.losses for e in events if isinstance(e, StepEvent))
    plain, augmented = first[()], first[("translation", "cutout")]
    assert plain["d_real"] != pytest.approx(augmented["d_real"], abs=1e-6)


def test_soft_mask_reads_back_as_the_outline_and_sigma_zero_is_sharp() -> None:
    yy, xx = np.mgrid[:32, :32]
    disc = torch.from_numpy(((yy - 15.5) ** 2 + (xx - 12) ** 2 <= 5.0**2).astype(np.float32))[None, None]
    assert torch.equal(soft_mask(disc, 0.0), disc * 2 - 1)
    soft = soft_mask(disc, 1.5)
    assert soft.min() >= -1 and soft.max() <= 1
    assert -0.5 < soft[0, 0, 15, 17] < 0 < soft[0, 0, 15, 16] < 0.5  # a ramp across the outline
    assert torch.equal(soft > 0, disc > 0.5)  # read back exactly
    for size in (1, 3):  # the smallest nodules survive
        small = torch.zeros(1, 1, 16, 16)
        small[0, 0, 7:7 + size, 7:7 + size] = 1
        assert torch.equal(soft_mask(small, 1.5) > 0, small > 0.5)
    assert (soft_mask(torch.zeros(2, 1, 8, 8), 1.5) == -1).all()  # no lesion: background everywhere
