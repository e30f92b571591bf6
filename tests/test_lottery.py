"""Lottery tickets: rewinding, fixed masks, (1-p)^L per layer, resumable levels, honest controls, MLflow."""

from __future__ import annotations


import pytest
import torch

from edgebench import methods, pipeline, training
from edgebench.config import ConfigError, DataConfig, ModelConfig, ProgressBar, TrainerConfig
from edgebench.data import EdgeDataModule, load_data
from edgebench.methods.base import MethodContext
from edgebench.mask import Mask, bake, refresh
from edgebench.measure.size import weight_layers
from edgebench.methods.lottery import LotteryTicketConfig, load_ticket, next_mask
from edgebench.models import build_model


def _build():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="lenet_300_100"), (1, 8, 8), 10)


@pytest.fixture
def ctx(tmp_path):
    splits = load_data(DataConfig(name="digits"), "unused")
    dm = EdgeDataModule(splits, 64, 1000)
    calls = []

    def fit(net, epochs, callbacks=(), loss=None, val_check_interval=1.0, val_points=None):
        calls.append(epochs)
        return training.fit(net, dm, TrainerConfig(max_epochs=epochs, batch_size=64, progress_bar=ProgressBar.none),
                            callbacks=callbacks, val_check_interval=val_check_interval, val_points=val_points)

    c = MethodContext(model_in=_build(), datamodule=dm, example_input=splits.test_x[:1], retrain=fit,
                      evaluate=lambda net: training.evaluate(net, dm.test_dataloader()),
                      train_batches_per_epoch=len(dm.train_dataloader()), output_dir=tmp_path / "out", seed=0,
                      build_model=_build, store_dir=tmp_path / "cache", baseline_key="test", fit=fit)
    c.calls = calls
    return c


def test_remaining_fraction_per_layer_after_L_levels():
    cfg = LotteryTicketConfig(rate=0.2, output_rate=0.1)
    model = _build()
    mask = Mask.ones(model)
    for level in range(1, 6):
        with torch.no_grad():  # pretend training moved the weights
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        mask = next_mask(model, mask, cfg, level)
        for n, m in mask.items():
            rate = 0.1 if n == "fc3.weight" else 0.2
            kept = float(m.float().mean())
            assert kept == pytest.approx((1 - rate) ** level, abs=1.5 / m.numel() ** 0.5 / 10 + 1 / m.numel()), (n, level)


def test_masks_only_shrink_and_follow_magnitude():
    cfg = LotteryTicketConfig(rate=0.5, output_rate=0.5)
    model = _build()
    m1 = next_mask(model, Mask.ones(model), cfg, 1)
    m2 = next_mask(model, m1, cfg, 2)
    for layer, m in weight_layers(model):
        n = f"{layer}.weight"
        assert not (m2[n] & ~m1[n]).any(), "a pruned weight never comes back"
        w = m.weight.detach().abs()
        assert w[~m1[n]].max() <= w[m1[n]].min()  # the smallest go first


def test_rewinding_restores_the_saved_weights_on_surviving_connections(ctx):
    cfg = LotteryTicketConfig(levels=2, epochs=1, controls=[], val_checks_per_epoch=1)
    res = methods.build(cfg).compress(ctx)
    init = _build().state_dict()
    ticket = load_ticket(ctx.output_dir / "lottery" / "winning_ticket.pt", _build())
    t = torch.load(ctx.output_dir / "lottery" / "winning_ticket.pt", weights_only=True)
    for n, m in weight_layers(ticket):
        mask = t["mask"][f"{n}.weight"]
        assert torch.equal(m.weight[mask], init[f"{n}.weight"][mask])  # survivors: exactly the init
        assert torch.all(m.weight[~mask] == 0)
    assert t["level"] in (1, 2) and 0 < t["remaining"] < 1
    assert len(res.children) == 3 and [r["round"] for r in res.series] == [0, 1, 2]


def test_late_rewinding_keeps_the_weights_after_k_steps(ctx):
    cfg = LotteryTicketConfig(levels=1, epochs=1, controls=[], rewind_step=5, val_checks_per_epoch=1)
    m = methods.build(cfg)
    m.compress(ctx)
    rewind = torch.load(m.store(ctx) / "level_0" / "ticket" / "rewind.pt", weights_only=True)
    init = _build().state_dict()
    assert not torch.equal(rewind["fc1.weight"], init["fc1.weight"])  # moved by 5 steps of training ...
    assert (rewind["fc1.weight"] - init["fc1.weight"]).abs().max() < 0.1  # ... but only a little


