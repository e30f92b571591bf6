"""fp32 vs fp16 vs bf16 vs int8 (post-training and quantisation-aware) for ResNet-20 on Fashion-MNIST.

Every row is a real edgebench run from the same cached dense ResNet-20 (4 epochs, Adam 1e-3, cosine):
``+method=fp16``, ``bf16``, ``ptq_int8`` and ``qat_int8`` (1 epoch of fake-quantised fine-tuning at
lr 1e-4). Test accuracy is computed from each deployed file: the fp32 and fp16 ONNX files and the
int8 ONNX files through ONNX Runtime, bf16 through PyTorch (ONNX Runtime has no bf16 convolution).
Artifact bytes are the files' sizes.

Latency: after all runs, every deployable is timed side by side in this one process at batch 1,
interleaved (rotating order), 2 threads, 300 calls after warm-up; PyTorch eager fp32/fp16/bf16 are
timed too, so the CPU's half-precision slowdown is shown. Speedups are against ONNX Runtime fp32.

    python experiments/quant_resnet20.py     # -> results/quant_resnet20.md, results/quant_resnet20.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from edgebench import cache, pipeline
from edgebench.config import validate
from edgebench.measure.latency import measure_latency, onnxruntime_runner, torch_runner
from edgebench.measure.latency import host_cpu
from edgebench.models import build_model
from edgebench.quant import HalfPrecision

COMMON = ["model=resnet20", "data=fashion_mnist", "trainer.max_epochs=4", "trainer.progress_bar=none",
          "experiment_name=quant_resnet20"]
METHODS = {"fp32": [], "fp16": ["+method=fp16"], "bf16": ["+method=bf16"], "ptq_int8": ["+method=ptq_int8"],
           "qat_int8": ["+method=qat_int8", "method.finetune_epochs=1"]}


# Pass/fail thresholds, fixed before the experiment runs (issue 6: the int8 artifact at least 1.5x faster than fp32
# on this CPU, losing at most 1 point of accuracy; item 7: at most 30% of the fp32 artifact's bytes).
INT8_MIN_SPEEDUP = 1.5
INT8_MAX_LOSS = 0.01
INT8_MAX_BYTES = 0.3
SOURCE = "issue 6: int8 >= 1.5x faster than fp32, <= 1 pt accuracy loss, <= 30% of the fp32 bytes"

def main() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    root = Path.cwd()
    runs_dir = root / "results" / "runs" / "quant_resnet20"
    rows, t_start = {}, time.perf_counter()
    for name, extra in METHODS.items():
        t0 = time.perf_counter()
        res = pipeline.run(pipeline.compose(COMMON + extra, root, runs_dir / name))
        m = res.metrics
        rows[name] = {"test_acc": m["test/acc"], "delta_acc": m["delta/acc"], "bytes_artifact": m["size/bytes_artifact"],
                      "run_latency_speedup": m.get("latency/host_speedup"),
                      "run_id": res.run_id, "wall_s": round(time.perf_counter() - t0)}
        print(f"{name}: test acc {m['test/acc']:.4f}, {m['size/bytes_artifact']:,.0f} B [{rows[name]['wall_s']} s]", flush=True)
    total_wall = time.perf_counter() - t_start

    # side by side: every deployable in one interleaved measurement
    cfg = pipeline.compose(COMMON, root, runs_dir / "fp32")
    spec = validate(cfg)
    dense = build_model(spec.model, (1, 28, 28), 10)
    dense.load_state_dict(torch.load(cache.entry_dir(spec.paths.cache_dir, spec) / "model.pt", weights_only=True))
    dense.eval()
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    runners = {f"{n} (onnxruntime)": onnxruntime_runner(runs_dir / n / rows[n]["run_id"] / "artifact" / "model.onnx", x,
                                                     args.threads)
               for n in ("fp32", "fp16", "ptq_int8", "qat_int8")}
    runners["fp32 (pytorch eager)"] = torch_runner(dense, x)
    runners["fp16 (pytorch eager)"] = torch_runner(HalfPrecision(copy.deepcopy(dense), torch.float16), x)
    runners["bf16 (pytorch eager)"] = torch_runner(HalfPrecision(copy.deepcopy(dense), torch.bfloat16), x)
    stats = measure_latency(runners, threads=args.threads, calls=args.calls, retries=2)
    ref = stats["fp32 (onnxruntime)"].p50_ms
    timing = {k: {"p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "iqr_ms": s.iqr_ms, "noisy": s.noisy,
                  "speedup_vs_ort_fp32": ref / s.p50_ms} for k, s in stats.items()}

    out = root / "results" / "quant_resnet20"
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), **host_cpu(),
              "threads": args.threads, "calls": args.calls, "runs_wall_s": round(total_wall),
              "dense_test_acc": rows["fp32"]["test_acc"], "rows": rows, "latency": timing}
    int8 = rows["ptq_int8"]
    result["checks"] = {
        "ptq_int8_at_least_1.5x_faster_than_fp32": timing["ptq_int8 (onnxruntime)"]["speedup_vs_ort_fp32"] >= INT8_MIN_SPEEDUP,
        "qat_int8_at_least_1.5x_faster_than_fp32": timing["qat_int8 (onnxruntime)"]["speedup_vs_ort_fp32"] >= INT8_MIN_SPEEDUP,
        "ptq_int8_loses_at_most_1pt": int8["delta_acc"] >= -INT8_MAX_LOSS,
        "qat_int8_loses_at_most_1pt": rows["qat_int8"]["delta_acc"] >= -INT8_MAX_LOSS,
        "int8_at_most_30pct_of_fp32_bytes": int8["bytes_artifact"] <= INT8_MAX_BYTES * rows["fp32"]["bytes_artifact"]}
    result["thresholds"] = {"int8_min_speedup": INT8_MIN_SPEEDUP, "int8_max_loss": INT8_MAX_LOSS,
                            "int8_max_bytes_fraction": INT8_MAX_BYTES, "source": SOURCE}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")

    fp32_bytes = rows["fp32"]["bytes_artifact"]
    lines = ["# Quantisation of ResNet-20 on Fashion-MNIST: fp32, fp16, bf16, int8 PTQ, int8 QAT", "",
             f"`experiments/quant_resnet20.py`, {result['date']}; CPU flags: {result['cpu_flags']}. Dense model: 4 epochs "
             f"(Adam 1e-3, cosine), cached and shared by every row. All five runs: {total_wall / 60:.1f} min wall. "
             "Accuracy: test split (10,000 images) run through the deployed file (bf16: PyTorch).", "",
             "| deployable | test acc | Δ vs fp32 (pt) | artifact bytes | % of fp32 |", "|---|---:|---:|---:|---:|"]
    for n, r in rows.items():
        lines.append(f"| {n} | {r['test_acc']:.4f} | {r['delta_acc'] * 100:+.2f} | {r['bytes_artifact']:,.0f} | "
                     f"{100 * r['bytes_artifact'] / fp32_bytes:.1f}% |")
    lines += ["", f"Batch-1 latency, all side by side in one process, interleaved, {args.threads} threads, "
              f"{args.calls} calls each:", "",
              "| runtime | p50 ms | p90 ms | IQR ms | speedup vs ORT fp32 |", "|---|---:|---:|---:|---:|"]
    for k, t in timing.items():
        lines.append(f"| {k} | {t['p50_ms']:.3f} | {t['p90_ms']:.3f} | {t['iqr_ms']:.3f}{' (noisy)' if t['noisy'] else ''} | "
                     f"{t['speedup_vs_ort_fp32']:.2f}x |")
    lines += ["", "Checks: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in result["checks"].items())]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
