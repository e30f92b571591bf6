"""When are int8 and low rank faster on this host? ONNX Runtime and LiteRT, batch 1 and 8, over separate processes.

Models (random weights: latency does not depend on trained values): ResNet-18 and MobileNet v2 at 3x224x224 (1000
classes), ResNet-20 at 3x32x32 and LeNet-5 at 1x28x28 (10 classes). Per model three files per runtime: fp32; int8
(ONNX Runtime: static QDQ, U8 activations / S8 per-channel weights, ``reduce_range`` off when the CPU has VNNI, on
otherwise, as edgebench's exporter writes it; LiteRT: full-integer int8 by PT2E, as the tflite_int8 exporter writes
it); low rank (``method=low_rank`` at a parameter budget of 0.5 per layer, fp32). Every file is written once; then
each of N fresh worker processes times, per (model, runtime, batch), the three files interleaved in the same process
(edgebench.measure.measure_latency). The speedup of a variant is fp32 p50 / variant p50 within a process; its figure
is the geometric mean over the processes with a 95% t interval (log speedups paired by process, edgebench.stats),
Holm-corrected over every comparison of the file. The rule, declared before the run: a variant is faster when the
whole interval lies above 1x, slower when it lies below, otherwise not distinguishable.

    python experiments/host_speed.py                  # 5 processes, 1 thread -> results/host_speed.md, .json
    python experiments/host_speed.py --models lenet5 --processes 2 --out /tmp/speed   # a minute
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

MODELS = {"resnet18": ((3, 224, 224), 1000), "mobilenet_v2": ((3, 224, 224), 1000),
          "resnet20": ((3, 32, 32), 10), "lenet5": ((1, 28, 28), 10)}
VARIANTS = ("fp32", "int8", "low rank")
RUNTIMES = ("onnxruntime", "litert")
BATCHES = (1, 8)
CALL_SECONDS = 6.0  # timed seconds per (model, runtime, batch) cell and process: calls = this / the slowest call
RULE = ("faster: the whole 95% interval of the speedup over the processes above 1x (Holm over the file's "
        "comparisons); slower: below 1x; otherwise not distinguishable (declared before the run)")


def has_vnni(flags: str) -> bool:
    return "avx512_vnni" in flags.split() or "avx_vnni" in flags.split()


def build(models: list[str], work: Path, reduce_range: bool) -> dict:
    """Write every file once: {model: {runtime: {variant: path}}}, plus each model's input shape."""
    from edgebench.config import ModelConfig
    from edgebench.export import export_onnx
    from edgebench.export.ort_int8 import quantize_int8
    from edgebench.export.tflite import convert_fp32, convert_int8
    from edgebench.methods.low_rank import LowRankConfig, factorise, plan
    from edgebench.models import build_model

    files: dict = {}
    for name in models:
        shape, classes = MODELS[name]
        torch.manual_seed(0)
        dense = build_model(ModelConfig(name=name), shape, classes).eval()
        low = copy.deepcopy(dense)
        factorise(low, plan(low, LowRankConfig(energy=None, ratio=0.5)))
        low.eval()
        x = torch.randn(1, *shape)
        calib = [torch.randn(8, *shape) for _ in range(4)]  # ranges for random weights: latency only
        d = work / name
        t0 = time.perf_counter()
        onnx = {"fp32": str(export_onnx(dense, x, d / "fp32" / "model.onnx").path),  # dynamic batch: one file
                "int8": str(quantize_int8(dense, x, d / "int8" / "model.onnx", calibration=calib,
                                          reduce_range=reduce_range).path),
                "low rank": str(export_onnx(low, x, d / "low" / "model.onnx").path)}
        lite = {}
        for b in BATCHES:  # static shapes: a file per batch size (LiteRT's resize fails on these graphs)
            xb = torch.randn(b, *shape)
            lite[b] = {"fp32": str(convert_fp32(dense, xb, d / f"fp32_b{b}.tflite", batch=b)),
                       "int8": str(convert_int8(dense, xb, calib, d / f"int8_b{b}.tflite", batch=b)),
                       "low rank": str(convert_fp32(low, xb, d / f"low_b{b}.tflite", batch=b))}
        files[name] = {"shape": list(shape), "onnxruntime": {b: onnx for b in BATCHES}, "litert": lite}
        print(f"  {name}: files written in {time.perf_counter() - t0:.0f} s", flush=True)
    return files


def worker(spec: dict) -> dict:
    """One process: every (model, runtime, batch) cell's three files timed interleaved; p50 ms per variant."""
    from edgebench.measure import measure_latency
    from edgebench.measure.latency import litert_runner, onnxruntime_runner

    threads, out = spec["threads"], {}
    torch.set_num_threads(threads)
    for name, f in spec["files"].items():
        for runtime in RUNTIMES:
            for batch in BATCHES:
                x = torch.randn(batch, *f["shape"])
                make = (lambda p: onnxruntime_runner(p, x, threads)) if runtime == "onnxruntime" else (
                    lambda p: litert_runner(p, x, threads))
                runners = {v: make(f[runtime][str(batch)][v]) for v in VARIANTS}
                slowest = 0.0
                for r in runners.values():  # one untimed call each sizes the number of calls
                    t0 = time.perf_counter()
                    r()
                    slowest = max(slowest, time.perf_counter() - t0)
                calls = int(max(10, min(200, CALL_SECONDS / (len(runners) * max(slowest, 1e-6)))))
                stats = measure_latency(runners, threads=threads, warmup=3, calls=calls)
                out[f"{name}|{runtime}|{batch}"] = {v: {"p50_ms": s.p50_ms, "iqr_ms": s.iqr_ms, "noisy": s.noisy,
                                                        "calls": s.calls} for v, s in stats.items()}
    return out


