"""Low-rank factorisation: a weight matrix or convolution replaced by a product of smaller ones.

* Linear layers (and 1x1 convolutions): truncated SVD, ``W (m x n) ~ U_r S_r V_r^T`` as two layers
  ``n -> r -> m``. It only saves parameters when ``r < mn / (m + n)``.
* Convolutions: Tucker-2 on the channel modes (Kim et al., ICLR 2016) with ``tensorly``'s
  ``partial_tucker``: a 1x1 convolution ``C -> r1``, the kxk core ``r1 -> r2`` (the layer's stride,
  padding and dilation) and a 1x1 convolution ``r2 -> K`` (with the bias). It saves parameters when
  ``C r1 + r1 r2 k^2 + r2 K < K C k^2``. Depthwise (grouped) convolutions are left as they are.

Ranks come from ``energy`` (the smallest rank keeping that fraction of the squared singular values of
the weight, or of each channel mode's unfolding for Tucker), from ``ratio`` (the largest ranks whose
factorised layer has at most that fraction of the layer's parameters) or per layer by name
(``layer_rank``). A layer is factorised only when that saves parameters; the per-layer table says which
layers were factorised, at what rank, their relative reconstruction error, and why the others were not.
The model is fine-tuned afterwards (``retrain_epochs``).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from edgebench.config import ConfigError, check
from edgebench.measure.size import weight_layers
from edgebench.methods.base import CompressionResult, Method, MethodContext
from edgebench.methods.pruning import _set_module

log = logging.getLogger(__name__)


@dataclass
class LowRankConfig:
    name: str = "low_rank"
    energy: Optional[float] = 0.9  # fraction of squared singular values kept, in (0, 1] (used when ratio is null)
    ratio: Optional[float] = None  # parameter budget per layer, in (0, 1): factorised / dense parameters
    # rank per layer by module name (conv: r1 = r2 = rank); write a name's dots as / on the command line
    # (Hydra's dict keys cannot hold dots): 'method.layer_rank={classifier/0: 32}'
    layer_rank: Optional[dict[str, int]] = None
    retrain_epochs: int = 2  # fine-tuning after the factorisation
    lr: Optional[float] = None  # fine-tuning learning rate (null = trainer.lr)
    conv: str = "tucker"  # kxk convolutions: tucker (Tucker-2, 1x1 -> kxk -> 1x1) | cp (CP: 1x1 -> kx1 -> 1xk -> 1x1)

    def __post_init__(self) -> None:
        check(self.conv in ("tucker", "cp"), "method.conv", f"must be tucker or cp, got {self.conv}")
        check(self.energy is not None or self.ratio is not None, "method.energy",
              "give method.energy (fraction of singular value energy) or method.ratio (parameter budget)")
        if self.energy is not None:
            check(0.0 < self.energy <= 1.0, "method.energy", f"must be in (0, 1], got {self.energy}")
        if self.ratio is not None:
            check(0.0 < self.ratio < 1.0, "method.ratio", f"must be in (0, 1), got {self.ratio}")
        self.layer_rank = {k.replace("/", "."): v for k, v in (self.layer_rank or {}).items()}
        for k, v in self.layer_rank.items():
            check(v >= 1, f"method.layer_rank.{k}", f"must be >= 1, got {v}")
        check(self.retrain_epochs >= 0, "method.retrain_epochs", f"must be >= 0, got {self.retrain_epochs}")


# ----------------------------------------------------------------------------------- ranks and bounds


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def matrix_bound(m: int, n: int) -> int:
    """The largest rank whose two factors (r(m + n) weights) have fewer weights than the m x n matrix."""
    return math.ceil(m * n / (m + n)) - 1


def energy_rank(s: torch.Tensor, energy: float) -> int:
    """The smallest rank keeping ``energy`` of the squared singular values ``s``."""
    e = torch.cumsum(s.double() ** 2, 0) / (s.double() ** 2).sum()
    return int(torch.searchsorted(e, torch.tensor(energy, dtype=e.dtype) - 1e-12).item()) + 1


def tucker_params(c: int, k_out: int, k: int, r1: int, r2: int) -> int:
    return c * r1 + r1 * r2 * k + r2 * k_out  # k = kernel area


def cp_params(c: int, k_out: int, kh: int, kw: int, r: int) -> int:
    return r * (c + kh + kw + k_out)


def _as_matrix(m: nn.Module) -> torch.Tensor:
    return m.weight.detach().flatten(1)


def _kind(m: nn.Module) -> str | None:
    """svd (linear, 1x1 conv of any stride: a matrix), tucker (kxk conv), or None with the reason (see :func:`plan`)."""
    if isinstance(m, nn.Linear):
        return "svd"
    if isinstance(m, nn.Conv2d):
        if m.groups != 1:
            return None
        return "svd" if m.kernel_size == (1, 1) and m.padding in ((0, 0), "valid") else "tucker"
    return None


@dataclass
class LayerPlan:
    name: str
    kind: str | None  # svd | tucker | None (left as it is)
    shape: list[int]
    params: int
    rank: tuple[int, ...] = ()
    params_after: int = 0
    reason: str = ""  # why it is left as it is


def plan(model: nn.Module, cfg: LowRankConfig) -> list[LayerPlan]:
    """Which layers to factorise at which ranks; raises ConfigError for a named layer that does not exist or a
    rank above its layer's bound, and when no layer would be factorised."""
    layers = dict(weight_layers(model))
    unknown = sorted(set(cfg.layer_rank) - set(layers))
    if unknown:
        raise ConfigError(f"method.layer_rank: no conv or linear layer named {', '.join(unknown)}; "
                          f"layers: {', '.join(layers)}")
    plans = []
    for name, m in layers.items():
        kind = _kind(m)
        p = LayerPlan(name, kind, list(m.weight.shape), m.weight.numel())
        if kind is None:
            p.reason = f"grouped/depthwise convolution (groups={m.groups}): not factorised"
            plans.append(p)
            continue
        if kind == "svd":
            w = _as_matrix(m)
            rows, cols = w.shape
            bound = matrix_bound(rows, cols)
            if name in cfg.layer_rank:
                r = cfg.layer_rank[name]
                if r > bound:
                    raise ConfigError(f"method.layer_rank.{name}={r}: above the bound {bound} of this {rows}x{cols} "
                                      f"layer (rank >= mn/(m+n) saves no parameters)")
            elif cfg.ratio is not None:
                r = int(cfg.ratio * rows * cols / (rows + cols))
            else:
                r = energy_rank(torch.linalg.svdvals(w), cfg.energy)
            p.rank = (r,)
            p.params_after = r * (rows + cols)
            if r < 1 or r > bound:
                p.kind, p.reason = None, f"rank {r} >= the bound {bound + 1} = mn/(m+n): saves no parameters"
        elif cfg.conv == "cp":
            k_out, c, kh, kw = m.weight.shape
            dense, per_rank = m.weight.numel(), c + kh + kw + k_out
            if name in cfg.layer_rank:
                r = cfg.layer_rank[name]
                if cp_params(c, k_out, kh, kw, r) >= dense:
                    raise ConfigError(f"method.layer_rank.{name}={r}: CP at this rank has "
                                      f"{cp_params(c, k_out, kh, kw, r):,} >= the layer's {dense:,} weights")
            elif cfg.ratio is not None:
                r = int(cfg.ratio * dense / per_rank)
            else:  # CP has no singular values: the larger of the two channel modes' energy ranks
                w = m.weight.detach()
                r = max(energy_rank(torch.linalg.svdvals(w.flatten(1)), cfg.energy),
                        energy_rank(torch.linalg.svdvals(w.transpose(0, 1).flatten(1)), cfg.energy))
            p.kind, p.rank, p.params_after = "cp", (r,), cp_params(c, k_out, kh, kw, r)
            if r < 1 or p.params_after >= dense:
                p.kind, p.reason = None, f"CP rank {r} keeps {p.params_after:,} >= {dense:,} weights: saves no parameters"
        else:
            k_out, c, kh, kw = m.weight.shape
            area, dense = kh * kw, m.weight.numel()
            if name in cfg.layer_rank:
                r1 = r2 = cfg.layer_rank[name]
                if r1 > min(c, k_out) or tucker_params(c, k_out, area, r1, r2) >= dense:
                    raise ConfigError(f"method.layer_rank.{name}={r1}: Tucker-2 at this rank has "
                                      f"{tucker_params(c, k_out, area, r1, r2):,} >= the layer's {dense:,} weights "
                                      f"(or exceeds its {min(c, k_out)} channels)")
            elif cfg.ratio is not None:
                r1 = r2 = 0
                for t in range(1, max(c, k_out) + 1):  # the largest proportional ranks within the budget
                    a, b = max(1, round(c * t / max(c, k_out))), max(1, round(k_out * t / max(c, k_out)))
                    if tucker_params(c, k_out, area, a, b) <= cfg.ratio * dense:
                        r1, r2 = a, b
            else:
                w = m.weight.detach()
                r2 = energy_rank(torch.linalg.svdvals(w.flatten(1)), cfg.energy)  # output-channel mode
                r1 = energy_rank(torch.linalg.svdvals(w.transpose(0, 1).flatten(1)), cfg.energy)  # input mode
            # every rule: a mode's rank is at most the product of the other modes' (the core's unfolding), and
            # tensorly computes no more than that
            r1, r2 = min(r1, r2 * area), min(r2, r1 * area)
            p.rank = (r1, r2)
            p.params_after = tucker_params(c, k_out, area, r1, r2)
            if r1 < 1 or r2 < 1 or p.params_after >= dense:
                p.kind, p.reason = None, (f"Tucker-2 ranks ({r1}, {r2}) keep {p.params_after:,} >= {dense:,} weights: "
                                          "saves no parameters")
        plans.append(p)
    if not any(p.kind for p in plans):
        why = "; ".join(f"{p.name}: {p.reason}" for p in plans) or "it has no conv or linear layer"
        raise ConfigError(f"low_rank: no layer of {type(model).__name__} would be factorised ({why}); "
                          "lower method.energy or method.ratio")
    return plans


