"""Training: a classifier's loop on Lightning Fabric, built from the trainer config.

Fabric picks and sets up the device (``trainer.accelerator``); the loop is edgebench's own, about
forty lines: Lightning's ``Trainer`` cost 0.4 ms a step in hooks and bookkeeping on a 2-core CPU,
18% of an epoch of LeNet-300-100 (``experiments/harness_overhead.py``, see the README).
Methods hook in through the training objective, a :class:`edgebench.losses.Loss` value (replaced
for distillation, with terms added for KURE), and :class:`Callback` objects (mask enforcement,
gradual pruning, rewinding); the loop itself knows nothing of compression.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from edgebench.config import Optimizer, ProgressBar, Scheduler, TrainerConfig
from edgebench.losses import Loss, objective
from edgebench.mask import Mask
from edgebench.progress import Evaluation, eta, mode

log = logging.getLogger(__name__)

# The version of what training makes of a config: part of every stored baseline's key (edgebench.cache.baseline_key),
# and so of every step stored on one. Bump it with any change here (the loop, the objective, the optimiser or
# scheduler set-up, initialisation, seeding, the data order) that changes the weights a config trains, so models
# trained by the older code are never handed out as this code's.
VERSION = 1



class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stops instead of training on garbage."""


class DivergedError(RuntimeError):
    """Training finished but the model is no better than chance and its loss did not fall: diverged or stuck
    (see :func:`check_learned`)."""


class NotLearnedError(DivergedError):
    """Training finished with a finite, falling loss but the model is not yet better than chance: too short a run.
    A :class:`DivergedError`, so whoever catches that catches this too."""


# Training failures that its settings and seed decide (the same key fails the same way): the store remembers them
# (edgebench.store, ``remember``), so the other jobs that need the same model fail at once instead of retraining it.
SAME_EACH_TIME = (NonFiniteLossError, DivergedError)


def chance_margin(num_classes: int) -> float:
    """The lowest validation accuracy that counts as clearly above chance for ``num_classes`` classes.

    Rule: chance (1/K) plus half of chance, at most plus 0.1, i.e. ``1/K + min(0.5/K, 0.1)``:
    0.15 for 10 classes, 0.015 for 100, 0.6 for 2.
    """
    return 1.0 / num_classes + min(0.5 / num_classes, 0.1)


def check_learned(history: list[dict], num_classes: int | None, cfg: TrainerConfig,
                  what: str = "the dense baseline", keys: str = "trainer") -> None:
    """Raise when the final validation accuracy of ``what`` (the model judged, e.g. "the teacher (resnet20)") is
    not clearly above chance: :class:`NotLearnedError` when its training loss is finite, below the loss of a
    uniform guess (ln K) and fell (a run too short to learn: train longer), else :class:`DivergedError`
    (NaN, rising or flat loss: lower the learning rate). ``keys`` is where its trainer settings are set
    (``trainer``, or ``method.teacher.trainer``), for the fix the message names.

    The final epoch is judged because the final weights are what is kept. A history without
    ``val/acc`` (no validation split) or an unknown class count is not judged.
    """
    accs = [row["val/acc"] for row in history if "val/acc" in row]
    if not accs or not num_classes or num_classes < 2:
        return
    acc, need = accs[-1], chance_margin(num_classes)
    if acc >= need - 1e-9:  # the boundary itself counts as learned (no float rounding surprises)
        return
    losses = [row["train/loss"] for row in history if "train/loss" in row]
    loss, guess = (losses[-1] if losses else float("nan")), math.log(num_classes)
    epochs = len(history)
    judged = (f"final val/acc {acc:.4f} after {epochs} epoch(s) is not clearly above chance "
              f"({1 / num_classes:.4f} for {num_classes} classes; needs >= {need:.4f})")
    if all(map(math.isfinite, losses)) and loss < guess and (len(losses) == 1 or loss < losses[0]):
        more = f"{keys}.max_epochs={max(10, 5 * epochs)}"
        if cfg.limit_train_batches < 1:
            more += " and trainer.limit_train_batches=1.0"
        fell = f"fell from {losses[0]:.4g} to {loss:.4g}" if len(losses) > 1 else f"is {loss:.4g}"
        raise NotLearnedError(
            f"{what} has not learned yet: {judged}, but its train/loss {fell}, finite and below {guess:.4g} (a "
            f"uniform guess): train longer, e.g. {more}. It was not stored.")
    trend = f" (first epoch {losses[0]:.4g})" if len(losses) > 1 else ""
    raise DivergedError(
        f"{what} did not learn: {judged}, final train/loss {loss:.4g}{trend}, not falling below {guess:.4g} (a "
        f"uniform guess). Training most likely diverged at {keys}.lr={cfg.lr:g} "
        f"(trainer.optimizer={getattr(cfg.optimizer, 'value', cfg.optimizer)}): lower it, e.g. "
        f"{keys}.lr={cfg.lr / 10:g}. It was not stored."
    )


