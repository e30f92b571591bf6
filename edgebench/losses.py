"""Training objectives as values.

Training takes one :class:`Loss`: cross-entropy by default. A method may replace it entirely (pure
distillation), add terms to it (``CrossEntropy() + KureTerm(...)``), or read intermediate features of
the model being trained through forward hooks on named modules (:class:`FeatureTap`). A model that a
loss consults (a teacher) is wrapped in :class:`Frozen`: a submodule of the loss, so it moves to the
trainer's device with it, kept in eval mode and without gradients whatever the trainer does.

A loss is called as ``loss(net, x, logits, y) -> scalar tensor``; before training starts it is
``attach``-ed to the net being trained (taps register their hooks) and ``detach``-ed afterwards.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F


class Loss(nn.Module):
    """A training objective ``forward(net, x, logits, y) -> scalar``. ``a + b`` sums two objectives."""

    def attach(self, net: nn.Module) -> None:
        """Called once before training ``net`` (register hooks here)."""
        for child in self.children():
            if isinstance(child, Loss):
                child.attach(net)

    def detach(self) -> None:
        """Called once after training (remove hooks here)."""
        for child in self.children():
            if isinstance(child, Loss):
                child.detach()

    def __add__(self, other: "Loss | Callable") -> "Sum":
        return Sum(self, other)


class CrossEntropy(Loss):
    """The default objective: mean cross-entropy of the logits against the labels."""

    def forward(self, net, x, logits, y):  # noqa: ARG002 - the Loss signature
        return F.cross_entropy(logits, y)


class Term(Loss):
    """A plain function ``fn(net, x, logits, y) -> scalar`` as a Loss."""

    def __init__(self, fn: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, net, x, logits, y):
        return self.fn(net, x, logits, y)


def as_loss(term: "Loss | Callable") -> Loss:
    return term if isinstance(term, Loss) else Term(term)


class Sum(Loss):
    """The sum of several objectives, each optionally weighted: ``Sum(ce, (0.5, kd))``."""

    def __init__(self, *terms: "Loss | Callable | tuple[float, Loss | Callable]"):
        super().__init__()
        weights, losses = [], []
        for t in terms:
            if isinstance(t, Sum):  # flatten (a + b) + c
                weights += t.weights
                losses += list(t.terms)
                continue
            w, t = t if isinstance(t, tuple) else (1.0, t)
            weights.append(float(w))
            losses.append(as_loss(t))
        self.weights = weights
        self.terms = nn.ModuleList(losses)

    def attach(self, net):
        for t in self.terms:
            t.attach(net)

    def detach(self):
        for t in self.terms:
            t.detach()

    def forward(self, net, x, logits, y):
        total = None
        for w, t in zip(self.weights, self.terms):
            v = t(net, x, logits, y)
            total = w * v if total is None else total + w * v
        return total


def objective(net: nn.Module | None = None) -> Loss:
    """The training objective ``net`` brings with it (a model whose training is more than cross-entropy, such as
    the recurrent attention model's hybrid loss, defines ``objective()``); cross-entropy otherwise."""
    for m in net.modules() if net is not None else ():
        own = getattr(m, "objective", None)
        if callable(own):
            return own()
    return CrossEntropy()


def with_terms(base: Loss | None, terms: Iterable[Loss | Callable], net: nn.Module | None = None) -> Loss:
    """``base`` (``net``'s own objective, cross-entropy by default, when None) plus ``terms``."""
    base = base if base is not None else objective(net)
    terms = list(terms)
    return Sum(base, *terms) if terms else base


class Frozen(nn.Module):
    """A model a loss consults (a teacher): always in eval mode, never trained, moved with the loss."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "Frozen":  # noqa: ARG002 - stays in eval mode
        self.training = False
        self.model.eval()
        return self

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        # Lightning restores the modes it saw by setting ``.training`` directly, bypassing train():
        # reassert eval mode at every call (a walk over the modules, microseconds)
        self.training = False
        self.model.eval()
        return self.model(*args, **kwargs)


class FeatureTap:
    """The outputs of named modules of a model, captured by forward hooks at every forward pass.

        tap = FeatureTap(["layer1", "fc2"]); tap.attach(net); net(x); tap["fc2"]
    """

    def __init__(self, names: Iterable[str], inputs: bool = False):
        self.names = list(names)
        self.inputs = inputs  # capture each module's (first) input instead of its output
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def attach(self, model: nn.Module) -> "FeatureTap":
        self.detach()
        modules = dict(model.named_modules())
        missing = [n for n in self.names if n not in modules]
        if missing:
            known = ", ".join(n for n in modules if n)
            raise KeyError(f"no module named {', '.join(missing)} in {type(model).__name__}; modules: {known}")
        for name in self.names:
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str):
        def hook(module, inputs, output):  # noqa: ARG001 - torch's hook signature
            self.outputs[name] = inputs[0] if self.inputs else output

        return hook

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.outputs.clear()

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.outputs[name]
