"""Quantisation methods: fp16/bf16, real int8 (post-training and quantisation-aware), k-bit uniform and
k-means weight quantisation, and KURE.

What is real and what is simulated (tagged on every run as ``quant.accuracy`` / ``quant.size``):

* ``fp16``, ``ptq_int8``, ``qat_int8``: the method returns its model and a ``QuantSpec`` (dtype,
  int8 settings, calibration batches), never a file; the run's exporter (``onnx_fp16``,
  ``onnx_int8``) writes a real low-precision ONNX file, test accuracy is computed from that file's
  outputs in ONNX Runtime, its bytes are the file's, and its latency is measured in ONNX Runtime.
  ``bf16`` has no ONNX Runtime CPU kernels: ``torch_export`` writes a program PyTorch runs.
* ``uniform_quant``, ``nonuniform_quant``, ``kure``: no runtime here executes 2-8 bit weight codes.
  Accuracy is simulated (weights quantised, then dequantised to fp32); the size is analytic
  (``size/bytes_sparse``: codes + scales or codebooks); the ONNX artifact holds the fp32 weights.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass, field
from enum import Enum

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgebench.config import ConfigError, check
from edgebench.export import QuantSpec
from edgebench.measure.size import deep_compression_bytes, tensor_sparse_bits, weight_layers
from edgebench.methods.base import CompressionResult, Method, MethodContext, Plot
from edgebench.losses import with_terms
from edgebench.quant import (HalfPrecision, Int8FakeQuant, KureLoss, SharedCodebook, UniformSTE, kmeans_quantize,
                             kurtosis, quantized_bits, uniform_quantize)

log = logging.getLogger(__name__)

SIMULATED = {
    "quant.accuracy": "simulated: weights quantised to k-bit codes and dequantised to fp32 (no k-bit runtime here)",
    "quant.size": "analytic: k-bit codes + scales or codebook (size/bytes_sparse); the ONNX file holds fp32 weights",
}
REAL = {"quant.accuracy": "measured: test split run through the low-precision artifact",
        "quant.size": "measured: bytes of the low-precision artifact file"}


def _check(ok: bool, key: str, msg: str) -> None:
    check(ok, f"method.{key}", msg)


class Int8Mode(str, Enum):
    static = "static"  # calibrated activation ranges, int8 convolutions and matmuls
    dynamic = "dynamic"  # activation ranges at run time; MatMul/Gemm only (for linear-heavy models)


class WeightGranularity(str, Enum):
    per_channel = "per_channel"
    per_tensor = "per_tensor"


class Calibration(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


@dataclass
class HalfConfig:
    name: str = "fp16"  # fp16 | bf16 (the dtype is the registered class's: Fp16, Bf16)


@dataclass
class Int8Config:
    name: str = "ptq_int8"
    mode: Int8Mode = Int8Mode.static
    granularity: WeightGranularity = WeightGranularity.per_channel
    reduce_range: bool = True  # 7-bit weight codes: no u8*s8 saturation on CPUs without VNNI
    calibration_batches: int = 8  # training batches (trainer.batch_size) for the activation ranges
    calibration_method: Calibration = Calibration.minmax
    finetune_epochs: int = 1  # qat_int8: epochs of fake-quantised fine-tuning
    lr: float = 1.0e-4  # qat_int8: fine-tuning learning rate

    def __post_init__(self) -> None:
        _check(self.calibration_batches >= (1 if self.mode == Int8Mode.static else 0), "calibration_batches",
               f"static int8 needs >= 1 calibration batch, got {self.calibration_batches}")
        _check(self.finetune_epochs >= 0, "finetune_epochs", f"must be >= 0, got {self.finetune_epochs}")
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")


@dataclass
class QatInt8Config(Int8Config):
    name: str = "qat_int8"
    # false: QAT's control, the same fine-tuning (epochs, lr, data order) without fake quantisation, then the same
    # post-training int8 export: what QAT gains over simply training its parent longer
    fake_quant: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.mode == Int8Mode.static, "mode", "qat_int8 exports static int8; use ptq_int8 for dynamic")
        _check(self.finetune_epochs >= 1, "finetune_epochs", "qat_int8 fine-tunes: needs >= 1 (or use ptq_int8)")


@dataclass
class WeightQuantConfig:
    name: str = "uniform_quant"
    bits: int = 4  # uniform: code width; nonuniform: log2 of the codebook size
    symmetric: bool = True  # uniform only: symmetric codes around 0, else affine with a zero point
    bucket_size: int = 0  # uniform only: a scale per group of this many consecutive values (0: per tensor)
    keep_first_last: bool = False  # leave the first and the last layer at fp32
    finetune_epochs: int = 0  # 0: post-training; else fine-tune with the quantiser in the forward pass
    lr: float = 1.0e-4

    def __post_init__(self) -> None:
        _check(2 <= self.bits <= 8, "bits", f"must be in 2..8, got {self.bits} (8-bit with a runtime: +method=ptq_int8)")
        _check(self.bucket_size >= 0, "bucket_size", f"must be >= 0 (0 = one scale per tensor), got {self.bucket_size}")
        _check(self.finetune_epochs >= 0, "finetune_epochs", f"must be >= 0, got {self.finetune_epochs}")
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")


@dataclass
class KmeansQuantConfig(WeightQuantConfig):
    name: str = "nonuniform_quant"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.bucket_size == 0, "bucket_size", "nonuniform_quant has one codebook per tensor; leave it at 0")


@dataclass
class KureConfig:
    name: str = "kure"
    lambda_: float = 1.0  # YAML key `lambda`: weight of the kurtosis term (the authors' commands use 1.0)
    target: float = 1.8  # kurtosis of a uniform distribution
    finetune_epochs: int = 3  # KURE fine-tuning from the dense model (and the same for the control)
    lr: float = 1.0e-4
    control: bool = True  # fine-tune the same epochs without KURE and evaluate it the same way
    eval_bits: list[int] = field(default_factory=lambda: [8, 6, 5, 4, 3])
    eval_symmetric: bool = True  # the uniform quantiser of the evaluation
    eval_bucket_size: int = 0  # 0: one scale per tensor (where outliers hurt most)
    keep_first_last: bool = True  # as in the paper: first and last layer stay fp32 when quantised

    def __post_init__(self) -> None:
        _check(self.lambda_ >= 0, "lambda", f"must be >= 0, got {self.lambda_}")
        _check(self.finetune_epochs >= 1, "finetune_epochs", f"KURE is a training regulariser: needs >= 1, got {self.finetune_epochs}")
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _check(bool(self.eval_bits) and all(2 <= b <= 8 for b in self.eval_bits), "eval_bits",
               f"must be a non-empty list of bit widths in 2..8, got {self.eval_bits}")
        _check(self.eval_bucket_size >= 0, "eval_bucket_size", f"must be >= 0, got {self.eval_bucket_size}")

    yaml_aliases = {"lambda": "lambda_"}  # YAML keys that are Python keywords


# ----------------------------------------------------------------------------------- helpers


def quantizable(model: nn.Module, keep_first_last: bool) -> list[tuple[str, nn.Module]]:
    layers = weight_layers(model)
    return layers[1:-1] if keep_first_last else layers


def analytic_bytes(model: nn.Module, coded: dict[str, int]) -> int:
    """Bytes of a packed file: coded weights at their bits (see ``quantized_bits``), everything else fp32."""
    bits = sum(coded.values())
    coded_params = {f"{n}.weight" for n in coded}
    bits += sum(tensor_sparse_bits(p.detach(), 32) for n, p in model.named_parameters() if n not in coded_params)
    bits += sum(b.numel() * b.element_size() * 8 for b in model.buffers())
    return math.ceil(bits / 8)


def quantize_weights(model: nn.Module, layers: list[tuple[str, nn.Module]], kind: str, bits: int,
                     symmetric: bool = True, bucket_size: int = 0, seed: int = 0) -> dict[str, int]:
    """Replace each layer's weight in place by its quantised value; returns {layer: analytic bits}."""
    coded = {}
    with torch.no_grad():
        for name, m in layers:
            if kind == "uniform":
                q = uniform_quantize(m.weight, bits, symmetric, bucket_size)
            else:
                q = kmeans_quantize(m.weight, bits, seed=seed)[0]
            m.weight.copy_(q.values)
            coded[name] = quantized_bits(q, bits)
    return coded


