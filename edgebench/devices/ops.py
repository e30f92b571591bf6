"""The graph a device runtime executes, op by op, and what each op costs on a calibrated core and runtime.

An :class:`Op` is one operator as the deployed file holds it, after the converter's fusions (batch norm folded
into the convolution, ReLU fused into its producer): its kind, multiply-accumulates, output elements and weights.
:func:`ops_from_tflite` reads them from a ``.tflite`` file (the int8 TFLite or TFLite Micro file a run wrote);
:func:`ops_from_layers` is the fallback when no such file exists (the convolution and linear layers of the
PyTorch model only; elementwise ops are unknown there).

The op-level latency model (:class:`OpCosts`) counts cycles:

    cycles = sum over ops of  c[kind] * MACs          (kind: conv, depthwise, fc)
                            + c_elem * output elements (every other op: add, pooling, pad, softmax, ...)
                            + c_op                     (per-op dispatch: the interpreter's loop, the kernel's set-up)
    latency = cycles / clock

with one set of constants per core family and runtime, fitted on published measurements
(:mod:`edgebench.devices.published`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

MAC_KINDS = ("conv", "depthwise", "fc")
KIND_OF = {"CONV_2D": "conv", "TRANSPOSE_CONV": "conv", "CONV_3D": "conv", "DEPTHWISE_CONV_2D": "depthwise",
           "FULLY_CONNECTED": "fc", "BATCH_MATMUL": "fc"}
FREE = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "DELEGATE"}  # no data movement in TFLite Micro (the planner aliases them)


@dataclass(frozen=True)
class Op:
    kind: str  # conv | depthwise | fc | elementwise | free
    macs: int = 0
    elems: int = 0  # output elements
    weights: int = 0
    name: str = ""  # the TFLite operator (CONV_2D, ADD, ...) or the PyTorch layer

    def to_dict(self) -> dict:
        return asdict(self)


def _prod(shape) -> int:
    return int(math.prod(int(s) for s in shape))


def ops_from_tflite(path: str | Path) -> list[Op]:
    """The operators of a ``.tflite`` file in execution order, with MACs counted from their tensors' shapes."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    shapes = {t["index"]: tuple(int(s) for s in t["shape"]) for t in it.get_tensor_details()}
    ops = []
    for o in it._get_ops_details():
        name = o["op_name"]
        ins = [shapes[i] for i in o["inputs"] if i >= 0]
        out = shapes[o["outputs"][0]]
        elems = _prod(out)
        kind = KIND_OF.get(name, "free" if name in FREE else "elementwise")
        macs = weights = 0
        if kind == "conv":  # weights [cout, kh, kw, cin]: each output element reads kh * kw * cin inputs
            w = ins[1]
            weights, macs = _prod(w), elems * _prod(w[1:])
        elif kind == "depthwise":  # weights [1, kh, kw, cin * multiplier]: each output element reads kh * kw
            w = ins[1]
            weights, macs = _prod(w), elems * w[1] * w[2]
        elif kind == "fc":  # weights [units, inputs] (BATCH_MATMUL: the second operand)
            w = ins[1]
            weights, macs = _prod(w), elems * w[-1] if name == "FULLY_CONNECTED" else elems * w[-2]
        ops.append(Op(kind, int(macs), elems, int(weights), name))
    return ops


def ops_from_layers(layers) -> list[Op]:
    """Convolution and linear layers of a PyTorch model (``edgebench.measure.layer_profile``) as ops."""
    return [Op("depthwise" if l.depthwise else ("conv" if l.kind == "conv" else "fc"), l.macs, l.output_elems,
               l.weight_params, l.name) for l in layers]


@dataclass(frozen=True)
class OpCosts:
    """Cycles per MAC of each MAC kind, per output element of other ops, and per op."""

    conv: float
    depthwise: float
    fc: float
    elem: float
    op: float

    def cycles(self, ops: list[Op]) -> float:
        total = 0.0
        for o in ops:
            if o.kind == "free":
                continue
            total += self.op + (getattr(self, o.kind) * o.macs if o.kind in MAC_KINDS else self.elem * o.elems)
        return total

    def latency_s(self, ops: list[Op], clock_hz: float) -> float:
        return self.cycles(ops) / clock_hz

    def breakdown(self, ops: list[Op]) -> dict[str, float]:
        """Cycles by kind (and 'dispatch' for the per-op constant): where the time goes."""
        out = {k: 0.0 for k in (*MAC_KINDS, "elementwise", "dispatch")}
        for o in ops:
            if o.kind == "free":
                continue
            out["dispatch"] += self.op
            if o.kind in MAC_KINDS:
                out[o.kind] += getattr(self, o.kind) * o.macs
            else:
                out["elementwise"] += self.elem * o.elems
        return out
