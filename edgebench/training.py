"""The LightningModule for classification and the Trainer built from config.

Methods hook in through the training objective, a :class:`edgebench.losses.Loss` value (replaced
for distillation, with terms added for KURE), and Lightning callbacks (e.g. mask enforcement); the
module itself knows nothing of compression.
"""

from __future__ import annotations

import logging
import math
import sys
import warnings
from typing import Callable, Iterable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, RichProgressBar
from torch import nn
from torch.nn import functional as F

from edgebench.config import Optimizer, ProgressBar, Scheduler, TrainerConfig
from edgebench.losses import CrossEntropy, Loss
from edgebench.mask import Mask

log = logging.getLogger(__name__)



class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stops instead of training on garbage."""


class DivergedError(RuntimeError):
    """Training finished with finite losses but the model is no better than chance (see :func:`check_learned`)."""


def chance_margin(num_classes: int) -> float:
    """The lowest validation accuracy that counts as clearly above chance for ``num_classes`` classes.

    Rule: chance (1/K) plus half of chance, at most plus 0.1, i.e. ``1/K + min(0.5/K, 0.1)``:
    0.15 for 10 classes, 0.015 for 100, 0.6 for 2.
    """
    return 1.0 / num_classes + min(0.5 / num_classes, 0.1)


def check_learned(history: list[dict], num_classes: int | None, cfg: TrainerConfig) -> None:
    """Raise :class:`DivergedError` when the final validation accuracy is not clearly above chance.

    The final epoch is judged because the final weights are what is kept. A history without
    ``val/acc`` (no validation split) or an unknown class count is not judged.
    """
    accs = [row["val/acc"] for row in history if "val/acc" in row]
    if not accs or not num_classes or num_classes < 2:
        return
    acc, need = accs[-1], chance_margin(num_classes)
    if acc >= need - 1e-9:  # the boundary itself counts as learned (no float rounding surprises)
        return
    loss = history[-1].get("train/loss", float("nan"))
    raise DivergedError(
        f"the dense baseline did not learn: final val/acc {acc:.4f} after {len(history)} epoch(s) is not clearly "
        f"above chance ({1 / num_classes:.4f} for {num_classes} classes; needs >= {need:.4f}), final train/loss "
        f"{loss:.4g}. Training most likely diverged at trainer.lr={cfg.lr:g} "
        f"(trainer.optimizer={getattr(cfg.optimizer, 'value', cfg.optimizer)}): lower it, e.g. "
        f"trainer.lr={cfg.lr / 10:g}, or train longer. The baseline was not cached."
    )


class Classifier(pl.LightningModule):
    """Cross-entropy classification of ``net`` with accuracy on validation (test figures: :func:`evaluate`).

    Optimisation is manual: a plain ``loss.backward()`` and ``optimizer.step()`` in fp32. Lightning's
    automatic closure and backward hooks cost about 0.5 ms a step on a 2-core CPU, ~20% of an
    epoch of LeNet-300-100 (experiments/harness_overhead.py). Methods that must act around a
    step use ``on_train_batch_start``/``on_train_batch_end`` callbacks.
    """

    def __init__(self, net: nn.Module, cfg: TrainerConfig, loss: Loss | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.net = net
        self.cfg = cfg
        self.loss = loss if loss is not None else CrossEntropy()  # a submodule: moves to the trainer's device
        self._sums: dict[str, torch.Tensor] = {}
        self.history: list[dict[str, float]] = []  # one row per epoch: train/loss, val/loss, val/acc
        self.epoch_metrics: dict[str, float] = {}  # the latest value of every stage's figures
        self.steps_done = 0  # optimizer steps (Lightning's global_step does not count manual steps)
        self.val_points: list[dict[str, float]] = []  # every validation: {"step", "val/loss", "val/acc"}
        self.epoch_sink: Callable[[int, dict[str, float]], None] | None = None
        self.plain_log = False

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        if device.type == "cpu":  # in-memory CPU tensors: skip Lightning's per-batch collection walk
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = self.loss(self.net, x, logits, y)
        value = loss.item()  # one host sync per step (free on CPU): the NaN check and the epoch mean
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"training loss is {value} at epoch {self.current_epoch}, batch {batch_idx}; "
                f"lower trainer.lr (now {self.cfg.lr}) or check the data for NaN values."
            )
        opt = self.optimizers(use_pl_optimizer=False)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # fp32 only (no precision plugin to route through)
        opt.step()
        self.steps_done += 1
        self._accumulate("train", value * len(y), len(y))

    def _accumulate(self, stage: str, loss_sum: torch.Tensor, n: int, correct: torch.Tensor | None = None):
        s = self._sums
        s[f"{stage}_loss"] = s.get(f"{stage}_loss", 0) + loss_sum
        s[f"{stage}_n"] = s.get(f"{stage}_n", 0) + n
        if correct is not None:
            s[f"{stage}_correct"] = s.get(f"{stage}_correct", 0) + correct

    def _eval_step(self, stage: str, batch):
        x, y = batch
        logits = self.net(x)
        self._accumulate(stage, F.cross_entropy(logits, y, reduction="sum"), len(y), (logits.argmax(1) == y).sum())

    def validation_step(self, batch, batch_idx):
        self._eval_step("val", batch)

    def _flush(self, stage: str) -> dict[str, float]:
        s = self._sums
        n = s.pop(f"{stage}_n", 0)
        out: dict[str, float] = {}
        if not n:
            return out
        out[f"{stage}/loss"] = float(s.pop(f"{stage}_loss")) / n
        if f"{stage}_correct" in s:
            out[f"{stage}/acc"] = float(s.pop(f"{stage}_correct")) / n
        self.epoch_metrics.update(out)
        if not self.trainer.barebones:  # only the rich progress bar reads Lightning's logged values
            for k, v in out.items():
                self.log(k, v, prog_bar=True)
        return out

    def on_train_epoch_end(self) -> None:
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()
        # Lightning runs validation before this hook, so val/* of this epoch are already there.
        row = {**self._flush("train"), **{k: v for k, v in self.epoch_metrics.items() if k.startswith("val/")}}
        self.history.append({"epoch": self.current_epoch, **row})
        if self.plain_log:
            log.info("epoch %d/%d  %s", self.current_epoch + 1, self.trainer.max_epochs,
                     "  ".join(f"{k}={v:.4f}" for k, v in row.items()))
        if self.epoch_sink is not None:
            self.epoch_sink(self.current_epoch, row)

    def on_validation_epoch_end(self) -> None:
        out = self._flush("val")
        if out and not self.trainer.sanity_checking:
            self.val_points.append({"step": self.steps_done, **out})

    def configure_optimizers(self):
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
            return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.max_epochs)]
        if c.scheduler == Scheduler.step:  # /10 at 50% and 75% of training
            milestones = [int(c.max_epochs * 0.5), int(c.max_epochs * 0.75)]
            return [opt], [torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)]
        return opt


def _progress(cfg: TrainerConfig) -> tuple[bool, list[Callback], bool]:
    """(enable Lightning's bar, bar callbacks, log one plain line per epoch)."""
    mode = cfg.progress_bar
    if mode == ProgressBar.auto:
        mode = ProgressBar.rich if sys.stdout.isatty() else ProgressBar.plain
    if mode == ProgressBar.rich:
        return True, [RichProgressBar(leave=True)], False
    return False, [], mode == ProgressBar.plain


def build_trainer(cfg: TrainerConfig, callbacks: Iterable[Callback] = (), default_root_dir: str | None = None,
                  max_epochs: int | None = None, val_check_interval: float = 1.0) -> tuple[pl.Trainer, bool]:
    """A Trainer for one fit, and whether to log one plain line per epoch."""
    bar, bar_callbacks, plain = _progress(cfg)
    common = dict(max_epochs=max_epochs or cfg.max_epochs, accelerator=cfg.accelerator, devices=1,
                  val_check_interval=val_check_interval,
                  deterministic=cfg.deterministic, limit_train_batches=cfg.limit_train_batches,
                  callbacks=[*bar_callbacks, *callbacks], default_root_dir=default_root_dir)
    if bar:
        trainer = pl.Trainer(
            logger=False,  # MLflow logging is edgebench.tracking's job
            enable_checkpointing=False,  # the baseline cache and methods save what they need
            enable_model_summary=False,
            enable_progress_bar=True,
            num_sanity_val_steps=0,
            **common,
        )
    else:
        # No bar to feed: Lightning's barebones mode drops its logging, progress and checkpoint
        # machinery from every step (edgebench logs to MLflow itself).
        trainer = pl.Trainer(barebones=True, **common)
    return trainer, plain


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

    def on_train_start(self, trainer, pl_module):
        self._params = self.mask.bind(pl_module.net)

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, *args):
        for p, mask in self._params or ():
            p.mul_(mask)


