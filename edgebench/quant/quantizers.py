"""Weight quantisers: k-bit uniform (symmetric or asymmetric, per tensor or per bucket) and k-means codebooks.

Both return the dequantised float tensor (what the model computes with in simulation) together
with what a packed format would store, so sizes can be computed analytically:

* uniform, ``bits`` b, buckets of ``bucket_size`` consecutive values of the flattened tensor
  (``bucket_size=0``: one bucket = per tensor): an integer code per value plus one fp32 scale per
  bucket (and a b-bit zero point per bucket when asymmetric). Symmetric codes lie in
  [-(2^(b-1) - 1), 2^(b-1) - 1]; asymmetric codes in [0, 2^b - 1]. Scales come from the bucket's
  min/max, so every value is inside the range and the round-trip error is at most half a step.
* k-means (Deep Compression, Han et al. 2016): 2^b shared values per tensor found by 1-D k-means
  with linear initialisation between the min and the max; a b-bit index per value plus a fp32
  codebook.

Fine-tuning uses :class:`UniformSTE` (straight-through estimator) and :class:`SharedCodebook`
(the gradient of each shared value is the sum over the weights that use it) as
``torch.nn.utils.parametrize`` parametrisations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgebench.measure.size import tensor_sparse_bits


@dataclass
class Quantized:
    values: torch.Tensor  # dequantised, same shape and dtype as the input
    step: torch.Tensor  # uniform: the step per bucket; k-means: the largest distance to the nearest value
    overhead_bits: int  # bits of the scales / zero points / codebook a packed file stores besides the codes


def _buckets(w: torch.Tensor, bucket_size: int) -> tuple[torch.Tensor, int]:
    flat = w.detach().reshape(-1)
    n = flat.numel()
    size = n if bucket_size <= 0 or bucket_size >= n else bucket_size
    pad = (-n) % size
    if pad:  # repeat the last value: it changes neither the bucket's min nor its max
        flat = torch.cat([flat, flat[-1:].expand(pad)])
    return flat.view(-1, size), n


def uniform_quantize(w: torch.Tensor, bits: int, symmetric: bool = True, bucket_size: int = 0) -> Quantized:
    """Quantise ``w`` to ``bits`` bits with one scale per bucket (see the module docstring)."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    if symmetric and bits < 2:
        raise ValueError("symmetric uniform quantisation needs bits >= 2 (1 bit leaves only the code 0)")
    b, n = _buckets(w, bucket_size)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = b.abs().amax(dim=1, keepdim=True) / qmax
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.clamp(torch.round(b / scale), -qmax, qmax) * scale
        overhead = 32 * b.shape[0]
    else:
        levels = 2 ** bits - 1
        lo, hi = b.amin(dim=1, keepdim=True), b.amax(dim=1, keepdim=True)
        scale = (hi - lo) / levels
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = torch.round(-lo / scale)
        q = (torch.clamp(torch.round(b / scale) + zero, 0, levels) - zero) * scale
        overhead = (32 + bits) * b.shape[0]
    values = q.reshape(-1)[:n].view_as(w).to(w.dtype)
    return Quantized(values, scale.reshape(-1), overhead)


def kmeans_quantize(w: torch.Tensor, bits: int, max_iter: int = 100, seed: int = 0) -> tuple[Quantized, torch.Tensor, torch.Tensor]:
    """Share 2^bits values per tensor (1-D k-means, linear init). Returns (quantized, codebook, indices).

    A pruned tensor keeps its zeros exactly (Deep Compression shares only the surviving weights): one
    codebook entry is 0 and the nonzero weights share the other 2^bits - 1 values, each taking the
    nearest of those, so the sparsity is unchanged.
    """
    from sklearn.cluster import KMeans

    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    k = 2 ** bits
    flat = w.detach().reshape(-1).double().cpu().numpy()
    zeros = flat == 0
    pin_zero = bool(zeros.any()) and not zeros.all() and k > 1
    values = flat[~zeros] if pin_zero else flat
    slots = k - 1 if pin_zero else k
    lo, hi = float(values.min()), float(values.max())
    uniq = np.unique(values)
    if uniq.size <= slots:  # already representable exactly; pad the codebook to its fixed size
        centers = np.concatenate([uniq, np.full(slots - uniq.size, uniq[-1])])
    else:
        init = np.linspace(lo, hi, slots).reshape(-1, 1)
        km = KMeans(n_clusters=slots, init=init, n_init=1, max_iter=max_iter, random_state=seed).fit(values.reshape(-1, 1))
        centers = np.sort(km.cluster_centers_.reshape(-1))
    near = np.searchsorted((centers[1:] + centers[:-1]) / 2, flat)  # the nearest shared value
    if pin_zero:
        codebook = np.sort(np.concatenate([centers, [0.0]]))
        idx = np.searchsorted(codebook, centers)[near]  # nonzero weights: among the nonzero values only
        idx[zeros] = int(np.searchsorted(codebook, 0.0))
    else:
        codebook, idx = centers, near
    codebook_t = torch.as_tensor(codebook, dtype=w.dtype)
    idx_t = torch.as_tensor(idx, dtype=torch.long).view(w.shape)
    # the largest possible distance to the nearest value: half the widest gap, or a tail beyond the outer values
    bound = max(float(np.max(np.diff(centers), initial=0.0)) / 2, centers[0] - lo, hi - centers[-1])
    return Quantized(codebook_t[idx_t], torch.tensor([bound]), 32 * k), codebook_t, idx_t


def quantized_bits(q: Quantized, bits: int) -> int:
    """Analytic bits of one quantised tensor: codes in their smallest encoding (dense, bitmask or CSR) plus overhead."""
    return tensor_sparse_bits(q.values, bits) + q.overhead_bits


class UniformSTE(nn.Module):
    """Parametrisation: the forward pass sees the quantised weight, the gradient passes straight through."""

    def __init__(self, bits: int, symmetric: bool = True, bucket_size: int = 0):
        super().__init__()
        self.bits, self.symmetric, self.bucket_size = bits, symmetric, bucket_size

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q = uniform_quantize(w, self.bits, self.symmetric, self.bucket_size).values
        return w + (q - w).detach()


class SharedCodebook(nn.Module):
    """Parametrisation: weight = codebook[index]; training updates the shared values, not the assignment."""

    def __init__(self, codebook: torch.Tensor, index: torch.Tensor):
        super().__init__()
        self.codebook = nn.Parameter(codebook.clone())
        self.register_buffer("index", index.clone())
        # a pruned tensor's zero entry stays exactly zero through fine-tuning (the sparsity is kept)
        self.register_buffer("live", (codebook != 0).to(codebook.dtype))

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # noqa: ARG002 - the original weight is replaced
        return (self.codebook * self.live)[self.index]