class Callback:
    """What a method may hook into a training run (mask enforcement, gradual pruning, rewinding).

    The hooks are called with the :class:`lightning_fabric.Fabric` that runs the fit (``trainer``)
    and the :class:`Classifier` being trained (``module``; the net is ``module.net``); batch hooks
    also get the batch and its index in the epoch, ``on_train_batch_end`` the loss value first.
    """

    def on_train_start(self, trainer, module) -> None: ...

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None: ...

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None: ...

    def on_train_epoch_end(self, trainer, module) -> None: ...

    def on_train_end(self, trainer, module) -> None: ...


class Classifier(nn.Module):
    """``net`` trained on ``loss`` (default cross-entropy); validation reports the net's own cross-entropy
    and accuracy, whatever the objective. Holds what a fit records: ``history`` (one row per epoch:
    ``train/loss``, ``val/loss``, ``val/acc``), ``val_points`` (every validation, with the optimizer
    step it came after), ``steps_done`` and ``current_epoch``."""

    def __init__(self, net: nn.Module, cfg: TrainerConfig, loss: Loss | None = None):
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.loss = loss if loss is not None else objective(net)  # the net's own (cross-entropy); a submodule: moves with the net
        self.history: list[dict[str, float]] = []
        self.val_points: list[dict[str, float]] = []
        self.steps_done = 0
        self.current_epoch = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int, optimizer: torch.optim.Optimizer) -> float:
        """One optimizer step on ``batch``; returns the loss value (one host sync: the NaN check and the mean)."""
        x, y = batch
        logits = self.net(x)
        loss = self.loss(self.net, x, logits, y)
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"training loss is {value} at epoch {self.current_epoch}, batch {batch_idx}; "
                f"lower trainer.lr (now {self.cfg.lr}) or check the data for NaN values."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.steps_done += 1
        return value

    @torch.no_grad()
    def validate(self, loader: Iterable, device: torch.device) -> dict[str, float]:
        """``val/loss`` and ``val/acc`` of the net over ``loader``; appended to ``val_points``."""
        self.net.eval()
        n, loss, correct = 0, torch.zeros(()), torch.zeros((), dtype=torch.long)
        for x, y in loader:
            x, y = _to(x, device), _to(y, device)
            logits = self.net(x)
            loss += F.cross_entropy(logits, y, reduction="sum").cpu()
            correct += (logits.argmax(1) == y).sum().cpu()
            n += len(y)
        self.net.train()
        out = {"val/loss": float(loss) / n, "val/acc": float(correct) / n} if n else {}
        if out:
            self.val_points.append({"step": self.steps_done, **out})
        return out

    def configure_optimizers(self):
        """(optimizer, scheduler or None): the net's trainable parameters and what the loss itself learns."""
        c = self.cfg
        params = [p for p in self.net.parameters() if p.requires_grad]
        seen = {id(p) for p in params}  # and what the loss learns (e.g. a hint regressor); a Frozen teacher has none
        params += [p for p in self.loss.parameters() if p.requires_grad and id(p) not in seen]
        if c.optimizer == Optimizer.sgd:
            opt = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        elif c.optimizer == Optimizer.adamw:
            opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.scheduler == Scheduler.cosine:
            return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.max_epochs)
        if c.scheduler == Scheduler.step:  # /10 at 50% and 75% of training
            milestones = [int(c.max_epochs * 0.5), int(c.max_epochs * 0.75)]
            return opt, torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
        return opt, None