def _calibration(ctx: MethodContext, batches: int) -> list[torch.Tensor]:
    out = []
    for x, _ in ctx.datamodule.train_dataloader():
        if len(out) >= batches:
            break
        out.append(x)
    return out


# ----------------------------------------------------------------------------------- methods


class HalfPrecisionMethod(Method):
    """The model's weights and activations in a 16-bit float dtype (a subclass names it)."""

    produces = "deployable"
    spec_dtype: str  # what its output's QuantSpec will say: known before training (export= checks)
    torch_dtype: torch.dtype

    def __init__(self, cfg: HalfConfig):
        self.cfg, self.name = cfg, cfg.name

    def compress(self, ctx: MethodContext) -> CompressionResult:
        model = HalfPrecision(copy.deepcopy(ctx.model_in).eval(), self.torch_dtype).eval()
        return CompressionResult(model, {"bits": 16.0}, spec=QuantSpec(self.spec_dtype), tags=dict(REAL))


class Fp16(HalfPrecisionMethod):
    spec_dtype, torch_dtype = "fp16", torch.float16


class Bf16(HalfPrecisionMethod):
    spec_dtype, torch_dtype = "bf16", torch.bfloat16


class Int8Method(Method):
    """Post-training int8 (``ptq_int8``): the model as it is, plus a QuantSpec for the int8 exporter."""

    produces = "deployable"
    spec_dtype = "int8"  # what its output's QuantSpec will say: known before training (export= checks)

    def __init__(self, cfg: Int8Config):
        self.cfg, self.name = cfg, cfg.name

    def train(self, ctx: MethodContext, model: nn.Module, knobs: dict[str, float]) -> list[dict[str, float]]:
        """Training before export, in place (none for post-training int8); returns its per-epoch series."""
        return []

    def unused(self) -> set[str]:
        return {"finetune_epochs", "lr"}  # post-training: no fine-tuning (qat_int8 uses both)

    def compress(self, ctx: MethodContext) -> CompressionResult:
        cfg = self.cfg
        model = copy.deepcopy(ctx.model_in)
        per_channel = cfg.granularity == WeightGranularity.per_channel
        knobs = {"bits": 8.0, "per_channel": float(per_channel), "reduce_range": float(cfg.reduce_range),
                 "calibration_batches": cfg.calibration_batches, "dynamic": float(cfg.mode == Int8Mode.dynamic)}
        series = self.train(ctx, model, knobs)
        model.eval()
        calibration = _calibration(ctx, cfg.calibration_batches) if cfg.mode == Int8Mode.static else []
        spec = QuantSpec("int8", mode=cfg.mode.value, per_channel=per_channel, reduce_range=cfg.reduce_range,
                         calibrate_method=cfg.calibration_method.value, calibration=calibration)
        return CompressionResult(model, knobs, series, spec=spec, tags=dict(REAL))


