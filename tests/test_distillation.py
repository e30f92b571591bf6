"""Knowledge distillation (issue 14): the losses by hand, frozen teachers, learned regressors, runs and bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from edgebench import pipeline, training
from edgebench.config import ConfigError, DataConfig, ProgressBar, TrainerConfig
from edgebench.data import EdgeDataModule, load_data
from edgebench.methods.distillation import (
    Distill,
    DistillationConfig,
    Distillation,
    Kind,
    kd_loss,
    last_linear,
    regressor_for,
    rkd_distance,
    sp_loss,
)


def test_kd_loss_equals_a_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.5]])
    t = torch.tensor([[0.5, 3.0, -1.0]])
    T = 2.0
    ps = [math.exp(v / T) for v in s[0].tolist()]
    pt = [math.exp(v / T) for v in t[0].tolist()]
    ps = [p / sum(ps) for p in ps]
    pt = [p / sum(pt) for p in pt]
    kl = sum(q * math.log(q / p) for p, q in zip(ps, pt))
    assert kd_loss(s, t, T).item() == pytest.approx(T * T * kl, rel=1e-6)
    assert kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-6)


def test_relation_losses_vanish_for_the_same_embeddings_and_not_otherwise():
    torch.manual_seed(0)
    a, b = torch.randn(8, 5), torch.randn(8, 5)
    assert rkd_distance(a, a).item() == pytest.approx(0.0, abs=1e-7) and rkd_distance(a, b).item() > 0
    assert rkd_distance(a, 3 * a).item() == pytest.approx(0.0, abs=1e-6)  # normalised by the mean distance
    assert sp_loss(a, a).item() == pytest.approx(0.0, abs=1e-7) and sp_loss(a, b).item() > 0


def _net(seed: int, bn: bool = False):
    torch.manual_seed(seed)
    layers = [nn.Flatten(), nn.Linear(64, 32)] + ([nn.BatchNorm1d(32)] if bn else []) + [nn.ReLU(), nn.Linear(32, 10)]
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def dm():
    splits = load_data(DataConfig(name="digits"), "data")
    return EdgeDataModule(splits, 64, 256, 0)


def _fit(net, dm, loss=None, epochs=3):
    cfg = TrainerConfig(max_epochs=epochs, batch_size=64, progress_bar=ProgressBar.none, scheduler="none")
    return training.fit(net, dm, cfg, loss=loss)


def test_pure_kd_ignores_the_labels():
    teacher = _net(0)
    loss = Distill(DistillationConfig(alpha=1.0), teacher)
    student = _net(1)
    x = torch.randn(16, 1, 8, 8)
    logits = student(x)
    y1, y2 = torch.zeros(16, dtype=torch.long), torch.randint(0, 10, (16,))
    assert loss(student, x, logits, y1).item() == pytest.approx(loss(student, x, logits, y2).item())
    assert set(loss.epoch_terms()) == {"distill/kd"}  # no cross-entropy term at all


def test_response_kd_with_a_frozen_batchnorm_teacher_learns_and_leaves_the_teacher_alone(dm):
    teacher = _net(0, bn=True)
    _fit(teacher, dm, epochs=4)
    before = copy.deepcopy(teacher.state_dict())  # running statistics included
    loss = Distill(DistillationConfig(alpha=1.0, temperature=4.0), teacher)
    history = _fit(_net(1), dm, loss=loss, epochs=4)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters()) and not teacher.training
    assert history[-1]["val/acc"] > 0.7  # learned from the teacher's soft targets alone


def test_hint_regressor_gets_gradients_and_the_teacher_does_not(dm):
    teacher = _net(0)
    _fit(teacher, dm, epochs=2)
    t_before = copy.deepcopy(teacher.state_dict())
    student = _net(1)
    x = dm.splits.test_x[:1]
    cfg = DistillationConfig(kind=Kind.feature, hint_layer="1", guided_layer="1")
    from edgebench.methods.distillation import _features

    reg = regressor_for(_features(student, "1", x), _features(teacher, "1", x))
    assert isinstance(reg, nn.Linear) and reg.weight.shape == (32, 32)
    reg_before = reg.weight.detach().clone()
    loss = Distill(cfg, teacher, "1", "1", regressor=reg)
    _fit(student, dm, loss=loss, epochs=1)
    assert not torch.equal(reg_before, reg.weight)  # the loss's own parameter was trained with the student
    assert all(torch.equal(t_before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())


def test_regressor_matches_feature_maps_with_a_1x1_conv_and_pools_the_larger_map():
    reg = regressor_for(torch.zeros(1, 16, 10, 10), torch.zeros(1, 32, 14, 14))
    assert isinstance(reg, nn.Conv2d) and reg.kernel_size == (1, 1) and (reg.in_channels, reg.out_channels) == (16, 32)


# ----------------------------------------------------------------------------------- bad input, before training


@pytest.mark.parametrize("override,message", [
    ("method.temperature=0", "method.temperature: must be > 0"),
    ("method.alpha=1.5", "method.alpha: must be in"),
    ("method.guided_layer=fc9", "applies to method.kind=feature only"),
])
def test_bad_distillation_options_fail_before_training(make_cfg, monkeypatch, override, message):
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match=message):
        pipeline.run(make_cfg("data=digits", "model=lenet5", "+method=distillation", override))


def test_a_hint_layer_that_does_not_exist_lists_the_modules(make_cfg, monkeypatch):
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match=r"method.hint_layer=conv9: the teacher \(.*\) has no such module; its modules: .*features"):
        pipeline.run(make_cfg("data=digits", "model=lenet5", "+method=distillation", "method.kind=feature",
                              "method.hint_layer=conv9"))


def test_a_teacher_with_other_classes_is_refused():
    method = Distillation(DistillationConfig())
    student = _net(1)
    method._teacher_arch = lambda example, n, model: nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    with pytest.raises(ConfigError, match=r"does not match the student's \(1, 10\)"):
        method.check(student, torch.zeros(1, 1, 8, 8))


def test_an_unknown_teacher_model_is_refused(make_cfg, monkeypatch):
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match="method.teacher.model=resnet99: unknown model"):
        pipeline.run(make_cfg("data=digits", "model=lenet5", "+method=distillation", "method.teacher.model=resnet99"))


# ----------------------------------------------------------------------------------- runs


def test_a_zoo_teacher_run_logs_its_figures_terms_and_child_run(make_cfg):
    from mlflow.tracking import MlflowClient

    cfg = make_cfg("data=digits", "model=lenet5", "trainer.max_epochs=2", "+method=distillation",
                   "method.teacher.model=lenet_300_100", "method.epochs=2", "measure.latency=false")
    res = pipeline.run(cfg)
    m = res.metrics
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    run = client.get_run(res.run_id)
    for key in ("distill/teacher_test_acc", "distill/teacher_params", "distill/teacher_macs"):
        assert key in run.data.metrics, key
    from edgebench.config import ModelConfig
    from edgebench.models import build_model

    teacher = build_model(ModelConfig(name="lenet_300_100"), (1, 8, 8), 10)
    assert run.data.metrics["distill/teacher_params"] == sum(p.numel() for p in teacher.parameters())
    assert [h.step for h in client.get_metric_history(res.run_id, "distill/kd")] == [1, 2]
    children = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{res.run_id}'")
    assert any(c.data.tags.get("edgebench.role") == "trained" and c.data.tags.get("model") == "lenet_300_100"
               for c in children)
    assert res.tags["distill.init"] == "scratch" and m["test/acc"] > 0.5


def test_prune_then_distil_from_the_dense_model_then_int8(make_cfg):
    cfg = make_cfg("data=digits", "model=lenet5", "trainer.max_epochs=2", "steps=[{name: structured_pruning, retrain_epochs: 1}, {name: distillation, epochs: 1}, ptq_int8]",
                   "measure.latency=false")
    from mlflow.tracking import MlflowClient

    res = pipeline.run(cfg)
    tags = MlflowClient(cfg.paths.mlflow_tracking_uri).get_run(res.run_id).data.tags
    assert res.tags["chain"] == "structured_pruning->distillation->ptq_int8"
    assert tags["distill.teacher"] == "baseline" and tags["distill.init"] == "input"  # the pruned model learns
    assert res.tags["export.dtype"] == "int8" and res.metrics["test/acc"] > 0.3


def test_response_kd_runs_the_teacher_once_per_image_and_reads_the_same_logits_after():
    """Response KD keeps the frozen teacher's logits per image: a second epoch of reshuffled batches runs the
    teacher on no image again, and the kept logits are the teacher's own (up to float rounding)."""
    teacher = _net(0)
    calls = []
    teacher.register_forward_hook(lambda m, inp, out: calls.append(len(inp[0])))
    loss = Distill(DistillationConfig(alpha=1.0), teacher)
    x = torch.randn(48, 1, 8, 8)
    student = _net(1)
    for perm in (torch.arange(48), torch.randperm(48, generator=torch.Generator().manual_seed(0))):
        for i in range(0, 48, 16):
            xb = x[perm[i:i + 16]]
            loss(student, xb, student(xb), torch.zeros(16, dtype=torch.long))
    assert sum(calls) == 48  # the first epoch only
    kept = loss._teacher_logits(x[:16])
    assert sum(calls) == 48
    with torch.no_grad():
        direct = teacher.eval()(x[:16])
    assert torch.allclose(kept, direct, atol=1e-6)