# ----------------------------------------------------------------------------------- factorising


def svd_layers(m: nn.Module, r: int) -> tuple[nn.Module, float]:
    """``m`` (linear or 1x1 conv) as two layers of rank ``r`` (a strided 1x1 conv's stride on the first: it picks
    the same pixels); and the relative Frobenius error."""
    w = _as_matrix(m)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    a = (torch.diag(s[:r].sqrt()) @ vh[:r])  # r x n
    b = (u[:, :r] * s[:r].sqrt())  # m x r
    err = float(torch.linalg.norm(w - b @ a) / torch.linalg.norm(w))
    bias = m.bias is not None
    if isinstance(m, nn.Linear):
        first, second = nn.Linear(m.in_features, r, bias=False), nn.Linear(r, m.out_features, bias=bias)
        first.weight.data, second.weight.data = a.clone(), b.clone()
    else:
        first = nn.Conv2d(m.in_channels, r, 1, stride=m.stride, bias=False)
        second = nn.Conv2d(r, m.out_channels, 1, bias=bias)
        first.weight.data, second.weight.data = a.clone()[:, :, None, None], b.clone()[:, :, None, None]
    if bias:
        second.bias.data = m.bias.detach().clone()
    return nn.Sequential(first, second), err


def tucker_layers(m: nn.Conv2d, r1: int, r2: int) -> tuple[nn.Module, float]:
    """``m`` as Tucker-2 (1x1 ``C -> r1``, kxk core ``r1 -> r2``, 1x1 ``r2 -> K``); and the relative error."""
    import tensorly as tl
    from tensorly.decomposition import partial_tucker

    tl.set_backend("pytorch")
    w = m.weight.detach()
    (core, (out_f, in_f)), _ = partial_tucker(w, rank=[r2, r1], modes=[0, 1], init="svd", n_iter_max=50)
    approx = tl.tenalg.multi_mode_dot(core, [out_f, in_f], modes=[0, 1])
    err = float(torch.linalg.norm(w - approx) / torch.linalg.norm(w))
    first = nn.Conv2d(m.in_channels, r1, 1, bias=False)
    mid = nn.Conv2d(r1, r2, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation, bias=False)
    last = nn.Conv2d(r2, m.out_channels, 1, bias=m.bias is not None)
    first.weight.data = in_f.T.contiguous()[:, :, None, None].clone()
    mid.weight.data = core.contiguous().clone()
    last.weight.data = out_f.contiguous()[:, :, None, None].clone()
    if m.bias is not None:
        last.bias.data = m.bias.detach().clone()
    return nn.Sequential(first, mid, last), err


