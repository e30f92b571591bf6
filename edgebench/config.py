"""Typed schemas for every config group, registered in Hydra's ConfigStore.

The primary config (`conf/edgebench.yaml`) extends ``edgebench_schema`` so every key has a type:
a wrong type or an unknown key fails while Hydra composes the config, with the key's full name.
Enum fields list their allowed values in the error. Range checks (a negative epoch count, a
fraction outside (0, 1)) run in ``__post_init__`` when :func:`validate` turns the composed
config into these dataclasses, before any data is loaded or any model is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def config_dir() -> Path:
    """The config folder: edgebench/conf in an installed wheel, else conf/ of the checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "edgebench.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"edgebench's config folder was not found next to {here}; reinstall edgebench")


def device_profiles() -> list[str]:
    """The device profiles (``conf/device/*.yaml``), sorted."""
    return sorted(p.stem for p in (config_dir() / "device").glob("*.yaml"))


class ConfigError(ValueError):
    """A config value that is well-typed but not allowed; the message names the key."""


def check(ok: bool, key: str, msg: str) -> None:
    """Raise ConfigError("<key>: <msg>") unless ``ok``: the one way schemas reject a value."""
    if not ok:
        raise ConfigError(f"{key}: {msg}")


class ModelName(str, Enum):
    lenet_300_100 = "lenet_300_100"
    lenet5 = "lenet5"
    conv2 = "conv2"
    conv4 = "conv4"
    conv6 = "conv6"
    resnet8 = "resnet8"
    resnet20 = "resnet20"
    alexnet = "alexnet"
    vgg11 = "vgg11"
    vgg16 = "vgg16"
    vgg19 = "vgg19"
    googlenet = "googlenet"
    inception_v3 = "inception_v3"
    resnet18 = "resnet18"
    resnet50 = "resnet50"
    resnet152 = "resnet152"
    densenet121 = "densenet121"
    mobilenet_v2 = "mobilenet_v2"
    mobilenet_v3_small = "mobilenet_v3_small"
    conv2_small = "conv2_small"
    ram = "ram"


class DataName(str, Enum):
    fashion_mnist = "fashion_mnist"
    mnist = "mnist"
    digits = "digits"
    cifar10 = "cifar10"
    image_folder = "image_folder"
    translated = "translated"
    cluttered = "cluttered"


