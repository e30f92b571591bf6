"""Losses as values: replace the objective, add terms, read features through hooks, a frozen teacher."""

from __future__ import annotations

import dataclasses

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from edgebench import training
from edgebench.config import ProgressBar, TrainerConfig
from edgebench.data import EdgeDataModule, load_data
from edgebench.config import DataConfig
from edgebench.losses import CrossEntropy, FeatureTap, Frozen, Loss, Sum, Term, with_terms


@pytest.fixture(scope="module")
def dm():
    return EdgeDataModule(load_data(DataConfig(name="digits"), "unused"), 64, 1000)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _fit(net, dm, loss=None, epochs=3):
    cfg = TrainerConfig(max_epochs=epochs, batch_size=64, progress_bar=ProgressBar.none, scheduler="none")
    return training.fit(net, dm, cfg, loss=loss)


class ZeroLogits(Loss):
    """Pulls every logit to zero; knows nothing of the labels (a replacement, not an added term)."""

    def forward(self, net, x, logits, y):  # noqa: ARG002
        return (logits ** 2).mean()


def test_default_objective_is_cross_entropy(dm):
    a, b = _net(), _net()
    _fit(a, dm)
    _fit(b, dm, loss=CrossEntropy())
    x = next(iter(dm.val_dataloader()))[0]
    assert torch.equal(a(x), b(x))


def test_a_loss_can_replace_cross_entropy_entirely(dm):
    net = _net()
    history = _fit(net, dm, loss=ZeroLogits())
    x = next(iter(dm.val_dataloader()))[0]
    assert net(x).abs().mean() < 0.05  # cross-entropy would have spread the logits apart
    assert history[-1]["val/acc"] < 0.5  # and with no label in the objective, nothing was learned


def test_terms_add_to_the_objective_with_weights(dm):
    x, y = next(iter(dm.val_dataloader()))
    net = _net()
    logits = net(x)
    total = (CrossEntropy() + (lambda n, xx, lg, yy: lg.abs().mean()))(net, x, logits, y)
    assert total.item() == pytest.approx((F.cross_entropy(logits, y) + logits.abs().mean()).item(), rel=1e-6)
    weighted = Sum(CrossEntropy(), (0.5, Term(lambda n, xx, lg, yy: lg.abs().mean())))(net, x, logits, y)
    assert weighted.item() == pytest.approx((F.cross_entropy(logits, y) + 0.5 * logits.abs().mean()).item(), rel=1e-6)
    assert isinstance(with_terms(None, []), CrossEntropy)


class HiddenL2(Loss):
    """Reads the hidden layer's output through a forward hook on the module named "2" (the ReLU)."""

    def __init__(self, weight):
        super().__init__()
        self.weight, self.tap = weight, FeatureTap(["2"])

    def attach(self, net):
        self.tap.attach(net)

    def detach(self):
        self.tap.detach()

    def forward(self, net, x, logits, y):
        return F.cross_entropy(logits, y) + self.weight * self.tap["2"].pow(2).mean()


def test_a_loss_reads_intermediate_features_through_hooks(dm):
    plain, hinted = _net(), _net()
    _fit(plain, dm)
    _fit(hinted, dm, loss=HiddenL2(5.0))
    x = next(iter(dm.val_dataloader()))[0]
    act = lambda n: n[:3](x).pow(2).mean().item()  # noqa: E731
    assert act(hinted) < 0.5 * act(plain)
    assert not hinted[2]._forward_hooks, "the hooks are removed after training"


def test_feature_tap_names_a_missing_module():
    with pytest.raises(KeyError, match="no module named fc9.*modules: 0, 1, 2, 3"):
        FeatureTap(["fc9"]).attach(_net())


class Distil(Loss):
    """Pure distillation: KL to a frozen teacher's softened outputs, plus a learned regressor (to test
    that a loss's own parameters are trained while the teacher's are not)."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher = Frozen(teacher)
        self.regressor = nn.Linear(10, 10)

    def forward(self, net, x, logits, y):  # noqa: ARG002
        with torch.no_grad():
            t = self.teacher(x)
        assert not self.teacher.training and not self.teacher.model.training
        kd = F.kl_div(F.log_softmax(logits / 4, 1), F.softmax(t / 4, 1), reduction="batchmean") * 16
        return kd + (self.regressor(logits.detach()) - t).pow(2).mean()


def test_a_teacher_in_a_loss_is_frozen_and_the_loss_learns_its_own_parameters(dm):
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
    _fit(teacher, dm, epochs=4)
    before = copy.deepcopy(teacher.state_dict())  # BatchNorm running stats included
    loss = Distil(teacher)
    reg_before = loss.regressor.weight.detach().clone()
    student = _net(1)
    history = _fit(student, dm, loss=loss, epochs=4)
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the teacher did not change"
    assert all(p.grad is None for p in teacher.parameters())
    assert not torch.equal(reg_before, loss.regressor.weight), "the loss's own regressor was trained"
    assert history[-1]["val/acc"] > 0.7  # the student learned from the teacher alone, no label in its loss


def test_a_conv_net_trains_in_channels_last_and_leaves_contiguous_the_same_model(dm):
    """trainer.channels_last: the weights are NHWC while training (faster CPU kernels) and contiguous after, and the
    model learns the same as in the default layout (the two differ only in rounding)."""
    def conv(seed=0):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(),
                             nn.Linear(8 * 4 * 4, 10))

    seen = []

    class Spy(nn.Module):  # records the layout of the second conv's weight as the training step sees it
        def forward(self, x):
            seen.append(net[3].weight.is_contiguous(memory_format=torch.channels_last)
                        and not net[3].weight.is_contiguous())
            return x

    net, plain = conv(), conv()
    net.insert(0, Spy())
    plain.insert(0, nn.Identity())
    cfg = TrainerConfig(max_epochs=2, batch_size=64, progress_bar=ProgressBar.none, scheduler="none")
    h_nhwc = training.fit(net, dm, cfg)
    h_plain = training.fit(plain, dm, dataclasses.replace(cfg, channels_last=False))
    assert seen and all(seen[:5])  # NHWC during training
    assert all(p.is_contiguous() for p in net.parameters())  # contiguous after
    assert h_nhwc[-1]["val/acc"] == pytest.approx(h_plain[-1]["val/acc"], abs=0.02)
    for a, b in zip(net.parameters(), plain.parameters()):
        assert torch.allclose(a, b, atol=1e-3)  # the same training up to rounding
