"""DiffAugment (models/diffaugment.py): geometric, differentiable, image and condition together."""

from __future__ import annotations

import pytest
import torch

from lesion_studio.core.errors import ConfigError
from lesion_studio.models.config import TrainConfig
from lesion_studio.models.diffaugment import augment_pair, cutout, diff_augment, translate


def _ramp(n: int = 6, size: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, 2, size, size) * 2 - 1


def test_translation_is_an_integer_shift_with_air_fill():
    torch.manual_seed(3)
    x = _ramp()
    out = translate(x)
    for i in range(len(x)):
        # find the shift that reproduces this sample exactly
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ref = torch.full_like(x[i], -1.0)
                src = x[i][:, max(0, dy): 16 + min(0, dy), max(0, dx): 16 + min(0, dx)]
                ref[:, max(0, -dy): 16 + min(0, -dy), max(0, -dx): 16 + min(0, -dx)] = src
                found |= bool(torch.equal(out[i], ref))
        assert found, f"sample {i} is not a shift of its input by at most 2 px filled with -1"


def test_cutout_zeroes_one_square_in_every_channel():
    torch.manual_seed(1)
    x = torch.ones(8, 3, 16, 16)
    out = cutout(x)
    zero = out == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])
    counts = zero[:, 0].flatten(1).sum(1)
    assert (counts > 0).all() and (counts <= 64).all()  # at most an 8×8 square, clipped at the border
    assert (out[~zero] == 1).all()


def test_image_and_condition_move_together_and_gradients_flow():
    torch.manual_seed(2)
    image = torch.randn(4, 1, 16, 16, requires_grad=True)
    cond = image.detach().clone()
    a, c = augment_pair(image, cond, ["translation", "cutout"])
    assert torch.equal(a.detach(), c)
    a.sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    same, none = augment_pair(image, None, [])
    assert same is image and none is None


def test_unknown_policy_is_refused_by_name():
    with pytest.raises(ValueError, match="colour"):
        diff_augment(_ramp(), ["colour"])
    with pytest.raises(ConfigError, match="diffaugment"):
        TrainConfig.from_dict({"family": "stylegan2-joint", "model": {"diffaugment": ["color"]}})