def quiet_lightning() -> None:
    """Silence Lightning's notices that do not apply to in-memory tensor data."""
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*isinstance.*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device`.*")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")  # a Frozen teacher
    for name in ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda",
                 "lightning_fabric.utilities.seed", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def fit(net: nn.Module, datamodule: pl.LightningDataModule, cfg: TrainerConfig, *,
        callbacks: Iterable[Callback] = (), loss: Loss | None = None,
        epoch_sink: Callable[[int, dict[str, float]], None] | None = None,
        default_root_dir: str | None = None, max_epochs: int | None = None,
        val_check_interval: float = 1.0, val_points: list | None = None) -> list[dict[str, float]]:
    """Train ``net`` in place; returns the per-epoch history.

    ``loss`` is the training objective (default: cross-entropy); it is attached to ``net`` for the
    training (its feature taps hook in) and detached afterwards. Validation always reports the
    cross-entropy and accuracy of ``net`` itself, whatever the objective.
    ``val_check_interval`` < 1 validates several times per epoch; every validation is appended
    to ``val_points`` (when given) as ``{"step": optimizer steps so far, "val/loss", "val/acc"}``.
    """
    quiet_lightning()
    net.train()  # a model coming from evaluation (or a cache) is in eval mode
    module = Classifier(net, cfg, loss)
    trainer, module.plain_log = build_trainer(cfg, callbacks, default_root_dir, max_epochs, val_check_interval)
    module.epoch_sink = epoch_sink
    module.loss.attach(net)
    try:
        trainer.fit(module, datamodule=datamodule)
    except SystemExit:  # Lightning turns Ctrl-C (and SIGTERM, see edgebench.signals) into sys.exit(1)
        from edgebench import signals

        signals.reraise_lightning_interrupt(trainer)
        raise
    finally:
        module.loss.detach()
    if val_points is not None:
        val_points.extend(module.val_points)
    return module.history


@torch.no_grad()
def evaluate(net: nn.Module | Callable[[torch.Tensor], torch.Tensor], loader: Iterable,
             device: str = "cpu") -> dict[str, float]:
    """Test-split metrics of ``net`` (a module, or any callable from inputs to logits, e.g. an ONNX session)."""
    if isinstance(net, nn.Module):
        net.eval().to(device)
    n, loss, correct, top5 = 0, 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = net(x)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        if logits.shape[1] > 5:
            top5 += int(logits.topk(5, dim=1).indices.eq(y[:, None]).any(1).sum())
        n += len(y)
    out = {"test/acc": correct / n, "test/loss": loss / n}
    if top5:
        out["test/acc_top5"] = top5 / n
    return out
