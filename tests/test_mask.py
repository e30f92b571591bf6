"""The one mask type: keyed by tensor name, checks itself and the model, holds, bakes, saves and loads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgebench.mask import Mask, bake, refresh


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))


def test_masks_are_boolean_and_refuse_what_is_not_a_mask():
    m = Mask({"0.weight": torch.tensor([[1.0, 0.0]]), "2.weight": torch.tensor([True, False])})
    assert m["0.weight"].dtype == torch.bool and m["0.weight"].tolist() == [[True, False]]
    with pytest.raises(ValueError, match="0.weight: entries must be 0/1"):
        Mask({"0.weight": torch.tensor([0.5])})
    with pytest.raises(ValueError, match="NaN"):
        Mask({"0.weight": torch.tensor([float("nan")])})
    with pytest.raises(ValueError, match="expected a tensor"):
        Mask({"0.weight": [1, 0]})


def test_a_mask_that_does_not_fit_the_model_names_the_tensor():
    net = _net()
    with pytest.raises(ValueError, match=r"fc9.weight.*its tensors are: 0.weight, 0.bias"):
        Mask({"fc9.weight": torch.ones(4, 6)}).check(net)
    with pytest.raises(ValueError, match=r"0.weight \(4, 5\) vs \(4, 6\)"):
        Mask({"0.weight": torch.ones(4, 5)}).hold(net)


def test_hold_keeps_zeros_through_training_and_bake_makes_them_permanent():
    net = _net()
    torch.manual_seed(3)
    mask = Mask({n: torch.rand(t.shape) > 0.5 for n, t in Mask.ones(net).items()})
    assert set(mask) == {"0.weight", "2.weight"}
    mask.hold(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        net(torch.randn(8, 6)).sum().backward()
        opt.step()
    assert Mask.held(net)["0.weight"].equal(mask["0.weight"])  # what the model holds, read back by tensor name
    bake(refresh(net))
    assert not any(n.endswith(("_orig", "_mask")) for n, _ in [*net.named_parameters(), *net.named_buffers()])
    for n, keep in mask.items():
        w = dict(net.named_parameters())[n]
        assert torch.all(w[~keep] == 0) and torch.all(w[keep] != 0)
    assert Mask.nonzero(net)["0.weight"].equal(mask["0.weight"])  # the zeros a later step must keep


def test_any_named_tensor_can_be_masked_not_only_layer_weights():
    net = _net()
    Mask({"2.bias": torch.tensor([True, False, True])}).apply(net)
    assert net[2].bias[1] == 0 and net[2].bias[0] != 0


def test_random_like_keeps_the_count_of_every_tensor_and_kept_is_the_overall_share():
    m = Mask({"a": torch.rand(30, 40) > 0.7, "b": torch.rand(10) > 0.5})
    r = m.random_like(seed=1)
    assert {k: int(v.sum()) for k, v in r.items()} == {k: int(v.sum()) for k, v in m.items()}
    assert not r["a"].equal(m["a"])
    assert m.kept() == pytest.approx((int(m["a"].sum()) + int(m["b"].sum())) / 1210)


def test_save_and_load_round_trip_and_a_foreign_file_is_named(tmp_path):
    net = _net()
    m = Mask({"0.weight": torch.rand(4, 6) > 0.5})
    m.save(tmp_path / "m.pt")
    back = Mask.load(tmp_path / "m.pt", net)  # checked against the model too
    assert all(back[k].equal(m[k]) for k in m) and set(back) == set(m)
    torch.save({"fc1": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt is not a saved edgebench mask"):
        Mask.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not have"):
        Mask.load(tmp_path / "m.pt", nn.Linear(2, 2))


def test_bind_finds_the_tensor_inside_a_wrapping_or_parametrised_net():
    net = _net()
    mask = Mask({"0.weight": torch.rand(4, 6) > 0.5})
    wrapped = nn.Sequential()
    wrapped.add_module("net", net)
    nn.utils.parametrize.register_parametrization(net[0], "weight", nn.Identity())
    pairs = mask.bind(wrapped)
    assert len(pairs) == 1 and pairs[0][0] is net[0].parametrizations.weight.original