def test_pruned_weights_stay_zero_through_training(ctx):
    model = _build()
    mask = Mask.ones(model).random_like(0)
    mask.hold(model)
    ctx.fit(model, 1)
    bake(refresh(model))
    for n, m in weight_layers(model):
        keep = mask[f"{n}.weight"]
        assert torch.all(m.weight[~keep] == 0)
        assert torch.count_nonzero(m.weight[keep]) > 0.9 * keep.sum()


def test_resume_skips_finished_levels(ctx):
    cfg = LotteryTicketConfig(levels=2, epochs=1, controls=["reinit"], val_checks_per_epoch=1)
    method = methods.build(cfg)
    first = method.compress(ctx)
    assert len(ctx.calls) == 1 + 2 * 2  # dense, then ticket + reinit at 2 levels
    ctx.calls.clear()
    again = method.compress(ctx)
    assert ctx.calls == [] and again.series == first.series  # finished: returns at once, same figures
    # an interrupted run: level 2's ticket is missing; only it is trained again
    import shutil

    shutil.rmtree(method.store(ctx) / "level_2" / "ticket")
    method.compress(ctx)
    assert ctx.calls == [1]
    # more levels reuse the done ones
    ctx.calls.clear()
    methods.build(LotteryTicketConfig(levels=3, epochs=1, controls=["reinit"], val_checks_per_epoch=1)).compress(ctx)
    assert ctx.calls == [1, 1]


def test_controls_use_the_masks_they_claim(ctx):
    cfg = LotteryTicketConfig(levels=1, epochs=1, val_checks_per_epoch=1)
    method = methods.build(cfg)
    method.compress(ctx)
    root = method.store(ctx) / "level_1"
    mask = Mask.load(root / "mask.pt")
    reinit = torch.load(root / "reinit" / "final.pt", weights_only=True)
    rand = torch.load(root / "random_prune" / "final.pt", weights_only=True)
    ticket = torch.load(root / "ticket" / "final.pt", weights_only=True)
    for w in mask:
        n = w
        assert torch.all(reinit[w][~mask[n]] == 0)  # reinit: the ticket's own mask
        kept_random = rand[w] != 0
        assert kept_random.sum() <= mask[n].sum() and not torch.equal(kept_random, mask[n])  # random: another mask
        assert abs(int(kept_random.sum()) - int(mask[n].sum())) <= 0.01 * mask[n].numel()  # same sparsity
        assert not torch.equal(reinit[w], ticket[w])


def test_random_mask_has_the_same_per_layer_counts():
    base = Mask({"a": torch.rand(30, 40) > 0.7, "b": torch.rand(10) > 0.5})
    r = base.random_like(seed=1)
    assert all(int(r[k].sum()) == int(base[k].sum()) for k in base)
    assert not torch.equal(r["a"], base["a"])


@pytest.mark.parametrize("override,message", [("method.rate=1.0", "method.rate"), ("method.levels=0", "method.levels"),
                                              ("method.controls=[bogus]", "method.controls"),
                                              ("method.rewind_step=-1", "method.rewind_step")])
def test_bad_lottery_options_fail_before_training(make_cfg, monkeypatch, override, message):
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match=message):
        pipeline.run(make_cfg("data=digits", "+method=lottery_ticket", override))


