"""Lottery tickets (Frankle & Carbin 2019): iterative magnitude pruning with rewinding, and its controls.

Level 0 trains the dense network from its initialisation and keeps the weights at iteration
``rewind_step`` (0 = the initialisation itself; k > 0 = late rewinding, Frankle et al. 2020).
Level L prunes ``rate`` of the weights still alive in each layer (``conv_rate`` for convolutions,
``output_rate`` for the output layer; by magnitude of level L-1's trained weights), rewinds the
survivors to the saved weights and trains again with the mask held fixed. So after L levels a
layer keeps (1 - rate)^L of its weights. Controls at every level L >= 1:

* ``reinit``: the level's mask with a fresh random initialisation;
* ``random_prune``: a random mask with the same per-layer sparsity, from the rewind weights.

Levels are resumable: every level's mask and trained weights live under
``<store_dir>/lottery/<hash>/level_<L>/<branch>/``, where the hash covers the dense key (model,
data, trainer, seed) and the method settings that change results (not ``levels`` or
``controls``, so adding levels or controls reuses what is done). A finished level is loaded,
never retrained. Files are written atomically and read like a dense baseline's store entry reads its
entries (:meth:`edgebench.store.Store.part`, under a file lock): a stored mask or branch folder that cannot
be loaded is logged with its path, moved aside as ``<name>.corrupt-<time>`` and that level is
trained again (a redone mask retrains its level's branches too).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from edgebench.store import Store, read
from edgebench.config import ConfigError, check
from edgebench.methods.base import ChildResult, CompressionResult, Method, MethodContext, Plot
from edgebench.measure.size import weight_layers
from edgebench.mask import Mask, bake, refresh
from edgebench.methods.pruning import UnstructuredPruningConfig, naming_dead_channels, prune_to
from edgebench.progress import eta

log = logging.getLogger(__name__)
CONTROLS = ("reinit", "random_prune")


def _check(ok: bool, key: str, msg: str) -> None:
    check(ok, f"method.{key}", msg)


@dataclass
class LotteryTicketConfig:
    name: str = "lottery_ticket"
    levels: int = 12  # pruning levels after the dense level 0; 0.8^12 = 6.9% of the fc weights left
    rate: float = 0.2  # fraction of the remaining weights pruned per level
    conv_rate: Optional[float] = None  # for convolutions (null = rate)
    output_rate: Optional[float] = 0.1  # for the output layer (null = rate); the paper uses half the rate
    scope: str = "layer"  # layer: each layer at its rate | global: one threshold (output layer apart)
    rewind_step: int = 0  # 0: rewind to the initialisation; k: to the weights after k iterations
    epochs: int = 5  # training epochs at every level (and for every control)
    controls: list[str] = field(default_factory=lambda: ["reinit", "random_prune"])
    val_checks_per_epoch: int = 4  # validations per epoch: resolution of the early-stopping iteration

    def __post_init__(self) -> None:
        _check(self.levels >= 1, "levels", f"must be >= 1, got {self.levels}")
        _check(0.0 < self.rate < 1.0, "rate", f"must be in (0, 1), got {self.rate}")
        for k in ("conv_rate", "output_rate"):
            v = getattr(self, k)
            _check(v is None or 0.0 <= v < 1.0, k, f"must be in [0, 1) or null, got {v}")
        _check(self.scope in ("layer", "global"), "scope", f"must be layer or global, got {self.scope!r}")
        _check(not (self.scope == "global" and self.conv_rate is not None), "conv_rate",
               "applies to scope=layer only (a global threshold has one rate)")
        _check(self.rewind_step >= 0, "rewind_step", f"must be >= 0, got {self.rewind_step}")
        _check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        bad = sorted(set(self.controls) - set(CONTROLS))
        _check(not bad, "controls", f"unknown control(s) {bad}; available: {list(CONTROLS)}")
        _check(self.val_checks_per_epoch >= 1, "val_checks_per_epoch", f"must be >= 1, got {self.val_checks_per_epoch}")


def layer_rates(model: nn.Module, cfg: LotteryTicketConfig) -> dict[str, float]:
    layers = weight_layers(model)
    rates = {n: (cfg.conv_rate if cfg.conv_rate is not None and isinstance(m, nn.modules.conv._ConvNd) else cfg.rate)
             for n, m in layers}
    if cfg.output_rate is not None and layers:
        rates[layers[-1][0]] = cfg.output_rate
    return rates


def next_mask(trained: nn.Module, mask: Mask, cfg: LotteryTicketConfig, level: int) -> Mask:
    """Level ``level``'s mask: prune the smallest trained weights until layer l keeps (1 - rate_l)^level."""
    model = mask.hold(copy.deepcopy(trained))
    rates = layer_rates(model, cfg)
    output = weight_layers(model)[-1][0]
    ucfg = UnstructuredPruningConfig(scope=cfg.scope, sparsity=1 - (1 - cfg.rate) ** level,
                                     layer_sparsity={output: 1 - (1 - rates[output]) ** level}
                                     if cfg.scope == "global" else {})
    prune_to(model, {n: 1 - (1 - r) ** level for n, r in rates.items()}, ucfg, 1.0)
    return Mask.held(model)


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """Fresh random weights from each layer's own initialiser, drawn with ``seed``."""
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()
    return model