class Optimizer(str, Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class Scheduler(str, Enum):
    none = "none"
    cosine = "cosine"
    step = "step"


class ProgressBar(str, Enum):
    auto = "auto"  # rich bar on a terminal, one plain log line per epoch otherwise
    rich = "rich"
    plain = "plain"
    none = "none"


RAM_DEFAULTS = {"glimpse_size": 12, "scales": 3, "glimpses": 6, "loc_std": 0.2, "hidden": 256}  # the one source; conf/model/ram.yaml repeats it (tested)


@dataclass
class ModelConfig:
    name: ModelName = MISSING
    pretrained: bool = False  # torchvision weights from the local torch hub cache; never downloads
    # Torchvision nets need a minimum input resolution; smaller images are resized up to this
    # size inside the model (0 = the model's own minimum, see edgebench.models).
    min_input_size: int = 0
    # model=ram only (Mnih et al. 2014); None elsewhere, so other models' store keys do not see them
    glimpse_size: Optional[int] = None  # side of the smallest glimpse patch, pixels
    scales: Optional[int] = None  # patches per glimpse, each twice the side of the previous, all resized to glimpse_size
    glimpses: Optional[int] = None  # glimpses (recurrent steps) per image
    loc_std: Optional[float] = None  # std of the Gaussian location policy while training (locations in [-1, 1])
    hidden: Optional[int] = None  # recurrent core width (the glimpse network's output)
    # model=mobilenet_v2 only: torchvision's width multiplier (channels x width_mult, rounded to multiples of 8);
    # None elsewhere (and for the full width), so other models' store keys do not see it
    width_mult: Optional[float] = None

    def __post_init__(self) -> None:
        check(self.min_input_size >= 0, "model.min_input_size", f"must be >= 0, got {self.min_input_size}")
        if self.width_mult is not None:
            name = getattr(self.name, "value", self.name)
            check(name == "mobilenet_v2", "model.width_mult", f"applies to model=mobilenet_v2 only, not model={name}")
            check(0 < self.width_mult <= 4, "model.width_mult", f"must be in (0, 4], got {self.width_mult}")
            check(not self.pretrained, "model.width_mult",
                  "torchvision's pretrained weights are for the full width; drop model.pretrained or model.width_mult")
        ram = {"glimpse_size": self.glimpse_size, "scales": self.scales, "glimpses": self.glimpses,
               "loc_std": self.loc_std, "hidden": self.hidden}
        if self.name != ModelName.ram:
            extra = [k for k, v in ram.items() if v is not None]
            check(not extra, f"model.{extra[0] if extra else ''}", f"applies to model=ram only, not model={getattr(self.name, 'value', self.name)}")
            return
        for k, default in RAM_DEFAULTS.items():  # conf/model/ram.yaml sets them; ModelConfig(name="ram") too
            if ram[k] is None:
                ram[k] = default
                setattr(self, k, default)
        for k in ("glimpse_size", "scales", "glimpses", "hidden"):
            check(ram[k] is not None and ram[k] >= 1, f"model.{k}", f"must be an integer >= 1, got {ram[k]}")
        check(self.loc_std is not None and self.loc_std > 0, "model.loc_std", f"must be > 0, got {self.loc_std}")


@dataclass
class DataConfig:
    name: DataName = MISSING
    root: Optional[str] = None  # where the files are; None = the source's default search order
    download: bool = True  # allow a torchvision download when no local copy is found
    val_fraction: float = 0.1  # carved from the training split with split_seed
    split_seed: int = 0
    test_fraction: float = 0.2  # only for sources without a test split (digits, image_folder)
    image_size: int = 32  # image_folder only: images are resized to image_size x image_size
    channels: int = 3  # image_folder only: 1 (grayscale) or 3 (RGB)
    # data=translated|cluttered only (None elsewhere, so other datasets' store keys do not see them): the images of
    # `base` placed at a seeded random position on a canvas x canvas black image, plus `clutter` random 8x8 crops
    # of other images of the same split (cluttered)
    base: Optional[str] = None  # fashion_mnist | mnist | digits
    canvas: Optional[int] = None
    clutter: Optional[int] = None

    def __post_init__(self) -> None:
        check(0.0 < self.val_fraction < 1.0, "data.val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        check(0.0 < self.test_fraction < 1.0, "data.test_fraction", f"must be in (0, 1), got {self.test_fraction}")
        check(self.image_size >= 8, "data.image_size", f"must be >= 8, got {self.image_size}")
        check(self.channels in (1, 3), "data.channels", f"must be 1 or 3, got {self.channels}")
        if self.name == DataName.image_folder:
            check(bool(self.root), "data.root", "data=image_folder needs data.root=/path/to/folder "
                   "(one sub-folder per class, or train/ and test/ each with one sub-folder per class)")
        placed = {"base": self.base, "canvas": self.canvas, "clutter": self.clutter}
        if self.name not in (DataName.translated, DataName.cluttered):
            extra = [k for k, v in placed.items() if v is not None]
            check(not extra, f"data.{extra[0] if extra else ''}",
                  f"applies to data=translated|cluttered only, not data={getattr(self.name, 'value', self.name)}")
            return
        bases = ("fashion_mnist", "mnist", "digits")
        check(self.base in bases, "data.base", f"must be one of {', '.join(bases)}, got {self.base}")
        side = 8 if self.base == "digits" else 28
        check(self.canvas is not None and self.canvas >= side, "data.canvas",
              f"must be >= the {side}x{side} images of data.base={self.base}, got {self.canvas}")
        check(self.clutter is not None and self.clutter >= 0, "data.clutter", f"must be >= 0, got {self.clutter}")
        check(self.name == DataName.cluttered or self.clutter == 0, "data.clutter",
              "data=translated has no clutter (use data=cluttered)")


@dataclass
class TrainerConfig:
    max_epochs: int = 15
    batch_size: int = 128
    eval_batch_size: int = 1000
    optimizer: Optimizer = Optimizer.adam
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    scheduler: Scheduler = Scheduler.cosine
    accelerator: str = "cpu"  # Lightning accelerator: cpu, gpu, auto
    deterministic: bool = True
    progress_bar: ProgressBar = ProgressBar.auto
    limit_train_batches: float = 1.0  # fraction (<= 1.0) of training batches per epoch, for quick tries
    # a conv net trains with its weights and inputs in channels-last (NHWC) memory: the same model, faster
    # kernels on the CPU (1.4-2.3x per batch for LeNet-5, ResNet-8, MobileNet v2 measured here)
    channels_last: bool = True

    def __post_init__(self) -> None:
        check(self.max_epochs >= 1, "trainer.max_epochs", f"must be >= 1, got {self.max_epochs}")
        check(self.batch_size >= 1, "trainer.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.eval_batch_size >= 1, "trainer.eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        check(self.lr > 0, "trainer.lr", f"must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, "trainer.weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(0.0 < self.limit_train_batches <= 1.0, "trainer.limit_train_batches",
               f"must be in (0, 1], got {self.limit_train_batches}")
        check(self.accelerator in ("cpu", "gpu", "cuda", "mps", "auto"), "trainer.accelerator",
               f"must be one of cpu, gpu, cuda, mps, auto; got {self.accelerator!r}")


class DeviceKind(str, Enum):
    host = "host"  # the machine running edgebench: latency is measured, not estimated
    gpu = "gpu"
    accelerator = "accelerator"
    cpu = "cpu"  # an application processor running Linux
    mcu = "mcu"
    fpga = "fpga"


DTYPES = ("fp32", "fp16", "bf16", "int8")


@dataclass
class DeviceConfig:
    """A target device profile (conf/device/NAME.yaml). Add one with a single YAML file.

    ``peak_ops`` are operations per second (1 MAC = 2 ops) per dtype, null where the device has no
    such figure. Every figure names its source in ``sources``; figures derived or assumed
    without a source are listed in ``unsourced``.
    """

    name: str = MISSING
    description: str = ""
    kind: DeviceKind = DeviceKind.cpu
    peak_ops: dict[str, Optional[float]] = field(default_factory=dict)
    memory_bytes: Optional[int] = None  # working memory for the model (RAM / SRAM); null on host = read at run time
    storage_bytes: Optional[int] = None  # where the model file lives (flash, eMMC, SD)
    bandwidth_bytes_per_s: Optional[float] = None  # off-chip memory bandwidth; null = on-chip only
    power_w: Optional[float] = None  # active power while running inference
    dtypes: list[str] = field(default_factory=lambda: ["fp32"])
    runtimes: list[str] = field(default_factory=list)
    weights_in_ram: bool = True  # false: weights execute in place from flash (MCUs)
    # roofline efficiencies (fraction of peak reached) and a fixed cost per layer; see README
    compute_efficiency: float = 0.3
    memory_efficiency: float = 0.6
    layer_overhead_s: float = 0.0
    inference_overhead_s: float = 0.0  # fixed cost once per inference (invoke, kernel launches, transfers); see sources
    depthwise_efficiency: Optional[float] = None  # fraction of peak on depthwise convolutions; null = compute_efficiency
    calibration: str = "uncalibrated"  # how the efficiencies were set, and the error band
    latency_band: Optional[list[float]] = None  # [min, max] leave-one-out relative error of the roofline fit; null: uncalibrated
    # the op-level model of MCU runtimes (edgebench.devices.ops): core family, clock, the board's name in published
    # results (its measured power), which runtime the estimate is for and which kernels TFLite Micro uses here
    core: Optional[str] = None  # cortex-m4 | cortex-m7 | cortex-m33 | xtensa-lx7 | ...
    clock_hz: Optional[float] = None
    board: Optional[str] = None  # e.g. NUCLEO_L4R5ZI (edgebench.devices.published.board_of)
    runtime: Optional[str] = None  # the runtime the estimate is for; null: the first of runtimes that loads the file
    tflm_kernels: str = "reference"  # TFLite Micro's kernels on this core: cmsis_nn | esp_nn | reference
    per_runtime: dict[str, Any] = field(default_factory=dict)  # fields that differ under one runtime (Coral's CPU)
    sources: dict[str, str] = field(default_factory=dict)
    unsourced: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for d in list(self.peak_ops) + list(self.dtypes):
            check(d in DTYPES, f"device.{self.name}", f"unknown dtype {d!r}; use one of {', '.join(DTYPES)}")
        for k, v in self.peak_ops.items():
            check(v is None or v > 0, f"device.peak_ops.{k}", f"must be > 0 or null, got {v}")
        for k in ("memory_bytes", "storage_bytes", "bandwidth_bytes_per_s", "power_w"):
            v = getattr(self, k)
            check(v is None or v > 0, f"device.{k}", f"must be > 0 or null, got {v}")
        check(self.tflm_kernels in ("cmsis_nn", "esp_nn", "reference"), "device.tflm_kernels",
              f"unknown kernels {self.tflm_kernels!r}; use cmsis_nn, esp_nn or reference")
        check(self.runtime is None or self.runtime in self.runtimes, "device.runtime",
              f"{self.runtime!r} is not one of {self.name}'s runtimes ({', '.join(self.runtimes)}); leave it null "
              "for the first that loads the file")
        if self.runtime == "tflite_edgetpu":  # refused before any training, not after it
            import shutil

            check(shutil.which("edgetpu_compiler") is not None, "device.runtime",
                  "tflite_edgetpu needs edgetpu_compiler on PATH (not installed); install the Edge TPU compiler or "
                  "leave device.runtime unset to estimate the board's CPU")
        check(self.clock_hz is None or self.clock_hz > 0, "device.clock_hz", f"must be > 0 or null, got {self.clock_hz}")
        check(0 < self.compute_efficiency <= 1, "device.compute_efficiency", f"must be in (0, 1], got {self.compute_efficiency}")
        check(0 < self.memory_efficiency <= 1, "device.memory_efficiency", f"must be in (0, 1], got {self.memory_efficiency}")
        check(self.layer_overhead_s >= 0, "device.layer_overhead_s", f"must be >= 0, got {self.layer_overhead_s}")


class Objective(str, Enum):
    val_acc = "val_acc"  # validation accuracy of the deployed model (select/val_acc); never the test split
    fits_device = "fits_device"  # validation accuracy if the model fits the device, else a negative score (edgebench.sweep)


class Runtime(str, Enum):
    onnxruntime = "onnxruntime"  # the exported ONNX artifact in ONNX Runtime (what would be deployed)
    torch = "torch"  # PyTorch eager


@dataclass
class MeasureConfig:
    """How host figures are measured (see README, 'How figures are measured')."""

    export: bool = True  # write the deployable ONNX artifact and measure its size
    latency: bool = True  # measure batch-1 host latency
    runtime: Runtime = Runtime.onnxruntime
    threads: int = 0  # 0 = torch.get_num_threads() of this process; always recorded
    warmup: int = 20
    calls: int = 100
    max_noise: float = 0.1  # IQR/median above this triggers a re-measurement
    retries: int = 1

    def __post_init__(self) -> None:
        check(self.threads >= 0, "measure.threads", f"must be >= 0, got {self.threads}")
        check(self.warmup >= 20, "measure.warmup", f"must be >= 20, got {self.warmup}")
        check(self.calls >= 100, "measure.calls", f"must be >= 100, got {self.calls}")
        check(self.max_noise > 0, "measure.max_noise", f"must be > 0, got {self.max_noise}")
        check(self.retries >= 0, "measure.retries", f"must be >= 0, got {self.retries}")


@dataclass
class PathsConfig:
    root_dir: str = MISSING  # the launch directory
    results_dir: str = MISSING
    store_dir: str = MISSING  # the store (edgebench.store): dense baselines, step outputs, lottery levels, by key
    cache_dir: Optional[str] = None  # the old name of store_dir: given, it wins and says so
    data_dir: str = MISSING  # where torchvision downloads go
    output_dir: str = MISSING  # this job's Hydra output folder
    mlflow_tracking_uri: str = MISSING
    mlflow_artifact_dir: str = MISSING


@dataclass
class EdgebenchConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    method: Optional[Any] = None  # added with +method=NAME; none = the dense baseline
    steps: Optional[list[Any]] = None  # a chain of methods: steps=[magnitude_pruning,ptq_int8] or +chain=NAME
    seed: int = 0
    replicates: int = 1  # runs of this config with seeds seed, seed+1, ...: the report averages them (mean, 95% CI)
    experiment_name: str = "edgebench"  # the MLflow experiment
    run_name: Optional[str] = None  # the MLflow run name; None = model-data-method-device
    tags: dict[str, str] = field(default_factory=dict)  # extra MLflow tags of the run (a study's name, arm, budget)
    resume: Optional[bool] = None  # skip a job whose config has a FINISHED run; None = on in a multirun only
    objective: Objective = Objective.val_acc  # what a job returns to a sweeper (Optuna maximises it)
    use_baseline_cache: bool = True
    store_lock_timeout_s: float = 3600.0  # how long a run waits for another process making the same store entry
    export: str = "auto"  # the exporter (edgebench.export): auto = what the last step's output needs | device = the device's own format | onnx | onnx_fp16 | onnx_int8 | torch_export | tflite | tflite_int8 | tflite_micro


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="edgebench_schema", node=EdgebenchConfig)


# The launch directory. ${hydra:runtime.cwd} is not available when a sweeper resolves
# hydra.sweep.dir (before any job starts), so paths.root_dir uses this instead (hydra.job.chdir is false).
OmegaConf.register_new_resolver("edgebench.cwd", lambda: os.getcwd(), replace=True)
register_configs()


def _unknown_keys(node: Any, schema: type, prefix: str = "") -> None:
    """Reject keys a ``+key=value`` override added that the schema does not have.

    Hydra's ``+`` adds a key even to a typed (struct) config, and ``OmegaConf.to_object`` then drops
    it silently: ``+trainer.max_epoch=3`` would train with the default epochs. Dict-typed fields
    (``device.peak_ops``), ``method`` and ``steps`` (checked by their own schemas) take any key.
    """
    hints = typing.get_type_hints(schema)
    known = [f.name for f in dataclasses.fields(schema)]
    for key in node.keys() if isinstance(node, DictConfig) else ():
        key = str(key)
        if key == "hydra":
            continue
        name = f"{prefix}{key}"
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {prefix}{near[0]}?)" if near else ""
            group = prefix.rstrip(".") or "the top level"
            raise ConfigError(f"{name}: unknown key{hint}; known keys of {group}: {', '.join(known)}")
        sub = hints[key]
        if dataclasses.is_dataclass(sub):
            _unknown_keys(node[key], sub, name + ".")


def check_override_keys(overrides: list[str]) -> None:
    """Reject a command-line override of a key the schema does not have (``trainer.max_epoch=3``) in one line with
    the nearest key, before Hydra's multi-line "Could not override" message. Only plain ``a.b=value`` overrides of
    the typed groups are checked; ``+``/``~`` overrides, ``method``, ``steps``, dict-typed fields and Hydra's own
    keys are left to Hydra and :func:`validate`. A top-level key (``modle=lenet5``) and an option of a config group
    (``model=lenet_5``, ``+method=lotery_ticket``, each value of a sweep ``model=a,b``) are checked too."""
    dirs = [config_dir()] + [Path(a.split("=", 1)[1] if "=" in a else b) for a, b in zip(overrides, overrides[1:] + [""])
                             if a.split("=", 1)[0] in ("--config-dir", "-cd")]  # a user's own groups count too
    for arg in overrides:
        if "=" in arg and arg[0] != "-" and not any(c in arg.split("=", 1)[0] for c in "./@"):
            _check_top_level(arg, dirs, options=not any(a.lstrip("+").startswith("hydra.searchpath") for a in overrides))
            continue
        if "=" not in arg or arg[0] in "+~-" or "." not in arg.split("=", 1)[0]:
            continue
        path = arg.split("=", 1)[0].split(".")
        schema: Any = EdgebenchConfig
        for depth, key in enumerate(path):
            if not dataclasses.is_dataclass(schema) or path[0] in ("hydra", "method", "steps"):
                break
            known = [f.name for f in dataclasses.fields(schema)]
            if key not in known:
                prefix = ".".join(path[:depth])
                near = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {prefix}.{near[0]}?)" if near else ""
                raise ConfigError(f"{'.'.join(path[:depth + 1])}: unknown key{hint}; known keys of {prefix}: "
                                  f"{', '.join(known)}")
            schema = typing.get_type_hints(schema)[key]


def nearest(word: str, names) -> str | None:
    """The name of ``names`` a mistyped ``word`` most likely meant: one it begins (``coral`` -> ``coral_dev_board``),
    else the closest by difflib; None when nothing is close."""
    names = list(names)
    near = [n for n in names if n.startswith(word)][:1] or difflib.get_close_matches(word, names, n=1)
    return near[0] if near else None


def _check_top_level(arg: str, dirs: list[Path], options: bool = True) -> None:
    """``key=value`` without a dot: ``key`` a field of the schema or a config group, and (``options``) a group's
    plain option names (not ``null``, interpolations or Hydra's sweep functions) files of that group in ``dirs``."""
    name, value = arg.split("=", 1)
    key = name.lstrip("+~")
    fields = [f.name for f in dataclasses.fields(EdgebenchConfig)]
    groups = sorted({p.name for d in dirs if d.is_dir() for p in d.iterdir() if p.is_dir()} - {"hydra", "study"})
    if key in groups:
        names = sorted({p.stem for d in dirs for p in (d / key).glob("*.yaml")})
        for v in value.split(",") if options else ():
            if re.fullmatch(r"[A-Za-z0-9_.-]+", v) and v != "null" and v not in names:
                near = nearest(v, names)
                hint = f"did you mean {key}={near}? " if near else ""
                raise ConfigError(f"{key}={v}: no such {key}; {hint}choose one of {', '.join(names)}")
    elif key not in fields and name == key:
        near = difflib.get_close_matches(key, sorted(set(fields) | set(groups)), n=1)
        hint = f" (did you mean {near[0]}={value}?)" if near else ""
        raise ConfigError(f"{key}: unknown key{hint}; python -m edgebench --help lists the groups and keys")


def check_accelerator(accelerator: str) -> None:
    """``trainer.accelerator`` names hardware that torch can see here (before any MLflow run is opened)."""
    import torch

    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator}: torch sees no CUDA GPU on this machine "
                          "(torch.cuda.is_available() is False); use trainer.accelerator=cpu or auto")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps: Apple's MPS backend is not available here; "
                          "use trainer.accelerator=cpu or auto")


