"""Deep Compression's third stage: Huffman-coded sizes against hand counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgebench.measure.size import (
    deep_compression_bytes,
    deep_compression_layer_bits,
    huffman_bits,
    relative_index_symbols,
    tensor_sparse_bits,
)
from edgebench.quant.quantizers import kmeans_quantize


def test_huffman_empty_and_single_symbol():
    assert huffman_bits([]) == 0
    assert huffman_bits("a") == 1
    assert huffman_bits("aaaaa") == 5  # one distinct symbol still takes one bit each


def test_huffman_two_equal_symbols_one_bit_each():
    assert huffman_bits("abab") == 4
    assert huffman_bits(torch.tensor([3, 7, 7, 3, 3, 7])) == 6


def test_huffman_textbook_example():
    # CLRS (3rd ed., 16.3): a:45 b:13 c:12 d:16 e:9 f:5 -> 224 bits (code lengths 1,3,3,3,4,4)
    s = "a" * 45 + "b" * 13 + "c" * 12 + "d" * 16 + "e" * 9 + "f" * 5
    assert huffman_bits(s) == 224
    # four equal frequencies: 2 bits each; a dyadic distribution costs exactly its entropy
    assert huffman_bits("abcd" * 3) == 24
    assert huffman_bits("a" * 4 + "b" * 2 + "c" + "d") == 4 * 1 + 2 * 2 + 3 + 3


def test_relative_index_with_fillers():
    t = torch.zeros(13)
    t[2], t[12] = 1.0, 2.0
    gaps, filler = relative_index_symbols(t, 2)  # gaps 1..4 fit in 2 bits
    # position 2: gap 3 -> symbol 2; position 12: gap 10 -> two fillers of 4 (at 6 and 10), then gap 2 -> symbol 1
    assert gaps.tolist() == [2, 3, 3, 1]
    assert filler.tolist() == [False, True, True, False]
    gaps, filler = relative_index_symbols(t, 5)
    assert gaps.tolist() == [2, 9] and not filler.any()
    assert relative_index_symbols(torch.zeros(5), 5)[0].numel() == 0


def test_fixed_width_hand_count():
    w = torch.zeros(2, 40)
    w[0, 0], w[0, 39], w[1, 39] = 0.5, -0.5, 0.5  # flat positions 0, 39, 79: gaps 1, 39 (> 32: one filler), 40 (one)
    d = deep_compression_layer_bits(w, bits=2, index_bits=5, huffman=False)
    assert d["nonzero"] == 3 and d["fillers"] == 2 and d["entries"] == 5
    assert d["weights"] == 5 * 2 and d["index"] == 5 * 5 and d["codebook"] == 4 * 32
    m = nn.Linear(40, 2)
    with torch.no_grad():
        m.weight.copy_(w)
    # weights + indices + codebook + 2 fp32 biases
    assert deep_compression_bytes(nn.Sequential(m), bits=2, huffman=False) == -(-(10 + 25 + 128 + 64) // 8)


def test_too_many_values_refused():
    with pytest.raises(ValueError, match="5-bit codebook"):
        deep_compression_layer_bits(torch.arange(40.0), bits=5, index_bits=5)


def test_pruned_shared_tensor_below_its_csr_size():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(100, 300, generator=g)
    cut = w.abs().flatten().kthvalue(int(0.92 * w.numel())).values
    w[w.abs() <= cut] = 0  # 92% pruned, as conf/chain/deep_compression.yaml
    q, codebook, _ = kmeans_quantize(w, 5)
    shared = q.values
    assert int(torch.count_nonzero(shared)) == int(torch.count_nonzero(w))  # zeros kept
    csr = tensor_sparse_bits(shared, 5) + 32 * 2 ** 5  # the run's size/bytes_sparse for this tensor
    pq = deep_compression_layer_bits(shared, 5, 5, huffman=False)
    h = deep_compression_layer_bits(shared, 5, 5)
    total = {k: d["weights"] + d["index"] + d["codebook"] for k, d in (("pq", pq), ("h", h))}
    assert total["h"] < total["pq"] < csr
    # Huffman never costs more than fixed width on either stream (beyond its code table)
    assert h["weights"] - 8 * 32 <= pq["weights"] and h["index"] - 8 * 32 <= pq["index"]
    layer = nn.Linear(300, 100)
    with torch.no_grad():
        layer.weight.copy_(shared)
    assert deep_compression_bytes(nn.Sequential(layer), 5) == -(-(total["h"] + 32 * 100) // 8)
