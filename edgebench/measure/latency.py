"""Batch-1 host latency: interleaved per-call timing of one or more runnables in one process.

Protocol: fixed thread count (recorded), at least ``warmup`` untimed calls of each runnable and
at least ``min_warmup_s`` seconds of them (tiny models finish 20 calls in a millisecond, before
thread pools and clocks settle), then ``calls`` rounds; each round calls every runnable once, in an order that rotates between
rounds, timed with ``time.perf_counter_ns``. Reported per runnable: median (p50), p90 and IQR in
ms. When any IQR/median exceeds ``max_noise``, the whole interleaved measurement is repeated
(up to ``retries`` times) and the last one is reported with ``noisy`` set if it is still noisy.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

# The runners of exported files belong to their exporters (Exporter.runner); these two are re-exported for scripts.
from edgebench.export.onnx import onnxruntime_runner  # noqa: E402,F401
from edgebench.export.tflite import litert_runner  # noqa: E402,F401

# The vector and matrix extensions that change CPU kernel speed (fp32 FMA, fp16/bf16/int8 dot products).
SPEED_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def host_cpu() -> dict[str, str]:
    """``{"cpu": model name, "cpu_flags": the SPEED_FLAGS it has}`` from /proc/cpuinfo ("unknown" elsewhere):
    recorded with every latency figure, since CPUs differ between machines."""
    model, flags = "unknown", "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and flags == "unknown":
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in SPEED_FLAGS if f in have)
    except OSError:
        pass
    return {"cpu": model, "cpu_flags": flags}


@dataclass
class LatencyStats:
    p50_ms: float
    p90_ms: float
    iqr_ms: float
    calls: int
    threads: int
    noisy: bool
    remeasured: int  # how many times the measurement was repeated for noise

    @property
    def noise(self) -> float:
        return self.iqr_ms / self.p50_ms if self.p50_ms else float("inf")


def torch_runner(model: nn.Module | Callable, example_input: torch.Tensor) -> Callable[[], object]:
    if isinstance(model, nn.Module):
        model = model.eval()
    x = example_input.clone()

    def run():
        with torch.inference_mode():
            return model(x)

    return run


def _stats(ns: list[int], threads: int, remeasured: int, max_noise: float) -> LatencyStats:
    ms = np.asarray(ns, dtype=np.float64) / 1e6
    q25, p50, q75, p90 = np.percentile(ms, [25, 50, 75, 90])
    iqr = float(q75 - q25)
    return LatencyStats(float(p50), float(p90), iqr, len(ms), threads, bool(iqr / p50 > max_noise), remeasured)


def measure_latency(runners: dict[str, Callable[[], object]], *, threads: int, warmup: int = 20, calls: int = 100,
                    max_noise: float = 0.1, retries: int = 1, min_warmup_s: float = 0.2) -> dict[str, LatencyStats]:
    """Interleaved batch-1 latency of every runner (see the module docstring)."""
    if calls < 1 or warmup < 0:
        raise ValueError(f"calls must be >= 1 and warmup >= 0, got calls={calls}, warmup={warmup}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    names = list(runners)
    try:
        for attempt in range(retries + 1):
            t_end = time.perf_counter() + min_warmup_s
            i = 0
            while i < warmup or time.perf_counter() < t_end:
                for n in names:
                    runners[n]()
                i += 1
            times: dict[str, list[int]] = {n: [] for n in names}
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                for i in range(calls):
                    k = i % len(names)
                    for n in names[k:] + names[:k]:
                        t0 = time.perf_counter_ns()
                        runners[n]()
                        times[n].append(time.perf_counter_ns() - t0)
            finally:
                if gc_was_enabled:
                    gc.enable()
            stats = {n: _stats(times[n], threads, attempt, max_noise) for n in names}
            if not any(s.noisy for s in stats.values()):
                return stats
            noise = ", ".join(f"{n}={s.noise:.2f}" for n, s in stats.items())
            if attempt < retries:
                log.info("latency noisy (IQR/median %s); measuring again", noise)
            else:
                log.warning("latency still noisy after %d re-measurement(s) (IQR/median %s); reported as noisy",
                            retries, noise)
        return stats
    finally:
        torch.set_num_threads(previous)
