"""Pruning: unstructured (magnitude, random; layer or global), structured (Torch-Pruning), block removal.

Unstructured pruning holds its masks (:class:`edgebench.mask.Mask`, through ``torch.nn.utils.prune``:
the weight is ``weight_orig * weight_mask`` in every forward pass, so pruned weights stay zero
through retraining) and bakes the zeros in at the end (:func:`edgebench.mask.bake`). Iterative pruning reaches the target in
``rounds`` equal steps of the remaining weights (round r: sparsity 1 - (1 - s)^(r/R)), retraining
``retrain_epochs`` after each round from the surviving weights. ``schedule=agp`` prunes gradually
during one retraining of ``retrain_epochs`` with Zhu & Gupta's cubic schedule.

Structured pruning removes whole channels with Torch-Pruning's dependency graph, so the model is
physically smaller; ``granularity=layer`` removes whole residual blocks instead.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Optional

import torch
from torch import nn
from torch.nn.utils import prune

from edgebench.config import ConfigError, check
from edgebench.mask import Mask, bake, refresh
from edgebench.training import Callback, NonFiniteLossError
from edgebench.measure.size import weight_layers
from edgebench.methods.base import CompressionResult, Method, MethodContext

log = logging.getLogger(__name__)


def _check(ok: bool, key: str, msg: str) -> None:
    check(ok, f"method.{key}", msg)


class Schedule(str, Enum):
    iterative = "iterative"  # prune, retrain; repeated `rounds` times
    agp = "agp"  # gradual (cubic) pruning during retraining


class Importance(str, Enum):
    l1 = "l1"
    l2 = "l2"
    random = "random"


class Granularity(str, Enum):
    channel = "channel"
    layer = "layer"


@dataclass
class UnstructuredPruningConfig:
    name: str = "magnitude_pruning"  # magnitude_pruning | random_pruning (which masks: the registered class's)
    sparsity: float = 0.9  # fraction of the prunable (conv and linear) weights removed
    scope: str = "layer"  # layer: each layer at its rate | global: one magnitude threshold over all layers
    layer_sparsity: Optional[dict[str, float]] = None  # per-layer overrides, by module name (dots written as /)
    output_layer_sparsity: Optional[float] = None  # override for the last prunable layer (the classifier)
    depthwise_sparsity: Optional[float] = None  # override for depthwise convs (MobileNet's; 0: keep them dense)
    schedule: Schedule = Schedule.iterative
    rounds: int = 1
    retrain_epochs: int = 3  # per round (iterative) or in all (agp)
    agp_update_every: int = 20  # training steps between mask updates (agp)

    def __post_init__(self) -> None:
        _check(0.0 <= self.sparsity < 1.0, "sparsity", f"must be in [0, 1), got {self.sparsity}")
        _check(self.scope in ("layer", "global"), "scope", f"must be layer or global, got {self.scope!r}")
        self.layer_sparsity = {k.replace("/", "."): v for k, v in (self.layer_sparsity or {}).items()}  # / for . (Hydra)
        for k, v in self.layer_sparsity.items():
            _check(0.0 <= v < 1.0, f"layer_sparsity.{k}", f"must be in [0, 1), got {v}")
        if self.output_layer_sparsity is not None:
            _check(0.0 <= self.output_layer_sparsity < 1.0, "output_layer_sparsity",
                   f"must be in [0, 1), got {self.output_layer_sparsity}")
        if self.depthwise_sparsity is not None:
            _check(0.0 <= self.depthwise_sparsity < 1.0, "depthwise_sparsity",
                   f"must be in [0, 1), got {self.depthwise_sparsity}")
        _check(self.rounds >= 1, "rounds", f"must be >= 1, got {self.rounds}")
        _check(self.retrain_epochs >= 0, "retrain_epochs", f"must be >= 0, got {self.retrain_epochs}")
        _check(self.agp_update_every >= 1, "agp_update_every", f"must be >= 1, got {self.agp_update_every}")
        if self.schedule == Schedule.agp:
            _check(self.retrain_epochs >= 1, "retrain_epochs", "schedule=agp prunes during retraining: needs >= 1")
            _check(self.rounds == 1, "rounds", "schedule=agp is one gradual run; leave rounds at 1")


@dataclass
class StructuredPruningConfig:
    name: str = "structured_pruning"
    ratio: float = 0.5  # fraction of channels (granularity=channel) or residual blocks (layer) removed
    importance: Importance = Importance.l1
    granularity: Granularity = Granularity.channel
    rounds: int = 1
    retrain_epochs: int = 3  # after each round

    def __post_init__(self) -> None:
        _check(0.0 <= self.ratio < 1.0, "ratio", f"must be in [0, 1), got {self.ratio} (1 would remove every channel)")
        _check(self.rounds >= 1, "rounds", f"must be >= 1, got {self.rounds}")
        _check(self.retrain_epochs >= 0, "retrain_epochs", f"must be >= 0, got {self.retrain_epochs}")


# ----------------------------------------------------------------------------------- helpers


def layer_table(model: nn.Module) -> list[dict]:
    """Per-layer parameters, nonzeros and sparsity of conv and linear weights."""
    rows = []
    for name, m in weight_layers(model):
        w = m.weight
        nnz = int(torch.count_nonzero(w))
        rows.append({"layer": name, "type": type(m).__name__, "shape": list(w.shape), "params": w.numel(),
                     "nonzero": nnz, "sparsity": 1 - nnz / w.numel()})
    return rows


def _depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels


def _overrides(model: nn.Module, cfg: UnstructuredPruningConfig) -> dict[str, float]:
    """The layers whose sparsity is not ``cfg.sparsity``: depthwise convs (``depthwise_sparsity``), then the output
    layer (``output_layer_sparsity``), then ``layer_sparsity`` by name, each later one winning."""
    layers = weight_layers(model)
    names = [n for n, _ in layers]
    unknown = sorted(set(cfg.layer_sparsity) - set(names))
    if unknown:
        raise ConfigError(f"method.layer_sparsity: no prunable layer named {', '.join(unknown)}; "
                          f"prunable layers are: {', '.join(names)}")
    out = {}
    if cfg.depthwise_sparsity is not None:
        out.update({n: cfg.depthwise_sparsity for n, m in layers if _depthwise(m)})
    if cfg.output_layer_sparsity is not None and names:
        out[names[-1]] = cfg.output_layer_sparsity
    out.update(cfg.layer_sparsity)
    return out


def layer_targets(model: nn.Module, cfg: UnstructuredPruningConfig) -> dict[str, float]:
    """Final sparsity of every prunable layer (the default, then :func:`_overrides`)."""
    return {n: cfg.sparsity for n, _ in weight_layers(model)} | _overrides(model, cfg)


def dead_channels(model: nn.Module) -> int:
    """Output channels of conv layers whose every weight is zero (pruned): each feeds a constant to what follows."""
    dead = 0
    for _, m in weight_layers(model):
        if isinstance(m, nn.Conv2d):
            dead += int((m.weight.detach().reshape(m.weight.shape[0], -1) != 0).sum(1).eq(0).sum())
    return dead


DEPTHWISE_FIX = "Keep depthwise convs dense (method.depthwise_sparsity=0) or lower the sparsity."


@contextmanager
def naming_dead_channels(model: nn.Module, when: str, fix: str) -> Iterator[None]:
    """A NaN loss while ``model`` has dead channels (:func:`dead_channels`) says, on its line, what they do and ``fix``.

    Measured on MobileNet v2 x0.35 at 0.92 per layer: the gradient reaching a dead channel's BatchNorm grows by up
    to 1/sqrt(eps) per layer, 2.5e36 in block 1, then inf (and NaN) in the first conv."""
    try:
        yield
    except NonFiniteLossError as e:
        dead = dead_channels(model)
        if not dead:
            raise
        raise NonFiniteLossError(
            f"{e} {when}, {dead} conv output channels have every weight pruned: a BatchNorm over such a constant "
            f"channel multiplies its gradient by up to 1/sqrt(eps) in training, and chains of them overflow. {fix}"
        ) from e


@torch.no_grad()
def prune_to(model: nn.Module, targets: dict[str, float], cfg: UnstructuredPruningConfig, fraction: float,
             random: bool = False) -> None:
    """Raise every layer's mask to ``fraction`` of its way to the target, in sparsity of the kept weights.

    Layer ``l`` reaches sparsity ``1 - (1 - s_l)^fraction``: equal rounds each remove the same share of
    what is left (Han et al.). Masks only grow; exact counts, no rounding drift. ``random``: the weights
    removed are drawn at random (``random_pruning``), else the smallest by magnitude.
    """
    method = prune.RandomUnstructured if random else prune.L1Unstructured
    layers = dict(weight_layers(model))
    held = Mask.held(model)
    zeros = {n: held.zeros(f"{n}.weight") for n in layers}
    step = {n: 1 - (1 - s) ** fraction for n, s in targets.items()}
    if cfg.scope == "global":
        pool = [n for n in layers if n not in _overrides(model, cfg)]
        total = sum(layers[n].weight.numel() for n in pool)
        want = round(total * step[pool[0]]) if pool else 0
        have = sum(zeros[n] for n in pool)
        if want > have:
            prune.global_unstructured([(layers[n], "weight") for n in pool], pruning_method=method, amount=want - have)
        per_layer = [n for n in layers if n not in pool]
    else:
        per_layer = list(layers)
    for n in per_layer:
        m = layers[n]
        add = round(m.weight.numel() * step[n]) - zeros[n]
        if add > 0:
            if method is prune.RandomUnstructured:
                prune.random_unstructured(m, "weight", amount=add)
            else:
                prune.l1_unstructured(m, "weight", amount=add)
        elif not prune.is_pruned(m):
            prune.identity(m, "weight")  # a mask of ones, so every layer is handled alike


class AGPCallback(Callback):
    """Zhu & Gupta (2017) gradual pruning: s_t = s_f (1 - (1 - t/T)^3) over the first 75% of the steps."""

    def __init__(self, targets: dict[str, float], cfg: UnstructuredPruningConfig, total_steps: int,
                 random: bool = False):
        self.targets, self.cfg, self.random = targets, cfg, random
        self.prune_steps = max(1, int(0.75 * total_steps))
        self.step = 0  # own count: with manual optimisation Lightning's global_step does not advance
        self.trace: list[tuple[int, float]] = []  # (step, share of the final sparsity) at each update

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        t = self.step
        self.step += 1
        if t <= self.prune_steps and (t % self.cfg.agp_update_every == 0 or t == self.prune_steps):
            frac = min(1.0, t / self.prune_steps)
            progress = 1 - (1 - frac) ** 3  # share of the final sparsity reached now
            prune_to(module.net, {n: s * progress for n, s in self.targets.items()}, self.cfg, 1.0, self.random)
            self.trace.append((t, progress))


# ----------------------------------------------------------------------------------- methods


class UnstructuredPruning(Method):
    """Magnitude pruning (``magnitude_pruning``); :class:`RandomPruning` draws the masks at random instead."""

    random = False  # which weights go: the smallest by magnitude, or drawn at random

    def __init__(self, cfg: UnstructuredPruningConfig):
        self.cfg = cfg
        self.name = cfg.name

    def unused(self) -> set[str]:
        return set() if self.cfg.schedule == Schedule.agp else {"agp_update_every"}  # mask updates of agp only

    def check(self, model: nn.Module, example_input: torch.Tensor) -> None:
        if not weight_layers(model):
            raise ConfigError(f"{self.name}: the model has no conv or linear layers to prune")
        layer_targets(model, self.cfg)

    def compress(self, ctx: MethodContext) -> CompressionResult:
        cfg = self.cfg
        model = copy.deepcopy(ctx.model_in)
        targets = layer_targets(model, cfg)
        torch.manual_seed(ctx.seed)  # random pruning draws its masks from this
        series = []
        if cfg.schedule == Schedule.agp:
            steps = cfg.retrain_epochs * ctx.train_batches_per_epoch
            prune_to(model, {n: 0.0 for n in targets}, cfg, 1.0, self.random)
            agp = AGPCallback(targets, cfg, steps, self.random)
            with naming_dead_channels(model, "During AGP's pruning", DEPTHWISE_FIX):
                hist = ctx.retrain(model, cfg.retrain_epochs, callbacks=[agp])
            log.info("AGP: %d mask updates over %d steps", len(agp.trace), agp.step)
            prune_to(model, targets, cfg, 1.0, self.random)  # exactly at the target, whatever the step count
            refresh(model)
            series.append(self._round(ctx, model, 1, hist))
        else:
            started = time.perf_counter()
            for r in range(1, cfg.rounds + 1):
                prune_to(model, targets, cfg, r / cfg.rounds, self.random)
                hist = self._retrain(ctx, model, r) if cfg.retrain_epochs else []
                series.append(self._round(ctx, model, r, hist, started))
        bake(model)
        knobs = {"sparsity": cfg.sparsity, "rounds": cfg.rounds, "retrain_epochs": cfg.retrain_epochs,
                 "global_scope": float(cfg.scope == "global"), "random": float(self.random)}
        return CompressionResult(model, knobs, series, layers=layer_table(model))

    def _retrain(self, ctx: MethodContext, model: nn.Module, r: int) -> list[dict]:
        with naming_dead_channels(model, f"In pruning round {r}", DEPTHWISE_FIX):
            return ctx.retrain(model, self.cfg.retrain_epochs)

    def _round(self, ctx: MethodContext, model: nn.Module, r: int, hist: list[dict], started: float = 0.0) -> dict:
        snapshot = bake(copy.deepcopy(refresh(model)))
        table = layer_table(snapshot)
        params = sum(t["params"] for t in table)
        row = {"round": r, "round/sparsity": 1 - sum(t["nonzero"] for t in table) / params,
               "round/test_acc": ctx.evaluate(snapshot)["test/acc"]}
        if hist and "val/acc" in hist[-1]:
            row["round/val_acc"] = hist[-1]["val/acc"]
        log.info("pruning round %d/%d: sparsity %.4f, test acc %.4f%s", r, self.cfg.rounds, row["round/sparsity"],
                 row["round/test_acc"], _eta(started, r, self.cfg.rounds))
        return row


def _eta(started: float, done: int, total: int) -> str:
    """``, ETA 1:05`` for the rounds left (from the time the ``done`` rounds took since ``started``), or ''."""
    from edgebench.progress import eta

    left = eta(started, done, total) if started else ""
    return f", {left}" if left else ""


def _importance(kind: Importance):
    import torch_pruning as tp

    if kind == Importance.random:
        return tp.importance.RandomImportance()
    return tp.importance.MagnitudeImportance(p=1 if kind == Importance.l1 else 2)


def _output_layer(model: nn.Module) -> nn.Module:
    return weight_layers(model)[-1][1]


def _heads(model: nn.Module) -> dict[str, str]:
    """The model's small heads besides its classifier, by layer name, with what each is (for messages)."""
    from edgebench.models.ram import RecurrentAttention

    for prefix, m in model.named_modules():
        if isinstance(m, RecurrentAttention):
            p = f"{prefix}." if prefix else ""
            return {f"{p}baseline": "the RAM's reward-baseline head", f"{p}locator": "the RAM's location head"}
    return {}