def save_ticket(path: Path, mask: Mask, rewind: dict, level: int, model_name: str = "") -> None:
    torch.save({"format": 2, "mask": dict(mask), "rewind": rewind, "level": level, "remaining": mask.kept(),
                "model": model_name}, path)


def load_ticket(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a winning ticket into ``model`` (same architecture): rewind weights with the mask's zeros baked in.

    Format 1 tickets (before masks were keyed by tensor name) name layers; format 2 names tensors."""
    t = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(t["rewind"])
    masks = t["mask"] if t.get("format", 1) >= 2 else {f"{n}.weight": m for n, m in t["mask"].items()}
    return Mask(masks).apply(model)


@dataclass
class Branch:
    """One trained branch of one level: its figures, final weights and (level 0 only) rewind weights."""

    figures: dict
    final: dict
    rewind: dict | None = None


def _read_branch(d: Path, need_rewind: bool, fresh: Callable[[dict], nn.Module]) -> Branch:
    """A stored branch folder; any file that is missing, unreadable or does not fit the model raises, naming it."""
    fig = read(d / "metrics.json", lambda p: json.loads(p.read_text()))
    final = read(d / "final.pt")
    read(d / "final.pt", lambda p: fresh(final))  # the weights fit the model
    rewind = None
    if need_rewind:
        rewind = read(d / "rewind.pt")
        read(d / "rewind.pt", lambda p: fresh(rewind))
    return Branch(fig, final, rewind)


class LotteryTicket(Method):
    accepts = ("dense",)  # it retrains from the dense model's initialisation: a chain's first step

    def __init__(self, cfg: LotteryTicketConfig):
        self.cfg = cfg
        self.name = cfg.name

    def check(self, model: nn.Module, example_input: torch.Tensor) -> None:
        if not weight_layers(model):
            raise ConfigError("lottery_ticket: the model has no conv or linear layers to prune")

    def scope(self, ctx: MethodContext) -> Store:
        """This run's levels in the store: ``<store_dir>/lottery/<digest>/``, the digest of the dense
        key and the settings that change results (not ``levels`` or ``controls``)."""
        settings = {k: v for k, v in asdict(self.cfg).items() if k not in ("levels", "controls")}
        settings["mask_layout"] = 2  # masks keyed by tensor name (edgebench.mask.Mask); older levels are not reused
        return Store(ctx.store_dir or ctx.output_dir).scope("lottery", {"dense": ctx.baseline_key, "method": settings})

    def store(self, ctx: MethodContext) -> Path:
        """The folder of :meth:`scope`."""
        return self.scope(ctx).root

    def _train(self, ctx: MethodContext, model: nn.Module, mask, rewind_at: int = 0):
        """Train with ``mask`` held fixed; returns (trained model with zeros baked in, figures, rewind state)."""
        from edgebench.training import Callback

        mask.hold(model)
        points: list[dict] = []
        saved: dict = {}

        class Rewind(Callback):  # keep the weights after `rewind_at` optimizer steps
            def __init__(self):
                self.steps = 0

            def on_train_batch_start(self, trainer, module, *args):
                if self.steps == rewind_at and not saved:
                    saved.update({k: v.detach().clone() for k, v in bake(copy.deepcopy(refresh(module.net))).state_dict().items()})
                self.steps += 1

        early: dict = {}

        class EarlyStop(Callback):  # keep the weights at the minimum validation loss (the early-stopping iteration)
            def __init__(self):
                self.seen = 0

            def _check(self, module):  # right after a validation: before the next step, or at the epoch's end
                while self.seen < len(module.val_points):
                    p = module.val_points[self.seen]
                    self.seen += 1
                    if not early or p["val/loss"] < early["val/loss"]:
                        early.update({"val/loss": p["val/loss"], "step": p["step"],
                                      "state": {k: v.detach().clone() for k, v in
                                                bake(copy.deepcopy(refresh(module.net))).state_dict().items()}})

            def on_train_batch_start(self, trainer, module, *args):
                self._check(module)

            def on_train_epoch_end(self, trainer, module):
                self._check(module)

        callbacks = [EarlyStop(), *([Rewind()] if rewind_at > 0 else [])]
        with naming_dead_channels(model, "At this lottery level", "Lower method.rate (method.conv_rate for convs)."):
            ctx.fit(model, self.cfg.epochs, callbacks=callbacks,
                    val_check_interval=1.0 / self.cfg.val_checks_per_epoch, val_points=points)
        bake(refresh(model))
        best = min(points, key=lambda p: p["val/loss"]) if points else {}
        figures = {"test_acc": ctx.evaluate(model)["test/acc"], "best_val_step": best.get("step", 0),
                   "best_val_loss": best.get("val/loss", float("nan")),
                   "final_val_acc": points[-1]["val/acc"] if points else float("nan"),
                   "steps": points[-1]["step"] if points else 0}  # the iterations trained (the last validation's)
        if early:  # the test accuracy of the weights at the early-stopping iteration (chosen on validation loss)
            at = copy.deepcopy(model)
            at.load_state_dict(early["state"])
            figures["early_stop_test_acc"] = ctx.evaluate(at)["test/acc"]
        return model, figures, saved

    def _branch(self, ctx, store: Store, level: int, branch: str, make, fresh, rewind_at: int = 0,
                redo: bool = False) -> Branch:
        """Train one branch of one level unless it is stored (and readable) already; ``redo`` retrains it anyway.

        ``make()`` returns (model, mask) to train; ``rewind_at`` > 0 also keeps the weights after that many
        steps; ``fresh(state)`` loads a state dict into a copy of the model (checks what is read back).
        """
        def train() -> Branch:
            model, mask = make()
            model, fig, rewind_state = self._train(ctx, model, mask, rewind_at)
            fig["remaining"] = mask.kept()
            final = model.state_dict()
            log.info("level %d %s: %.1f%% remaining, test acc %.4f, min val loss at step %d", level, branch,
                     100 * fig["remaining"], fig["test_acc"], fig["best_val_step"])
            return Branch(fig, {k: v.detach().clone() for k, v in final.items()}, rewind_state or None)

        def save(b: Branch, folder: Path) -> None:
            torch.save(b.final, folder / "final.pt")
            if b.rewind:
                torch.save(b.rewind, folder / "rewind.pt")
            (folder / "metrics.json").write_text(json.dumps(b.figures, indent=2))

        done, hit, d = store.part(f"level_{level}/{branch}", train, save,
                                  lambda p: _read_branch(p, rewind_at > 0, fresh),
                                  what=f"lottery level {level} {branch}", redo=redo)
        if hit:
            log.info("level %d %s: done already (%s)", level, branch, d)
        return done

    def compress(self, ctx: MethodContext) -> CompressionResult:
        cfg = self.cfg
        if ctx.build_model is None or ctx.fit is None:
            raise RuntimeError("lottery_ticket needs ctx.build_model and ctx.fit (the run provides them)")
        store = self.scope(ctx)
        root = store.root
        init = ctx.build_model()
        init_state = {k: v.clone() for k, v in init.state_dict().items()}
        ones = Mask.ones(init)

        def fresh(state):
            m = copy.deepcopy(init)
            m.load_state_dict(state)
            return m

        # level 0: the dense network, which also records the rewind point
        dense = self._branch(ctx, store, 0, "ticket", lambda: (fresh(init_state), ones), fresh, rewind_at=cfg.rewind_step)
        dense_fig = dense.figures
        rewind = dense.rewind if cfg.rewind_step > 0 else init_state
        if rewind is None:
            raise ConfigError(f"method.rewind_step={cfg.rewind_step} is past the end of level 0's training "
                              f"({cfg.epochs} epoch(s)); lower it or raise method.epochs")
        rows = [{"round": 0, "lth/remaining": 1.0, "lth/test_acc": dense_fig["test_acc"],
                 **_early(dense_fig, "lth/early_stop_test_acc"), "lth/best_val_step": dense_fig["best_val_step"],
                 **_steps(dense_fig)}]
        figs = {0: dense_fig}
        finals = {0: dense.final}
        masks = {}
        mask = ones
        started = time.perf_counter()
        for level in range(1, cfg.levels + 1):
            had_mask = (root / f"level_{level}" / "mask.pt").exists()
            mask, stored, _ = store.part(f"level_{level}/mask.pt",
                                         lambda: next_mask(fresh(finals[level - 1]), mask, cfg, level),
                                         lambda m, f: m.save(f), lambda p: Mask.load(p, init),
                                         what=f"lottery level {level} mask", file=True)
            # a mask redone after it could not be read: this level's stored branches may have used another one
            redo = had_mask and not stored
            lvl_mask = masks[level] = mask
            ticket = self._branch(ctx, store, level, "ticket", lambda: (fresh(rewind), lvl_mask), fresh, redo=redo)
            fig = figs[level] = ticket.figures
            finals[level] = ticket.final
            row = {"round": level, "lth/remaining": fig["remaining"], "lth/test_acc": fig["test_acc"],
                   **_early(fig, "lth/early_stop_test_acc"), "lth/best_val_step": fig["best_val_step"], **_steps(fig)}
            if "reinit" in cfg.controls:
                seed = ctx.seed + 1000 + level
                f = self._branch(ctx, store, level, "reinit",
                                 lambda: (reinitialise(copy.deepcopy(init), seed), lvl_mask), fresh, redo=redo).figures
                row["lth/reinit_test_acc"] = f["test_acc"]
                row.update(_early(f, "lth/reinit_early_stop_test_acc"))
                row["lth/reinit_best_val_step"] = f["best_val_step"]
            if "random_prune" in cfg.controls:
                rmask = lvl_mask.random_like(ctx.seed + 2000 + level)
                f = self._branch(ctx, store, level, "random_prune", lambda: (fresh(rewind), rmask), fresh,
                                 redo=redo).figures
                row["lth/random_prune_test_acc"] = f["test_acc"]
                row.update(_early(f, "lth/random_prune_early_stop_test_acc"))
                row["lth/random_prune_best_val_step"] = f["best_val_step"]
            rows.append(row)
            left = eta(started, level, cfg.levels)
            log.info("lottery level %d/%d done%s", level, cfg.levels, f", {left} for the levels left" if left else "")

        # The winning ticket: the sparsest level whose validation accuracy is at least the dense network's
        # (validation, not test, so the test split stays out of the choice).
        ok = [L for L in range(1, cfg.levels + 1) if figs[L]["final_val_acc"] >= dense_fig["final_val_acc"]]
        win = max(ok) if ok else max(range(1, cfg.levels + 1), key=lambda L: figs[L]["final_val_acc"])
        win_mask = masks[win]
        out = Path(ctx.output_dir) / "lottery"
        out.mkdir(parents=True, exist_ok=True)
        ticket_file = out / "winning_ticket.pt"
        save_ticket(ticket_file, win_mask, rewind, win, type(init).__name__)

        children = []
        for level in range(0, cfg.levels + 1):
            m = fresh(finals[level])
            children.append(ChildResult(f"level {level}", m, {"lth/level": level, **{k: v for k, v in rows[level].items() if k != "round"}},
                                        {"lth.level": str(level)}))
        final = children[win].model
        plot = Plot("lottery_levels", {"rows": rows,
                                       "title": f"{type(init).__name__}: lottery tickets (rewind to step {cfg.rewind_step})"})
        knobs = {"levels": cfg.levels, "rate": cfg.rate, "output_rate": cfg.output_rate if cfg.output_rate is not None else cfg.rate,
                 "rewind_step": cfg.rewind_step, "epochs": cfg.epochs, "winning_level": win,
                 "winning_remaining": figs[win]["remaining"]}
        if cfg.conv_rate is not None:
            knobs["conv_rate"] = cfg.conv_rate
        # Two references, both named: the level-0 network (the same dense net, trained the same method.epochs as
        # every ticket) and the fully trained dense baseline (trainer.*; the run's baseline/test_acc, and
        # delta/acc = ticket - baseline as for every method).
        level0 = dense_fig["test_acc"]
        named = {"lth/winning_test_acc": figs[win]["test_acc"], **_early(figs[win], "lth/winning_early_stop_test_acc"),
                 "lth/level0_test_acc": level0, **_early(dense_fig, "lth/level0_early_stop_test_acc"),
                 "lth/delta_vs_level0": figs[win]["test_acc"] - level0}
        at_es = named.get("lth/winning_early_stop_test_acc")
        msg = (f"winning ticket: level {win}, {100 * figs[win]['remaining']:.1f}% of weights remaining, test acc "
               f"{figs[win]['test_acc']:.4f} at the end" + (f" ({at_es:.4f} at the early-stopping iteration)" if at_es else "")
               + f"; vs its level-0 network ({cfg.epochs} epochs, the same budget) "
               f"{100 * named['lth/delta_vs_level0']:+.2f} pt")
        if ctx.dense is not None:
            dense_acc = ctx.evaluate(ctx.dense)["test/acc"]
            msg += f"; vs the fully trained dense baseline {100 * (figs[win]['test_acc'] - dense_acc):+.2f} pt (delta/acc)"
        log.info(msg)
        from edgebench.methods.pruning import layer_table

        return CompressionResult(final, knobs, rows, layers=layer_table(final), children=children, named_metrics=named,
                                 tags={"lth.references": "lth/delta_vs_level0: vs level 0 (the same net trained "
                                       "method.epochs, like every ticket); delta/acc: vs the dense baseline (trainer.*)"},
                                 files={"lottery/winning_ticket.pt": ticket_file, "lottery/store.txt": _store_note(root, out)},
                                 plots={"lottery/plot.png": plot})


def _early(figures: dict, name: str) -> dict:
    """``{name: test accuracy at the early-stopping iteration}`` when the branch recorded it (levels stored before
    it was recorded have none: nothing is made up)."""
    return {name: figures["early_stop_test_acc"]} if "early_stop_test_acc" in figures else {}


def _steps(figures: dict) -> dict:
    """``{"lth/steps": iterations the branch trained}`` when recorded (the budget an early-stopping iteration is read
    against: one at the end of the budget may have been cut off by it)."""
    return {"lth/steps": figures["steps"]} if "steps" in figures else {}


def _store_note(root: Path, out: Path) -> Path:
    p = out / "store.txt"
    p.write_text(f"levels stored in {root}\n")
    return p


LOTTERY = {"lottery_ticket": (LotteryTicketConfig, LotteryTicket)}