def test_lottery_run_in_mlflow(make_cfg, tmp_path):
    from mlflow.tracking import MlflowClient

    cfg = make_cfg("data=digits", "trainer.max_epochs=2", "trainer.batch_size=64", "+method=lottery_ticket",
                   "method.levels=2", "method.epochs=1", "method.controls=[reinit]", "method.val_checks_per_epoch=2",
                   "measure.runtime=torch", "measure.export=false")
    res = pipeline.run(cfg)
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    hist = client.get_metric_history(res.run_id, "lth/remaining")
    assert [h.step for h in hist] == [0, 1, 2] and hist[0].value == 1.0 and hist[2].value < hist[1].value < 1
    assert [h.step for h in client.get_metric_history(res.run_id, "lth/reinit_test_acc")] == [1, 2]
    assert len(client.get_metric_history(res.run_id, "lth/best_val_step")) == 3
    # the iterations each level trained: 1 epoch of the digits training split at batch 64, the same at every level
    steps = client.get_metric_history(res.run_id, "lth/steps")
    assert len(steps) == 3 and len({h.value for h in steps}) == 1 and steps[0].value > 0
    assert all(h.value <= steps[0].value for h in client.get_metric_history(res.run_id, "lth/best_val_step"))
    assert len(client.get_metric_history(res.run_id, "lth/early_stop_test_acc")) == 3  # labelled: at the minimum val loss
    run = client.get_run(res.run_id)
    # two references, both named, one definition each: delta/acc vs the fully trained dense baseline, and
    # lth/delta_vs_level0 vs the level-0 network trained for the same budget as every ticket
    m = run.data.metrics
    assert m["delta/acc"] == pytest.approx(m["test/acc"] - m["baseline/test_acc"])
    assert m["lth/delta_vs_level0"] == pytest.approx(m["lth/winning_test_acc"] - m["lth/level0_test_acc"])
    assert 0 <= m["lth/winning_early_stop_test_acc"] <= 1 and "level 0" in run.data.tags["lth.references"]
    children = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{res.run_id}'")
    assert len(children) == 3
    for c in children:
        for key in ("test/acc", "size/sparsity", "compute/macs_nonzero", "latency/host_p50_ms", "device/fits", "lth/level"):
            assert key in c.data.metrics, key
    arts = {a.path for a in client.list_artifacts(res.run_id, "lottery")}
    assert {"lottery/winning_ticket.pt", "lottery/plot.png"} <= arts
    local = client.download_artifacts(res.run_id, "lottery/winning_ticket.pt", str(tmp_path))
    net = load_ticket(local, build_model(ModelConfig(name="lenet_300_100"), (1, 8, 8), 10))
    assert net(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_corrupt_level_file_is_set_aside_and_that_level_retrained(ctx, caplog):
    cfg = LotteryTicketConfig(levels=2, epochs=1, controls=[], val_checks_per_epoch=1)
    method = methods.build(cfg)
    first = method.compress(ctx)
    level1 = method.store(ctx) / "level_1"
    bad_file = level1 / "ticket" / "final.pt"
    bad = bad_file.read_bytes()[:300]  # a truncated zip: "PytorchStreamReader failed reading zip archive"
    bad_file.write_bytes(bad)
    ctx.calls.clear()
    with caplog.at_level("WARNING"):
        again = method.compress(ctx)  # used to fail: "PytorchStreamReader failed reading zip archive", no path
    assert ctx.calls == [1], "only level 1's ticket is trained again"
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(bad_file) in m for m in warned), warned
    aside = list(level1.glob("ticket.corrupt-*"))
    assert len(aside) == 1 and (aside[0] / "final.pt").read_bytes() == bad
    assert torch.load(bad_file, weights_only=True)  # a readable file again
    assert [r["lth/remaining"] for r in again.series] == [r["lth/remaining"] for r in first.series]
    ctx.calls.clear()
    method.compress(ctx)
    assert ctx.calls == []  # and it is reused from now on


def test_corrupt_mask_file_is_redone_and_its_level_retrained(ctx, caplog):
    cfg = LotteryTicketConfig(levels=1, epochs=1, controls=["reinit"], val_checks_per_epoch=1)
    method = methods.build(cfg)
    method.compress(ctx)
    mask_file = method.store(ctx) / "level_1" / "mask.pt"
    mask = Mask.load(mask_file)
    mask_file.write_bytes(b"\x00" * 10)
    ctx.calls.clear()
    with caplog.at_level("WARNING"):
        method.compress(ctx)
    assert ctx.calls == [1, 1], "level 1's ticket and its control are retrained with the redone mask"
    assert any(str(mask_file) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert list(mask_file.parent.glob("mask.pt.corrupt-*"))
    redone = Mask.load(mask_file)
    assert all(torch.equal(redone[n], mask[n]) for n in mask)  # the same mask: magnitudes of the stored level 0
