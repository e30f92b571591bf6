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


def peak_activation_bytes(model: nn.Module, example_input: torch.Tensor, bytes_per_element: int | None = None) -> int:
    """Largest sum of live activation bytes during one forward pass of ``example_input``."""
    weights = {_key(p) for p in model.parameters()} | {_key(b) for b in model.buffers()}
    was_training = model.training
    model.eval()
    x = example_input.clone()
    rec = _Recorder()
    try:
        with torch.no_grad(), rec:
            y = model(x)
    finally:
        model.train(was_training)
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