def cp_layers(m: nn.Conv2d, r: int) -> tuple[nn.Module, float]:
    """``m`` as a rank-``r`` CP decomposition (Lebedev et al. 2015): 1x1 ``C -> r``, depthwise ``kh x 1`` and
    ``1 x kw`` over the ``r`` channels, 1x1 ``r -> K``; and the relative error."""
    import tensorly as tl
    from tensorly.decomposition import parafac

    tl.set_backend("pytorch")
    w = m.weight.detach()
    cp = parafac(w, rank=r, init="svd", n_iter_max=200, tol=1e-10, random_state=0)
    lam, (out_f, in_f, vert, horiz) = cp
    err = float(torch.linalg.norm(w - tl.cp_to_tensor(cp)) / torch.linalg.norm(w))
    (sh, sw), (dh, dw) = m.stride, m.dilation
    ph, pw = (m.padding, m.padding) if isinstance(m.padding, str) else m.padding
    first = nn.Conv2d(m.in_channels, r, 1, bias=False)
    v = nn.Conv2d(r, r, (m.kernel_size[0], 1), stride=(sh, 1), padding=ph if isinstance(ph, str) else (ph, 0),
                  dilation=(dh, 1), groups=r, bias=False)
    h = nn.Conv2d(r, r, (1, m.kernel_size[1]), stride=(1, sw), padding=pw if isinstance(pw, str) else (0, pw),
                  dilation=(1, dw), groups=r, bias=False)
    last = nn.Conv2d(r, m.out_channels, 1, bias=m.bias is not None)
    first.weight.data = in_f.T.contiguous()[:, :, None, None].clone()
    v.weight.data = vert.T.contiguous()[:, None, :, None].clone()
    h.weight.data = horiz.T.contiguous()[:, None, None, :].clone()
    last.weight.data = (out_f * lam).contiguous()[:, :, None, None].clone()
    if m.bias is not None:
        last.bias.data = m.bias.detach().clone()
    return nn.Sequential(first, v, h, last), err


