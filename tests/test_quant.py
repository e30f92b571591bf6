"""Quantisation: quantiser error bounds, bucketing, codebooks, real int8/fp16 artifacts, QAT, KURE, device fit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgebench import pipeline, training
from edgebench.config import ConfigError, DataConfig, ModelConfig
from edgebench.data import EdgeDataModule, load_data
from edgebench.export import export
from edgebench.measure import measure_model
from edgebench.methods.quantization import analytic_bytes, quantize_weights
from edgebench.models import build_model
from edgebench.export import OnnxPredictor, quantize_int8
from edgebench.quant import Int8FakeQuant, KureLoss, kmeans_quantize, kurtosis, quantized_bits, uniform_quantize

DIGITS = ("data=digits", "trainer.max_epochs=3", "trainer.batch_size=32", "measure.calls=100")


def _w(shape=(64, 50), seed=0):
    torch.manual_seed(seed)
    return torch.randn(shape) * 0.1


# ----------------------------------------------------------------------------------- quantisers


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bucket", [0, 7, 64])
def test_uniform_round_trip_error_is_at_most_half_a_step(bits, symmetric, bucket):
    w = _w()
    q = uniform_quantize(w, bits, symmetric, bucket)
    size = w.numel() if bucket == 0 else bucket
    step = q.step.repeat_interleave(size)[: w.numel()].view_as(w)  # the step of each value's bucket
    err = (q.values - w).abs()
    assert bool((err <= step / 2 + 1e-7).all())
    levels = (2 ** (bits - 1) - 1) * 2 + 1 if symmetric else 2 ** bits
    for b in range(q.step.numel()):  # within one bucket: at most 2^bits levels, all multiples of the step
        vals = q.values.reshape(-1)[b * size:(b + 1) * size]
        assert torch.unique(vals).numel() <= levels


def test_one_bucket_equals_per_tensor():
    w = _w()
    for symmetric in (True, False):
        per_tensor = uniform_quantize(w, 4, symmetric, 0)
        one_bucket = uniform_quantize(w, 4, symmetric, w.numel())
        bigger = uniform_quantize(w, 4, symmetric, 10 * w.numel())
        assert torch.equal(per_tensor.values, one_bucket.values) and torch.equal(per_tensor.values, bigger.values)
        assert per_tensor.overhead_bits == one_bucket.overhead_bits


def test_smaller_buckets_cost_scales_and_reduce_the_error():
    w = _w()
    errs, overheads = [], []
    for bucket in (0, 256, 16):
        q = uniform_quantize(w, 3, True, bucket)
        errs.append(float((q.values - w).pow(2).mean()))
        overheads.append(q.overhead_bits)
    assert errs[0] > errs[1] > errs[2]
    assert overheads == [32, 32 * math.ceil(w.numel() / 256), 32 * w.numel() // 16]


def test_symmetric_codes_keep_zero_exact_and_stay_in_range():
    w = torch.tensor([-1.0, -0.3, 0.0, 0.2, 0.7])
    q = uniform_quantize(w, 3, True)
    assert q.values[2] == 0 and float(q.step) == pytest.approx(1 / 3)
    assert torch.allclose(q.values / q.step, torch.round(q.values / q.step))
    assert float(q.values.abs().max()) == pytest.approx(1.0)


@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_codebook_has_2_to_the_bits_values(bits):
    w = _w((40, 30))
    q, codebook, index = kmeans_quantize(w, bits)
    assert codebook.numel() == 2 ** bits
    assert torch.unique(q.values).numel() <= 2 ** bits
    assert torch.equal(q.values, codebook[index])
    assert float((q.values - w).abs().max()) <= float(q.step) + 1e-7
    nearest = (w.reshape(-1, 1) - codebook.reshape(1, -1)).abs().min(dim=1).values
    assert torch.allclose((q.values - w).abs().reshape(-1), nearest)  # every weight takes its nearest value
    assert q.overhead_bits == 32 * 2 ** bits


def test_kmeans_beats_uniform_on_a_bell_shaped_tensor():
    w = _w((100, 100))
    mse_u = float((uniform_quantize(w, 3).values - w).pow(2).mean())
    mse_k = float((kmeans_quantize(w, 3)[0].values - w).pow(2).mean())
    assert mse_k < mse_u


def test_analytic_size_counts_codes_scales_and_fp32_rest():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    layers = [("0", net[0]), ("2", net[2])]
    coded = quantize_weights(net, layers, "uniform", 4, bucket_size=0)
    for (_, m), bits in zip(layers, coded.values()):
        nz = int(torch.count_nonzero(m.weight))
        n = m.weight.numel()
        assert bits == min(n * 4, n + nz * 4, nz * 36 + (m.weight.shape[0] + 1) * 32) + 32
    expected_bits = sum(coded.values()) + 32 * (30 + 5)  # biases stay fp32
    assert analytic_bytes(net, coded) == math.ceil(expected_bits / 8)
    assert quantized_bits(uniform_quantize(net[0].weight, 4), 4) == coded["0"]


def test_bad_bits_are_refused():
    with pytest.raises(ValueError, match="bits"):
        uniform_quantize(_w(), 1, symmetric=True)
    with pytest.raises(ValueError, match="bits"):
        kmeans_quantize(_w(), 0)


# ----------------------------------------------------------------------------------- KURE


def test_kurtosis_of_known_distributions():
    uniform = torch.linspace(-1, 1, 200_001)
    assert float(kurtosis(uniform)) == pytest.approx(1.8, abs=1e-3)
    torch.manual_seed(0)
    assert float(kurtosis(torch.randn(1_000_000))) == pytest.approx(3.0, abs=0.03)
    two_point = torch.tensor([-1.0, 1.0] * 1000)
    assert float(kurtosis(two_point)) == pytest.approx(1.0, abs=1e-2)


def test_kure_loss_value():
    a, b = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        a.weight = nn.Parameter(torch.linspace(-1, 1, 200_001).view(1, -1))  # K = 1.8
        b.weight = nn.Parameter(torch.tensor([-1.0, 1.0] * 1000).view(1, -1))  # K ~ 1.0
    loss = KureLoss([a, b], lam=2.0, target=1.8)(None, None, None, None)
    k_b = float(kurtosis(b.weight.detach()))
    assert float(loss.detach()) == pytest.approx(2.0 * ((0.0) ** 2 + (k_b - 1.8) ** 2) / 2, rel=1e-3)
    loss.backward()
    assert b.weight.grad is not None and float(b.weight.grad.abs().sum()) > 0


# ----------------------------------------------------------------------------------- int8 and half artifacts


def _conv_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="resnet20"), (1, 28, 28), 10).eval()


def test_int8_artifact_is_int8_and_under_30_percent_of_fp32(tmp_path):
    from edgebench.export import export_onnx

    model, x = _conv_model(), torch.randn(1, 1, 28, 28)
    fp32 = export_onnx(model, x, tmp_path / "fp32" / "model.onnx")
    calib = [torch.randn(16, 1, 28, 28) for _ in range(2)]
    int8 = quantize_int8(model, x, tmp_path / "int8" / "model.onnx", calibration=calib)
    fp32_bytes = sum(f.stat().st_size for f in fp32.files)
    int8_bytes = sum(f.stat().st_size for f in int8.files)
    assert int8.dtype == "int8" and int8_bytes <= 0.3 * fp32_bytes
    graph = onnx.load(str(int8.path)).graph
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 20  # every conv and linear weight is stored as int8
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    out = OnnxPredictor(int8.path)(torch.randn(5, 1, 28, 28))  # dynamic batch
    assert out.shape == (5, 10)


def test_static_int8_needs_calibration(tmp_path):
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(_conv_model(), torch.randn(1, 1, 28, 28), tmp_path / "m.onnx", calibration=[])


def test_int8_fits_coral_where_fp32_does_not(tmp_path):
    model, x = _conv_model(), torch.randn(1, 1, 28, 28)
    int8 = quantize_int8(model, x, tmp_path / "int8" / "model.onnx", calibration=[torch.randn(8, 1, 28, 28)])
    fp32 = measure_model(model, x, "coral_dev_board", artifact=export("onnx", model, x, tmp_path / "fp32"))
    q = measure_model(model, x, "coral_dev_board", artifact=int8, dtype="int8")
    assert fp32["device/fits"] == 0 and "int8" in fp32.tags()["device.fit"]
    # fit by format: the Coral runs .tflite, not ONNX (tests/test_tflite.py: an int8 .tflite fits); only the format
    # keeps the int8 ONNX file out, where the fp32 one also fails on its dtype
    assert q["device/fits"] == 0 and "device/latency_ms_est" not in q  # no Coral runtime loads it: no estimate
    assert "export=tflite_int8" in q.tags()["device.fit"] and "this model is" not in q.tags()["device.fit"]
    assert q["size/bytes_artifact"] == int8.path.stat().st_size
    assert q.tags()["latency.runtime"] == "onnxruntime" and q.tags()["export.dtype"] == "int8"
    assert q["memory/peak_activation_bytes"] == pytest.approx(fp32["memory/peak_activation_bytes"] / 4)


def test_qat_fake_quant_puts_weights_on_the_int8_grid():
    model = _conv_model().train()
    fq = Int8FakeQuant(model, per_channel=True, reduce_range=True)
    model(torch.randn(4, 1, 28, 28)).sum().backward()  # gradients reach the underlying weights (STE)
    grads = [m.parametrizations.weight.original.grad for m in fq.layers]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)
    fq.remove()
    for m in fq.layers:
        for row in m.weight.detach().reshape(m.weight.shape[0], -1):
            step = float(row.abs().max()) / 63  # 7-bit symmetric codes per output channel
            codes = row / step
            assert torch.allclose(codes, torch.round(codes), atol=1e-3)
    assert not any(m._forward_pre_hooks for m in fq.layers)


# ----------------------------------------------------------------------------------- through the pipeline


def _logged_model(cfg, run_id: str) -> Path:
    """The run's ONNX file, from MLflow's artifact store (its one copy: issue 24 item 15)."""
    from mlflow.tracking import MlflowClient

    from edgebench.tracking import download_model_file

    return download_model_file(MlflowClient(cfg.paths.mlflow_tracking_uri), run_id, "model.onnx", cfg.paths.root_dir)


def test_ptq_int8_run_accuracy_comes_from_the_onnx_file(make_cfg):
    from mlflow.tracking import MlflowClient

    cfg = make_cfg(*DIGITS, "+method=ptq_int8", "device=coral_dev_board", "export=onnx_int8")  # auto: a .tflite
    res = pipeline.run(cfg)
    m = res.metrics
    art = _logged_model(cfg, res.run_id)
    splits = load_data(DataConfig(name="digits"), "unused")
    dm = EdgeDataModule(splits, 32, 1000)
    assert m["test/acc"] == training.evaluate(OnnxPredictor(art), dm.test_dataloader())["test/acc"]
    assert m["test/acc"] > 0.8 and abs(m["delta/acc"]) < 0.05
    # int8 suits the int8-only Coral, but it runs .tflite files: the ONNX file does not fit, and the reason says so
    assert m["device/fits"] == 0 and "export=tflite_int8" in res.tags["device.fit"]
    assert m["size/bytes_artifact"] == art.stat().st_size
    run = MlflowClient(cfg.paths.mlflow_tracking_uri).get_run(res.run_id)
    assert run.data.tags["quant.accuracy"].startswith("measured") and run.data.tags["export.dtype"] == "int8"
    assert run.data.metrics["method/bits"] == 8 and run.data.metrics["method/calibration_batches"] == 8


def test_ptq_and_qat_write_the_same_int8_graph(make_cfg):
    """QAT changes the weights, not the file's graph: both go through the same ONNX Runtime quantiser, so their
    files have the same operators in the same order and the same tensor shapes and types (a speed difference
    between them is noise, issue 29)."""
    from onnx import numpy_helper

    metrics = {}

    def graph(name, *extra):
        cfg = make_cfg("data=digits", "trainer.max_epochs=1", "trainer.batch_size=32", "measure.latency=false", *extra,
                       "export=onnx_int8")
        from mlflow.tracking import MlflowClient

        res = pipeline.run(cfg)
        metrics[name] = MlflowClient(cfg.paths.mlflow_tracking_uri).get_run(res.run_id).data.metrics
        g = onnx.load(str(_logged_model(cfg, res.run_id))).graph
        return g, {i.name: numpy_helper.to_array(i) for i in g.initializer}

    ptq, ptq_w = graph("ptq", "+method=ptq_int8")
    qat, qat_w = graph("qat", "+method=qat_int8", "method.finetune_epochs=1")
    # QAT's control: the same fine-tuning without fake quantisation, the same export
    ctl, ctl_w = graph("control", "+method=qat_int8", "method.finetune_epochs=1", "method.fake_quant=false")
    assert [n.op_type for n in ptq.node] == [n.op_type for n in qat.node] == [n.op_type for n in ctl.node]
    assert len(ptq.node) > 10
    shapes = {k: (v.dtype, v.shape) for k, v in ptq_w.items()}
    assert shapes == {k: (v.dtype, v.shape) for k, v in qat_w.items()} == {k: (v.dtype, v.shape) for k, v in ctl_w.items()}
    int8 = [k for k in ptq_w if ptq_w[k].dtype == np.int8]
    assert any(not np.array_equal(ptq_w[k], qat_w[k]) for k in int8)
    # the control was fine-tuned (its weights moved from the parent's) but not as QAT was
    assert any(not np.array_equal(ptq_w[k], ctl_w[k]) for k in int8)
    assert any(not np.array_equal(qat_w[k], ctl_w[k]) for k in int8)
    assert metrics["qat"]["method/fake_quant"] == 1 and "method/fakequant_test_acc" in metrics["qat"]
    assert metrics["control"]["method/fake_quant"] == 0 and "method/fakequant_test_acc" not in metrics["control"]


def test_fp16_run_halves_the_artifact_and_bf16_runs_in_torch(make_cfg):
    from mlflow.tracking import MlflowClient

    dense = pipeline.run(make_cfg(*DIGITS)).metrics
    fp16 = pipeline.run(make_cfg(*DIGITS, "+method=fp16", "device=jetson_nano_2gb"))
    assert fp16.metrics["size/bytes_artifact"] < 0.6 * dense["size/bytes_artifact"]
    assert abs(fp16.metrics["delta/acc"]) < 0.01
    assert "latency/host_speedup" in fp16.metrics  # measured, whatever it is
    assert fp16.metrics["device/latency_ms_est"] > 0  # Jetson declares native fp16
    cfg = make_cfg(*DIGITS, "+method=bf16")
    bf16 = pipeline.run(cfg)
    tags = MlflowClient(cfg.paths.mlflow_tracking_uri).get_run(bf16.run_id).data.tags
    assert tags["latency.runtime"] == "torch" and tags["export.dtype"] == "bf16"
    assert bf16.metrics["size/bytes_artifact"] < 0.6 * dense["size/bytes_artifact"]


@pytest.mark.parametrize("name,extra", [("uniform_quant", ["method.bucket_size=16"]),
                                         ("nonuniform_quant", ["method.finetune_epochs=1"])])
def test_kbit_run_is_labelled_simulated_with_analytic_size(make_cfg, name, extra):
    from mlflow.tracking import MlflowClient

    cfg = make_cfg(*DIGITS, f"+method={name}", "method.bits=3", *extra)
    res = pipeline.run(cfg)
    m = res.metrics
    assert m["size/bytes_sparse"] < m["size/bytes_fp32"] / 6  # ~3 bits a weight plus scales / codebooks
    assert m["size/compression_ratio"] == pytest.approx(m["size/bytes_fp32"] / m["size/bytes_sparse"])
    tags = MlflowClient(cfg.paths.mlflow_tracking_uri).get_run(res.run_id).data.tags
    assert tags["quant.accuracy"].startswith("simulated") and tags["quant.size"].startswith("analytic")
    if name == "nonuniform_quant":  # the deployed (dequantised) weights use at most 2^bits values per layer
        graph = onnx.load(str(_logged_model(cfg, res.run_id))).graph
        weights = [onnx.numpy_helper.to_array(t) for t in graph.initializer if len(t.dims) == 2]
        assert len(weights) == 3 and all(np.unique(w).size <= 8 for w in weights)


def test_kure_run_logs_robustness_for_both_models(make_cfg):
    from mlflow.tracking import MlflowClient

    cfg = make_cfg(*DIGITS, "+method=kure", "method.finetune_epochs=1", "method.eval_bits=[8,4,2]",
                   "method.lambda=1.0", "measure.latency=false")
    res = pipeline.run(cfg)
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    metrics = client.get_run(res.run_id).data.metrics
    for prefix in ("quant/", "quant/control_"):
        for b in (8, 4, 2):
            assert 0 <= metrics[f"{prefix}acc_w{b}"] <= 1 and 0 <= metrics[f"{prefix}acc_w{b}_kmeans"] <= 1
    assert metrics["quant/acc_w8"] > 0.8  # 8-bit weights barely matter
    # the regulariser moved the kurtosis toward 1.8 compared with the same fine-tuning without it
    assert abs(metrics["method/kurtosis_mean"] - 1.8) < abs(metrics["method/control_kurtosis_mean"] - 1.8)
    arts = {a.path for a in client.list_artifacts(res.run_id, "quant")}
    assert {"quant/robustness.png", "quant/robustness.json"} <= arts
    assert client.get_run(res.run_id).data.params["method.lambda"] == "1.0"
    # the same run again reuses the stored step: its files keep their names (not the store's files/<n>-<name>)
    again = pipeline.run(cfg)
    assert again.run_id != res.run_id and "quant/robustness.json" in {
        a.path for a in client.list_artifacts(again.run_id, "quant")}


@pytest.mark.parametrize("overrides,message", [
    (["+method=uniform_quant", "method.bits=1"], "method.bits"),
    (["+method=uniform_quant", "method.bucket_size=-1"], "method.bucket_size"),
    (["+method=qat_int8", "method.mode=dynamic"], "method.mode"),
    (["+method=qat_int8", "method.finetune_epochs=0"], "method.finetune_epochs"),
    (["+method=ptq_int8", "method.calibration_batches=0"], "method.calibration_batches"),
    (["+method=ptq_int8", "measure.runtime=torch"], "measure.runtime"),
    (["+method=kure", "method.lambda=-1"], "method.lambda"),
    (["+method=kure", "method.eval_bits=[]"], "method.eval_bits"),
    (["+method=ptq_int8", "method.granularity=per_row"], "granularity"),
])
def test_bad_quantisation_options_fail_before_training(make_cfg, monkeypatch, overrides, message):
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match=message):
        pipeline.run(make_cfg("data=digits", *overrides))


def test_kure_refuses_a_model_with_nothing_to_quantise():
    from edgebench.methods.quantization import KureConfig, KureMethod

    two_layers = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    with pytest.raises(ConfigError, match="keep_first_last"):
        KureMethod(KureConfig(keep_first_last=True)).check(two_layers, torch.zeros(1, 64))
    KureMethod(KureConfig(keep_first_last=False)).check(two_layers, torch.zeros(1, 64))


def test_kmeans_keeps_a_pruned_tensor_sparse_through_fine_tuning():
    from edgebench.quant import SharedCodebook

    w = _w((40, 30))
    w[w.abs() < w.abs().quantile(0.8)] = 0  # 80% pruned
    q, codebook, index = kmeans_quantize(w, 3)
    assert torch.equal(q.values == 0, w == 0), "exactly the pruned weights are zero"
    assert codebook.numel() == 8 and int((codebook == 0).sum()) == 1
    assert torch.unique(q.values[w != 0]).numel() <= 7  # the survivors share the other 2^bits - 1 values
    p = SharedCodebook(codebook, index)
    opt = torch.optim.SGD(p.parameters(), lr=1.0)
    p(w).sum().backward()
    opt.step()
    assert torch.equal(p(w) == 0, w == 0), "fine-tuning the shared values moves no zero"


def test_kmeans_of_a_pruned_model_logs_its_deep_compression_sizes():
    """nonuniform_quant of a pruned model also logs Deep Compression's format (P+Q and P+Q+H) and its layers."""
    from types import SimpleNamespace

    from edgebench.measure.size import deep_compression_bytes
    from edgebench.methods.quantization import KmeansQuant, KmeansQuantConfig

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 10))
    with torch.no_grad():
        for m in (net[0], net[2]):
            m.weight[m.weight.abs() < m.weight.abs().quantile(0.9)] = 0  # 90% pruned
    out = KmeansQuant(KmeansQuantConfig(bits=3)).compress(SimpleNamespace(model_in=net, seed=0))
    m = out.named_metrics
    assert m["size/bytes_dc_pqh"] == deep_compression_bytes(out.model, 3)
    assert m["size/bytes_dc_pq"] == deep_compression_bytes(out.model, 3, huffman=False)  # tiny: code tables dominate
    assert [r["layer"] for r in out.layers] == ["0", "2"] and out.layers[0]["nonzero"] == 60
    dense = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 10))  # nothing pruned: not that format
    assert "size/bytes_dc_pq" not in KmeansQuant(KmeansQuantConfig(bits=3)).compress(
        SimpleNamespace(model_in=dense, seed=0)).named_metrics
