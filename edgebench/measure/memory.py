"""Peak activation memory of one forward pass: a tensor-lifetime simulation over the executed ops.

Every ATen op of a batch-1 forward is recorded (through a TorchDispatchMode). A tensor is live
from the op that produces it to the last op that reads it; the model input is live from the
start, the output to the end. Tensors still needed later (residual and concat inputs) therefore
stay live. Views share their base's storage and are counted once; in-place ops add nothing.
Parameters and buffers are weights, not activations, and are left out. The peak is the largest
sum of live storages at any op, with each element counted at ``bytes_per_element`` (the deployed
dtype: 4 for fp32, 1 for int8), as a layer-by-layer executor without operator fusion would hold them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _storages(obj) -> list[torch.Tensor]:
    return [t for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]


def _key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[tuple[list[int], list[int]]] = []  # (input storage keys, output storage keys)
        self.numel: dict[int, int] = {}
        self.keep: list[torch.Tensor] = []  # hold outputs so no storage address is reused during the trace

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        ins = [_key(t) for t in _storages((args, kwargs))]
        outs = []
        for t in _storages(out):
            k = _key(t)
            if k not in self.numel:  # a new storage: a fresh activation
                self.numel[k] = t.untyped_storage().nbytes() // t.element_size()
                self.keep.append(t)
            outs.append(k)
        self.ops.append((ins, outs))
        return out


def _trace(model: nn.Module, x: torch.Tensor, rec: TorchDispatchMode) -> tuple[set[int], object]:
    """One eval-mode, no-grad forward of ``x`` recorded by ``rec``; (the weights' storage keys, the output)."""
    weights = {_key(p) for p in model.parameters()} | {_key(b) for b in model.buffers()}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), rec:
            y = model(x)
    finally:
        model.train(was_training)
    return weights, y


def peak_activation_bytes(model: nn.Module, example_input: torch.Tensor, bytes_per_element: int | None = None) -> int:
    """Largest sum of live activation bytes during one forward pass of ``example_input``."""
    x = example_input.clone()
    rec = _Recorder()
    weights, y = _trace(model, x, rec)
    size = bytes_per_element or x.element_size()
    numel = dict(rec.numel)
    numel[_key(x)] = x.numel()

    born: dict[int, int] = {_key(x): 0}
    last: dict[int, int] = {}
    for i, (ins, outs) in enumerate(rec.ops, start=1):
        for k in ins:
            if k in numel and k not in weights:
                last[k] = i
        for k in outs:
            if k not in weights:
                born.setdefault(k, i)
                last[k] = max(last.get(k, i), i)
    end = len(rec.ops) + 1
    for t in _storages(y):
        last[_key(t)] = end
    delta = [0] * (end + 2)
    for k, b in born.items():
        delta[b] += numel[k]
        delta[last.get(k, b) + 1] -= numel[k]
    peak = cur = 0
    for d in delta:
        cur += d
        peak = max(peak, cur)
    return int(peak * size)


# ----------------------------------------------------------------------------------- TFLite Micro arena

# How a batch-1 PyTorch forward becomes TFLite ops (litert-torch, int8): activations, batch norm and
# dropout are folded into the op before them (no buffer of their own); a view that changes the rank
# (flatten) is a RESHAPE with its own buffer; an in-place add is an ADD with a new output; a 4-D
# input gets a TRANSPOSE to NHWC and a flatten after convolutions one back to NCHW.
_FOLDED = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "native_batch_norm", "_native_batch_norm_legit_no_training",
           "batch_norm", "dropout", "clone", "detach", "alias", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_",
           "sigmoid", "silu", "silu_"}
_RESHAPE = {"view", "_unsafe_view", "reshape", "flatten"}
_IGNORED = {"empty", "rand", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze", "_to_copy", "zeros", "ones",
            "lift_fresh", "detach_", "max_pool2d_with_indices_backward"}
ALIGN = 16  # TFLM aligns every buffer to 16 bytes


