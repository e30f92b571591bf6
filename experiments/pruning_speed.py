"""Does pruning make ResNet-18 faster on this host? Dense vs 50% channels removed vs 90% unstructured.

ResNet-18 at CIFAR shape (3x32x32, 10 classes, torchvision's architecture). The structured model
comes from Torch-Pruning (L1 importance, 50% of channels, output layer kept); the unstructured ones
from magnitude pruning at 90% with the zeros baked in, once at 90% in every layer and once with one
global threshold (which spares the early, MAC-heavy convolutions and so removes far fewer MACs). Latency does not depend on trained
values, so the weights are random. All three are exported to ONNX and timed interleaved in one
process (ONNX Runtime, batch 1, fixed threads, >= 100 calls each); PyTorch eager is timed too.

    python experiments/pruning_speed.py     # -> results/pruning_speed.md, results/pruning_speed.json
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path

import torch

from edgebench.config import ModelConfig
from edgebench.export import export_onnx
from edgebench.measure import basic_metrics, measure_latency
from edgebench.measure.latency import onnxruntime_runner, torch_runner
from edgebench.mask import bake
from edgebench.measure.size import weight_layers
from edgebench.methods.pruning import StructuredPruningConfig, UnstructuredPruningConfig, layer_targets, prune_to
from edgebench.models import build_model


# Pass/fail thresholds, fixed before the experiment runs (issue 4, "What must be shown": structured 50% at least
# 1.8x faster on the host; unstructured 90% between 0.85x and 1.2x measured and "near 10x" theoretical, taken as 8-12x).
STRUCTURED_MIN = 1.8
UNSTRUCTURED_RANGE = (0.85, 1.2)
THEORETICAL_RANGE = (8.0, 12.0)
SOURCE = "issue 4: structured >= 1.8x; unstructured 0.85-1.2x measured, ~10x (8-12x) theoretical"

def main() -> None:
    torch.manual_seed(0)
    shape = (3, 32, 32)
    x = torch.randn(1, *shape)
    dense = build_model(ModelConfig(name="resnet18"), shape, 10).eval()

    import torch_pruning as tp

    structured = copy.deepcopy(dense)
    cfg = StructuredPruningConfig(ratio=0.5)
    tp.pruner.MetaPruner(structured, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=cfg.ratio,
                         ignored_layers=[weight_layers(structured)[-1][1]]).step()
    pruned = {}
    for scope in ("layer", "global"):
        m = copy.deepcopy(dense)
        ucfg = UnstructuredPruningConfig(sparsity=0.9, scope=scope)
        prune_to(m, layer_targets(m, ucfg), ucfg, 1.0)
        pruned[scope] = bake(m)
    models = {"dense": dense, "structured 50% channels": structured,
              "unstructured 90%, every layer": pruned["layer"], "unstructured 90%, global threshold": pruned["global"]}

    threads = torch.get_num_threads()
    rows = {n: basic_metrics(m, x) for n, m in models.items()}
    with tempfile.TemporaryDirectory() as tmp:
        arts = {n: export_onnx(m, x, Path(tmp) / f"m{i}" / "model.onnx") for i, (n, m) in enumerate(models.items())}
        ort = measure_latency({n: onnxruntime_runner(a.path, x, threads) for n, a in arts.items()},
                              threads=threads, calls=200)
    eager = measure_latency({n: torch_runner(m, x) for n, m in models.items()}, threads=threads, calls=200)

    base_macs = rows["dense"]["compute/macs"]
    table = []
    for n in models:
        r = rows[n]
        table.append({
            "model": n, "params": r["size/params"], "params_nonzero": r["size/params_nonzero"],
            "macs": r["compute/macs"], "macs_nonzero": r["compute/macs_nonzero"],
            "theoretical_speedup": base_macs / r["compute/macs_nonzero"],
            "ort_p50_ms": ort[n].p50_ms, "ort_iqr_ms": ort[n].iqr_ms, "ort_noisy": ort[n].noisy,
            "ort_speedup": ort["dense"].p50_ms / ort[n].p50_ms,
            "eager_p50_ms": eager[n].p50_ms, "eager_iqr_ms": eager[n].iqr_ms,
            "eager_speedup": eager["dense"].p50_ms / eager[n].p50_ms,
        })
    s, u = table[1], table[2]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "threads": threads, "input": list(shape), "rows": table,
              "checks": {"structured_at_least_1.8x_faster_ort": s["ort_speedup"] >= STRUCTURED_MIN,
                         "unstructured_between_0.85x_and_1.2x_ort": UNSTRUCTURED_RANGE[0] <= u["ort_speedup"] <= UNSTRUCTURED_RANGE[1],
                         "unstructured_theoretical_near_10x": THEORETICAL_RANGE[0] <= u["theoretical_speedup"] <= THEORETICAL_RANGE[1]},
              "thresholds": {"structured_min": STRUCTURED_MIN, "unstructured_range": UNSTRUCTURED_RANGE,
                             "theoretical_range": THEORETICAL_RANGE, "source": SOURCE}}
    out = Path("results/pruning_speed")
    out.parent.mkdir(exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Pruning and host speed: ResNet-18 at 3x32x32",
        "",
        f"`experiments/pruning_speed.py`, {result['date']}, {threads} threads, batch 1, 200 interleaved calls per model "
        "and runtime. Speedups are dense p50 / model p50 measured side by side; the theoretical speedup is dense MACs / "
        "nonzero MACs. Unstructured zeros sit in dense tensors, which dense kernels multiply anyway.",
        "",
        "Global magnitude pruning removes 90% of the weights but mostly from the late, parameter-heavy layers; at "
        "32x32 the MACs sit in the early layers, so its theoretical speedup is far below 10x.",
        "",
        "| model | params | nonzero | MACs | theoretical speedup | ORT p50 ms (IQR) | ORT speedup | eager p50 ms (IQR) | eager speedup |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['params_nonzero']:,} | {r['macs'] / 1e6:.1f} M | "
                     f"{r['theoretical_speedup']:.2f}x | {r['ort_p50_ms']:.3f} ({r['ort_iqr_ms']:.3f}) | "
                     f"{r['ort_speedup']:.2f}x | {r['eager_p50_ms']:.3f} ({r['eager_iqr_ms']:.3f}) | {r['eager_speedup']:.2f}x |")
    lines += ["", "Checks: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in result["checks"].items())]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
