"""``python -m edgebench.fit``: where a model fits, in seconds and without training.

    python -m edgebench.fit model=lenet5                     # the zoo model on the default data's shape
    python -m edgebench.fit model=resnet20 data=cifar10
    python -m edgebench.fit RUN_ID                           # a finished run: its own file's measured figures
    python -m edgebench.fit model=lenet5 --device stm32l4 --json

For every device profile and every file edgebench can write that one of the device's runtimes loads (fp32 ONNX or
.tflite, fp16 ONNX, int8 ONNX, int8 .tflite, TFLite Micro), whether it fits, its bytes, its RAM, the estimated
latency for that runtime with its band (or ``uncalibrated``) and energy, and, where the model as it is does not
fit, what would: e.g. ``int8 TFLite Micro: 4.0x smaller; needs +method=ptq_int8 (or qat_int8)``.

Nothing is trained or exported: the weights' values change none of these figures. Bytes are the weights at the
file's dtype (the file adds a few kB of graph), RAM is the TFLite Micro arena estimate for TFLite Micro (its band in
``results/tflm_zoo.md``) or the peak activations otherwise, latency comes from the PyTorch model's convolution and
linear layers. A run id's own file is shown with its measured bytes and arena instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
FLOAT_ARENA_NOTE = ("; a float file's arena: the int8 plan's activation buffers at 4 bytes a value plus the int8 "
                    "structs, an upper bound so far (LeNet-5: 28,284 B estimated, 26,464 B measured; LeNet-300-100: "
                    "11,424 B estimated, 3,168 B measured)")
# input shape and classes of the data sets whose shape is fixed; others are read from the data
SHAPES = {"fashion_mnist": ((1, 28, 28), 10), "mnist": ((1, 28, 28), 10), "digits": ((1, 8, 8), 10),
          "cifar10": ((3, 32, 32), 10)}


@dataclass
class Option:
    """One file on one device."""

    device: str
    exporter: str
    label: str  # "int8 TFLite Micro"
    runtime: str | None
    fits: bool
    reasons: list[str]
    bytes: int
    bytes_measured: bool
    ram_bytes: int
    ram_source: str
    latency: str  # with its band, or ~X (uncalibrated), or "no estimate"
    rank: int  # the position of its runtime in the profile's runtimes (the profile's preference)
    latency_ms: float | None
    latency_low_ms: float | None
    latency_high_ms: float | None
    energy_mj: float | None
    energy_source: str
    needs: str  # the step the model needs first ("" when none)
    own: bool = False  # the model's own form (a run's file, or the fp32 file)
    notes: list[str] = field(default_factory=list)


def _shape(cfg) -> tuple[tuple[int, ...], int]:
    name = str(cfg.data.name.value if hasattr(cfg.data.name, "value") else cfg.data.name)
    if name in SHAPES:
        return SHAPES[name]
    if name in ("translated", "cluttered") and cfg.data.canvas:
        return (1, int(cfg.data.canvas), int(cfg.data.canvas)), 10
    from edgebench.data import load_data

    data = load_data(cfg.data, cfg.paths.data_dir)
    return tuple(data.input_shape), data.num_classes


def _from_overrides(overrides: list[str]):
    from hydra.errors import HydraException

    from edgebench.config import ConfigError, check_override_keys, validate
    from edgebench.pipeline import compose

    check_override_keys(overrides)
    try:
        return validate(compose(overrides))
    except HydraException as e:  # a malformed override (check_override_keys named unknown keys and options): its first line
        first = str(e).strip().splitlines()[0].rstrip(".")
        raise ConfigError(f"{first}; see python -m edgebench --help for the groups and options") from None


def _from_run(run_id: str) -> tuple[list[str], dict]:
    """The overrides that rebuild a run's model, and its own file's figures."""
    import mlflow

    run = mlflow.get_run(run_id)
    p, t, m = run.data.params, run.data.tags, run.data.metrics
    overrides = [f"model={t.get('model') or p.get('model.name')}", f"data={t.get('data') or p.get('data.name')}"]
    for k in ("data.canvas", "data.clutter", "data.base", "data.image_size", "data.channels", "data.root"):
        if p.get(k) not in (None, "None"):
            overrides.append(f"{k}={p[k]}")
    own = {"exporter": t.get("export.name"), "format": t.get("export.format"), "dtype": t.get("export.dtype", "fp32"),
           "bytes": m.get("size/bytes_artifact"), "arena": m.get("memory/tflm_arena_bytes"),
           "params": m.get("size/params"), "method": t.get("method", "none")}
    return overrides, own


def options(model, example, devices: list[str], own: dict | None = None) -> list[Option]:
    """Every (device, file) pair: fit, bytes, RAM, latency with its band, energy, and what the file needs."""
    import torch

    from edgebench.devices import evaluate_device
    from edgebench.devices.published import label as runtime_label
    from edgebench.export.registry import EXPORTERS
    from edgebench.measure import layer_profile, load_device
    from edgebench.measure.memory import ARENA_ESTIMATE_NOTE, peak_activation_bytes, tflm_arena_estimate

    x = example[:1]
    layers = layer_profile(model, x)
    params = own["params"] if own and own.get("params") else sum(p.numel() for p in model.parameters())
    peak = {d: peak_activation_bytes(model, x, b) for d, b in BYTES.items()}
    try:  # the int8 plan's activation buffers (head) at the file's bytes per value, plus TFLM's own structs (tail)
        est = tflm_arena_estimate(model, x)
        arena = {d: est["head"] * b + est["tail"] for d, b in BYTES.items()}
    except Exception:  # noqa: BLE001 - an op the arena model does not know: peak activations instead
        arena = peak
    own_dtype = (own or {}).get("dtype") or "fp32"
    out: list[Option] = []
    with torch.no_grad():
        for name in devices:
            prof = load_device(name)
            own_name = (own or {}).get("exporter") or "onnx"  # a dense run's default file
            for e in EXPORTERS.values():
                mine = bool(own and own.get("exporter") == e.name)
                if e.format == "torch.export" or (not set(e.devices) & set(prof.runtimes) and e.name != own_name):
                    continue  # files this device does not load, but the model's own (to show why it does not fit)
                size = int(own["bytes"]) if mine and own.get("bytes") else int(params * BYTES[e.dtype])
                measured_arena = own.get("arena") if mine else None
                working = int(measured_arena) if measured_arena else (
                    arena[e.dtype] if e.format == "tflite_micro" else peak[e.dtype])
                r = evaluate_device(prof, layers, dtype=e.dtype, artifact_bytes=size, peak_activation_bytes=working,
                                    artifact_format=e.format,
                                    arena_bytes=int(measured_arena) if measured_arena else None)
                notes = [r.note] if r.note else []
                if e.format == "tflite_micro" and not measured_arena:
                    notes.append(ARENA_ESTIMATE_NOTE if e.dtype == "int8" else ARENA_ESTIMATE_NOTE + FLOAT_ARENA_NOTE)
                needs = "" if e.dtype == own_dtype or (e.dtype == "fp32" and own_dtype == "fp32") else e.after
                loader = next((i for i, rt in enumerate(prof.runtimes) if rt in e.devices), len(prof.runtimes))
                out.append(Option(name, e.name, f"{e.dtype} {e.label}", runtime_label(r.runtime) if r.runtime else None,
                                  r.fits, r.reasons, size, mine and bool(own.get("bytes")), r.ram_bytes, r.ram_source,
                                  r.latency_text(), loader, r.latency_ms_est, r.latency_low_ms, r.latency_high_ms,
                                  r.energy_mj_est, r.energy_source, needs,
                                  own=mine or (not own and e.name == own_name), notes=notes))
    return out


def advice(opts: list[Option]) -> dict[str, str]:
    """Per device: what would make the model fit where its own form does not."""
    out = {}
    for device in dict.fromkeys(o.device for o in opts):
        mine = [o for o in opts if o.device == device and o.own]
        fit = [o for o in opts if o.device == device and o.fits]
        if mine and any(o.fits for o in mine):
            out[device] = "fits as it is"
            continue
        if not fit:
            out[device] = "nothing edgebench writes fits: a smaller model (fewer parameters or activations)"
            continue
        ref = min((o.bytes for o in mine), default=None)
        best = min(fit, key=lambda o: (o.needs != "", o.bytes, o.rank))
        smaller = f": {ref / best.bytes:.1f}x smaller" if ref and best.bytes < ref else ""
        out[device] = f"{best.label} (export={best.exporter}){smaller}" + (f"; needs {best.needs}" if best.needs else "")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgebench.fit", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("target", nargs="*", help="an MLflow run id, or overrides such as model=lenet5 data=digits")
    ap.add_argument("--device", action="append", help="only these device profiles (repeat; default: all but host)")
    ap.add_argument("--tracking-uri", help="MLflow store of a run id (default: results/mlflow.db)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    a = ap.parse_args(argv)
    import torch

    from edgebench.config import ConfigError, device_profiles, nearest
    from edgebench.models import build_model

    run_like = len(a.target) == 1 and "=" not in a.target[0]
    try:
        own = None
        if run_like:
            import mlflow

            mlflow.set_tracking_uri(a.tracking_uri or "sqlite:///results/mlflow.db")
            try:
                overrides, own = _from_run(a.target[0])
            except Exception as e:  # noqa: BLE001 - a wrong id: one line with the fix
                raise ConfigError(f"{a.target[0]!r} is not a run in {mlflow.get_tracking_uri()} ({type(e).__name__}); "
                                  "pass a run id from that store (--tracking-uri), or overrides such as "
                                  "model=lenet5") from None
        else:
            overrides = list(a.target)
        cfg = _from_overrides(overrides)
        devices = a.device or [d for d in device_profiles() if d != "host"]
        for d in devices:
            if d not in device_profiles():
                near = nearest(d, device_profiles())
                hint = f"did you mean --device {near}? " if near else ""
                raise ConfigError(f"--device {d}: no such profile; {hint}use one of {', '.join(device_profiles())}")
        shape, classes = _shape(cfg)
        torch.manual_seed(0)
        model = build_model(cfg.model, shape, classes).eval()
        opts = options(model, torch.zeros(1, *shape), devices, own)
    except ConfigError as e:
        print(f"edgebench.fit: error: {e}", file=sys.stderr)
        return 2
    tips = advice(opts)
    what = f"{cfg.model.name.value if hasattr(cfg.model.name, 'value') else cfg.model.name} at {'x'.join(map(str, shape))}"
    if own:
        what = f"run {a.target[0]} ({own['method']}, its {own['dtype']} {own['format']} file measured): " + what
    if a.json:
        print(json.dumps({"model": what, "options": [asdict(o) for o in opts], "advice": tips}, indent=1))
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(f"[bold]{escape(what)}[/]: where it fits (estimates; nothing trained or exported)")
    for device in dict.fromkeys(o.device for o in opts):
        t = Table(title=f"{device}: {tips[device]}", title_justify="left")
        for col in ("file", "runtime", "fits", "bytes", "RAM", "latency (band)", "energy", "needs"):
            t.add_column(col)
        for o in (o for o in opts if o.device == device):
            energy = "" if o.energy_mj is None else f"{o.energy_mj:.3g} mJ" + (
                " (upper bound)" if o.energy_source.startswith("upper") else "")
            t.add_row(*map(escape, (o.label + (" (own)" if o.own else ""), o.runtime or "", "yes" if o.fits else
                                    "no: " + "; ".join(o.reasons), f"{o.bytes:,}" + (" measured" if o.bytes_measured
                                                                                   else " est."),
                                    f"{o.ram_bytes:,} ({'measured arena' if o.ram_source == 'tflm_arena' else 'est.'})",
                                    o.latency, energy, o.needs)))
        console.print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