class QatInt8(Int8Method):
    """Quantisation-aware int8 (``qat_int8``): fake-quantised fine-tuning first, then as ``ptq_int8``."""

    def unused(self) -> set[str]:
        return set()

    def train(self, ctx: MethodContext, model: nn.Module, knobs: dict[str, float]) -> list[dict[str, float]]:
        cfg = self.cfg
        fq = Int8FakeQuant(model, cfg.granularity == WeightGranularity.per_channel, cfg.reduce_range) \
            if cfg.fake_quant else None
        hist = ctx.retrain(model, cfg.finetune_epochs, lr=cfg.lr)
        series = [{"round": i + 1, **{f"qat/{k.replace('/', '_')}": v for k, v in row.items() if k != "epoch"}}
                  for i, row in enumerate(hist)]
        knobs.update({"finetune_epochs": cfg.finetune_epochs, "lr": cfg.lr, "fake_quant": float(cfg.fake_quant)})
        if fq is None:
            log.info("QAT control: %d epochs of fp32 fine-tuning, no fake quantisation", cfg.finetune_epochs)
            return series
        knobs["fakequant_test_acc"] = ctx.evaluate(model)["test/acc"]
        fq.remove()
        log.info("QAT: %d epochs; fake-quantised test acc %.4f", cfg.finetune_epochs, knobs["fakequant_test_acc"])
        return series


