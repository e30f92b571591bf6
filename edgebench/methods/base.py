"""The interface every compression method implements.

A method gets the trained dense model and a :class:`MethodContext`, and returns a
:class:`CompressionResult`. It never talks to MLflow and never measures anything: the
run logs ``result.knobs`` (``method/*``), ``result.series`` and ``result.plots``, evaluates, exports and
measures the model.

What the families in the README need, and where it lives here:

* masks kept during retraining (pruning, lottery tickets): ``callbacks`` and ``retrain``;
* an outer loop of rounds (iterative pruning, lottery levels): ``compress`` calls ``ctx.retrain``
  once per round and records per-step figures (pruning rounds, QAT epochs, lottery levels) in ``result.series``;
* the training objective (distillation replaces it, KURE adds a term): an ``edgebench.losses.Loss``
  passed to ``ctx.retrain(..., loss=...)``;
* the model to compress: ``ctx.model_in`` (the dense model for the first step of a chain, else the previous
  step's output); a teacher comes from ``ctx.trained(model_name)``;
* calibration data (quantisation): ``ctx.datamodule``;
* an example input (structured pruning, export): ``ctx.example_input``;
* a low-precision deployable (int8, fp16, bf16): ``result.spec``, a ``QuantSpec`` (dtype, int8
  settings, calibration batches) from which the run's exporter writes the file; test accuracy
  then comes from that file and the device fit uses its dtype (a method never writes it);
* a storage format with no runtime (k-bit codes): ``result.analytic_bytes`` and ``result.tags``
  saying that its size is analytic and its accuracy simulated;
* a figure (lottery levels, KURE robustness): ``result.plots``, the data only; the run draws it with
  :mod:`edgebench.report.method_plots` (a method never imports matplotlib).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from edgebench.export import QuantSpec


@dataclass
class MethodContext:
    # the step's input model (do not modify; copy it): the dense model for the first step of a chain, else the
    # previous step's output
    model_in: nn.Module
    datamodule: Any  # EdgeDataModule: train/val/test loaders over in-memory tensors
    example_input: torch.Tensor  # batch of 1
    retrain: Callable[..., list[dict]]  # retrain(model, epochs, callbacks=(), loss=None, lr=None) -> per-epoch history
    evaluate: Callable[[nn.Module], dict[str, float]]  # test-split metrics of a model (for per-round reports)
    train_batches_per_epoch: int
    output_dir: Path
    seed: int
    build_model: Callable[[], nn.Module] | None = None  # a freshly initialised model (the dense model's init)
    store_dir: Path | None = None  # where a method may keep resumable state
    baseline_key: str = ""  # the dense baseline's hash: everything it depends on (model, data, trainer, seed)
    fit: Callable[..., list[dict]] | None = None  # fit(model, epochs, callbacks=(), val_check_interval=1.0, val_points=None)
    # trained(model_name, trainer={...}, seed=None) -> a trained model of that config on this run's data (a
    # teacher): from the store, or trained once with its curves in its own child run
    trained: Callable[..., nn.Module] | None = None
    dense: nn.Module | None = None  # the run's trained dense model (a teacher for its own compressed self)
    step: int = 0  # this step's place in the chain (0: the first, whose input is the dense model)


@dataclass
class ChildResult:
    """A model the method produced along the way (e.g. a pruning level), logged as a child run."""

    name: str
    model: nn.Module
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Plot:
    """A figure as data: ``kind`` names a drawer in :data:`edgebench.report.method_plots.DRAWERS`, called as
    ``drawer(path, **data)``. The run draws it and logs the file under the result's artifact path."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompressionResult:
    model: nn.Module  # the compressed model, evaluated and measured by the run
    knobs: dict[str, float] = field(default_factory=dict)  # the method's settings and choices, logged as method/<knob>
    # per-step figures (pruning rounds, QAT epochs, lottery levels) {"round": r, name: value, ...}, logged with step=r
    series: list[dict[str, float]] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)  # per-layer table, logged as an artifact
    spec: QuantSpec | None = None  # what the exporter needs for a low-precision file (None: a float model)
    predict: Callable[[torch.Tensor], torch.Tensor] | None = None  # test accuracy comes from this (default: the
    # model, or the exported file when its dtype is not fp32)
    dtype: str = "fp32"  # dtype of the deployed weights when no spec says otherwise (device fit, analytic sizes)
    analytic_bytes: int | None = None  # size/bytes_sparse of a stored format that is not a plain dtype (k-bit codes)
    tags: dict[str, str] = field(default_factory=dict)  # labels logged as run tags (e.g. quant.accuracy)
    named_metrics: dict[str, float] = field(default_factory=dict)  # logged under their own names (quant/acc_w4)
    children: list[ChildResult] = field(default_factory=list)  # each logged as a child run, measured in full
    files: dict[str, Path] = field(default_factory=dict)  # extra artifacts: {artifact path: local file}
    plots: dict[str, Plot] = field(default_factory=dict)  # figures to draw: {artifact path (a .png): Plot}


# What a step hands to the next one (see ``Method.accepts`` / ``Method.produces``):
#   dense          the trained dense model (the input of the first step)
#   float          float weights, possibly pruned or smaller: any step can take it
#   weight_shared  float weights holding k-bit codes (simulated): re-pruning or re-quantising would destroy them
#   deployable     a low-precision file (fp16, bf16, int8): nothing trains or prunes it any more
MODEL_KINDS = ("dense", "float", "weight_shared", "deployable")


class Method(ABC):
    """One compression method, configured by its own dataclass schema under conf/method/.

    ``accepts`` and ``produces`` say which models a step takes and hands on, so an impossible chain
    (``ptq_int8 -> magnitude_pruning``) is refused before any training.
    """

    name: str
    accepts: tuple[str, ...] = ("dense", "float")
    produces: str = "float"
    # The version of this step's code, part of its store key (:meth:`key`). Bump it (in the subclass) with any change
    # that changes what the step outputs for the same input and config (its model, knobs, series, tags), so outputs
    # made by the older code are never handed out as this code's.
    version: int = 1

    def unused(self) -> set[str]:
        """Config fields this configuration does not use (dotted for nested ones: ``teacher.trainer``): left out of
        :meth:`key`, so setting one does not make the step again. Only fields that change nothing in the output,
        its knobs and tags included."""
        return set()

    def key(self) -> dict:
        """What this step's output depends on besides its input: its name, :attr:`version` and config, normalised
        so that one step has one key however it was spelled (``+method=NAME`` or ``steps=[NAME]``): enums as their
        values, None entries dropped (None always means "the default"; a method's fields are fixed by its schema
        and version), and the fields in :meth:`unused` dropped."""
        from edgebench.store import plain

        config = plain(asdict(self.cfg))  # type: ignore[attr-defined]
        for path in self.unused():
            *outer, last = path.split(".")
            node = config
            for k in outer:
                node = node.get(k) or {}
            node.pop(last, None)
        return {"step": self.name, "version": self.version, "config": _without_none(config)}

    def check(self, model: nn.Module, example_input: torch.Tensor) -> None:
        """Refuse a model this method cannot handle, before any training (raise ConfigError)."""

    @abstractmethod
    def compress(self, ctx: MethodContext) -> CompressionResult:
        """Compress (and retrain as needed) a copy of ``ctx.model_in``."""


def _without_none(obj: Any) -> Any:
    """``obj`` with every dict entry whose value is None dropped, at any depth."""
    if isinstance(obj, dict):
        return {k: _without_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_without_none(v) for v in obj]
    return obj
