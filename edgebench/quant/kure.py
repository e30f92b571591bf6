"""KURE (Shkolnik et al., NeurIPS 2020): push each layer's weight kurtosis toward that of a uniform distribution.

    K(W) = mean(((W - mean W) / std W)^4)          (a uniform distribution has K = 1.8)
    L = CE + lambda * mean_i (K(W_i) - K_T)^2       over the regularised layers

As in the authors' code: the std is the unbiased one, the mean over layers is "avg" mode, and the
first layer is not regularised (it stays at full precision when the model is quantised).
"""

from __future__ import annotations

import torch
from torch import nn


def kurtosis(w: torch.Tensor) -> torch.Tensor:
    z = (w - w.mean()) / w.std()
    return (z ** 4).mean()


class KureLoss:
    """A loss term (``CrossEntropy() + KureLoss(...)``): ``lam * mean((K(W_i) - target)^2)`` over ``layers``.

    A plain callable, not a module, so the layers it reads are not registered a second time."""

    def __init__(self, layers: list[nn.Module], lam: float = 1.0, target: float = 1.8):
        if not layers:
            raise ValueError("KURE needs at least one layer to regularise")
        self.layers, self.lam, self.target = layers, lam, target

    def __call__(self, net, x, logits, y) -> torch.Tensor:  # noqa: ARG002 - the Loss signature
        terms = torch.stack([(kurtosis(m.weight) - self.target) ** 2 for m in self.layers])
        return self.lam * terms.mean()