def decompose(m: nn.Module, p: "LayerPlan") -> tuple[nn.Module, float]:
    """The planned factorisation of one layer and its relative Frobenius error."""
    if p.kind == "svd":
        return svd_layers(m, p.rank[0])
    if p.kind == "cp":
        return cp_layers(m, p.rank[0])
    return tucker_layers(m, *p.rank)


def factorise(model: nn.Module, plans: list[LayerPlan]) -> list[dict]:
    """Replace every planned layer of ``model`` in place; returns the per-layer table."""
    layers = dict(weight_layers(model))
    table = []
    for p in plans:
        row = {"layer": p.name, "type": type(layers[p.name]).__name__, "shape": p.shape, "params": p.params,
               "factorised": bool(p.kind), "rank": list(p.rank), "params_after": p.params_after if p.kind else p.params,
               "rel_error": 0.0, "why_not": p.reason}
        if p.kind:
            new, row["rel_error"] = decompose(layers[p.name], p)
            _set_module(model, p.name, new)
        table.append(row)
    return table


class LowRank(Method):
    def __init__(self, cfg: LowRankConfig):
        self.cfg = cfg
        self.name = cfg.name

    def unused(self) -> set[str]:
        return {"energy"} if self.cfg.ratio is not None else set()  # a parameter budget sets the ranks

    def check(self, model: nn.Module, example_input: torch.Tensor) -> None:
        plan(model, self.cfg)  # unknown layers, ranks above their bound, nothing to factorise

    def compress(self, ctx: MethodContext) -> CompressionResult:
        cfg = self.cfg
        model = copy.deepcopy(ctx.model_in)
        table = factorise(model, plan(model, cfg))
        done = [r for r in table if r["factorised"]]
        before = ctx.evaluate(model)["test/acc"]
        log.info("low rank: %d of %d layers factorised, %d -> %d weights, test acc %.4f before fine-tuning",
                 len(done), len(table), sum(r["params"] for r in table), sum(r["params_after"] for r in table), before)
        if cfg.retrain_epochs:
            ctx.retrain(model, cfg.retrain_epochs, lr=cfg.lr)
        knobs = {"retrain_epochs": cfg.retrain_epochs, "layers_factorised": len(done),
                 **({"ratio": cfg.ratio} if cfg.ratio is not None else {"energy": cfg.energy})}
        named = {"low_rank/test_acc_before_finetune": before,
                 "low_rank/mean_rel_error": sum(r["rel_error"] for r in done) / max(len(done), 1),
                 "low_rank/max_rel_error": max((r["rel_error"] for r in done), default=0.0)}
        return CompressionResult(model, knobs, layers=table, named_metrics=named,
                                 tags={"low_rank.layers": ", ".join(f"{r['layer']}@{'x'.join(map(str, r['rank']))}"
                                                                    for r in done), "low_rank.conv": cfg.conv})


