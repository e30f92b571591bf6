"""DistilBERT-style half-depth students: shallower, same output, kept layers copied exactly, teacher untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgebench.config import ConfigError, ModelConfig
from edgebench.methods.student import half_depth
from edgebench.models import Adapted, build_model

CASES = [
    ("resnet20", (1, 28, 28)),
    ("resnet18", (3, 32, 32)),
    ("resnet18", (1, 28, 28)),  # wrapped in Adapted (grayscale -> RGB, resized to 32)
    ("conv4", (1, 28, 28)),
    ("conv6", (1, 28, 28)),
    ("vgg11", (3, 32, 32)),
]


def _teacher(name: str, shape: tuple[int, int, int]) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name), shape, 10)
    # Non-trivial BatchNorm statistics, so copying them is actually checked.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(7)
    return model.eval()


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _convs(m: nn.Module) -> int:
    return sum(isinstance(x, nn.Conv2d) for x in m.modules())


@pytest.mark.parametrize("name,shape", CASES)
def test_student_is_shallower_same_output_shape_and_copied_exactly(name, shape):
    teacher = _teacher(name, shape)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student, copied = half_depth(teacher)

    assert student is not teacher
    assert _params(student) < _params(teacher)
    assert _convs(student) < _convs(teacher)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert student.eval()(x).shape == teacher(x).shape == (2, 10)

    assert copied
    t_mods, s_mods = dict(teacher.named_modules()), dict(student.named_modules())
    for t_name, s_name in copied:
        t_sd, s_sd = t_mods[t_name].state_dict(), s_mods[s_name].state_dict()
        assert t_sd and t_sd.keys() == s_sd.keys(), (t_name, s_name)
        for k in t_sd:
            assert torch.equal(t_sd[k], s_sd[k]), (t_name, s_name, k)
    # Every student parameter and buffer comes from the teacher (nothing is freshly initialised).
    covered = {f"{s_name}.{k}" for _, s_name in copied for k in s_mods[s_name].state_dict()}
    assert covered == set(student.state_dict())

    after = teacher.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # The student is independent of the teacher: training it leaves the teacher alone.
    with torch.no_grad():
        next(student.parameters()).add_(1.0)
    assert all(torch.equal(before[k], teacher.state_dict()[k]) for k in before)


def test_student_trains():
    student, _ = half_depth(_teacher("conv4", (1, 28, 28)))
    student.train()
    loss = nn.functional.cross_entropy(student(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in student.parameters())


def test_resnet20_student_has_two_blocks_per_stage():
    teacher = _teacher("resnet20", (1, 28, 28))
    student, copied = half_depth(teacher)
    assert len(teacher.blocks) == 9 and len(student.blocks) == 6
    widths = [b.conv2.out_channels for b in student.blocks]
    assert widths == [16, 16, 32, 32, 64, 64]
    # Blocks 0 and 2 of each stage; the first block of stages 2 and 3 keeps its projection shortcut.
    blocks = [(t, s) for t, s in copied if t.startswith("blocks.")]
    assert blocks == [("blocks.0", "blocks.0"), ("blocks.2", "blocks.1"), ("blocks.3", "blocks.2"),
                      ("blocks.5", "blocks.3"), ("blocks.6", "blocks.4"), ("blocks.8", "blocks.5")]
    assert isinstance(student.blocks[2].shortcut, nn.Sequential)
    assert isinstance(student.blocks[4].shortcut, nn.Sequential)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_resnet18_student_has_one_block_per_layer(shape):
    teacher = _teacher("resnet18", shape)
    student, copied = half_depth(teacher)
    net_t = teacher.net if isinstance(teacher, Adapted) else teacher
    net_s = student.net if isinstance(student, Adapted) else student
    assert type(student) is type(teacher)
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        assert len(getattr(net_t, layer)) == 2
        assert len(getattr(net_s, layer)) == 1
    prefix = "net." if isinstance(teacher, Adapted) else ""
    assert (f"{prefix}layer2.0", f"{prefix}layer2.0") in copied


def test_convnet_student_drops_the_second_conv_of_every_block():
    teacher = _teacher("conv6", (1, 28, 28))
    student, copied = half_depth(teacher)
    convs = [m for m in student.features if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 64), (64, 128), (128, 256)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in student.features) == 3
    assert ("classifier", "classifier") in copied


def test_vgg_student_keeps_every_other_conv_per_stage():
    teacher = _teacher("vgg11", (3, 32, 32))  # stages 1, 1, 2, 2, 2 convs -> 1, 1, 1, 1, 1
    student, copied = half_depth(teacher)
    convs = [m for m in student.features if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 64), (64, 128), (128, 256), (256, 512),
                                                                 (512, 512)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in student.features) == 5
    assert ("classifier", "classifier") in copied


@pytest.mark.parametrize("name", ["lenet5", "lenet_300_100"])
def test_unsupported_family_raises_config_error(name):
    teacher = build_model(ModelConfig(name=name), (1, 28, 28), 10)
    with pytest.raises(ConfigError) as err:
        half_depth(teacher)
    msg = str(err.value)
    assert type(teacher).__name__ in msg
    for family in ("CIFAR ResNet", "torchvision ResNet", "Conv-2/4/6", "VGG"):
        assert family in msg


def test_a_student_at_minimum_depth_has_no_shallower_student():
    student, _ = half_depth(_teacher("resnet18", (3, 32, 32)))
    with pytest.raises(ConfigError, match="no shallower student"):
        half_depth(student)