# Config groups renamed in issue 26: the old name still composes (each of its files includes the new group's option)
# and prints one line naming the new spelling. Old group -> (how the old one was typed, the new spelling).
RENAMED_GROUPS = {"pipeline": ("+pipeline=", "+chain="), "experiment": ("experiment=", "+preset=")}
_noted: set[str] = set()


def renamed_groups(choices: dict) -> list[str]:
    """One line per renamed config group among Hydra's ``choices`` (``+pipeline=NAME`` -> ``+chain=NAME``)."""
    return [f"{old} is deprecated: use {new}{choices[group]}"
            for group, (old, new) in RENAMED_GROUPS.items() if choices.get(group)]


def note_renamed_groups() -> None:
    """Print :func:`renamed_groups` for the config being run (Hydra's runtime choices), each line once a process."""
    try:
        from hydra.core.hydra_config import HydraConfig

        choices = dict(HydraConfig.get().runtime.choices)
    except Exception:  # composed without Hydra's runtime
        return
    for line in renamed_groups(choices):
        _note(line)


def _note(line: str) -> None:
    """``edgebench: LINE`` on stderr, once a process."""
    import sys

    if line not in _noted:
        _noted.add(line)
        print(f"edgebench: {line}", file=sys.stderr)


SEED_MAX = 2 ** 32 - 1  # numpy.random.seed's (and so Lightning's seed_everything's) largest seed


def validate(cfg: DictConfig) -> EdgebenchConfig:
    """Check a composed config and return it as typed dataclasses.

    Raises :class:`ConfigError` naming the offending key; runs before any expensive work.
    """
    _unknown_keys(cfg, EdgebenchConfig)
    try:
        obj = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except OmegaConfBaseException as e:  # e.g. a value that fails its type, or a missing key
        raise ConfigError(str(e)) from None
    assert isinstance(obj, EdgebenchConfig)
    check(obj.replicates >= 1, "replicates", f"must be >= 1, got {obj.replicates}")
    check(obj.store_lock_timeout_s > 0, "store_lock_timeout_s", f"must be > 0, got {obj.store_lock_timeout_s}")
    check(0 <= obj.seed <= SEED_MAX, "seed", f"must be in [0, {SEED_MAX}] (the seeds NumPy accepts), got {obj.seed}")
    check_accelerator(obj.trainer.accelerator)
    if obj.paths.cache_dir is not None:  # the key's old name (a config.yaml of an older run, an old command line)
        _note(f"paths.cache_dir= is deprecated: use paths.store_dir={obj.paths.cache_dir}")
        obj.paths.store_dir, obj.paths.cache_dir = obj.paths.cache_dir, None
    return obj
