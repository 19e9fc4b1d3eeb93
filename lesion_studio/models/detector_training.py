"""Training and inference of the box detectors (`models.detectors`) on lesion masks.

Targets are the 8-connected components of each (augmented) mask as boxes
(`core.metrics.masks_to_boxes`, the same boxes the metrics match against); a lesion-free image
is a negative with an empty target, which torchvision's Faster R-CNN and RetinaNet accept.
lesion-studio datasets carry masks, not boxes, so there is no separate box source: a box-only
dataset (kidney stones) is converted to masks first (docs/downstream_evaluation.md).

The pipeline is the heatmap detector's (`experiments.train_segmenter`) where it applies: the
same prepared images, classic augmentation when the condition asks for it, the same
ReduceLROnPlateau schedule and the weights of the lowest validation loss kept. Its P0 parts
(rotation ±5°, 5 % of the synthetic pool per epoch) are P0's segmentation recipe; a detector
gets P3's instead: "random shift and flip (p = 0.5 for both)" (P3 §IV-C) on every real and
synthetic image. The optimiser is P3's: "the original settings" of Ren et al.
(Faster R-CNN: SGD, momentum 0.9, weight decay 5e-4) and Lin et al. (RetinaNet: SGD,
momentum 0.9, weight decay 1e-4), with P3's pre-training learning rate 1e-3 as the runner's
default. AdamW (same weight decay) is offered for short from-scratch runs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lesion_studio.core.classic_augment import ClassicParams, ClassicPreset, apply_params
from lesion_studio.core.classic_augment import augment as classic_augment
from lesion_studio.core.classic_augment import preset as classic_preset
from lesion_studio.core.errors import LesionStudioError
from lesion_studio.core.metrics import masks_to_boxes
from lesion_studio.models.best_weights import BestWeights

OPTIMIZERS = ("sgd", "adamw")
#: SGD momentum of both papers' detectors (Ren et al. §3.1.3; Lin et al. §4.1).
MOMENTUM = 0.9
#: Weight decay per detector: Ren et al. §3.1.3 (5e-4) and Lin et al. §4.1 (1e-4).
WEIGHT_DECAY = {"faster_rcnn": 5e-4, "retinanet": 1e-4}
#: Ours: the gradient norm is clipped here, so that a from-scratch start cannot diverge on the
#: first batches (neither paper trains from scratch).
MAX_GRAD_NORM = 10.0
#: P3 §IV-C: random shift and flip, p = 0.5 each. The shift's range is ours (P3 is silent):
#: U[−5 %, 5 %] of the image per axis in whole pixels, P4 §4.4's shift range.
SHIFT_P = 0.5
SHIFT_FRACTION = 0.05
FLIP_P = 0.5


def mask_target(mask: np.ndarray) -> dict[str, torch.Tensor]:
    """torchvision's target of one image: lesion boxes `(N, 4)` px `(x0, y0, x1, y1)`, labels 1."""
    boxes = masks_to_boxes(mask)
    return {"boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.ones(len(boxes), dtype=torch.int64)}


def augment_pair(image: np.ndarray, mask: np.ndarray, recipe: ClassicPreset | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A detector's training augmentation: classic (when `recipe`, as the segmenter's), then P3's
    random shift and horizontal flip (p = 0.5 each); boxes are taken from the augmented mask."""
    if recipe is not None:
        image, mask, _ = classic_augment(image, mask, recipe, rng)
    if rng.random() < SHIFT_P:
        dy, dx = np.round(rng.uniform(-SHIFT_FRACTION, SHIFT_FRACTION, 2) * np.asarray(image.shape))
        image, mask = apply_params(image, mask, ClassicParams(shift_rc_px=(float(dy), float(dx))))
    if rng.random() < FLIP_P:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def _batch(images: list[np.ndarray], device: str) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)[:, None].astype(np.float32)).to(device)


def _targets(masks: list[np.ndarray], device: str) -> list[dict[str, torch.Tensor]]:
    return [{k: v.to(device) for k, v in mask_target(m).items()} for m in masks]


def _total(losses: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
    loss = sum(losses.values())
    if not torch.isfinite(loss):
        parts = ", ".join(f"{k} {float(v):.3g}" for k, v in losses.items())
        raise LesionStudioError(f"detector training diverged in epoch {epoch + 1} ({parts}); "
                                "lower training.lr or try detector_optimizer = 'adamw'")
    return loss


@torch.no_grad()
def detector_loss(model: torch.nn.Module, images: list[np.ndarray], masks: list[np.ndarray], batch_size: int,
                  device: str) -> float:
    """Mean training loss on held-out images, batch norm in inference mode (no statistics updated)."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    total = 0.0
    for s in range(0, len(images), batch_size):
        losses = model(_batch(images[s:s + batch_size], device), _targets(masks[s:s + batch_size], device))
        total += float(sum(losses.values())) * len(images[s:s + batch_size])
    model.train()
    return total / max(len(images), 1)


def train_detector(model: torch.nn.Module, images: list[np.ndarray], masks: list[np.ndarray],
                   val_images: list[np.ndarray], val_masks: list[np.ndarray], *, epochs: int, batch_size: int,
                   lr: float, seed: int, device: str, optimizer: str = "sgd", weight_decay: float = 1e-4,
                   augment_preset: str | None = None, lr_patience: int = 10, min_lr: float = 5e-4,
                   on_epoch: Callable[[int, float], None] | None = None,
                   stop: Callable[[], None] | None = None) -> torch.nn.Module:
    """Train a `GrayscaleBoxDetector` on prepared `(H, W)` float32 images and bool masks.

    SGD (momentum 0.9) or AdamW at `lr`, gradient norm clipped at `MAX_GRAD_NORM`, lr × 0.5
    after `lr_patience` epochs without a better validation loss (down to `min_lr`); the weights
    of the lowest validation loss (training loss without a validation set) are kept. `stop` is
    called before every epoch and raises to cancel. Seeded: the same seed gives the same weights
    on CPU (the anchor samplers draw from torch's generator, seeded here).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, weight_decay=weight_decay) if optimizer == "sgd"
           else torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay))
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=lr_patience, threshold=1e-4,
                                                       threshold_mode="abs", min_lr=min(min_lr, lr))
    recipe = classic_preset(augment_preset) if augment_preset else None
    best = BestWeights()
    n = len(images)
    for epoch in range(epochs):
        if stop is not None:
            stop()
        model.train()
        total = 0.0
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            pairs = [augment_pair(images[i], masks[i], recipe, rng) for i in order[start:start + batch_size]]
            losses = model(_batch([p[0] for p in pairs], device), _targets([p[1] for p in pairs], device))
            loss = _total(losses, epoch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            opt.step()
            total += float(loss.detach()) * len(pairs)
        train_loss = total / max(n, 1)
        val_loss = detector_loss(model, val_images, val_masks, batch_size, device) if val_images else train_loss
        sched.step(val_loss)
        best.update(model, val_loss)
        if on_epoch:
            on_epoch(epoch, train_loss)
    best.restore(model)
    return model


@torch.no_grad()
def predict_boxes(model: torch.nn.Module, images: list[np.ndarray], *, batch_size: int = 8,
                  device: str = "cpu") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Boxes `(N, 4)` px `(x0, y0, x1, y1)` and scores `(N,)` per image, every lesion class pooled
    (the metrics are single-class); the image-level score is the highest box score."""
    model.eval()
    boxes, scores = [], []
    for s in range(0, len(images), batch_size):
        for out in model(_batch(images[s:s + batch_size], device)):
            boxes.append(out["boxes"].detach().cpu().numpy().astype(float).reshape(-1, 4))
            scores.append(out["scores"].detach().cpu().numpy().astype(float).reshape(-1))
    return boxes, scores