def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Residual blocks with an identity shortcut: removing one leaves a valid network."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    from edgebench.models.small import _BasicBlock

    out = []
    for name, m in model.named_modules():
        if isinstance(m, (BasicBlock, Bottleneck)) and m.downsample is None:
            out.append((name, m))
        elif isinstance(m, _BasicBlock) and isinstance(m.shortcut, nn.Identity):
            out.append((name, m))
    return out


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


class StructuredPruning(Method):
    def __init__(self, cfg: StructuredPruningConfig):
        self.cfg = cfg
        self.name = cfg.name

    def check(self, model: nn.Module, example_input: torch.Tensor) -> None:
        """Refuse, before any training, a model or ratio this method cannot handle."""
        if self.cfg.granularity == Granularity.layer:
            if not residual_blocks(model):
                raise ConfigError("method.granularity=layer removes residual blocks with an identity shortcut; "
                                  f"{type(model).__name__} has none (use a resnet, or granularity=channel)")
            return
        import torch_pruning as tp

        try:
            tp.DependencyGraph().build_dependency(copy.deepcopy(model).eval(), example_inputs=example_input)
        except Exception as e:
            raise ConfigError(f"structured_pruning cannot trace this model's channel dependencies "
                              f"({type(e).__name__}: {e}); use +method=magnitude_pruning instead") from None
        output = _output_layer(model)
        heads = _heads(model)
        for name, m in weight_layers(model):
            if m is output:
                continue
            n = m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features
            if int(n * (1 - self.cfg.ratio)) < 1:  # Torch-Pruning keeps int(n * (1 - ratio)) channels
                channels = f"{n} output channel{'s' if n != 1 else ''}"
                if name in heads:  # a small head of the model, whose name may mislead (RAM's `baseline`)
                    small = ", ".join(f"`{h}`" for h in heads)
                    raise ConfigError(
                        f"method.ratio={self.cfg.ratio} would remove every channel of layer `{name}` ({heads[name]}, "
                        f"{channels}; not the dense baseline model): structured_pruning cannot prune "
                        f"{type(model).__name__}'s 1- and 2-channel heads ({small}) and has no way to exclude "
                        "them; use +method=magnitude_pruning (unstructured) for this model")
                raise ConfigError(f"method.ratio={self.cfg.ratio} would remove every channel of layer `{name}` "
                                  f"({type(m).__name__}, {channels}); use a smaller method.ratio (at most "
                                  f"{1 - 1 / n:.3g})" if n > 1 else
                                  f"method.ratio={self.cfg.ratio} would remove every channel of layer `{name}` "
                                  f"({type(m).__name__}, {channels}): structured_pruning cannot prune a layer with "
                                  "one output channel; use +method=magnitude_pruning for this model")

    def compress(self, ctx: MethodContext) -> CompressionResult:
        cfg = self.cfg
        model = copy.deepcopy(ctx.model_in).cpu()
        torch.manual_seed(ctx.seed)
        series = []
        if cfg.granularity == Granularity.layer:
            self._remove_blocks(model)
            hist = ctx.retrain(model, cfg.retrain_epochs) if cfg.retrain_epochs else []
            series.append(self._round(ctx, model, 1, hist))
        else:
            import torch_pruning as tp

            model.eval()
            pruner = tp.pruner.MetaPruner(model, ctx.example_input, importance=_importance(cfg.importance),
                                          pruning_ratio=cfg.ratio, iterative_steps=cfg.rounds,
                                          ignored_layers=[_output_layer(model)])
            started = time.perf_counter()
            for r in range(1, cfg.rounds + 1):
                pruner.step()
                model.train()
                hist = ctx.retrain(model, cfg.retrain_epochs) if cfg.retrain_epochs else []
                series.append(self._round(ctx, model, r, hist, started))
        knobs = {"ratio": cfg.ratio, "rounds": cfg.rounds, "retrain_epochs": cfg.retrain_epochs,
                 "layer_granularity": float(cfg.granularity == Granularity.layer)}
        return CompressionResult(model, knobs, series, layers=layer_table(model))

    def _remove_blocks(self, model: nn.Module) -> None:
        blocks = residual_blocks(model)
        k = math.floor(len(blocks) * self.cfg.ratio)

        def score(m):
            if self.cfg.importance == Importance.random:
                return float(torch.rand(()))
            p = 1 if self.cfg.importance == Importance.l1 else 2
            ws = [w.detach() for n, w in m.named_parameters() if w.dim() > 1]
            return float(sum(w.norm(p) for w in ws) / sum(w.numel() for w in ws))

        for name, _ in sorted(blocks, key=lambda b: score(b[1]))[:k]:
            _set_module(model, name, nn.Identity())
            log.info("removed residual block %s", name)

    def _round(self, ctx: MethodContext, model: nn.Module, r: int, hist: list[dict], started: float = 0.0) -> dict:
        row = {"round": r, "round/params": sum(p.numel() for p in model.parameters()),
               "round/test_acc": ctx.evaluate(model)["test/acc"]}
        if hist and "val/acc" in hist[-1]:
            row["round/val_acc"] = hist[-1]["val/acc"]
        log.info("structured round %d/%d: %d params, test acc %.4f%s", r, self.cfg.rounds, row["round/params"],
                 row["round/test_acc"], _eta(started, r, self.cfg.rounds))
        return row


class RandomPruning(UnstructuredPruning):
    """``random_pruning``: the control of magnitude pruning, same schedule, masks drawn at random."""

    random = True


UNSTRUCTURED = {"magnitude_pruning": (UnstructuredPruningConfig, UnstructuredPruning),
                "random_pruning": (UnstructuredPruningConfig, RandomPruning)}
STRUCTURED = {"structured_pruning": (StructuredPruningConfig, StructuredPruning)}
