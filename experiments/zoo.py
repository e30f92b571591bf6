"""The model zoo, measured: size, compute, memory, host latency, and what each model costs on each device.

Torchvision models at 3x224x224 with 1000 classes (as in their papers); the small nets at their
dataset's shape (LeNets and Conv-2/4/6 at Fashion-MNIST's 1x28x28 with 10 classes, ResNet-20 at
CIFAR-10's 3x32x32). Weights are random: none of these figures depend on trained values.
Every model is exported to ONNX and timed at batch 1 in ONNX Runtime (fp32, >= 100 calls);
device columns use the fp32 artifact (a float model does not fit an int8-only device).

    python experiments/zoo.py [--models resnet18,lenet5] [--calls 100]   # -> results/zoo.md, results/zoo.json
    python experiments/zoo.py --devices-only   # only the device columns again, from results/zoo.json (a minute)

``--devices-only`` keeps the measured host figures of results/zoo.json (and their date) and recomputes each
device's fit and estimate from the rebuilt models: what a change to the device profiles or estimates needs.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from edgebench.config import config_dir
from edgebench.config import MeasureConfig, ModelConfig
from edgebench.devices import evaluate_device
from edgebench.export import export
from edgebench.measure import load_device, measure_model
from edgebench.models import MODEL_NAMES, build_model

SHAPES = {"lenet_300_100": ((1, 28, 28), 10), "lenet5": ((1, 28, 28), 10), "conv2": ((1, 28, 28), 10),
          "conv4": ((1, 28, 28), 10), "conv6": ((1, 28, 28), 10), "resnet20": ((3, 32, 32), 10)}
DEVICES = [p.stem for p in sorted((config_dir() / "device").glob("*.yaml")) if p.stem != "host"]


def human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODEL_NAMES))
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--out", default="results/zoo")
    ap.add_argument("--devices-only", action="store_true", help="recompute the device columns only")
    args = ap.parse_args()
    profiles = {d: load_device(d) for d in DEVICES}
    out = Path(args.out)
    if args.devices_only:
        from edgebench.measure import layer_profile

        data = json.loads(out.with_suffix(".json").read_text())
        for row in data["rows"]:
            shape, classes = tuple(row["input"]), row["classes"]
            torch.manual_seed(0)
            net = build_model(ModelConfig(name=row["model"]), shape, classes).eval()
            layers = layer_profile(net, torch.zeros(1, *shape))
            row["devices"] = device_cells(profiles, layers, row)
        data["meta"]["devices_date"] = time.strftime("%Y-%m-%d %H:%M")
        write(data["rows"], data["meta"], out, args.calls)
        return
    rows = []
    for name in args.models.split(","):
        shape, classes = SHAPES.get(name, ((3, 224, 224), 1000))
        torch.manual_seed(0)
        net = build_model(ModelConfig(name=name), shape, classes).eval()
        t0 = time.perf_counter()
        x = torch.randn(1, *shape)
        with tempfile.TemporaryDirectory(prefix="zoo-") as tmp:  # the exporter writes, measure_model measures
            m = measure_model(net, x, config=MeasureConfig(calls=args.calls), artifact=export("onnx", net, x, tmp))
        row = {"model": name, "input": list(shape), "classes": classes,
               **{k: v for k, v in m.items() if not k.startswith("device/")},
               "exporter": m.artifact.exporter, "devices": {}}
        row["devices"] = device_cells(profiles, m.layers, m)
        rows.append(row)
        print(f"{name:20s} {human(m['size/params']):>7s} params  {human(m['compute/macs']):>7s} MACs  "
              f"p50 {m['latency/host_p50_ms']:.3g} ms (IQR {m['latency/host_iqr_ms']:.2g}, "
              f"noisy={bool(m['latency/host_noisy'])})  [{time.perf_counter() - t0:.0f} s]", flush=True)
        del net, m

    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__, "machine": platform.machine(),
            "threads": rows[0]["latency/host_threads"] if rows else None, "runtime": "onnxruntime, fp32, batch 1"}
    write(rows, meta, out, args.calls)


def device_cells(profiles: dict, layers, m) -> dict:
    """Per device: fit, reasons and the latency estimate (with its band or 'uncalibrated') of the fp32 file."""
    cells = {}
    for d, prof in profiles.items():
        r = evaluate_device(prof, layers, dtype="fp32", artifact_bytes=int(m["size/bytes_artifact"]),
                            peak_activation_bytes=int(m["memory/peak_activation_bytes"]))
        cells[d] = {"fits": r.fits, "reasons": r.reasons, "latency_ms_est": r.latency_ms_est,
                    "latency_text": r.latency_text(), "runtime": r.runtime, "calibrated": r.calibrated,
                    "energy_mj_est": r.energy_mj_est, "note": r.note}
    return cells


def write(rows: list[dict], meta: dict, out: Path, calls: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")

    lines = [
        "# The model zoo, measured",
        "",
        f"Produced by `experiments/zoo.py` on {meta['date']} (torch {meta['torch']}, {meta['machine']}, "
        f"ONNX Runtime fp32 at batch 1 with {meta['threads']} threads, >= {calls} timed calls each"
        + (f"; device columns recomputed on {meta['devices_date']}" if meta.get("devices_date") else "") + "). "
        "Torchvision models at 3x224x224 / 1000 classes; small nets at their dataset's shape. "
        "MACs: FlopCounterMode / 2 (conv and matmul only). Peak act.: largest sum of live activations "
        "at batch 1, fp32. File: the ONNX artifact, all its files. Host p50: measured; `*` = still noisy "
        "(IQR/median > 0.1) after a re-measurement.",
        "",
        "| model | input | params | MACs | peak act. | file | host p50 ms | host IQR ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        noisy = "*" if r["latency/host_noisy"] else ""
        lines.append(f"| {r['model']} | {'x'.join(map(str, r['input']))} | {r['size/params']:,} | "
                     f"{human(r['compute/macs'])} | {human(r['memory/peak_activation_bytes'], 'B')} | "
                     f"{human(r['size/bytes_artifact'], 'B')} | {r['latency/host_p50_ms']:.3g}{noisy} | "
                     f"{r['latency/host_iqr_ms']:.2g} |")
    lines += ["", "## On each device (fp32 artifact)", "",
              "Each cell: whether the model fits (storage, memory, dtype; the file's format is not checked), and the "
              "**estimated** batch-1 latency of the fp32 model for the profile's first runtime, with its band or "
              "marked uncalibrated (fp32 is calibrated nowhere but the Jetson; see docs/devices.md). `no` = does "
              "not fit; `-` = no estimate (no fp32 latency model on that device).", "",
              "| model | " + " | ".join(DEVICES) + " |", "|---|" + "---|" * len(DEVICES)]
    for r in rows:
        cells = []
        for d in DEVICES:
            v = r["devices"][d]
            est = v.get("latency_text", "uncalibrated") if v["latency_ms_est"] is not None else "-"
            cells.append(("fits, " if v["fits"] else "**no**, ") + est)
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    lines += ["", "Why a model does not fit (first reason per device):", ""]
    for d in DEVICES:
        bad = [r for r in rows if not r["devices"][d]["fits"]]
        if bad:
            lines.append(f"- **{d}**: " + "; ".join(f"{r['model']}: {r['devices'][d]['reasons'][0]}" for r in bad[:3])
                         + (f"; and {len(bad) - 3} more" if len(bad) > 3 else ""))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"-> {out.with_suffix('.md')}, {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
