"""Low-rank factorisation (issue 15 item 1, 3-5): SVD and Tucker-2 layers, bounds, ranks, runs and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgebench import pipeline, training
from edgebench.config import ConfigError, ModelConfig
from edgebench.methods.low_rank import (
    LowRankConfig,
    energy_rank,
    factorise,
    matrix_bound,
    plan,
    svd_layers,
    tucker_layers,
)
from edgebench.models import build_model


def test_matrix_bound_is_where_two_factors_stop_saving():
    assert matrix_bound(120, 400) == 92  # 120*400/520 = 92.3: rank 92 saves, 93 does not
    for r in (92, 93):
        assert (r * (120 + 400) < 120 * 400) == (r <= 92)


def test_energy_rank_by_hand():
    s = torch.tensor([3.0, 2.0, 1.0])  # squared: 9, 4, 1 of 14
    assert energy_rank(s, 9 / 14) == 1 and energy_rank(s, 0.7) == 2 and energy_rank(s, 1.0) == 3


def test_svd_of_a_low_rank_linear_layer_is_exact_and_keeps_outputs():
    torch.manual_seed(0)
    lin = nn.Linear(40, 30)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(30, 4) @ torch.randn(4, 40))  # rank 4
    two, err = svd_layers(lin, 4)
    x = torch.randn(5, 40)
    assert err < 1e-5 and torch.allclose(two(x), lin(x), atol=1e-4)
    assert sum(p.numel() for p in two.parameters()) == 4 * (40 + 30) + 30


def test_tucker2_conv_keeps_stride_padding_and_reconstructs_a_low_rank_kernel():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3, stride=2, padding=1)
    with torch.no_grad():  # a kernel of channel ranks (4 in, 8 out)
        core = torch.randn(8, 4, 3, 3)
        conv.weight.copy_(torch.einsum("oa,abhw,ib->oihw", torch.randn(32, 8), core, torch.randn(16, 4)))
    seq, err = tucker_layers(conv, 4, 8)
    x = torch.randn(2, 16, 9, 9)
    assert err < 1e-4 and seq(x).shape == conv(x).shape and torch.allclose(seq(x), conv(x), atol=1e-3)
    assert seq[1].stride == (2, 2) and seq[1].padding == (1, 1)


def test_a_strided_1x1_conv_is_a_matrix_and_every_layer_gets_its_planned_rank():
    """ResNet shortcuts (1x1, stride 2) are factorised as two 1x1 convs, the stride on the first (a Tucker-2 core of
    1x1 cannot hold an output rank above its input rank: tensorly cut it silently, and the plan's sizes were wrong);
    the factorised ResNet-8 has exactly the weights its plan says."""
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 1, stride=2)
    with torch.no_grad():
        conv.weight.copy_((torch.randn(32, 3) @ torch.randn(3, 16))[:, :, None, None])  # rank 3
    two, err = svd_layers(conv, 3)
    x = torch.randn(2, 16, 9, 9)
    assert err < 1e-5 and two[0].stride == (2, 2) and torch.allclose(two(x), conv(x), atol=1e-4)
    for cfg in (LowRankConfig(energy=None, ratio=0.5), LowRankConfig(energy=0.9)):
        model = build_model(ModelConfig(name="resnet8"), (1, 28, 28), 10).eval()
        before = sum(p.numel() for p in model.parameters())
        plans = plan(model, cfg)
        kinds = {p.kind for p in plans if p.name.endswith("shortcut.0")}
        assert kinds == {"svd"} if cfg.ratio else kinds <= {"svd", None}  # None: its energy rank saves nothing
        table = factorise(model, plans)
        saved = sum(r["params"] - r["params_after"] for r in table if r["factorised"])
        assert sum(p.numel() for p in model.parameters()) == before - saved > 0
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_plan_says_why_a_layer_is_left_alone_and_skips_depthwise():
    net = build_model(ModelConfig(name="mobilenet_v2"), (3, 32, 32), 10)
    plans = plan(net, LowRankConfig(energy=0.5))
    depthwise = [p for p in plans if "depthwise" in p.reason]
    assert depthwise and all(p.kind is None for p in depthwise)
    assert any(p.kind == "svd" for p in plans)  # the 1x1 convolutions and the classifier


def test_energy_1_factorises_nothing_and_says_so():
    net = build_model(ModelConfig(name="lenet5"), (1, 28, 28), 10)
    with pytest.raises(ConfigError, match="no layer of LeNet5 would be factorised .*saves no parameters"):
        plan(net, LowRankConfig(energy=1.0))


def test_factorised_lenet5_has_fewer_parameters_and_a_table():
    net = build_model(ModelConfig(name="lenet5"), (1, 28, 28), 10)
    before = sum(p.numel() for p in net.parameters())
    table = factorise(net, plan(net, LowRankConfig(energy=None, ratio=0.5)))
    assert sum(p.numel() for p in net.parameters()) < before
    assert any(r["factorised"] for r in table) and all(0 <= r["rel_error"] < 1 for r in table)
    assert net(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("override,message", [
    ("method.energy=1.5", r"method.energy: must be in \(0, 1\]"),
    ("method.energy=0", r"method.energy: must be in \(0, 1\]"),
    ("method.layer_rank={net/classifier/0: 500}", "method.layer_rank.net.classifier.0=500: above the bound"),
    ("method.layer_rank={fc9: 3}", "method.layer_rank: no conv or linear layer named fc9"),
])
def test_bad_low_rank_input_fails_before_training(make_cfg, monkeypatch, override, message):
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match=message):
        pipeline.run(make_cfg("data=digits", "model=lenet5", "+method=low_rank", override))


def test_low_rank_then_int8_runs_and_logs_errors_and_accuracy_before_finetuning(make_cfg):
    from mlflow.tracking import MlflowClient

    cfg = make_cfg("data=digits", "model=lenet5", "trainer.max_epochs=3",
                   "steps=[{name: low_rank, energy: 0.8, retrain_epochs: 1}, ptq_int8]", "measure.latency=false")
    res = pipeline.run(cfg)
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    run = client.get_run(res.run_id)
    for key in ("low_rank/test_acc_before_finetune", "low_rank/mean_rel_error", "test/acc"):
        assert key in run.data.metrics, key
    # the factorisation's layer table on its step's child run, where a single low_rank run has it
    step = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{res.run_id}'")[0]
    arts = {a.path for a in client.list_artifacts(step.info.run_id, "method")}
    assert "method/layers.md" in arts, arts
    assert res.tags["export.dtype"] == "int8" and res.metrics["size/params"] < 61_706


def test_low_rank_plus_sparse_reconstructs_a_spiky_low_rank_matrix_better_than_low_rank_alone():
    from edgebench.methods.low_rank import LayerPlan, godec

    torch.manual_seed(0)
    lin = nn.Linear(60, 40)
    with torch.no_grad():
        w = torch.randn(40, 3) @ torch.randn(3, 60)
        spikes = torch.zeros(40 * 60)
        spikes[torch.randperm(2400)[:24]] = 20.0
        lin.weight.copy_(w + spikes.view(40, 60))
    module, err, low_only = godec(lin, LayerPlan("x", "svd", [40, 60], 2400, (3,)), 0.01, 10)
    assert err < 0.05 < low_only  # the spikes go to S, the rest is rank 3
    x = torch.randn(4, 60)
    assert torch.allclose(module(x), lin(x), atol=err * 100)
    assert int((module.sparse.weight != 0).sum()) == 24


def test_low_rank_sparse_run_keeps_s_sparse_through_finetuning(make_cfg):
    cfg = make_cfg("data=digits", "model=lenet5", "trainer.max_epochs=3", "+method=low_rank_sparse",
                   "method.energy=0.7", "method.retrain_epochs=1", "measure.latency=false")
    res = pipeline.run(cfg)
    m = res.metrics
    assert "low_rank/mean_rel_error_low_rank_only" in m and m["low_rank/mean_rel_error"] <= m["low_rank/mean_rel_error_low_rank_only"]
    assert m["size/sparsity"] > 0  # the S branches kept their zeros through fine-tuning


def test_cp_at_the_true_rank_reproduces_a_cp_rank_conv_with_stride_and_padding():
    from edgebench.methods.low_rank import cp_layers, cp_params

    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, (3, 5), stride=(2, 1), padding=(1, 2))
    r = 3
    a, b, c, d = torch.randn(8, r), torch.randn(6, r), torch.randn(3, r), torch.randn(5, r)
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("or,ir,yr,xr->oiyx", a, b, c, d))  # CP rank 3 by construction
    four, err = cp_layers(conv, r)
    assert err < 1e-4
    assert [type(m).__name__ for m in four] == ["Conv2d"] * 4 and four[1].groups == four[2].groups == r
    assert sum(p.numel() for p in four.parameters()) == cp_params(6, 8, 3, 5, r) + 8 == r * (6 + 3 + 5 + 8) + 8
    x = torch.randn(2, 6, 11, 9)
    assert torch.allclose(four(x), conv(x), atol=1e-3)


def test_cp_plans_by_ratio_and_refuses_a_rank_that_saves_nothing(make_cfg, monkeypatch):
    net = build_model(ModelConfig(name="lenet5"), (1, 28, 28), 10)
    plans = {p.name: p for p in plan(net, LowRankConfig(energy=None, ratio=0.5, conv="cp"))}
    conv2 = plans["features.3"]  # 16 x 6 x 5 x 5 = 2,400 weights; a rank costs 6 + 5 + 5 + 16 = 32
    assert conv2.kind == "cp" and conv2.rank == (37,) and conv2.params_after == 37 * 32 <= 1200
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match="method.layer_rank.net.features.3=80: CP at this rank has 2,560 >= the layer.s 2,400"):
        pipeline.run(make_cfg("data=digits", "model=lenet5", "+method=low_rank", "method.conv=cp",
                              "method.layer_rank={net/features/3: 80}"))
    with pytest.raises(ConfigError, match="method.conv: must be tucker or cp"):
        LowRankConfig(conv="parafac")


def test_cp_low_rank_and_low_rank_sparse_run_on_lenet5(make_cfg):
    for method in ("low_rank", "low_rank_sparse"):
        res = pipeline.run(make_cfg("data=digits", "model=lenet5", "trainer.max_epochs=2", f"+method={method}",
                                    "method.conv=cp", "method.energy=null", "method.ratio=0.5",
                                    "method.retrain_epochs=1", "measure.latency=false"))
        assert res.tags["low_rank.conv"] == "cp" and "features.3@" in res.tags["low_rank.layers"]
        assert res.metrics["low_rank/mean_rel_error"] < 1