@pytest.mark.parametrize("kind,relation", [("relation", "rkd"), ("relation", "sp"), ("feature", "rkd")])
def test_tapped_teacher_features_are_kept_per_image_while_they_fit(monkeypatch, kind, relation):
    """A relation loss's teacher embeddings (and a small hint map) are kept per image with the logits: a later
    epoch runs the teacher on no image and gives the loss it would have given. When the data set's outputs would
    not fit the memo's budget, nothing is kept and the teacher runs on every batch."""
    import edgebench.methods.distillation as distillation

    torch.manual_seed(0)
    teacher, student = _net(0), _net(1)
    calls = []
    teacher.register_forward_hook(lambda m, inp, out: calls.append(len(inp[0])))
    cfg = DistillationConfig(kind=kind, relation=relation)
    layers = dict(guided="0", hint="0", regressor=torch.nn.Identity()) if kind == "feature" else \
        dict(penultimate=(last_linear(student), last_linear(teacher)))
    x, y = torch.randn(48, 1, 8, 8), torch.randint(0, 4, (48,))

    def epoch(loss, perm):
        out = []
        for i in range(0, 48, 16):
            idx = perm[i:i + 16]
            with torch.no_grad():
                out.append(float(loss(student, x[idx], student(x[idx]), y[idx])))
        return out

    perm = torch.randperm(48, generator=torch.Generator().manual_seed(0))
    kept = Distill(cfg, teacher, **layers)
    kept.attach(student)
    epoch(kept, torch.arange(48))
    assert sum(calls) == 48 and kept._memo is not None and len(kept._memo) == 48
    again = epoch(kept, perm)
    assert sum(calls) == 48  # the second epoch ran the teacher on no image
    calls.clear()
    fresh = Distill(cfg, teacher, **layers)
    fresh._memo = None  # the teacher on every batch
    fresh.attach(student)
    assert epoch(fresh, perm) == pytest.approx(again, rel=1e-5, abs=1e-6)
    assert sum(calls) == 48
    monkeypatch.setattr(distillation, "MEMO_BYTES", 100)  # less than one batch's outputs
    calls.clear()
    tight = Distill(cfg, teacher, **layers)
    tight.attach(student)
    epoch(tight, torch.arange(48))
    epoch(tight, perm)
    assert tight._memo is None and sum(calls) == 96
