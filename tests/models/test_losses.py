"""Losses: adversarial halves, masked L1, and the pretrained-VGG rule (no silent random VGG)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from lesion_studio.core.errors import ConfigError
from lesion_studio.models.losses import AdversarialLoss, ContentLoss, PerceptualLoss, build_vgg_term, l1


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def test_masked_l1_counts_only_the_mask() -> None:
    real = torch.zeros(1, 1, 4, 4)
    fake = torch.zeros(1, 1, 4, 4)
    fake[..., :2, :] = 1.0
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1.0
    assert l1(fake, real, mask).item() == pytest.approx(1.0)
    assert l1(fake, real).item() == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["lsgan", "bce", "nonsaturating"])
def test_adversarial_losses_prefer_the_right_answer(kind: str) -> None:
    loss = AdversarialLoss(kind)
    good_real, good_fake = torch.full((4, 1), 3.0), torch.full((4, 1), -3.0)
    if kind == "lsgan":
        good_real, good_fake = torch.ones(4, 1), torch.zeros(4, 1)
    assert loss.discriminator(good_real, good_fake) < loss.discriminator(good_fake, good_real)
    assert loss.generator(good_real) < loss.generator(good_fake)


def test_lsgan_matches_p3_equations() -> None:
    loss = AdversarialLoss("lsgan")
    real, fake = torch.tensor([0.5]), torch.tensor([0.25])
    assert loss.discriminator(real, fake).item() == pytest.approx(0.5 * ((0.5 - 1) ** 2 + 0.25**2))
    assert loss.generator(fake).item() == pytest.approx(0.5 * (0.25 - 1) ** 2)


def test_unknown_adversarial_loss() -> None:
    with pytest.raises(ConfigError, match="wgan"):
        AdversarialLoss("wgan")


@pytest.mark.parametrize("cls, key, name", [(PerceptualLoss, "model.perceptual_weights", "vgg16-397923af.pth"),
                                            (ContentLoss, "model.content_weights", "vgg19-dcbb9e9d.pth")])
def test_missing_vgg_weights_refuse_with_instructions(empty_hub: Path, cls, key: str, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        cls("auto", key=key)
    message = str(info.value)
    assert name in message and str(empty_hub) in message and f'{key} = "disabled"' in message
    with pytest.raises(ConfigError, match="not found"):
        cls("/nowhere/vgg.pth", key=key)


def test_disabled_terms_are_not_built(empty_hub: Path) -> None:
    assert build_vgg_term("vgg16", "disabled", 1.0, key="k") is None
    assert build_vgg_term("vgg19", "auto", 0.0, key="k") is None


def test_weights_from_a_file_and_from_the_hub_cache(tmp_path: Path, empty_hub: Path) -> None:
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None)
    path = tmp_path / "my_vgg16.pth"
    torch.save(vgg.state_dict(), path)
    loss = PerceptualLoss(str(path))
    for a, b in zip(loss.features.trunk.parameters(), vgg.features.parameters()):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in loss.parameters())
    fake = torch.rand(1, 1, 32, 32, requires_grad=True)
    value = loss(fake * 2 - 1, torch.zeros(1, 1, 32, 32))
    value.backward()
    assert value.item() > 0 and fake.grad is not None
    # the same file in the hub cache is found by "auto"
    (empty_hub / "checkpoints").mkdir(parents=True)
    (empty_hub / "checkpoints" / "vgg16-397923af.pth").write_bytes(path.read_bytes())
    assert PerceptualLoss("auto").features.weights_path.endswith("vgg16-397923af.pth")


def test_safetensors_weights_and_wrong_architecture(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    vgg19 = torchvision.models.vgg19(weights=None)
    st = tmp_path / "vgg19.safetensors"
    save_file({k: v.contiguous() for k, v in vgg19.state_dict().items() if k.startswith("features.")}, str(st))
    assert len(ContentLoss(str(st)).features(torch.zeros(1, 1, 32, 32))) == 4
    with pytest.raises(ConfigError, match="not VGG16"):
        PerceptualLoss(str(st))  # VGG19 weights do not fit VGG16's pool3 trunk
