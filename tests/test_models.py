"""The zoo: torchvision nets match torchvision's own counts; every net runs on the bundled shapes."""

from __future__ import annotations

import pytest
import torch
import torchvision

from edgebench.config import ModelConfig
from edgebench.measure import count_macs, count_params
from edgebench.models import (
    MODEL_NAMES,
    SMALL,
    TORCHVISION_MIN_SIZE,
    PretrainedWeightsError,
    build_model,
    torchvision_weights_path,
)

TV = sorted(TORCHVISION_MIN_SIZE)


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", TV)
def test_torchvision_parameter_counts_match_torchvision(name):
    """Built as torchvision builds them (3x224x224, 1000 classes), on the meta device (no memory)."""
    with torch.device("meta"):
        ours = build_model(ModelConfig(name=name), (3, 224, 224), 1000)
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"]
    if name == "inception_v3":
        # torchvision's published count includes the training-only auxiliary classifier (AuxLogits),
        # which the zoo leaves out as it is not part of the deployed model.
        with torch.device("meta"):
            aux = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).AuxLogits
        assert _params(ours) + _params(aux) == published == 27_161_264
    else:
        assert _params(ours) == published
    assert type(ours).__module__.startswith("torchvision"), "no adapter at the native input shape"


def test_known_counts():
    with torch.device("meta"):
        assert _params(build_model(ModelConfig(name="resnet18"), (3, 224, 224), 1000)) == 11_689_512
        assert _params(build_model(ModelConfig(name="vgg16"), (3, 224, 224), 1000)) == 138_357_544
    # LeNet-300-100 on 28x28: 784*300+300 + 300*100+100 + 100*10+10
    assert _params(build_model(ModelConfig(name="lenet_300_100"), (1, 28, 28), 10)) == 266_610


def test_resnet18_macs_match_torchvision():
    net = build_model(ModelConfig(name="resnet18"), (3, 224, 224), 1000)
    assert count_macs(net, torch.zeros(1, 3, 224, 224)) == 1_814_073_344  # FlopCounterMode/2, conv+linear


def test_lenet_macs_by_hand():
    net = build_model(ModelConfig(name="lenet_300_100"), (1, 28, 28), 10)
    assert count_macs(net, torch.zeros(1, 1, 28, 28)) == 784 * 300 + 300 * 100 + 100 * 10


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)], ids=["digits", "fashion"])
def test_every_model_runs_on_small_grayscale_inputs(name, shape):
    net = build_model(ModelConfig(name=name), shape, 10).eval()
    with torch.no_grad():
        out = net(torch.randn(2, *shape))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_params_nonzero_counts_zeros():
    net = build_model(ModelConfig(name="lenet_300_100"), (1, 8, 8), 10)
    before = count_params(net)["size/params_nonzero"]  # a random init may hold an exact 0.0 already
    already = int((net.fc1.weight[:10] == 0).sum())
    with torch.no_grad():
        net.fc1.weight[:10].zero_()
    c = count_params(net)
    assert before - c["size/params_nonzero"] == 10 * 64 - already
    assert c["size/bytes_fp32"] == 4 * c["size/params"]


def test_pretrained_loads_from_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        path = torchvision_weights_path("mobilenet_v3_small")
        assert str(path).startswith(str(tmp_path))
        with pytest.raises(PretrainedWeightsError, match="not in the cache"):
            build_model(ModelConfig(name="mobilenet_v3_small", pretrained=True), (3, 224, 224), 1000)
        # a state dict written by the test stands in for the downloaded file
        torch.manual_seed(123)
        src = torchvision.models.mobilenet_v3_small(weights=None)
        path.parent.mkdir(parents=True)
        torch.save(src.state_dict(), path)
        same = build_model(ModelConfig(name="mobilenet_v3_small", pretrained=True), (3, 224, 224), 1000)
        for (k, a), b in zip(src.state_dict().items(), same.state_dict().values()):
            assert torch.equal(a, b), k
        # 10 classes: the backbone comes from the file, the new head does not
        ten = build_model(ModelConfig(name="mobilenet_v3_small", pretrained=True), (1, 28, 28), 10)
        assert torch.equal(ten.net.features[0][0].weight, src.features[0][0].weight)
        assert ten.net.classifier[-1].out_features == 10
    finally:
        torch.hub.set_dir(str(torch.hub._get_torch_home()) + "/hub")


def test_small_nets_have_no_pretrained_weights():
    with pytest.raises(PretrainedWeightsError, match="only torchvision"):
        build_model(ModelConfig(name="lenet5", pretrained=True), (1, 28, 28), 10)


def test_small_registry_covers_the_paper_nets():
    assert {"lenet_300_100", "lenet5", "conv2", "conv4", "conv6", "resnet8", "resnet20", "conv2_small"} == set(SMALL)
