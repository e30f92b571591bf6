"""Knowledge distillation: a student learns from a frozen teacher (response, feature or relation knowledge).

* ``kind=response`` (Hinton, Vinyals & Dean 2015): ``(1 - alpha) CE(s, y) + alpha T^2 KL(softmax(t/T) || softmax(s/T))``;
  ``alpha=1`` is pure distillation (no label term).
* ``kind=feature`` (FitNets, Romero et al. 2015): the response loss plus ``hint_weight`` x the mean squared
  error between a learned regressor of the student's *guided* layer and the teacher's *hint* layer (a 1x1
  convolution between feature maps, a linear layer when either is a vector; the larger map is average-pooled
  to the smaller's size). ``hint_epochs`` > 0 trains on the hint loss alone first (FitNets' stage 1).
* ``kind=relation``: on the penultimate embeddings (the input of the last linear layer), RKD (Park et al.
  2019: distance loss x 25 + angle loss x 50, smooth L1) or ``relation=sp`` similarity-preserving (Tung &
  Mori 2019: batch Gram matrices, x 3000), added to the cross-entropy.

The teacher is the run's own dense model (``teacher.model=baseline``: the dense model teaches its pruned
self) or any zoo model trained on this run's data (``teacher.model=resnet20``, with its own
``teacher.trainer`` settings), which comes from the store, trained once in its own child run.
The student is, by ``init``: ``scratch`` (a fresh initialisation of the run's model), ``input`` (the step's
input as it is: after pruning, the pruned model), ``from_teacher`` (DistilBERT-style: a half-depth
student of the teacher's family initialised from the teacher's blocks, :mod:`edgebench.methods.student`)
or ``half_depth_scratch`` (the same half-depth architecture, randomly initialised: the control);
``auto`` is ``scratch`` for the first step of a run and ``input`` after another step.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from edgebench.config import ConfigError, check
from edgebench.losses import FeatureTap, Frozen, Loss
from edgebench.measure.size import weight_layers
from edgebench.methods.base import CompressionResult, Method, MethodContext

log = logging.getLogger(__name__)


class Kind(str, Enum):
    response = "response"
    feature = "feature"
    relation = "relation"


class Init(str, Enum):
    auto = "auto"
    scratch = "scratch"
    input = "input"
    from_teacher = "from_teacher"
    half_depth_scratch = "half_depth_scratch"


class Relation(str, Enum):
    rkd = "rkd"
    sp = "sp"


@dataclass
class TeacherConfig:
    model: str = "baseline"  # baseline (the run's dense model) | a zoo model name, trained on this run's data
    # trainer settings of a zoo teacher (null = the run's trainer.*): max_epochs, lr, ... (+method.teacher.trainer.KEY=V)
    trainer: dict[str, Any] = field(default_factory=dict)
    seed: Optional[int] = None  # a zoo teacher's seed (default: the run's)


@dataclass
class DistillationConfig:
    name: str = "distillation"
    kind: Kind = Kind.response
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    init: Init = Init.auto
    epochs: int = 5  # student training epochs (with trainer.optimizer, lr and schedule)
    lr: Optional[float] = None  # default: trainer.lr
    temperature: float = 4.0  # T; small students prefer 2.5-4 (Hinton et al.)
    alpha: float = 0.9  # weight of the KD term; 1 - alpha on cross-entropy. 1 = pure distillation
    hint_layer: Optional[str] = None  # teacher module (feature); default: the middle convolution
    guided_layer: Optional[str] = None  # student module (feature); default: the middle convolution
    hint_weight: float = 1.0
    hint_epochs: int = 0  # > 0: FitNets' two stages, hints alone first for this many epochs, then KD
    relation: Relation = Relation.rkd
    rkd_distance_weight: float = 25.0
    rkd_angle_weight: float = 50.0
    sp_weight: float = 3000.0

    def __post_init__(self) -> None:
        check(self.temperature > 0, "method.temperature", f"must be > 0, got {self.temperature}")
        check(0.0 <= self.alpha <= 1.0, "method.alpha", f"must be in [0, 1], got {self.alpha}")
        check(self.epochs >= 1, "method.epochs", f"must be >= 1, got {self.epochs}")
        check(self.hint_epochs >= 0, "method.hint_epochs", f"must be >= 0, got {self.hint_epochs}")
        check(self.hint_weight >= 0, "method.hint_weight", f"must be >= 0, got {self.hint_weight}")
        check(self.lr is None or self.lr > 0, "method.lr", f"must be > 0, got {self.lr}")
        if self.kind != Kind.feature:
            for key in ("hint_layer", "guided_layer"):
                check(getattr(self, key) is None, f"method.{key}", "applies to method.kind=feature only")
            check(self.hint_epochs == 0, "method.hint_epochs", "applies to method.kind=feature only")


# ----------------------------------------------------------------------------------- losses


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target term: ``T^2 KL(softmax(t/T) || softmax(s/T))``, averaged over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="batchmean") * t * t


def rkd_distance(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """RKD distance loss: smooth L1 between the batch's pairwise distances, each normalised by its mean."""
    def dist(e):
        d = torch.cdist(e, e)
        return d / d[d > 0].mean().clamp_min(1e-12)

    return F.smooth_l1_loss(dist(s), dist(t))


