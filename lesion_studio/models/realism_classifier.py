"""The automatic real-vs-synthetic classifier (P2 §3.2): a small CNN on lesion patches.

The realism benchmark (`benchmarks/realism.py`, task 3) trains it in series-grouped folds; the
reader study's machine reader (`models/machine_reader.py`) trains it on patches outside the
study and reads the study like a human would. One network, one training loop:

- three 3×3 conv blocks (16, 32, 64 channels, batch norm, ReLU; max-pool after the first two),
  global average pooling, one logit (> 0: synthetic) — any patch size;
- inputs clipped to `value_range` and mapped to [-1, 1] (default −1100..500 HU, the
  benchmark's lung range);
- Adam (lr 1e-3, weight decay 1e-4), batches of 64, BCE with the class ratio as positive
  weight, random flips and 90° rotations per batch; seeded (`torch.manual_seed(seed)` and a
  seeded generator), so one seed gives one model;
- `recalibrate=True` (the machine reader) re-estimates the batch-norm statistics on the whole
  training set after the last step: after a few hundred steps the running averages still lag
  the weights, which leaves the ranking (AUC) intact but shifts every logit, so a call at
  p = 0.5 would name one class for every patch. The benchmark ranks only (AUC) and keeps the
  running averages (`recalibrate=False`), as its published numbers were measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: The benchmark's CT range: lung (−1100 HU) to dense soft tissue (500 HU).
CT_VALUE_RANGE = (-1100.0, 500.0)
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4
BATCH_SIZE = 64


def build_realism_cnn() -> nn.Sequential:
    """The 3-conv CNN (see the module docstring); input `(N, 1, H, W)`, output `(N, 1)` logits."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, 1))


def normalize_patches(patches: np.ndarray, value_range: tuple[float, float] = CT_VALUE_RANGE) -> np.ndarray:
    """`(N, H, W)` image units → float32 in [-1, 1] over `value_range` (clipped)."""
    lo, hi = float(value_range[0]), float(value_range[1])
    centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    return ((np.clip(np.asarray(patches, np.float32), lo, hi) - centre) / half).astype(np.float32)


@dataclass
class RealismClassifier:
    """A trained network with its input range; `logits` > 0 means "synthetic"."""

    network: nn.Module
    value_range: tuple[float, float]
    device: torch.device

    @torch.no_grad()
    def logits(self, patches: np.ndarray) -> np.ndarray:
        """`(N,)` float64 logits of `(N, H, W)` patches in image units."""
        self.network.eval()
        x = torch.from_numpy(normalize_patches(patches, self.value_range)[:, None]).to(self.device)
        out = [self.network(x[i : i + 256])[:, 0].float().cpu() for i in range(0, len(x), 256)]
        return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)

    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        """`(N,)` probability that each patch is synthetic."""
        return 1.0 / (1.0 + np.exp(-self.logits(patches)))


@torch.no_grad()
def recalibrate_batch_norm(network: nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> None:
    """Replace every batch-norm layer's running mean/variance by its average over `inputs`."""
    layers = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    network.train()
    for i in range(0, len(inputs), batch_size):
        if len(inputs[i : i + batch_size]) > 1:
            network(inputs[i : i + batch_size])
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    network.eval()


def train_realism_classifier(patches: np.ndarray, labels: np.ndarray, *, epochs: int, seed: int,
                             value_range: tuple[float, float] = CT_VALUE_RANGE,
                             device: str | torch.device = "cpu", recalibrate: bool = False) -> RealismClassifier:
    """Train the CNN on `(N, H, W)` patches in image units, labels 0 = real, 1 = synthetic."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    net = build_realism_cnn().to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    xt = torch.from_numpy(normalize_patches(patches, value_range)[:, None]).to(dev)
    yt = torch.from_numpy(np.asarray(labels, np.float32)).to(dev)
    pos_weight = (yt == 0).sum().float() / torch.clamp((yt == 1).sum().float(), min=1.0)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=g)
        for b in range(0, len(xt), BATCH_SIZE):
            idx = perm[b : b + BATCH_SIZE].to(dev)
            if len(idx) < 2:  # batch norm cannot train on one patch
                continue
            xb = xt[idx]
            if torch.rand(1, generator=g) < 0.5:
                xb = xb.flip(-1)
            if torch.rand(1, generator=g) < 0.5:
                xb = xb.flip(-2)
            xb = torch.rot90(xb, int(torch.randint(0, 4, (1,), generator=g)), dims=(-2, -1))
            opt.zero_grad()
            loss = loss_fn(net(xb)[:, 0], yt[idx])
            loss.backward()
            opt.step()
    if recalibrate:
        recalibrate_batch_norm(net, xt)
    net.eval()
    return RealismClassifier(net, (float(value_range[0]), float(value_range[1])), dev)