def _set_determinism(on: bool) -> None:
    """What Lightning's ``Trainer(deterministic=...)`` sets: deterministic kernels (an op without one
    raises), no cuDNN autotuning, and cuBLAS's fixed workspace."""
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.benchmark = False if on else torch.backends.cudnn.benchmark
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    return t if device.type == "cpu" else t.to(device, non_blocking=True)


class _Bar:
    """Progress of a fit: a rich bar per epoch on a terminal, one plain log line per epoch, or nothing; from the
    second epoch on, the fit's estimated time left (from the time its epochs took so far)."""

    def __init__(self, cfg: TrainerConfig, epochs: int):
        self.mode, self.epochs, self.progress, self.task = mode(cfg.progress_bar), epochs, None, None
        self.started = time.perf_counter()

    def start_epoch(self, epoch: int, batches: int) -> None:
        if self.mode != ProgressBar.rich:
            return
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("{task.fields[figures]}"))
            self.progress.start()
        left = eta(self.started, epoch, self.epochs)
        self.task = self.progress.add_task(f"epoch {epoch + 1}/{self.epochs}" + (f" (fit {left})" if left else ""),
                                           total=batches, figures="")

    def advance(self, loss: float) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=1, figures=f"loss {loss:.4f}")

    def end_epoch(self, epoch: int, row: dict[str, float]) -> None:
        figures = "  ".join(f"{k}={v:.4f}" for k, v in row.items())
        if self.task is not None:
            self.progress.update(self.task, figures=figures)
        elif self.mode == ProgressBar.plain:
            left = eta(self.started, epoch + 1, self.epochs)
            log.info("epoch %d/%d  %s%s", epoch + 1, self.epochs, figures, f"  ({left})" if left else "")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class KeepZeros(Callback):
    """Keeps the weights that an earlier step pruned at exactly zero while a later step retrains.

    ``mask`` (default :meth:`Mask.nonzero` of the step's input) is bound by tensor name to the net
    being trained (a step may train a copy, or wrap or parametrise it: see :meth:`Mask.bind`), and
    the masked entries are re-zeroed after every optimizer step.
    """

    def __init__(self, mask: Mask):
        self.mask = mask
        self._params: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @classmethod
    def of(cls, model: nn.Module) -> "KeepZeros | None":
        mask = Mask.nonzero(model)
        return cls(mask) if len(mask) else None

    def on_train_start(self, trainer, module):
        self._params = self.mask.bind(module.net)

    @torch.no_grad()
    def on_train_batch_end(self, trainer, module, *args):
        for p, mask in self._params or ():
            p.mul_(mask)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (what Lightning's ``seed_everything`` does, without importing
    Lightning: a run that trains nothing never loads it)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def quiet_lightning() -> None:
    """Silence Lightning's and torch's notices that do not apply here (seeding, device banners, pytree)."""
    warnings.filterwarnings("ignore", message=".*isinstance.*LeafSpec.*")
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                 "lightning_fabric.utilities.seed", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def fit(net: nn.Module, datamodule, cfg: TrainerConfig, *,
        callbacks: Iterable[Callback] = (), loss: Loss | None = None,
        epoch_sink: Callable[[int, dict[str, float]], None] | None = None,
        max_epochs: int | None = None, val_check_interval: float = 1.0,
        val_points: list | None = None) -> list[dict[str, float]]:
    """Train ``net`` in place with Lightning Fabric; returns the per-epoch history.

    ``loss`` is the training objective (default: cross-entropy); it is attached to ``net`` for the
    training (its feature taps hook in) and detached afterwards. Validation always reports the
    cross-entropy and accuracy of ``net`` itself, whatever the objective.
    ``val_check_interval`` < 1 validates several times per epoch; every validation is appended
    to ``val_points`` (when given) as ``{"step": optimizer steps so far, "val/loss", "val/acc"}``.
    ``epoch_sink(epoch, row)`` gets every epoch's row as it ends (MLflow logging).
    """
    from lightning_fabric import Fabric

    callbacks = list(callbacks)
    fabric = Fabric(accelerator=cfg.accelerator, devices=1, callbacks=callbacks)
    _set_determinism(bool(cfg.deterministic))
    device = fabric.device
    epochs = max_epochs or cfg.max_epochs
    module = Classifier(net, cfg, loss).to(device)
    # channels-last for a conv net (trainer.channels_last): set before the optimiser sees the weights, undone after
    nhwc = bool(cfg.channels_last) and any(isinstance(m, nn.Conv2d) for m in net.modules())
    if nhwc:
        net.to(memory_format=torch.channels_last)
    optimizer, scheduler = module.configure_optimizers()
    train_loader, val_loader = datamodule.train_dataloader(), datamodule.val_dataloader()
    batches = max(1, int(len(train_loader) * cfg.limit_train_batches))
    check_every = max(1, int(batches * val_check_interval))
    bar = _Bar(cfg, epochs)
    net.train()  # a model coming from evaluation (or a cache) is in eval mode
    module.loss.train()
    module.loss.attach(net)
    try:
        fabric.call("on_train_start", fabric, module)
        for epoch in range(epochs):
            module.current_epoch = epoch
            bar.start_epoch(epoch, batches)
            loss_sum, n, val = 0.0, 0, {}
            for i, batch in enumerate(train_loader):
                if i >= batches:
                    break
                batch = (_to(batch[0], device), _to(batch[1], device))
                if nhwc and batch[0].dim() == 4:
                    batch = (batch[0].contiguous(memory_format=torch.channels_last), batch[1])
                fabric.call("on_train_batch_start", fabric, module, batch, i)
                value = module.training_step(batch, i, optimizer)
                fabric.call("on_train_batch_end", fabric, module, value, batch, i)
                loss_sum += value * len(batch[1])
                n += len(batch[1])
                bar.advance(value)
                if (i + 1) % check_every == 0 or i + 1 == batches:
                    val = module.validate(val_loader, device) or val
            if scheduler is not None:
                scheduler.step()
            row = {"train/loss": loss_sum / n, **val}
            module.history.append({"epoch": epoch, **row})
            fabric.call("on_train_epoch_end", fabric, module)
            bar.end_epoch(epoch, row)
            if epoch_sink is not None:
                epoch_sink(epoch, row)
        fabric.call("on_train_end", fabric, module)
    finally:
        optimizer.zero_grad(set_to_none=True)  # a trained model holds no gradients
        if nhwc:  # the model leaves as it came: exporters and the store see contiguous weights
            net.to(memory_format=torch.contiguous_format)
        bar.close()
        module.loss.detach()
    if val_points is not None:
        val_points.extend(module.val_points)
    return module.history


@torch.no_grad()
def evaluate(net: nn.Module | Callable[[torch.Tensor], torch.Tensor], loader: Iterable,
             device: str = "cpu") -> dict[str, float]:
    """Test-split metrics of ``net`` (a module, or any callable from inputs to logits, e.g. an ONNX session).
    A long evaluation shows its progress (:class:`edgebench.progress.Evaluation`, by ``trainer.progress_bar``)."""
    if isinstance(net, nn.Module):
        net.eval().to(device)
    n, loss, correct, top5 = 0, 0.0, 0, 0
    shown = Evaluation(len(loader), len(getattr(loader, "dataset", ()))) if hasattr(loader, "__len__") else None
    try:
        for i, (x, y) in enumerate(loader):
            x, y = x.to(device), y.to(device)
            logits = net(x)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            if logits.shape[1] > 5:
                top5 += int(logits.topk(5, dim=1).indices.eq(y[:, None]).any(1).sum())
            n += len(y)
            if shown is not None:
                shown.advance(i + 1)
    finally:
        if shown is not None:
            shown.close()
    out = {"test/acc": correct / n, "test/loss": loss / n}
    if top5:
        out["test/acc_top5"] = top5 / n
    return out