def rkd_angle(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """RKD angle loss: smooth L1 between the cosines of the angles every triplet of the batch forms."""
    def angles(e):
        diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
        return torch.bmm(diff, diff.transpose(1, 2)).flatten()

    return F.smooth_l1_loss(angles(s), angles(t))


def sp_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving loss: squared Frobenius distance of the row-normalised batch Gram matrices / b^2."""
    gs = F.normalize(s.flatten(1) @ s.flatten(1).T, p=2, dim=1)
    gt = F.normalize(t.flatten(1) @ t.flatten(1).T, p=2, dim=1)
    return (gs - gt).pow(2).sum() / s.shape[0] ** 2


def _pool_to(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make two features comparable: vectors if either is a vector, else the larger map pooled to the smaller."""
    if a.dim() != 4 or b.dim() != 4:
        return (a.flatten(2).mean(2) if a.dim() > 2 else a), (b.flatten(2).mean(2) if b.dim() > 2 else b)
    size = (min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3]))
    return F.adaptive_avg_pool2d(a, size), F.adaptive_avg_pool2d(b, size)


MEMO_BYTES = 256 * 2**20  # the teacher's outputs kept per image (see Distill._teacher_logits), at most this much


class Distill(Loss):
    """The distillation objective for one step; ``terms`` holds this epoch's mean of every term."""

    def __init__(self, cfg: DistillationConfig, teacher: nn.Module, guided: str | None = None, hint: str | None = None,
                 penultimate: tuple[str, str] | None = None, regressor: nn.Module | None = None,
                 hints_only: bool = False):
        super().__init__()
        self.cfg, self.hints_only = cfg, hints_only
        self.teacher = Frozen(teacher)
        self.regressor = regressor
        self._student_taps, self._teacher_taps = [], []
        if guided is not None:
            self._student_taps.append(FeatureTap([guided]))
            self._teacher_taps.append(FeatureTap([hint]))
        if penultimate is not None:
            self._student_taps.append(FeatureTap([penultimate[0]], inputs=True))
            self._teacher_taps.append(FeatureTap([penultimate[1]], inputs=True))
        for tap in self._teacher_taps:
            tap.attach(self.teacher.model)
        self._sums: dict[str, float] = {}
        self._n = 0
        # the teacher's logits and tapped features, kept per image while they fit MEMO_BYTES (see _teacher_logits)
        self._memo: dict[bytes, tuple[torch.Tensor, ...]] | None = {}

    def attach(self, net: nn.Module) -> None:
        for tap in self._student_taps:
            tap.attach(net)

    def detach(self) -> None:
        for tap in self._student_taps:
            tap.detach()

    def epoch_terms(self) -> dict[str, float]:
        """The mean of every term since the last call (one epoch), and a reset."""
        out = {f"distill/{k}": v / max(self._n, 1) for k, v in self._sums.items()}
        self._sums, self._n = {}, 0
        return out

    def _teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's logits for ``x`` (and its taps' features for this batch). The teacher is in eval
        mode, so each image's logits and features depend on that image alone: on the CPU they are kept per image
        (keyed by its bytes) and every later epoch reads them instead of running the teacher again. With a
        ResNet-8 teacher (12 M MACs an image) and a LeNet student (0.3 M) the teacher's forward passes were most
        of distillation's time. Kept while every image's outputs fit :data:`MEMO_BYTES` (the logits and a relation
        loss's embeddings do; when a FitNets hint map of a large layer does not, the memo is dropped and the teacher
        runs on every batch); a batch with any image not kept runs the teacher."""
        if self._memo is None or x.device.type != "cpu":
            return self.teacher(x)
        rows = x.detach().contiguous().numpy().reshape(len(x), -1)
        keys = [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows]
        kept = [self._memo.get(k) for k in keys]
        if all(t is not None for t in kept):
            for i, tap in enumerate(self._teacher_taps, start=1):
                tap.outputs[tap.names[0]] = torch.stack([t[i] for t in kept])
            return torch.stack([t[0] for t in kept])
        out = self.teacher(x)
        values = [out.detach(), *(_value(tap).detach() for tap in self._teacher_taps)]
        per_image = 16 + sum(v[0].numel() * v.element_size() for v in values)
        if (len(self._memo) + len(keys)) * per_image > MEMO_BYTES:  # the data set's outputs will not fit: keep none
            self._memo = None
        else:
            for j, k in enumerate(keys):
                self._memo[k] = tuple(v[j].clone() for v in values)
        return out

    def forward(self, net, x, logits, y):  # noqa: ARG002
        cfg = self.cfg
        t_logits = self._teacher_logits(x)
        terms: dict[str, torch.Tensor] = {}
        if self.hints_only:
            terms["hint"] = self._hint()
            total = terms["hint"]
        elif cfg.kind == Kind.relation:
            terms["ce"] = F.cross_entropy(logits, y)
            s_emb, t_emb = _value(self._student_taps[-1]).flatten(1), _value(self._teacher_taps[-1]).flatten(1)
            if cfg.relation == Relation.rkd:
                terms["rkd_distance"] = rkd_distance(s_emb, t_emb)
                terms["rkd_angle"] = rkd_angle(s_emb, t_emb)
                total = terms["ce"] + cfg.rkd_distance_weight * terms["rkd_distance"] + cfg.rkd_angle_weight * terms["rkd_angle"]
            else:
                terms["sp"] = sp_loss(s_emb, t_emb)
                total = terms["ce"] + cfg.sp_weight * terms["sp"]
        else:
            terms["kd"] = kd_loss(logits, t_logits, cfg.temperature)
            total = cfg.alpha * terms["kd"]
            if cfg.alpha < 1:
                terms["ce"] = F.cross_entropy(logits, y)
                total = total + (1 - cfg.alpha) * terms["ce"]
            if cfg.kind == Kind.feature and cfg.hint_weight > 0:
                terms["hint"] = self._hint()
                total = total + cfg.hint_weight * terms["hint"]
        for k, v in terms.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v.detach())
        self._n += 1
        return total

    def _hint(self) -> torch.Tensor:
        s, t = _pool_to(_value(self._student_taps[0]), _value(self._teacher_taps[0]))
        return F.mse_loss(self.regressor(s), t.detach())


# ----------------------------------------------------------------------------------- layers


def middle_layer(model: nn.Module) -> str:
    """The default hint / guided layer: the middle convolution (the middle weight layer of a net without any)."""
    layers = weight_layers(model)
    convs = [n for n, m in layers if isinstance(m, nn.modules.conv._ConvNd)]
    names = convs or [n for n, _ in layers[:-1]] or [layers[0][0]]
    return names[len(names) // 2]


def last_linear(model: nn.Module) -> str:
    """The classifier: the input of this layer is the penultimate embedding (relation-based distillation)."""
    return weight_layers(model)[-1][0]


def _value(tap: FeatureTap) -> torch.Tensor:
    return tap[tap.names[0]]


def _features(model: nn.Module, name: str, x: torch.Tensor, inputs: bool = False) -> torch.Tensor:
    tap = FeatureTap([name], inputs)
    tap.attach(model)
    try:
        was = model.training
        with torch.no_grad():
            model.eval()(x)
        model.train(was)
        return _value(tap)
    finally:
        tap.detach()


def regressor_for(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> nn.Module:
    """FitNets' regressor from the guided layer to the hint layer's shape: 1x1 conv between maps, else linear."""
    s, t = _pool_to(student_feat, teacher_feat)
    if s.dim() == 4:
        return nn.Conv2d(s.shape[1], t.shape[1], 1, bias=False)
    return nn.Linear(s.shape[1], t.shape[1], bias=False)


def _module_names(model: nn.Module) -> str:
    return ", ".join(n for n, _ in model.named_modules() if n)


# ----------------------------------------------------------------------------------- the teacher's memory


def free_memory_bytes() -> int | None:
    """Memory available to a new process now (``MemAvailable`` of ``/proc/meminfo``, Linux), else None."""
    try:
        for line in open("/proc/meminfo").read().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


OPTIMIZER_COPIES = {"adam": 2, "adamw": 2, "sgd": 1}  # state per parameter: Adam's two moments, SGD's momentum


def teacher_training_bytes(model: nn.Module, example: torch.Tensor, batch_size: int,
                           optimizer: str = "adam") -> dict[str, int]:
    """An estimate of the memory training ``model`` takes at ``batch_size``: weights, gradients, the optimizer's
    state, and the activations autograd keeps for the backward pass (every layer's output, measured with forward
    hooks on a batch of 2 and scaled to the batch size; the input batch included)."""
    from torch.utils._pytree import tree_flatten

    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    seen = [0]

    def hook(module, inputs, output):
        seen[0] += sum(t.numel() * t.element_size() for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor))

    hooks = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    was = model.training
    x = example[:1].repeat(2, *([1] * (example.dim() - 1)))  # 2: batch norm refuses one sample in training mode
    try:
        with torch.no_grad():
            model.train()(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    activations = (seen[0] + x.numel() * x.element_size()) * batch_size // 2
    out = {"weights": params, "gradients": params, "optimizer": params * OPTIMIZER_COPIES.get(optimizer, 2),
           "activations": activations}
    out["total"] = sum(out.values())
    return out


# ----------------------------------------------------------------------------------- the method


class Distillation(Method):
    accepts = ("dense", "float")

    def __init__(self, cfg: DistillationConfig):
        self.cfg = cfg
        self.name = cfg.name

    def unused(self) -> set[str]:
        cfg, out = self.cfg, set()
        if cfg.teacher.model == "baseline":  # the run's own model teaches: no teacher to train
            out |= {"teacher.trainer", "teacher.seed"}
        if cfg.kind != Kind.relation:
            out |= {"relation", "rkd_distance_weight", "rkd_angle_weight", "sp_weight"}
        elif cfg.relation == Relation.rkd:
            out.add("sp_weight")
        else:
            out |= {"rkd_distance_weight", "rkd_angle_weight"}
        if cfg.kind != Kind.feature:
            out.add("hint_weight")
        return out

    def _teacher_arch(self, example: torch.Tensor, num_classes: int, model: nn.Module) -> nn.Module:
        if self.cfg.teacher.model == "baseline":
            return model
        from edgebench.config import ModelConfig, ModelName
        from edgebench.models import build_model

        if self.cfg.teacher.model not in ModelName.__members__:
            raise ConfigError(f"method.teacher.model={self.cfg.teacher.model}: unknown model; use baseline or one of "
                              f"{', '.join(ModelName.__members__)}")
        return build_model(ModelConfig(name=ModelName(self.cfg.teacher.model)), tuple(example.shape[1:]), num_classes)

    def check(self, model: nn.Module, example_input: torch.Tensor) -> None:
        """Before any training: the teacher's architecture on this data, the student, and the named layers."""
        cfg = self.cfg
        with torch.no_grad():
            out = model.eval()(example_input)
        teacher = self._teacher_arch(example_input, out.shape[1], model)
        with torch.no_grad():
            t_out = teacher.eval()(example_input)
        if t_out.shape != out.shape:
            raise ConfigError(f"method.teacher.model={cfg.teacher.model}: its output {tuple(t_out.shape)} does not "
                              f"match the student's {tuple(out.shape)} on this data (a teacher must be trained on the "
                              "same classes and input shape)")
        student = self._student(teacher, model, None, check_only=True)
        if cfg.kind == Kind.feature:
            for key, net, who in (("hint_layer", teacher, "teacher"), ("guided_layer", student, "student")):
                name = getattr(cfg, key)
                if name is not None and name not in dict(net.named_modules()):
                    raise ConfigError(f"method.{key}={name}: the {who} ({type(net).__name__}) has no such module; "
                                      f"its modules: {_module_names(net)}")

    def _teacher_memory(self, ctx: MethodContext, overrides: dict) -> dict[str, str]:
        """Estimate what training the zoo teacher takes (:func:`teacher_training_bytes`) and warn, before it trains,
        when that is more than the memory free now; the tag ``distill.teacher_memory`` keeps both figures."""
        x = ctx.example_input
        with torch.no_grad():
            classes = ctx.model_in.eval()(x).shape[1]
        arch = self._teacher_arch(x, classes, ctx.model_in)
        batch = int(overrides.get("batch_size") or ctx.datamodule.batch_size)
        optimizer = str(getattr(overrides.get("optimizer"), "value", overrides.get("optimizer") or "adam"))
        est = teacher_training_bytes(arch, x, batch, optimizer)
        free = free_memory_bytes()
        if free is None:
            return {"distill.teacher_memory": f"{est['total']} B estimated, free memory unknown"}
        fits = est["total"] <= free
        if not fits:
            mb = lambda b: f"{b / 1e6:.1f} MB"  # noqa: E731
            log.warning("teacher %s: training it takes about %s (weights %s, gradients %s, %s state %s, activations "
                        "at batch size %d %s), more than the %s of memory free now: it may be killed (out of memory) "
                        "unless it is in the store already; use a smaller teacher, a smaller "
                        "method.teacher.trainer.batch_size, or a machine with more memory",
                        self.cfg.teacher.model, mb(est["total"]), mb(est["weights"]), mb(est["gradients"]), optimizer,
                        mb(est["optimizer"]), batch, mb(est["activations"]), mb(free))
        return {"distill.teacher_memory": f"{est['total']} B estimated, {free} B free: {'fits' if fits else 'may not fit'}"}

    def _student(self, teacher: nn.Module, model_in: nn.Module, ctx: MethodContext | None,
                 check_only: bool = False) -> nn.Module:
        init = self.cfg.init
        if init == Init.auto:
            init = Init.scratch if ctx is None or ctx.step == 0 else Init.input
        if init in (Init.from_teacher, Init.half_depth_scratch):
            from edgebench.methods.student import half_depth

            student, _ = half_depth(teacher)
            if init == Init.half_depth_scratch and not check_only:
                from edgebench.methods.lottery import reinitialise

                reinitialise(student, ctx.seed)
            return student
        if init == Init.scratch and not check_only:
            if ctx.build_model is None:
                raise RuntimeError("method.init=scratch needs ctx.build_model (the run provides it)")
            return ctx.build_model()
        return copy.deepcopy(model_in)

    def compress(self, ctx: MethodContext) -> CompressionResult:
        cfg = self.cfg
        x = ctx.example_input
        memory_tags: dict[str, str] = {}
        if cfg.teacher.model == "baseline":
            teacher = copy.deepcopy(ctx.dense if ctx.dense is not None else ctx.model_in)
        else:
            if ctx.trained is None:
                raise RuntimeError("a zoo teacher needs ctx.trained (the run provides it)")
            overrides = {k: v for k, v in cfg.teacher.trainer.items() if v is not None}
            memory_tags = self._teacher_memory(ctx, overrides)  # before the teacher trains
            teacher = ctx.trained(cfg.teacher.model, trainer=overrides, seed=cfg.teacher.seed)
        teacher.eval()
        teacher_figures = {"distill/teacher_test_acc": ctx.evaluate(teacher)["test/acc"]}
        from edgebench.measure import basic_metrics

        tb = basic_metrics(teacher, x)
        teacher_figures.update({"distill/teacher_params": tb["size/params"], "distill/teacher_macs": tb["compute/macs"]})
        student = self._student(teacher, ctx.model_in, ctx)
        losses, epochs = [], []
        guided = hint = regressor = penultimate = None
        if cfg.kind == Kind.feature:
            hint = cfg.hint_layer or middle_layer(teacher)
            guided = cfg.guided_layer or middle_layer(student)
            for name, net, who in ((hint, teacher, "teacher"), (guided, student, "student")):
                if name not in dict(net.named_modules()):
                    raise ConfigError(f"method.{'hint' if who == 'teacher' else 'guided'}_layer={name}: the {who} "
                                      f"has no such module; its modules: {_module_names(net)}")
            regressor = regressor_for(_features(student, guided, x), _features(teacher, hint, x))
            if cfg.hint_epochs:
                losses.append(Distill(cfg, teacher, guided, hint, regressor=regressor, hints_only=True))
                epochs.append(cfg.hint_epochs)
        if cfg.kind == Kind.relation:
            penultimate = (last_linear(student), last_linear(teacher))
        losses.append(Distill(cfg, teacher, guided, hint, penultimate, regressor))
        epochs.append(cfg.epochs)

        from edgebench.training import Callback

        series: list[dict] = []

        class Terms(Callback):  # the loss terms of every epoch, as the step's series
            def __init__(self, loss: Distill, stage: str):
                self.loss, self.stage = loss, stage

            def on_train_epoch_end(self, trainer, module):
                series.append({"round": len(series) + 1, **self.loss.epoch_terms(),
                               **{k: v for k, v in module.history[-1].items() if k.startswith("val/")}})

        for i, (loss, n) in enumerate(zip(losses, epochs)):
            stage = "hints" if loss.hints_only else cfg.kind.value
            log.info("distillation (%s) from %s: %d epoch(s) of %s", cfg.kind.value, cfg.teacher.model, n, stage)
            ctx.retrain(student, n, callbacks=[Terms(loss, stage)], loss=loss, lr=cfg.lr)
        knobs = {"temperature": cfg.temperature, "alpha": cfg.alpha, "epochs": cfg.epochs,
                 "hint_epochs": cfg.hint_epochs, "feature": float(cfg.kind == Kind.feature),
                 "relation": float(cfg.kind == Kind.relation)}
        tags = {"distill.kind": cfg.kind.value, "distill.teacher": cfg.teacher.model,
                "distill.init": (cfg.init.value if cfg.init != Init.auto else
                                 ("scratch" if ctx.step == 0 else "input"))}
        if guided is not None:
            tags.update({"distill.hint_layer": hint, "distill.guided_layer": guided})
        if cfg.kind == Kind.relation:
            tags["distill.relation"] = cfg.relation.value
        tags.update(memory_tags)
        return CompressionResult(student, knobs, series, named_metrics=teacher_figures, tags=tags)


DISTILLATION = {"distillation": (DistillationConfig, Distillation)}
