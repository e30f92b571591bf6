"""Parameter counts, sparsity, and sizes: of a real file, gzip-compressed, and of a sparse encoding."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import torch
from torch import nn


WEIGHT_LAYER_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Convolution and linear layers (the layers that carry a weight tensor), in definition order: what pruning
    masks, what weight quantisation and QAT quantise, what sparsity and MACs are measured on."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYER_TYPES)]


def count_params(model: nn.Module) -> dict[str, float]:
    """``size/params``, ``size/params_nonzero``, ``size/bytes_fp32`` and ``size/sparsity``."""
    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    weights = [m.weight for _, m in weight_layers(model)]
    total = sum(w.numel() for w in weights)
    zeros = sum(w.numel() - int(torch.count_nonzero(w)) for w in weights)
    out = {"size/params": params, "size/params_nonzero": nonzero, "size/bytes_fp32": 4 * params}
    if total:
        out["size/sparsity"] = zeros / total
    return out


def tensor_sparse_bits(t: torch.Tensor, value_bits: int, index_bits: int = 32) -> int:
    """Bits of the smallest of three encodings of one tensor.

    dense: n * b; bitmask: n + z * b; CSR over the tensor as rows x cols (first dim x the rest):
    z * (b + index_bits) + (rows + 1) * index_bits. n = elements, z = nonzeros, b = value bits.
    """
    n = t.numel()
    z = int(torch.count_nonzero(t))
    rows = t.shape[0] if t.dim() > 1 else 1
    dense = n * value_bits
    bitmask = n + z * value_bits
    csr = z * (value_bits + index_bits) + (rows + 1) * index_bits
    return min(dense, bitmask, csr)


def sparse_bytes(model: nn.Module, value_bits: int = 32) -> int:
    """Analytic size of all parameters and buffers, each in its smallest encoding (see above)."""
    bits = sum(tensor_sparse_bits(p.detach(), value_bits) for p in model.parameters())
    bits += sum(b.numel() * b.element_size() * 8 for b in model.buffers())
    return int(math.ceil(bits / 8))


def files_bytes(paths: list[Path]) -> int:
    return sum(Path(p).stat().st_size for p in paths)


def gzip_bytes(paths: list[Path], level: int = 9) -> int:
    """gzip-compressed size of the files, concatenated in the given order."""
    comp = gzip.compress(b"".join(Path(p).read_bytes() for p in paths), compresslevel=level, mtime=0)
    return len(comp)
