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


# ------------------------------------------------------------------ Deep Compression (Han et al. 2016), stage 3


def huffman_bits(symbols) -> int:
    """Bits of ``symbols`` (any iterable of hashable values) Huffman-coded with a code built from their own
    frequencies: sum over symbols of frequency x code length. One distinct symbol costs 1 bit each; none, 0.

    The total is the sum of the weights of the merged nodes (each merge adds one bit to every symbol below it).
    """
    import heapq
    from collections import Counter

    freq = [int(c) for c in Counter(symbols.tolist() if hasattr(symbols, "tolist") else symbols).values()]
    if len(freq) <= 1:
        return sum(freq)
    heapq.heapify(freq)
    total = 0
    while len(freq) > 1:
        merged = heapq.heappop(freq) + heapq.heappop(freq)
        total += merged
        heapq.heappush(freq, merged)
    return total


# relative-index width per layer kind: 5 bits for fully connected layers (Deep Compression, Table 2,
# LeNet-300-100: "index bits 5"), 8 bits for convolutions (their Section 2)
RELATIVE_INDEX_BITS = {nn.Linear: 5, nn.modules.conv._ConvNd: 8}


def relative_index_symbols(t: torch.Tensor, index_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deep Compression's sparse format for one tensor, flattened row-major.

    Each stored entry keeps the gap to the previous stored entry (the first: to position -1) in
    ``index_bits`` bits as ``gap - 1`` (so gaps 1..2^index_bits fit). A larger gap stores filler zero
    entries, each advancing 2^index_bits positions, until the rest fits. Returns ``(gap_symbols, is_filler)``
    over the stored entries in order (fillers store the code of 0 as their value).
    """
    pos = torch.nonzero(t.reshape(-1) != 0).reshape(-1)
    if pos.numel() == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool)
    gaps = torch.diff(pos, prepend=torch.tensor([-1])).tolist()
    span = 2 ** index_bits
    syms, filler = [], []
    for g in gaps:
        fillers = (g - 1) // span  # each filler covers span positions; what remains is 1..span
        syms += [span - 1] * fillers + [g - fillers * span - 1]
        filler += [True] * fillers + [False]
    return torch.tensor(syms, dtype=torch.long), torch.tensor(filler, dtype=torch.bool)


def deep_compression_layer_bits(w: torch.Tensor, bits: int, index_bits: int, huffman: bool = True) -> dict[str, int]:
    """Bits of one pruned, weight-shared tensor in Deep Compression's format.

    ``w`` holds at most 2^bits distinct values (0 among them when pruned). Stored: per stored entry (nonzero
    weights and fillers) a codebook index and a relative position; the codebook at 2^bits x 32 bits. With
    ``huffman`` both streams are Huffman-coded separately, each with its code table counted as one 8-bit
    code length per symbol of its alphabet (a canonical Huffman code is rebuilt from the lengths);
    without, both are fixed width (``bits`` and ``index_bits``): Han et al.'s "P+Q".
    """
    flat = w.detach().reshape(-1)
    values = torch.unique(flat)
    if values.numel() > 2 ** bits:
        raise ValueError(f"{values.numel()} distinct values do not fit a {bits}-bit codebook")
    gap_syms, filler = relative_index_symbols(flat, index_bits)
    nz = flat[flat != 0]
    codes = torch.searchsorted(values, nz)
    zero_code = int(torch.searchsorted(values, torch.zeros(())))
    weight_syms = torch.full((gap_syms.numel(),), zero_code, dtype=torch.long)
    weight_syms[~filler] = codes
    n = gap_syms.numel()
    if huffman:
        weights = huffman_bits(weight_syms) + 8 * 2 ** bits
        index = huffman_bits(gap_syms) + 8 * 2 ** index_bits
    else:
        weights, index = n * bits, n * index_bits
    return {"weights": weights, "index": index, "codebook": 32 * 2 ** bits, "entries": n,
            "fillers": int(filler.sum()), "nonzero": int(nz.numel())}


def deep_compression_bytes(model: nn.Module, bits: int, index_bits: dict | None = None, huffman: bool = True,
                           detail: dict | None = None) -> int:
    """Analytic size of a pruned, k-means-shared model stored as Deep Compression stores it (Han et al. 2016):
    every conv/linear weight tensor as :func:`deep_compression_layer_bits` (``index_bits``: per layer name, else
    :data:`RELATIVE_INDEX_BITS` by layer kind), every other parameter and buffer (biases) dense fp32.
    ``detail``, when given, is filled with each layer's breakdown."""
    index_bits = index_bits or {}
    bits_total, coded = 0, set()
    kinds = tuple(RELATIVE_INDEX_BITS)
    for name, m in ((n, m) for n, m in model.named_modules() if isinstance(m, kinds)):
        ib = index_bits.get(name) or next(v for k, v in RELATIVE_INDEX_BITS.items() if isinstance(m, k))
        layer = deep_compression_layer_bits(m.weight, bits, ib, huffman)
        bits_total += layer["weights"] + layer["index"] + layer["codebook"]
        coded.add(f"{name}.weight")
        if detail is not None:
            detail[name] = {**layer, "index_bits": ib}
    bits_total += sum(p.numel() * 32 for n, p in model.named_parameters() if n not in coded)
    bits_total += sum(b.numel() * b.element_size() * 8 for b in model.buffers())
    return int(math.ceil(bits_total / 8))