LOW_RANK = {"low_rank": (LowRankConfig, LowRank)}


# ----------------------------------------------------------------------------------- low rank + sparse


@dataclass
class LowRankSparseConfig(LowRankConfig):
    name: str = "low_rank_sparse"
    sparse_fraction: float = 0.02  # share of each factorised weight's entries kept in the sparse part S
    iterations: int = 10  # GoDec alternations: S = top-k of (W - L), L = rank-r fit of (W - S)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0.0 < self.sparse_fraction < 1.0, "method.sparse_fraction", f"must be in (0, 1), got {self.sparse_fraction}")
        check(self.iterations >= 1, "method.iterations", f"must be >= 1, got {self.iterations}")


class LowPlusSparse(nn.Module):
    """``low(x) + sparse(x)``: a factorised branch (SVD or Tucker-2, with the bias) and a sparse-weight branch of the
    original layer's shape (held sparse by a :class:`edgebench.mask.Mask` while fine-tuning; its zeros are stored
    dense in a dense runtime's file, compressed only in ``size/bytes_sparse``)."""

    def __init__(self, low: nn.Module, sparse: nn.Module):
        super().__init__()
        self.low, self.sparse = low, sparse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.low(x) + self.sparse(x)


def _top_k(r: torch.Tensor, k: int) -> torch.Tensor:
    """``r`` with all but its ``k`` largest-magnitude entries set to zero."""
    keep = torch.zeros(r.numel(), dtype=torch.bool)
    keep[r.abs().flatten().topk(k).indices] = True
    return r * keep.view_as(r)


def godec(m: nn.Module, p: LayerPlan, fraction: float, iterations: int) -> tuple[nn.Module, float, float]:
    """GoDec-style alternation for one layer: W ~ L + S with L of the plan's rank(s) and S the k largest entries of the
    residual. Returns (the LowPlusSparse module, relative error of L + S, relative error of L alone at the same rank)."""
    w = m.weight.detach().clone()
    k = max(1, int(fraction * w.numel()))
    s = torch.zeros_like(w)
    low_only = None
    for _ in range(iterations):
        ref = copy.deepcopy(m)
        ref.weight.data = w - s
        low, _ = decompose(ref, p)
        approx = _low_weight(low, m, p)
        if low_only is None:
            low_only = float(torch.linalg.norm(w - approx) / torch.linalg.norm(w))
        s = _top_k(w - approx, k)
    err = float(torch.linalg.norm(w - approx - s) / torch.linalg.norm(w))
    sparse = copy.deepcopy(m)
    sparse.weight.data = s
    if getattr(sparse, "bias", None) is not None:
        sparse.bias = None
    return LowPlusSparse(low, sparse), err, low_only


