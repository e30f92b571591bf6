"""The recurrent attention model (issue 16): glimpse sensor, REINFORCE, compute that does not grow, determinism,
export, and runs as steps with its glimpse figure in MLflow."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from edgebench import pipeline
from edgebench.config import ConfigError, ModelConfig
from edgebench.losses import CrossEntropy, objective
from edgebench.measure.compute import count_macs
from edgebench.models import build_model
from edgebench.models.ram import BaselineMSE, GlimpseSensor, RecurrentAttention, Reinforce


def _loc(start: int, side: int, n: int) -> float:
    """The location whose ``side``-pixel patch starts at pixel ``start`` of an ``n``-pixel axis."""
    centre = start + (side - 1) / 2
    return (2 * centre + 1) / n - 1


def test_glimpse_sensor_by_hand_on_a_4x4_image():
    x = torch.arange(16.0).view(1, 1, 4, 4)  # rows 0..3: [0 1 2 3], [4 5 6 7], [8 9 10 11], [12 13 14 15]
    sensor = GlimpseSensor(size=2, scales=2)
    out = sensor(x, torch.tensor([[0.0, 0.0]]))  # the centre: the 2x2 patch is rows/cols 1-2
    assert torch.allclose(out[0, 0], torch.tensor([[5.0, 6.0], [9.0, 10.0]]), atol=1e-5)
    # the 4x4 patch at scale 2 is the whole image averaged in 2x2 blocks
    assert torch.allclose(out[0, 1], torch.tensor([[2.5, 4.5], [10.5, 12.5]]), atol=1e-5)
    # the top-left corner (location -0.5, -0.5 = pixel centre 0.5): rows/cols 0-1
    out = sensor(x, torch.tensor([[-0.5, -0.5]]))
    assert torch.allclose(out[0, 0], torch.tensor([[0.0, 1.0], [4.0, 5.0]]), atol=1e-5)
    # x is the column, y the row: 2x2 patch at rows 0-1, columns 2-3
    out = sensor(x, torch.tensor([[0.5, -0.5]]))
    assert torch.allclose(out[0, 0], torch.tensor([[2.0, 3.0], [6.0, 7.0]]), atol=1e-5)
    # beyond the border the sensor reads zeros: location (1, 1) centres on pixel 3.5, the patch covers pixels 3..4
    out = sensor(x, torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(out[0, 0], torch.tensor([[15.0, 0.0], [0.0, 0.0]]), atol=1e-5)


def test_glimpse_sensor_reads_the_patches_at_known_locations_and_scales_on_a_60x60_canvas():
    x = torch.rand(2, 1, 60, 60)
    sensor = GlimpseSensor(size=12, scales=3)
    # image 0: a patch starting at row 40, column 5; image 1: the centre
    loc = torch.tensor([[_loc(5, 12, 60), _loc(40, 12, 60)], [0.0, 0.0]])
    out = sensor(x, loc)
    assert out.shape == (2, 3, 12, 12)
    assert torch.allclose(out[0, 0], x[0, 0, 40:52, 5:17], atol=1e-5)
    assert torch.allclose(out[1, 0], x[1, 0, 24:36, 24:36], atol=1e-5)
    assert torch.allclose(out[1, 1], F.avg_pool2d(x[1:2, :, 18:42, 18:42], 2)[0, 0], atol=1e-5)
    assert torch.allclose(out[1, 2], F.avg_pool2d(x[1:2, :, 6:54, 6:54], 4)[0, 0], atol=1e-5)
    # scale 2 of image 0 (48 px centred on row 45.5, column 10.5) runs off the left edge: zeros there
    inside = x[0:1, :, 22:60, 0:35]  # rows 22..69 -> 22..59 inside; columns -13..34 -> 0..34 inside
    padded = F.pad(inside, (13, 0, 0, 10))  # 13 columns of zeros on the left, 10 rows below
    assert torch.allclose(out[0, 2], F.avg_pool2d(padded, 4)[0, 0], atol=1e-5)


def test_params_and_macs_do_not_change_with_the_canvas():
    seen = set()
    for canvas in (28, 60, 100):
        net = build_model(ModelConfig(name="ram"), (1, canvas, canvas), 10)
        seen.add((sum(p.numel() for p in net.parameters()), count_macs(net, torch.zeros(1, 1, canvas, canvas))))
    assert len(seen) == 1
    params, macs = seen.pop()
    # per glimpse: what 3*144 -> 128, where 2 -> 128, 128 -> 256 twice, core 256 -> 256 twice; then 5 locations
    # (256 -> 2) and baselines (256 -> 1) and the classifier (256 -> 10) once
    per_glimpse = 3 * 144 * 128 + 2 * 128 + 2 * 128 * 256 + 2 * 256 * 256
    assert macs == 6 * per_glimpse + 5 * (256 * 2 + 256) + 256 * 10
    conv = [sum(p.numel() for p in build_model(ModelConfig(name="conv2_small"), (1, c, c), 10).parameters())
            for c in (28, 60, 100)]
    assert conv[0] < conv[1] < conv[2]  # its FC layer grows with the image


def test_evaluation_is_deterministic_and_training_samples():
    torch.manual_seed(0)
    net = RecurrentAttention((1, 28, 28), 10, glimpse_size=6, scales=2, glimpses=4)
    x = torch.randn(5, 1, 28, 28)
    net.eval()
    a, locs_a = net(x), net.trace["locations"].clone()
    b, locs_b = net(x), net.trace["locations"].clone()
    assert torch.equal(a, b) and torch.equal(locs_a, locs_b)
    assert locs_a.shape == (5, 4, 2) and torch.equal(locs_a[:, 0], torch.zeros(5, 2))  # first glimpse: the centre
    assert net.trace["log_pi"].numel() == 0  # nothing sampled
    net.train()
    net(x)
    t1 = net.trace["locations"].clone()
    net(x)
    assert not torch.equal(t1, net.trace["locations"])
    assert net.trace["log_pi"].shape == (5, 3) and net.trace["locations"].abs().max() <= 1.0


def test_reinforce_trains_the_location_network_only_and_cross_entropy_never_reaches_it():
    torch.manual_seed(0)
    net = RecurrentAttention((1, 28, 28), 10, glimpse_size=6, scales=2, glimpses=4).train()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    logits = net(x)
    Reinforce()(net, x, logits, y).backward(retain_graph=True)
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert grads["locator.weight"] is not None and grads["locator.weight"].abs().sum() > 0
    for name, g in grads.items():  # nothing flows back through the sampled locations or the detached state
        if not name.startswith("locator."):
            assert g is None or g.abs().sum() == 0, name
    net.zero_grad(set_to_none=True)
    CrossEntropy()(net, x, logits, y).backward(retain_graph=True)
    assert net.locator.weight.grad is None or net.locator.weight.grad.abs().sum() == 0
    assert net.baseline.weight.grad is None or net.baseline.weight.grad.abs().sum() == 0
    assert net.core_rec.weight.grad.abs().sum() > 0 and net.what.weight.grad.abs().sum() > 0
    net.zero_grad(set_to_none=True)
    BaselineMSE()(net, x, logits, y).backward()
    assert net.baseline.weight.grad.abs().sum() > 0 and net.locator.weight.grad is None


def test_reinforce_by_hand():
    net = RecurrentAttention((1, 8, 8), 3, glimpse_size=2, scales=1, glimpses=3)
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    y = torch.tensor([0, 0])  # the first is right (reward 1), the second wrong (0)
    net.trace = {"log_pi": torch.tensor([[-1.0, -2.0], [-0.5, -0.5]]), "baseline": torch.tensor([[0.25, 0.5], [0.5, 0.0]]),
                 "locations": torch.zeros(2, 3, 2)}
    # -(sum_t log_pi (R - b)) averaged: image 0: -(-1*0.75 + -2*0.5) = 1.75; image 1: -(-0.5*-0.5 + -0.5*0) = -0.25
    assert Reinforce()(net, None, logits, y).item() == pytest.approx((1.75 - 0.25) / 2)
    # (b - R)^2: image 0: 0.5625, 0.25; image 1: 0.25, 0
    assert BaselineMSE()(net, None, logits, y).item() == pytest.approx((0.5625 + 0.25 + 0.25) / 4)


def test_the_model_brings_its_own_objective():
    net = build_model(ModelConfig(name="ram"), (1, 28, 28), 10)
    loss = objective(net)
    assert {type(t).__name__ for t in loss.terms} == {"CrossEntropy", "Reinforce", "BaselineMSE"}
    assert type(objective(build_model(ModelConfig(name="lenet5"), (1, 28, 28), 10))).__name__ == "CrossEntropy"


def test_onnx_export_unrolls_the_glimpses_and_matches_pytorch(tmp_path):
    import onnxruntime as ort

    from edgebench.export.onnx import export_onnx

    torch.manual_seed(0)
    net = RecurrentAttention((1, 40, 40), 10, glimpse_size=8, scales=2, glimpses=4).eval()
    x = torch.randn(1, 1, 40, 40)
    art = export_onnx(net, x, tmp_path / "ram.onnx")
    sess = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])
    for seed in range(3):
        xi = torch.randn(1, 1, 40, 40, generator=torch.Generator().manual_seed(seed))
        got = sess.run(None, {sess.get_inputs()[0].name: xi.numpy()})[0]
        assert torch.allclose(torch.from_numpy(got), net(xi), atol=1e-4)


@pytest.mark.parametrize("override, message", [
    ("model.glimpses=0", "model.glimpses: must be an integer >= 1"),
    ("model.loc_std=0", "model.loc_std: must be > 0"),
])
def test_bad_ram_options_are_refused(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        pipeline.run(make_cfg("data=digits", "model=ram", override))


def test_ram_options_on_another_model_are_refused(make_cfg):
    with pytest.raises(ConfigError, match="model.glimpses: applies to model=ram only"):
        pipeline.run(make_cfg("data=digits", "model=lenet5", "+model.glimpses=4"))


def test_ram_trains_prunes_and_quantises_as_steps_and_logs_where_it_looked(make_cfg):
    from mlflow.tracking import MlflowClient

    cfg = make_cfg("data=digits", "model=ram", "model.glimpse_size=4", "model.scales=2", "model.glimpses=3",
                   "trainer.max_epochs=2", "steps=[{name: magnitude_pruning, sparsity: 0.5, retrain_epochs: 1}, ptq_int8]",
                   "measure.latency=false")
    res = pipeline.run(cfg)
    assert res.tags["export.dtype"] == "int8"
    assert 0.4 < res.metrics["size/sparsity"] < 0.6
    assert res.metrics["test/acc"] > 0.2  # 10 classes: chance is 0.1
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    assert [a.path for a in client.list_artifacts(res.run_id, "attention")] == ["attention/glimpses.png"]


def test_ram_defaults_have_one_source():
    """config.RAM_DEFAULTS is the source: the constructor's defaults read it, and conf/model/ram.yaml repeats it."""
    import inspect

    import yaml

    from edgebench.config import RAM_DEFAULTS, config_dir

    sig = inspect.signature(RecurrentAttention.__init__).parameters
    assert {k: sig[k].default for k in RAM_DEFAULTS} == RAM_DEFAULTS
    conf = yaml.safe_load((config_dir() / "model" / "ram.yaml").read_text())
    assert {k: conf[k] for k in RAM_DEFAULTS} == RAM_DEFAULTS


def test_ram_in_half_precision_draws_where_it_looked():
    """After an fp16 step the model's own figure runs it in its dtype (the float test images, cast)."""
    from edgebench.models.ram import RecurrentAttention

    net = RecurrentAttention((1, 16, 16), 10, glimpse_size=4, scales=2, glimpses=3).half()
    x = torch.rand(2, 1, 16, 16)
    plots = net.report_plots(x, torch.tensor([1, 2]))
    data = plots["attention/glimpses.png"].data
    assert len(data["predictions"]) == 2 and len(data["locations"]) == 2 and data["images"] == x[:, 0].tolist()