class WeightQuantMethod(Method):
    """k-bit weight codes, simulated; ``kind`` (a subclass's) picks the quantiser of :func:`quantize_weights`."""

    produces = "weight_shared"
    kind: str

    def __init__(self, cfg: WeightQuantConfig):
        self.cfg, self.name = cfg, cfg.name

    def unused(self) -> set[str]:
        return set() if self.cfg.finetune_epochs else {"lr"}  # post-training: no fine-tuning

    def check(self, model: nn.Module, example_input: torch.Tensor) -> None:
        if not quantizable(model, self.cfg.keep_first_last):
            raise ConfigError(f"{self.name}: no conv or linear layer left to quantise "
                              f"(keep_first_last={self.cfg.keep_first_last})")

    def compress(self, ctx: MethodContext) -> CompressionResult:
        cfg = self.cfg
        model = copy.deepcopy(ctx.model_in)
        layers = quantizable(model, cfg.keep_first_last)
        if cfg.finetune_epochs:
            for _, m in layers:
                if self.kind == "uniform":
                    p = UniformSTE(cfg.bits, cfg.symmetric, cfg.bucket_size)
                else:
                    _, codebook, index = kmeans_quantize(m.weight, cfg.bits, seed=ctx.seed)
                    p = SharedCodebook(codebook, index)
                parametrize.register_parametrization(m, "weight", p, unsafe=self.kind != "uniform")
            ctx.retrain(model, cfg.finetune_epochs, lr=cfg.lr)
            for _, m in layers:
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        # quantise (again): after fine-tuning this is exact for both quantisers and gives the analytic size
        coded = quantize_weights(model, layers, self.kind, cfg.bits, cfg.symmetric, cfg.bucket_size, ctx.seed)
        size = analytic_bytes(model, coded)
        knobs = {"bits": cfg.bits, "bucket_size": cfg.bucket_size, "symmetric": float(cfg.symmetric),
                 "finetune_epochs": cfg.finetune_epochs, "quantized_layers": len(layers)}
        return CompressionResult(model, knobs, analytic_bytes=size, tags=dict(SIMULATED))


class UniformQuant(WeightQuantMethod):
    kind = "uniform"  # a scale (and zero point) per tensor or bucket


class KmeansQuant(WeightQuantMethod):
    kind = "kmeans"  # a k-means codebook per tensor (weight sharing)

    def compress(self, ctx: MethodContext) -> CompressionResult:
        """Besides the codes' size, a pruned model's size in Deep Compression's own format (Han et al. 2016):
        ``size/bytes_dc_pq`` (codes and 5-bit relative indices at fixed width, "P+Q") and ``size/bytes_dc_pqh``
        (both streams Huffman-coded, "P+Q+H"), with the per-layer breakdown in the layer table. Only when every
        conv/linear layer is shared (``keep_first_last: false``) and some weights are zero: that format is for
        pruned, fully shared models."""
        out = super().compress(ctx)
        coded = [m.weight for _, m in quantizable(out.model, self.cfg.keep_first_last)]
        if self.cfg.keep_first_last or not any(bool((w == 0).any()) for w in coded):
            return out
        detail: dict[str, dict] = {}
        out.named_metrics["size/bytes_dc_pqh"] = deep_compression_bytes(out.model, self.cfg.bits, detail=detail)
        out.named_metrics["size/bytes_dc_pq"] = deep_compression_bytes(out.model, self.cfg.bits, huffman=False)
        out.layers = [{"layer": name, "nonzero": d["nonzero"], "fillers": d["fillers"], "entries": d["entries"],
                       "index_bits": d["index_bits"], "dc_weight_bits_huffman": d["weights"],
                       "dc_index_bits_huffman": d["index"], "dc_codebook_bits": d["codebook"]}
                      for name, d in detail.items()]
        return out


