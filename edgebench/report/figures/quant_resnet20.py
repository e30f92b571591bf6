"""quant_resnet20's extra: every deployable of one seed timed side by side, in one process.

A run times its own artifact against its dense parent; this compares all the arms' files at once (batch 1,
interleaved in rotating order, ``threads`` threads, ``calls`` calls after warm-up), plus PyTorch eager fp32 /
fp16 / bf16 of the same dense model, so the CPU's half-precision slowdown shows. ``repeats`` such measurements,
one after the other; speedups are taken within each measurement against ONNX Runtime fp32, then averaged (mean
and 95% t interval over the repeats). It is a measurement made when the report is written, on the machine that
writes it: a later ``--report-only`` measures again. The runs' files are read back from their MLflow store, the
dense PyTorch model from the store entry named by the runs' ``baseline.key`` tag. The speed thresholds come
from the study file (``extra_args.checks``), each with its source, judged by the study's rule (the whole 95%
interval at or above the threshold).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from edgebench.stats import mean_ci


def _dense_model(row, results_dir: Path):
    import torch

    from edgebench.config import ModelConfig
    from edgebench.models import build_model

    model, data = str(row["model.name"]), str(row["data.name"])
    shape = tuple(int(v) for v in str(row["data.input_shape"]).split("x"))  # logged as CxHxW
    entry = results_dir / "cache" / "baselines" / f"{model}-{data}-{row['baseline.key']}" / "model.pt"
    net = build_model(ModelConfig(name=model), shape, int(row.get("data.num_classes", 10) or 10))
    net.load_state_dict(torch.load(entry, weights_only=True))
    return net.eval(), shape


def side_by_side(study, runs, values) -> dict[str, Any]:
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from edgebench.export.onnx import onnxruntime_runner
    from edgebench.measure.latency import host_cpu, measure_latency, torch_runner
    from edgebench.quant.runtime import HalfPrecision
    from edgebench.tracking import download_model_file, sqlite_path

    a = study.extra_args
    seed, threads, calls, repeats = int(a.get("seed", 0)), int(a.get("threads", 2)), int(a.get("calls", 300)), \
        int(a.get("repeats", 3))
    onnx_arms, ref = list(a.get("onnx", [])), str(a.get("reference", study.reference))
    of_seed = runs[runs["seed"] == seed].set_index("study.arm")
    missing = [arm for arm in onnx_arms if arm not in of_seed.index]
    if missing:
        return {"markdown": f"Side-by-side latency: not measured (no finished run of seed {seed} for "
                            f"{', '.join(missing)}).", "json": {"missing": missing}}
    uri = mlflow.get_tracking_uri()  # report.load_runs set it to the study's store
    client = MlflowClient(uri)
    dense, shape = _dense_model(of_seed.loc[ref], sqlite_path(uri).parent)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        runners = {}
        for arm in onnx_arms:
            f = download_model_file(client, of_seed.loc[arm, "run_id"], "model.onnx", Path(tmp) / arm)
            runners[f"{arm} (onnxruntime)"] = onnxruntime_runner(Path(f), x, threads)
        runners[f"{ref} (pytorch eager)"] = torch_runner(dense, x)
        runners["fp16 (pytorch eager)"] = torch_runner(HalfPrecision(copy.deepcopy(dense), torch.float16), x)
        runners["bf16 (pytorch eager)"] = torch_runner(HalfPrecision(copy.deepcopy(dense), torch.bfloat16), x)
        base = f"{ref} (onnxruntime)"
        raw = []
        for _ in range(repeats):
            stats = measure_latency(runners, threads=threads, calls=calls, retries=2)
            raw.append({k: {"p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "iqr_ms": s.iqr_ms, "noisy": bool(s.noisy),
                            "speedup": stats[base].p50_ms / s.p50_ms} for k, s in stats.items()})
    timing = {}
    for k in runners:
        timing[k] = {"noisy_repeats": sum(r[k]["noisy"] for r in raw)}
        for f in ("p50_ms", "iqr_ms", "speedup"):
            timing[k][f], timing[k][f"{f}_ci"] = mean_ci([r[k][f] for r in raw])
    checks = []
    for c in a.get("checks", []):
        t = timing[f"{c['arm']} (onnxruntime)"]
        low, high = t["speedup"] - t["speedup_ci"], t["speedup"] + t["speedup_ci"]
        ok = None if t["speedup_ci"] != t["speedup_ci"] else (low >= c["threshold"] if c["rule"] == "at_least"
                                                               else high <= c["threshold"])
        checks.append({**c, "mean": t["speedup"], "low": low, "high": high, "passed": ok})

    def pm(m, h, f="{:.3f}"):
        return f.format(m) + ("" if h != h else " ± " + f.format(h))

    cpu = host_cpu()
    lines = ["## Side-by-side host latency (seed %d's deployables, one process)" % seed, "",
             f"Batch 1, interleaved, {threads} threads, {calls} calls each after warm-up; {repeats} measurements one "
             "after the other, mean ± 95% t interval over them; `noisy`: in how many of them the runtime's spread "
             "stayed above the noise limit after a re-measurement. Speedups are taken within each measurement against "
             f"{base}, then averaged. Measured when this report was written, on {cpu['cpu']} "
             f"(flags: {cpu['cpu_flags']}).", "",
             f"| runtime | p50 ms | IQR ms | noisy | speedup vs {base} |", "|---|---:|---:|---:|---:|"]
    for k, t in timing.items():
        lines.append(f"| {k} | {pm(t['p50_ms'], t['p50_ms_ci'])} | {t['iqr_ms']:.3f} | {t['noisy_repeats']}/{repeats} "
                     f"| {pm(t['speedup'], t['speedup_ci'], '{:.2f}')}x |")
    if checks:
        lines += ["", "Speed thresholds (extra_args.checks of the study file, fixed before the run; passed when the "
                  "whole 95% interval over the measurements lies at or above the threshold):", "",
                  "| deployable | speedup | 95% interval | threshold | passed | source |", "|---|---:|---|---|---|---|"]
        for c in checks:
            passed = "n/a" if c["passed"] is None else ("yes" if c["passed"] else "**no**")
            lines.append(f"| {c['arm']} | {c['mean']:.2f}x | [{c['low']:.2f}, {c['high']:.2f}] | {c['rule']} "
                         f"{c['threshold']:g} | {passed} | {c['source']} |")
    return {"markdown": "\n".join(lines),
            "json": {"seed": seed, "threads": threads, "calls": calls, "repeats": repeats, **cpu,
                     "run_ids": {arm: of_seed.loc[arm, "run_id"] for arm in onnx_arms}, "latency": timing,
                     "raw": raw, "checks": checks}}
