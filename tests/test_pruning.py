"""Pruning: exact sparsity, masks that survive retraining, physically smaller structured models, schedules."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from edgebench import methods, pipeline, training
from edgebench.config import ConfigError, DataConfig, ModelConfig, ProgressBar, TrainerConfig
from edgebench.data import EdgeDataModule, load_data
from edgebench.methods.base import MethodContext
from edgebench.mask import bake, refresh
from edgebench.measure.size import weight_layers
from edgebench.methods.pruning import (
    DEPTHWISE_FIX,
    StructuredPruningConfig,
    UnstructuredPruningConfig,
    layer_table,
    layer_targets,
    prune_to,
)
from edgebench.models import build_model


def _sparsity(model) -> float:
    t = layer_table(model)
    return 1 - sum(r["nonzero"] for r in t) / sum(r["params"] for r in t)


def _lenet(shape=(1, 8, 8)):
    torch.manual_seed(0)
    return build_model(ModelConfig(name="lenet_300_100"), shape, 10)


@pytest.fixture(scope="module")
def digits_ctx():
    splits = load_data(DataConfig(name="digits"), "unused")
    dm = EdgeDataModule(splits, 32, 1000)
    cfg = TrainerConfig(max_epochs=2, batch_size=32, progress_bar=ProgressBar.none)
    dense = _lenet()
    training.fit(dense, dm, cfg)

    def retrain(net, epochs, callbacks=(), loss=None):
        return training.fit(net, dm, TrainerConfig(max_epochs=epochs, batch_size=32, progress_bar=ProgressBar.none),
                            callbacks=callbacks, loss=loss)

    return MethodContext(model_in=dense, datamodule=dm, example_input=splits.test_x[:1], retrain=retrain,
                         evaluate=lambda net: training.evaluate(net, dm.test_dataloader()),
                         train_batches_per_epoch=len(dm.train_dataloader()), output_dir=None, seed=0)


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("name", ["magnitude_pruning", "random_pruning"])
def test_exact_sparsity(scope, name):
    model = _lenet()
    cfg = UnstructuredPruningConfig(name=name, sparsity=0.9, scope=scope)
    prune_to(model, layer_targets(model, cfg), cfg, 1.0, random=methods.build(cfg).random)
    bake(model)
    assert _sparsity(model) == pytest.approx(0.9, abs=1e-4)
    if scope == "layer":
        for row in layer_table(model):
            assert row["sparsity"] == pytest.approx(0.9, abs=1 / row["params"] + 1e-9)
    assert not any("weight_orig" in n for n, _ in model.named_parameters()), "masks must be baked in"


def test_global_scope_prunes_by_one_threshold():
    model = _lenet()
    with torch.no_grad():
        model.fc3.weight.mul_(100)  # the output layer's weights now exceed the global threshold
    cfg = UnstructuredPruningConfig(sparsity=0.5, scope="global")
    prune_to(model, layer_targets(model, cfg), cfg, 1.0)
    pruned = torch.cat([m.weight_orig[m.weight_mask == 0].abs() for _, m in weight_layers(model)])
    kept = torch.cat([m.weight_orig[m.weight_mask == 1].abs() for _, m in weight_layers(model)])
    assert pruned.max() <= kept.min()  # one magnitude threshold across all layers
    bake(model)
    rows = {r["layer"]: r["sparsity"] for r in layer_table(model)}
    assert rows["fc3"] < 0.05 and rows["fc2"] > rows["fc1"]  # layers lose different shares
    assert _sparsity(model) == pytest.approx(0.5, abs=1e-4)


def test_per_layer_overrides_and_output_layer():
    model = _lenet()
    cfg = UnstructuredPruningConfig(sparsity=0.8, layer_sparsity={"fc2": 0.5}, output_layer_sparsity=0.2)
    prune_to(model, layer_targets(model, cfg), cfg, 1.0)
    bake(model)
    rows = {r["layer"]: r["sparsity"] for r in layer_table(model)}
    assert rows["fc1"] == pytest.approx(0.8, abs=1e-3)
    assert rows["fc2"] == pytest.approx(0.5, abs=1e-3)
    assert rows["fc3"] == pytest.approx(0.2, abs=1e-2)


def _mobilenet():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="mobilenet_v2", width_mult=0.35), (1, 28, 28), 10)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_depthwise_sparsity_keeps_depthwise_convs_at_their_own_rate(scope):
    model = _mobilenet()
    depthwise = {n for n, m in weight_layers(model) if isinstance(m, nn.Conv2d) and m.groups > 1}
    assert len(depthwise) == 17  # one per inverted-residual block
    cfg = UnstructuredPruningConfig(sparsity=0.92, scope=scope, depthwise_sparsity=0.0)
    targets = layer_targets(model, cfg)
    assert {n for n, s in targets.items() if s == 0.0} == depthwise
    prune_to(model, targets, cfg, 1.0)
    bake(model)
    rows = {r["layer"]: r for r in layer_table(model)}
    assert all(rows[n]["sparsity"] == 0.0 for n in depthwise)
    rest = [r for n, r in rows.items() if n not in depthwise]
    assert 1 - sum(r["nonzero"] for r in rest) / sum(r["params"] for r in rest) == pytest.approx(0.92, abs=1e-3)
    # an explicit layer_sparsity still wins over the depthwise rule
    one = sorted(depthwise)[0]
    cfg = UnstructuredPruningConfig(sparsity=0.9, depthwise_sparsity=0.0, layer_sparsity={one.replace(".", "/"): 0.5})
    assert layer_targets(model, cfg)[one] == 0.5


def test_an_unset_depthwise_sparsity_leaves_the_step_key_as_it_was():
    key = methods.build(UnstructuredPruningConfig(sparsity=0.92, rounds=3)).key()
    assert "depthwise_sparsity" not in key["config"]  # stored steps made before the option stay valid
    assert methods.build(UnstructuredPruningConfig(sparsity=0.92, depthwise_sparsity=0.0)).key()["config"][
        "depthwise_sparsity"] == 0.0


def test_a_nan_loss_in_a_pruning_round_names_the_emptied_channels_and_the_fix():
    model = _mobilenet()

    def nan(net, epochs, callbacks=(), loss=None):
        raise training.NonFiniteLossError("training loss is nan at epoch 0, batch 1; lower trainer.lr (now 0.01).")

    ctx = MethodContext(model_in=model, datamodule=None, example_input=torch.zeros(1, 1, 28, 28), retrain=nan,
                        evaluate=None, train_batches_per_epoch=1, output_dir=None, seed=0)
    with pytest.raises(training.NonFiniteLossError) as err:
        methods.build(UnstructuredPruningConfig(sparsity=0.92, rounds=3, retrain_epochs=1)).compress(ctx)
    said = str(err.value)
    assert said.startswith("training loss is nan at epoch 0, batch 1") and "In pruning round 1, " in said
    dead = int(said.split("In pruning round 1, ")[1].split()[0])
    assert dead > 0 and said.endswith(DEPTHWISE_FIX) and "\n" not in said
    # a model with no emptied channel gets the error as it was
    with pytest.raises(training.NonFiniteLossError) as err:
        methods.build(UnstructuredPruningConfig(sparsity=0.1, rounds=1, retrain_epochs=1)).compress(
            MethodContext(model_in=_lenet(), datamodule=None, example_input=torch.zeros(1, 1, 8, 8), retrain=nan,
                          evaluate=None, train_batches_per_epoch=1, output_dir=None, seed=0))
    assert "pruning round" not in str(err.value)


def test_unknown_layer_override_names_the_layers():
    with pytest.raises(ConfigError, match="no prunable layer named fc9.*fc1, fc2, fc3"):
        layer_targets(_lenet(), UnstructuredPruningConfig(layer_sparsity={"fc9": 0.5}))


def test_masks_survive_retraining(digits_ctx):
    model = copy.deepcopy(digits_ctx.model_in)
    cfg = UnstructuredPruningConfig(sparsity=0.8)
    prune_to(model, layer_targets(model, cfg), cfg, 1.0)
    masks = {n: m.weight_mask.clone() for n, m in weight_layers(model)}
    before = {n: m.weight_orig.detach().clone() for n, m in weight_layers(model)}
    digits_ctx.retrain(model, 2)
    for n, m in weight_layers(model):
        assert torch.all(m.weight[masks[n] == 0] == 0), n  # the effective weight stays zero
        assert not torch.equal(m.weight_orig, before[n]), "the optimizer did run"
    bake(model)
    assert _sparsity(model) == pytest.approx(0.8, abs=1e-3)


def test_iterative_schedule_reaches_the_target_in_its_rounds(digits_ctx):
    cfg = UnstructuredPruningConfig(sparsity=0.9, rounds=3, retrain_epochs=1)
    res = methods.build(cfg).compress(digits_ctx)
    got = [r["round/sparsity"] for r in res.series]
    expected = [1 - 0.1 ** (r / 3) for r in (1, 2, 3)]  # 53.6%, 78.5%, 90%
    assert [r["round"] for r in res.series] == [1, 2, 3]
    assert got == pytest.approx(expected, abs=2e-3)
    assert _sparsity(res.model) == pytest.approx(0.9, abs=1e-3)
    assert res.knobs["sparsity"] == 0.9 and res.layers
    assert res.series[-1]["round/test_acc"] > 0.8  # survivors kept, retrained: still a classifier


def test_agp_schedule_prunes_gradually_during_training(digits_ctx):
    from edgebench.methods.pruning import AGPCallback

    cfg = UnstructuredPruningConfig(sparsity=0.8, schedule="agp", retrain_epochs=2, agp_update_every=5)
    model = copy.deepcopy(digits_ctx.model_in)
    targets = layer_targets(model, cfg)
    prune_to(model, {n: 0.0 for n in targets}, cfg, 1.0)
    seen = []

    class Probe(training.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            seen.append(_sparsity(bake(copy.deepcopy(refresh(module.net)))))

    steps = 2 * digits_ctx.train_batches_per_epoch
    agp = AGPCallback(targets, cfg, steps)
    digits_ctx.retrain(model, 2, callbacks=[agp, Probe()])
    assert agp.step == steps and len(agp.trace) > 5
    assert seen == sorted(seen) and seen[0] < 0.2 and seen[-1] == pytest.approx(0.8, abs=2e-3)
    assert len(set(round(x, 3) for x in seen)) > 5  # gradual, not one jump
    # Zhu & Gupta's cubic: at a third of the pruning steps, 1 - (2/3)^3 = 70% of the final sparsity
    t, share = min(agp.trace, key=lambda p: abs(p[0] - agp.prune_steps / 3))
    assert share == pytest.approx(1 - (1 - t / agp.prune_steps) ** 3)
    res = methods.build(cfg).compress(digits_ctx)
    assert _sparsity(res.model) == pytest.approx(0.8, abs=1e-3)


@pytest.mark.parametrize("name,shape", [("resnet20", (3, 32, 32)), ("lenet5", (1, 28, 28)), ("conv2", (1, 28, 28)),
                                        ("mobilenet_v3_small", (3, 32, 32)), ("vgg11", (3, 32, 32))])
def test_structured_pruning_shrinks_and_still_runs(name, shape):
    import torch_pruning as tp

    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name), shape, 10).eval()
    x = torch.randn(1, *shape)
    m = methods.build(StructuredPruningConfig(ratio=0.5, retrain_epochs=0))
    m.check(model, x)
    before = sum(p.numel() for p in model.parameters())
    pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.5,
                                  ignored_layers=[weight_layers(model)[-1][1]])
    pruner.step()
    after = sum(p.numel() for p in model.parameters())
    assert after < 0.5 * before
    assert model(x).shape == (1, 10)


def test_structured_compress_keeps_the_output_layer(digits_ctx):
    res = methods.build(StructuredPruningConfig(ratio=0.5, retrain_epochs=1)).compress(digits_ctx)
    assert res.model.fc3.out_features == 10
    assert res.model.fc1.out_features == 150 and res.model.fc2.out_features == 50
    assert res.model(digits_ctx.example_input).shape == (1, 10)
    assert res.series[0]["round/params"] < sum(p.numel() for p in digits_ctx.model_in.parameters())


def test_block_removal_on_resnet():
    model = build_model(ModelConfig(name="resnet20"), (3, 32, 32), 10)
    m = methods.build(StructuredPruningConfig(ratio=0.5, granularity="layer"))
    m.check(model, torch.zeros(1, 3, 32, 32))
    m._remove_blocks(model)
    assert sum(isinstance(b, nn.Identity) for b in model.blocks) == 3  # 7 removable blocks, floor(3.5)
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_block_removal_refuses_a_net_without_residual_blocks():
    with pytest.raises(ConfigError, match="granularity=layer"):
        methods.build(StructuredPruningConfig(granularity="layer")).check(_lenet(), torch.zeros(1, 1, 8, 8))


def test_ratio_that_removes_every_channel_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(10))
    model(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ConfigError, match="would remove every channel"):
        methods.build(StructuredPruningConfig(ratio=0.6)).check(model, torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("override,message", [
    ("method.sparsity=1.0", r"method.sparsity: must be in \[0, 1\)"),
    ("method.sparsity=-0.1", r"method.sparsity: must be in \[0, 1\)"),
    ("method.scope=everywhere", "method.scope"),
    ("method.rounds=0", "method.rounds"),
])
def test_bad_pruning_options_fail_before_training(make_cfg, monkeypatch, override, message):
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match=message):
        pipeline.run(make_cfg("data=digits", "+method=magnitude_pruning", override))


def test_bad_structured_ratio_fails_before_training(make_cfg, monkeypatch):
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match="method.ratio"):
        pipeline.run(make_cfg("data=digits", "+method=structured_pruning", "method.ratio=1.0"))


def test_pruning_run_logs_the_contract(make_cfg):
    from mlflow.tracking import MlflowClient

    cfg = make_cfg("data=digits", "trainer.max_epochs=3", "trainer.batch_size=32", "+method=magnitude_pruning",
                   "method.sparsity=0.8", "method.rounds=2", "method.retrain_epochs=1", "measure.runtime=torch",
                   "measure.export=false")
    res = pipeline.run(cfg)
    m = res.metrics
    assert m["size/sparsity"] == pytest.approx(0.8, abs=2e-3)
    assert m["size/params_nonzero"] < 0.25 * m["size/params"]
    assert 3 < m["compute/theoretical_speedup"] < 6
    assert "latency/host_speedup" in m and m["delta/acc"] == pytest.approx(m["test/acc"] - m["baseline/test_acc"])
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    run = client.get_run(res.run_id)
    assert run.data.metrics["method/sparsity"] == 0.8 and run.data.metrics["method/rounds"] == 2
    assert [p.step for p in client.get_metric_history(res.run_id, "round/sparsity")] == [1, 2]
    assert run.data.tags["method"] == "magnitude_pruning"
    arts = {a.path for a in client.list_artifacts(res.run_id, "method")}
    assert {"method/layers.json", "method/layers.md"} <= arts


def test_block_removal_on_torchvision_resnet18():
    model = build_model(ModelConfig(name="resnet18"), (3, 32, 32), 10)
    m = methods.build(StructuredPruningConfig(ratio=0.5, granularity="layer"))
    m._remove_blocks(model)  # identity shortcuts: layer1.0, layer1.1, layer2.1, layer3.1, layer4.1; floor(5 * 0.5) = 2
    removed = [n for n, mod in model.named_modules() if isinstance(mod, nn.Identity) and n.startswith("layer")]
    assert len(removed) == 2
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)