class _NamedRecorder(TorchDispatchMode):
    """Like :class:`_Recorder`, with each op's name and its outputs' element counts."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, list[int], list[tuple[int, int]], list[tuple], tuple | None]] = []
        self.keep: list[torch.Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        ins = [_key(t) for t in _storages((args, kwargs))]
        outs = [(_key(t), t.numel()) for t in _storages(out)]
        if name.startswith("max_pool") and len(outs) == 2:  # the indices output does not exist in TFLite
            outs = outs[:1]
        self.keep += _storages(out)
        shapes = [tuple(t.shape) for t in _storages((args, kwargs))]
        conv = (tuple(args[3]), tuple(args[4])) if name == "convolution" else None  # (stride, padding)
        self.ops.append((name, ins, outs, shapes, conv))
        return out


def greedy_plan(buffers: list[tuple[int, int, int]]) -> int:
    """Arena bytes of TFLM's greedy memory planner for ``(size, first use, last use)`` buffers: largest first,
    each at the lowest offset that does not overlap a placed buffer alive at the same time."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    top = 0
    for size, first, last in sorted(buffers, key=lambda b: -b[0]):
        size = -(-size // ALIGN) * ALIGN
        busy = sorted((o, o + s) for o, s, f, l in placed if not (l < first or f > last))
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        placed.append((offset, size, first, last))
        top = max(top, offset + size)
    return top


# How far the estimate is from TFLite Micro's measured arena on architectures it was not tuned on: the out-of-sample
# error range (estimate / arena - 1) of the arena corpus in results/tflm_zoo.md (tests check the two agree).
ARENA_ESTIMATE_BAND = (-0.605, 0.249)
ARENA_ESTIMATE_CORPUS = 16  # out-of-sample architectures behind the band
ARENA_ESTIMATE_NOTE = ("RAM is edgebench's estimate of the TFLite Micro arena (no TFLite Micro file was written): out of "
                       f"sample it was {ARENA_ESTIMATE_BAND[0]:+.0%} to {ARENA_ESTIMATE_BAND[1]:+.0%} of the measured "
                       f"arena over {ARENA_ESTIMATE_CORPUS} architectures (results/tflm_zoo.md; the worst where the "
                       "converter leaves float ops); export=tflite_micro measures it")


def tflm_arena_estimate(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """Estimated TFLite Micro tensor arena of the full-integer int8 model, before any conversion.

    ``head``: the activation buffers, placed by a re-implementation of TFLM's greedy planner on the
    tensor lifetimes of the PyTorch forward mapped to TFLite ops (see ``_FOLDED``); ``tail``: TFLM's
    persistent structs, 8 B per output channel of every conv/linear layer (per-channel multiplier and
    shift) plus per-op and per-tensor bookkeeping whose sizes were read off TFLM's allocation report
    (``print_allocations``) of LeNet-300-100, LeNet-5, Conv-2 and ResNet-20; see results/tflm_zoo.md
    for how close the total comes to the measured arena.
    """
    from edgebench.measure.size import weight_layers

    x = example_input[:1].clone()
    rec = _NamedRecorder()
    weights, y = _trace(model, x, rec)

    alias: dict[int, int] = {}  # storage -> the buffer it really lives in
    size: dict[int, int] = {}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    step = 0
    fresh = iter(range(-1, -10**9, -1))  # keys for buffers PyTorch shares but TFLite does not

    def buf(k: int) -> int:
        while k in alias:
            k = alias[k]
        return k

    def use(k: int) -> None:
        k = buf(k)
        if k in size:
            last[k] = step

    def new(k: int, n: int) -> int:
        size[k], first[k], last[k] = n, step, step
        return k

    n_ops = 0
    four_d = x.dim() == 4
    new(_key(x), x.numel())
    if four_d:  # TRANSPOSE to NHWC: a second copy of the input
        step += 1
        n_ops += 1
        alias[_key(x)] = new(next(fresh), x.numel())
        last[_key(x)] = step
        size[_key(x)] = x.numel()
    seen_conv = False
    for name, ins, outs, shapes, conv in rec.ops:
        act_ins = [k for k in ins if k not in weights]
        if name in _IGNORED or not act_ins:
            continue
        if conv is not None and max(conv[0]) > 1 and max(conv[1]) > 0:  # strided + padded: an explicit PAD first
            step += 1
            n_ops += 1
            for k in act_ins:
                use(k)
            c, h, w = shapes[0][1:]
            pad = new(next(fresh), c * (h + 2 * conv[1][0]) * (w + 2 * conv[1][1]))
            step += 1
            last[pad] = step
        else:
            step += 1
        for k in act_ins:
            use(k)
        if name in _FOLDED:
            for (k, _), src in zip(outs, act_ins):
                if k != src:
                    alias[k] = buf(src)
            continue
        n_ops += 1
        seen_conv |= name == "convolution"
        for k, n in outs:
            if name in _RESHAPE and len(shapes[0]) == 4 and seen_conv and shapes[0][2] * shapes[0][3] > 1:
                n_ops += 1  # a TRANSPOSE back to NCHW before flattening a feature map
            if k in ins or name in _RESHAPE or k in size:  # in place, or a view: TFLite writes a new buffer
                alias.pop(k, None)
                key = next(fresh)
                alias[k] = key
                new(key, n)
            else:
                new(k, n)
    for t in _storages(y):
        use(_key(t))
    head = greedy_plan([(size[k], first[k], last[k]) for k in size])
    layers = weight_layers(model)
    channels = sum(m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features for _, m in layers)
    n_tensors = n_ops + 1 + 2 * len(layers) + 2
    tail = 8 * channels + 28 * (2 * n_ops + len(layers)) + 64 * n_ops + 24 * n_tensors + 192 + 560 + 20 * n_ops
    return {"head": head, "tail": tail, "total": head + tail, "ops": n_ops}
