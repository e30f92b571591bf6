"""fp32 vs fp16 vs bf16 vs int8 (post-training and quantisation-aware) for ResNet-20 on Fashion-MNIST.

Every row is a real edgebench run from a cached dense ResNet-20 (3 epochs, Adam 1e-3, cosine), one per seed:
``+method=fp16``, ``bf16``, ``ptq_int8`` and ``qat_int8`` (1 epoch of fake-quantised fine-tuning at
lr 1e-4). Test accuracy is computed from each deployed file: the fp32 and fp16 ONNX files and the
int8 ONNX files through ONNX Runtime, bf16 through PyTorch (ONNX Runtime has no bf16 convolution).
Artifact bytes are the files' sizes.

Latency: after all runs, every deployable is timed side by side in this one process at batch 1,
interleaved (rotating order), 2 threads, 300 calls after warm-up; PyTorch eager fp32/fp16/bf16 are
timed too, so the CPU's half-precision slowdown is shown. Speedups are against ONNX Runtime fp32.

Every figure is the mean and 95% t interval over ``--seeds`` (accuracy) or ``--repeats`` interleaved
measurements (latency).

    python experiments/quant_resnet20.py     # -> results/quant_resnet20.md, results/quant_resnet20.json
    python experiments/quant_resnet20.py --seeds 1 --runs-only   # one seed's runs only (one process per core)
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
from edgebench.stats import mean_ci

COMMON = ["model=resnet20", "data=fashion_mnist", "trainer.max_epochs=3", "trainer.progress_bar=none", "measure.latency=false",
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
    ap.add_argument("--seeds", default="0,1,2", help="replicates: one dense model and five runs per seed")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved latency measurements (replicates)")
    ap.add_argument("--runs-only", action="store_true",
                    help="run (or reuse) the runs and stop; a later call with every seed writes the report")
    args = ap.parse_args()
    root = Path.cwd()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs_dir = root / "results" / "runs" / "quant_resnet20"
    per_seed, t_start = {}, time.perf_counter()
    for seed in seeds:
        per_seed[seed] = {}
        for name, extra in METHODS.items():
            t0 = time.perf_counter()
            res = pipeline.run(pipeline.compose(COMMON + extra + [f"seed={seed}"], root, runs_dir / f"seed{seed}" / name))
            m = res.metrics
            per_seed[seed][name] = {"test_acc": m["test/acc"], "delta_acc": m["delta/acc"],
                                    "bytes_artifact": m["size/bytes_artifact"], "run_id": res.run_id,
                                    "wall_s": round(time.perf_counter() - t0)}
            print(f"seed {seed} {name}: test acc {m['test/acc']:.4f}, {m['size/bytes_artifact']:,.0f} B "
                  f"[{per_seed[seed][name]['wall_s']} s]", flush=True)
    if args.runs_only:
        return
    total_wall = time.perf_counter() - t_start
    rows = {}
    for name in METHODS:
        rs = [per_seed[s][name] for s in seeds]
        rows[name] = {"bytes_artifact": rs[0]["bytes_artifact"], "run_ids": [r["run_id"] for r in rs]}
        for k in ("test_acc", "delta_acc"):  # delta: against the same seed's fp32 model (paired)
            rows[name][k], rows[name][f"{k}_ci"] = mean_ci([r[k] for r in rs])

    # side by side: every deployable of the first seed, interleaved in one process; --repeats measurements
    seed0 = seeds[0]
    cfg = pipeline.compose(COMMON + [f"seed={seed0}"], root)
    spec = validate(cfg)
    dense = build_model(spec.model, (1, 28, 28), 10)
    dense.load_state_dict(torch.load(cache.entry_dir(spec.paths.cache_dir, spec) / "model.pt", weights_only=True))
    dense.eval()
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    from mlflow.tracking import MlflowClient  # each run's model: its one copy, in MLflow's artifact store

    from edgebench.tracking import download_model_file

    client = MlflowClient(spec.paths.mlflow_tracking_uri)
    files = {}
    for n in ("fp32", "fp16", "ptq_int8", "qat_int8"):
        dst = runs_dir / f"seed{seed0}" / n / per_seed[seed0][n]["run_id"]
        dst.mkdir(parents=True, exist_ok=True)
        files[n] = download_model_file(client, per_seed[seed0][n]["run_id"], "model.onnx", dst)
    runners = {f"{n} (onnxruntime)": onnxruntime_runner(Path(f), x, args.threads) for n, f in files.items()}
    runners["fp32 (pytorch eager)"] = torch_runner(dense, x)
    runners["fp16 (pytorch eager)"] = torch_runner(HalfPrecision(copy.deepcopy(dense), torch.float16), x)
    runners["bf16 (pytorch eager)"] = torch_runner(HalfPrecision(copy.deepcopy(dense), torch.bfloat16), x)
    repeats = []
    for _ in range(args.repeats):
        stats = measure_latency(runners, threads=args.threads, calls=args.calls, retries=2)
        ref = stats["fp32 (onnxruntime)"].p50_ms
        repeats.append({k: {"p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "iqr_ms": s.iqr_ms, "noisy": s.noisy,
                            "speedup_vs_ort_fp32": ref / s.p50_ms} for k, s in stats.items()})
    timing = {}
    for k in runners:
        timing[k] = {"noisy_repeats": sum(r[k]["noisy"] for r in repeats)}
        for f in ("p50_ms", "p90_ms", "iqr_ms", "speedup_vs_ort_fp32"):
            timing[k][f], timing[k][f"{f}_ci"] = mean_ci([r[k][f] for r in repeats])

    out = root / "results" / "quant_resnet20"
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), **host_cpu(), "seeds": seeds,
              "threads": args.threads, "calls": args.calls, "latency_repeats": args.repeats,
              "runs_wall_s": round(total_wall), "dense_test_acc": rows["fp32"]["test_acc"],
              "dense_test_acc_ci": rows["fp32"]["test_acc_ci"], "rows": rows, "per_seed": per_seed,
              "latency": timing, "latency_repeats_raw": repeats}
    speed = {n: timing[f"{n} (onnxruntime)"]["speedup_vs_ort_fp32"] for n in ("ptq_int8", "qat_int8")}
    result["checks"] = {
        "ptq_int8_at_least_1.5x_faster_than_fp32": speed["ptq_int8"] >= INT8_MIN_SPEEDUP,
        "qat_int8_at_least_1.5x_faster_than_fp32": speed["qat_int8"] >= INT8_MIN_SPEEDUP,
        "ptq_int8_loses_at_most_1pt": rows["ptq_int8"]["delta_acc"] >= -INT8_MAX_LOSS,
        "qat_int8_loses_at_most_1pt": rows["qat_int8"]["delta_acc"] >= -INT8_MAX_LOSS,
        "int8_at_most_30pct_of_fp32_bytes":
            rows["ptq_int8"]["bytes_artifact"] <= INT8_MAX_BYTES * rows["fp32"]["bytes_artifact"]}
    result["thresholds"] = {"int8_min_speedup": INT8_MIN_SPEEDUP, "int8_max_loss": INT8_MAX_LOSS,
                            "int8_max_bytes_fraction": INT8_MAX_BYTES, "source": SOURCE}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")

    def pm(m, ci, f="{:.4f}", scale=1.0):
        return f"{f.format(m * scale)} ± {f.replace('+', '').format(ci * scale)}" if ci == ci else f.format(m * scale)

    fp32_bytes = rows["fp32"]["bytes_artifact"]
    lines = ["# Quantisation of ResNet-20 on Fashion-MNIST: fp32, fp16, bf16, int8 PTQ, int8 QAT", "",
             f"`experiments/quant_resnet20.py`, {result['date']}; CPU flags: {result['cpu_flags']}. Seeds {seeds}: one "
             f"dense model per seed (3 epochs, Adam 1e-3, cosine), shared by that seed's five rows. All runs: "
             f"{total_wall / 60:.0f} min wall on 2 cores (runs already in the store are reused). Accuracy: test split "
             "(10,000 images) run through the deployed file (bf16: PyTorch); mean ± the half-width of the 95% t "
             f"interval over the {len(seeds)} seeds; Δ is paired with the same seed's fp32 model.", "",
             "| deployable | test acc | Δ vs fp32 (pt) | artifact bytes | % of fp32 |", "|---|---:|---:|---:|---:|"]
    for n, r in rows.items():
        lines.append(f"| {n} | {pm(r['test_acc'], r['test_acc_ci'])} | {pm(r['delta_acc'], r['delta_acc_ci'], '{:+.2f}', 100)} | "
                     f"{r['bytes_artifact']:,.0f} | {100 * r['bytes_artifact'] / fp32_bytes:.1f}% |")
    lines += ["", f"Batch-1 latency of seed {seed0}'s deployables, all side by side in one process, interleaved, "
              f"{args.threads} threads, {args.calls} calls each; {args.repeats} such measurements one after the other, "
              "mean ± 95% t interval over them; `noisy`: in how many of the measurements the runtime's spread was "
              "flagged as noisy. Speedups are taken within each measurement, then averaged.", "",
              "| runtime | p50 ms | IQR ms | noisy | speedup vs ORT fp32 |", "|---|---:|---:|---:|---:|"]
    for k, t in timing.items():
        lines.append(f"| {k} | {pm(t['p50_ms'], t['p50_ms_ci'], '{:.3f}')} | {t['iqr_ms']:.3f} | "
                     f"{t['noisy_repeats']}/{args.repeats} | {pm(t['speedup_vs_ort_fp32'], t['speedup_vs_ort_fp32_ci'], '{:.2f}')}x |")
    lines += ["", f"Checks, thresholds fixed before the run ({SOURCE}; accuracy on the mean): "
              + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in result["checks"].items())]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