class KureMethod(Method):
    def __init__(self, cfg: KureConfig):
        self.cfg, self.name = cfg, cfg.name

    def check(self, model: nn.Module, example_input: torch.Tensor) -> None:
        layers = weight_layers(model)
        if len(layers) < 2:
            raise ConfigError("kure regularises every conv/linear layer but the first: the model has fewer than 2")
        if self.cfg.keep_first_last and len(layers) < 3:
            raise ConfigError("kure: with keep_first_last=true no layer is left to quantise; set it to false")

    def robustness(self, ctx: MethodContext, net: nn.Module) -> dict[str, float]:
        """Test accuracy with the weights quantised at each of ``eval_bits``, by both quantisers."""
        cfg = self.cfg
        out = {"acc_fp32": ctx.evaluate(net)["test/acc"]}
        for bits in cfg.eval_bits:
            for kind, suffix in (("uniform", ""), ("kmeans", "_kmeans")):
                q = copy.deepcopy(net)
                quantize_weights(q, quantizable(q, cfg.keep_first_last), kind, bits, cfg.eval_symmetric,
                                 cfg.eval_bucket_size, ctx.seed)
                out[f"acc_w{bits}{suffix}"] = ctx.evaluate(q)["test/acc"]
        return out

    def compress(self, ctx: MethodContext) -> CompressionResult:
        cfg = self.cfg
        nets = {"kure": copy.deepcopy(ctx.model_in)}
        if cfg.control:
            nets["control"] = copy.deepcopy(ctx.model_in)
        metrics: dict[str, float] = {"lambda": cfg.lambda_, "target": cfg.target, "finetune_epochs": cfg.finetune_epochs}
        table: dict[str, dict[str, float]] = {}
        for label, net in nets.items():
            reg = [m for _, m in weight_layers(net)[1:]]
            loss = with_terms(None, [KureLoss(reg, cfg.lambda_, cfg.target)], net) if label == "kure" else None
            log.info("KURE: fine-tuning the %s model for %d epoch(s)", label, cfg.finetune_epochs)
            ctx.retrain(net, cfg.finetune_epochs, loss=loss, lr=cfg.lr)
            with torch.no_grad():
                kurt = [float(kurtosis(m.weight)) for m in reg]
            prefix = "" if label == "kure" else "control_"
            metrics[f"{prefix}kurtosis_mean"] = sum(kurt) / len(kurt)
            metrics[f"{prefix}kurtosis_max"] = max(kurt)
            table[label] = self.robustness(ctx, net)
            log.info("KURE %s: mean kurtosis %.2f, %s", label, metrics[f"{prefix}kurtosis_mean"],
                     ", ".join(f"{k} {v:.4f}" for k, v in table[label].items()))
        for label, row in table.items():
            prefix = "" if label == "kure" else "control_"
            metrics.update({f"quant/{prefix}{k}": v for k, v in row.items()})
        out = ctx.output_dir / "method" / "kure"
        out.mkdir(parents=True, exist_ok=True)
        (out / "robustness.json").write_text(json.dumps(table, indent=2))
        knobs = {k: v for k, v in metrics.items() if not k.startswith("quant/")}
        named = {k: v for k, v in metrics.items() if k.startswith("quant/")}
        return CompressionResult(nets["kure"], knobs, named_metrics=named,
                                 files={"quant/robustness.json": out / "robustness.json"},
                                 plots={"quant/robustness.png": Plot("kure_robustness",
                                                                     {"table": table, "bits": list(cfg.eval_bits)})},
                                 tags={"quant.robustness": SIMULATED["quant.accuracy"]})


HALF = {"fp16": (HalfConfig, Fp16), "bf16": (HalfConfig, Bf16)}
INT8 = {"ptq_int8": (Int8Config, Int8Method), "qat_int8": (QatInt8Config, QatInt8)}
WEIGHT_QUANT = {"uniform_quant": (WeightQuantConfig, UniformQuant),
                "nonuniform_quant": (KmeansQuantConfig, KmeansQuant), "kure": (KureConfig, KureMethod)}