def _low_weight(low: nn.Module, m: nn.Module, p: LayerPlan) -> torch.Tensor:
    """The dense weight the factorised branch computes (to take the residual)."""
    if p.kind == "svd":
        a, b = low[0].weight.detach().flatten(1), low[1].weight.detach().flatten(1)
        return (b @ a).view_as(m.weight)
    if p.kind == "cp":
        first, v, h, last = (x.weight.detach() for x in low)
        return torch.einsum("or,ry,rx,ri->oiyx", last.flatten(1), v[:, 0, :, 0], h[:, 0, 0, :], first.flatten(1))
    first, mid, last = (x.weight.detach() for x in low)
    return torch.einsum("oa,abhw,bi->oihw", last.flatten(1), mid, first.flatten(1))


class LowRankSparse(LowRank):
    """``low_rank_sparse`` (Yu et al., CVPR 2017): each factorised layer becomes L + S."""

    def compress(self, ctx: MethodContext) -> CompressionResult:
        from edgebench.mask import Mask, bake

        cfg = self.cfg
        model = copy.deepcopy(ctx.model_in)
        plans = plan(model, cfg)
        layers = dict(weight_layers(model))
        table, masks = [], {}
        for p in plans:
            m = layers[p.name]
            row = {"layer": p.name, "type": type(m).__name__, "shape": p.shape, "params": p.params,
                   "factorised": bool(p.kind), "rank": list(p.rank), "sparse_nonzero": 0,
                   "params_after": p.params, "rel_error": 0.0, "rel_error_low_rank_only": 0.0, "why_not": p.reason}
            if p.kind:
                new, row["rel_error"], row["rel_error_low_rank_only"] = godec(m, p, cfg.sparse_fraction, cfg.iterations)
                row["sparse_nonzero"] = int((new.sparse.weight != 0).sum())
                row["params_after"] = p.params_after + row["sparse_nonzero"]
                _set_module(model, p.name, new)
                masks[f"{p.name}.sparse.weight"] = new.sparse.weight != 0
            table.append(row)
        before = ctx.evaluate(model)["test/acc"]
        mask = Mask(masks)
        if cfg.retrain_epochs:
            mask.hold(model)  # S stays sparse through fine-tuning
            ctx.retrain(model, cfg.retrain_epochs, lr=cfg.lr)
            bake(model)
        done = [r for r in table if r["factorised"]]
        knobs = {"retrain_epochs": cfg.retrain_epochs, "layers_factorised": len(done),
                 "sparse_fraction": cfg.sparse_fraction,
                 **({"ratio": cfg.ratio} if cfg.ratio is not None else {"energy": cfg.energy})}
        named = {"low_rank/test_acc_before_finetune": before,
                 "low_rank/mean_rel_error": sum(r["rel_error"] for r in done) / max(len(done), 1),
                 "low_rank/mean_rel_error_low_rank_only": sum(r["rel_error_low_rank_only"] for r in done) / max(len(done), 1)}
        tags = {"low_rank.layers": ", ".join(f"{r['layer']}@{'x'.join(map(str, r['rank']))}" for r in done),
                "low_rank.conv": cfg.conv,
                "low_rank.deployed": "factorised branch + sparse branch; a dense runtime stores and runs S as a dense "
                                     "tensor (only size/bytes_sparse counts it compressed)"}
        return CompressionResult(model, knobs, layers=table, named_metrics=named, tags=tags)


LOW_RANK["low_rank_sparse"] = (LowRankSparseConfig, LowRankSparse)