def summarise(procs: list[dict]) -> list[dict]:
    """Per cell and variant: the speedup over fp32 (geometric mean over processes, 95% t interval), Holm over all."""
    from edgebench.stats import holm, paired

    rows = []
    for cell in procs[0]:
        name, runtime, batch = cell.split("|")
        fp32 = {i: math.log(p[cell]["fp32"]["p50_ms"]) for i, p in enumerate(procs)}
        for v in VARIANTS[1:]:
            d = paired(fp32, {i: math.log(p[cell][v]["p50_ms"]) for i, p in enumerate(procs)})
            rows.append({"model": name, "runtime": runtime, "batch": int(batch), "variant": v,
                         "fp32_p50_ms": math.exp(sum(fp32.values()) / len(fp32)),
                         "variant_p50_ms": math.exp(sum(math.log(p[cell][v]["p50_ms"]) for p in procs) / len(procs)),
                         "speedup": math.exp(d.mean), "low": math.exp(d.low), "high": math.exp(d.high), "p": d.p,
                         "per_process": [math.exp(x) for x in d.diffs], "n": d.n,
                         "noisy": sum(p[cell][v]["noisy"] or p[cell]["fp32"]["noisy"] for p in procs)})
    for r, q in zip(rows, holm([r["p"] for r in rows])):
        r["p_holm"] = q
        sig = r["n"] >= 2 and q < 0.05
        r["verdict"] = ("faster" if sig and r["low"] > 1 else "slower" if sig and r["high"] < 1
                        else "not distinguishable")
    return rows


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = ["# When are int8 and low rank faster on this host?", "",
             f"`python experiments/host_speed.py`, {meta['date']} UTC, {meta['wall_min']:.1f} min wall: "
             f"{meta['processes']} separate processes, {meta['threads']} thread(s), on {meta['cpu']} (flags: "
             f"{meta['cpu_flags']}); onnxruntime {meta['onnxruntime']}, ai-edge-litert {meta['litert']}. ONNX "
             f"Runtime int8: static QDQ, reduce_range={meta['reduce_range']} ({meta['reduce_range_why']}). Random "
             "weights (latency does not depend on trained values); low rank: a parameter budget of 0.5 per layer "
             "(Tucker-2 convolutions, SVD linear layers), fp32. Speedup: fp32 p50 / variant p50, timed interleaved "
             "in one process; the figure is the geometric mean over the processes with its 95% t interval.", "",
             f"**Rule.** {RULE}.", "",
             "| model (input) | runtime | batch | fp32 p50 ms | int8 speedup [95%] | int8 | low rank speedup [95%] "
             "| low rank |", "|---|---|---:|---:|---:|---|---:|---|"]
    by = {}
    for r in rows:
        by.setdefault((r["model"], r["runtime"], r["batch"]), {})[r["variant"]] = r
    for (name, runtime, batch), vs in by.items():
        shape = "x".join(map(str, MODELS[name][0]))
        cells = [f"{vs[v]['speedup']:.2f}x [{vs[v]['low']:.2f}, {vs[v]['high']:.2f}] | {vs[v]['verdict']} "
                 f"(Holm p {vs[v]['p_holm']:.2g})" for v in VARIANTS[1:]]
        lines.append(f"| {name} ({shape}) | {runtime} | {batch} | {vs['int8']['fp32_p50_ms']:.3f} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Per-process speedups, noisy measurements and Holm-adjusted p values: `results/host_speed.json`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--processes", type=int, default=5, help="separate worker processes (default 5)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of every runtime (default 1)")
    ap.add_argument("--out", type=Path, default=Path("results"), help="folder of host_speed.md/.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(json.loads(Path(a.worker).read_text()))))
        return 0
    if a.processes < 2:
        ap.error("--processes must be at least 2 (an interval over processes needs two)")
    import onnxruntime

    from edgebench.measure.latency import host_cpu

    cpu = host_cpu()
    vnni = has_vnni(cpu["cpu_flags"])
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="edgebench-speed-") as tmp:
        print(f"writing the files of {', '.join(a.models)}", flush=True)
        files = build(a.models, Path(tmp), reduce_range=not vnni)
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"files": files, "threads": a.threads}))
        procs = []
        for i in range(a.processes):
            t1 = time.perf_counter()
            res = subprocess.run([sys.executable, __file__, "--worker", str(spec)], capture_output=True, text=True)
            if res.returncode:
                sys.exit(f"worker process {i + 1} failed:\n{res.stderr[-3000:]}")
            procs.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"  process {i + 1} of {a.processes}: {time.perf_counter() - t1:.0f} s", flush=True)
    from importlib.metadata import version

    meta = {"date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(t0)), "wall_min": (time.time() - t0) / 60,
            "processes": a.processes, "threads": a.threads, **cpu, "machine": platform.machine(),
            "onnxruntime": onnxruntime.__version__, "litert": version("ai-edge-litert"),
            "reduce_range": not vnni,
            "reduce_range_why": "the CPU has VNNI: no u8*s8 saturation" if vnni else
            "no VNNI: 7-bit weights avoid the u8*s8 saturation", "rule": RULE}
    rows = summarise(procs)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "host_speed.json").write_text(json.dumps({**meta, "rows": rows, "processes_raw": procs}, indent=1) + "\n")
    text = markdown(meta, rows)
    (a.out / "host_speed.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
