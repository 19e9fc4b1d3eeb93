"""Keep a network's weights from the epoch with the lowest validation loss (segmenters, detectors)."""

from __future__ import annotations

import math

import torch


class BestWeights:
    """The weights at the lowest validation loss seen so far; `restore` puts them back at the end."""

    def __init__(self) -> None:
        self.loss = math.inf
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, model: torch.nn.Module, loss: float) -> None:
        """Copy the weights when `loss` beats the best so far."""
        if loss < self.loss:
            self.loss = loss
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore(self, model: torch.nn.Module) -> None:
        """Load the best weights into `model` (unchanged when no epoch ran)."""
        if self.state is not None:
            model.load_state_dict(self.state)
