"""U-Net / MultiResUNet shapes and the focal Tversky / soft Dice losses (SPEC §3.1)."""

import pytest
import torch

from lesion_studio.core.errors import ConfigError
from lesion_studio.models.segmentation import FocalTverskyLoss, SoftDiceLoss, build_loss, build_segmenter
from lesion_studio.models.segmentation.multiresunet import MultiResBlock


@pytest.mark.parametrize("arch", ["unet", "multiresunet"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_segmenters_keep_the_image_size(arch, norm):
    net = build_segmenter(arch, base_channels=4, depth=3, norm=norm)
    assert net(torch.randn(2, 1, 32, 48)).shape == (2, 1, 32, 48)
    kinds = {type(m).__name__ for m in net.modules()}
    assert ("InstanceNorm2d" in kinds) == (norm == "instance") and ("BatchNorm2d" in kinds) == (norm == "batch")


def test_multires_block_widths():
    block = MultiResBlock(1, 32)          # W = 1.67·32 = 53.4 → 8 + 17 + 26
    assert block.out_channels == 8 + 17 + 26
    assert block(torch.zeros(1, 1, 8, 8)).shape == (1, 51, 8, 8)


def test_unknown_names_raise():
    with pytest.raises(ConfigError):
        build_segmenter("segformer")
    with pytest.raises(ConfigError):
        build_loss("lovasz")


def test_focal_tversky_hand_computed():
    # p = 0.5 everywhere, 4 px, 1 lesion px: TP = .5, FN = .5, FP = 1.5
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    ti = 0.5 / (0.5 + 0.7 * 0.5 + 0.3 * 1.5)
    assert float(FocalTverskyLoss()(logits, target)) == pytest.approx((1 - ti) ** 0.5, rel=1e-4)
    perfect = torch.where(target > 0, 20.0, -20.0)
    assert float(FocalTverskyLoss()(perfect, target)) < 1e-3
    # α = 0.7 > β: missing lesion pixels costs more than the same amount of false alarm
    miss = torch.tensor([[[[-20.0, -20.0], [-20.0, -20.0]]]])
    t2 = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    half_miss = torch.tensor([[[[20.0, -20.0], [-20.0, -20.0]]]])
    half_fp = torch.tensor([[[[20.0, 20.0], [20.0, -20.0]]]])
    loss = FocalTverskyLoss()
    assert float(loss(half_miss, t2)) > float(loss(half_fp, t2))
    assert float(loss(miss, t2)) == pytest.approx(1.0, abs=1e-4)


def test_soft_dice_hand_computed():
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    expected = 1 - (2 * 0.5 + 1e-5) / (2.0 + 1.0 + 1e-5)
    assert float(SoftDiceLoss()(logits, target)) == pytest.approx(expected, rel=1e-5)


def test_losses_train_a_tiny_unet():
    torch.manual_seed(0)
    net = build_segmenter("unet", base_channels=4, depth=2)
    x = torch.randn(4, 1, 16, 16)
    y = (x > 1.0).float()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = FocalTverskyLoss()
    first = float(loss_fn(net(x), y).detach())
    for _ in range(10):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first


def test_focal_tversky_sums_over_the_batch_hand_computed():
    """P0 sums TP/FN/FP over the batch: p = 0.5 everywhere, lesion pixels 1 and 2 of 4 per image."""
    logits = torch.zeros(2, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [0.0, 0.0]]]])
    tp, fn, fp = 0.5 * 3, 0.5 * 3, 0.5 * 5
    ti = tp / (tp + 0.7 * fn + 0.3 * fp)
    assert float(FocalTverskyLoss()(logits, target)) == pytest.approx((1 - ti) ** 0.5, rel=1e-4)
    per_image = [0.5 / (0.5 + 0.7 * 0.5 + 0.3 * 1.5), 1.0 / (1.0 + 0.7 * 1.0 + 0.3 * 1.0)]
    assert float(FocalTverskyLoss()(logits, target)) != pytest.approx(
        sum((1 - t) ** 0.5 for t in per_image) / 2, rel=1e-3)  # not the per-image mean any more


def test_lesion_free_images_teach_the_loss_about_false_positives():
    """Issue 14: per image, FTL on a lesion-free image was 1.000 with a ~1e-8 gradient whatever
    the prediction. Now a false positive on it costs, and its gradient pushes it down."""
    loss_fn = FocalTverskyLoss()
    empty = torch.zeros(2, 1, 16, 16)
    clean = torch.full((2, 1, 16, 16), -8.0)
    blob = clean.clone()
    blob[:, :, 4:9, 4:9] = 6.0                       # a confident false lesion on each image
    assert float(loss_fn(clean, empty)) < 1e-3
    assert float(loss_fn(blob, empty)) > 0.9
    logits = torch.zeros(2, 1, 16, 16, requires_grad=True)   # p = 0.5: unsure everywhere
    loss_fn(logits, empty).backward()
    assert logits.grad.abs().max() > 1e-3 and (logits.grad >= 0).all()  # lowering p lowers the loss
    # in a batch with a lesion image, a false positive on the lesion-free image still raises the loss
    target = torch.zeros(2, 1, 16, 16)
    target[0, 0, 2:5, 2:5] = 1.0
    good = torch.where(target > 0, 8.0, -8.0)
    bad = good.clone()
    bad[1, 0, 10:14, 10:14] = 6.0
    assert float(loss_fn(bad, target)) > float(loss_fn(good, target)) + 0.3
    assert float(FocalTverskyLoss(negative_weight=0.0)(blob, empty)) == 0.0  # the P0 term alone is blind here
