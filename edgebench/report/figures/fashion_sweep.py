"""The fashion_sweep study's extra table: which arms are on the accuracy / size and accuracy / latency frontiers.

On the arms' means over the seeds (``values``: ``{arm: {metric: {seed: value}}}``), through the report layer's
:func:`edgebench.report.pareto.pareto`: an arm is on a frontier when no other arm has a higher-or-equal mean test
accuracy at a lower-or-equal mean cost (one of them strictly). Size is ``size/bytes_smallest``. Latency is relative
to the dense parent, ``1 / latency/host_speedup`` (1 for the reference arm): each run was timed interleaved with
its own dense parent, whereas p50s of different runs were measured at different times on a possibly busy machine.
Two arms whose relative latencies' 95% intervals over the seeds overlap count as equally fast (the more accurate
one dominates).
"""

from __future__ import annotations

import math

import pandas as pd

from edgebench.report.pareto import pareto
from edgebench.stats import mean_ci


def _stat(xs: dict) -> tuple[float, float]:
    if not xs:
        return math.nan, math.nan
    m, h = mean_ci([xs[s] for s in sorted(xs)])
    return m, 0.0 if math.isnan(h) else h


def relative_latency(study, values) -> dict[str, dict]:
    """``{arm: {seed: 1 / speedup}}``; the reference arm (the dense parent) is 1 on each of its seeds."""
    out = {}
    for a in study.arms:
        if a == study.reference:
            out[a] = {s: 1.0 for s in values[a]["test/acc"]}
        else:
            out[a] = {s: 1.0 / v for s, v in values[a].get("latency/host_speedup", {}).items() if v > 0}
    return out


def frontiers(study, runs, values) -> dict:
    arms = list(study.arms)
    acc = pd.Series({a: _stat(values[a]["test/acc"])[0] for a in arms})
    size = {a: _stat(values[a].get("size/bytes_smallest", {})) for a in arms}
    rel = {a: _stat(xs) for a, xs in relative_latency(study, values).items()}
    on_size = pareto(acc, pd.Series({a: m for a, (m, _) in size.items()}))
    on_lat = pareto(acc, pd.Series({a: m for a, (m, _) in rel.items()}), pd.Series({a: h for a, (_, h) in rel.items()}))
    lines = ["## Frontiers (on the arms' means)", "",
             "Latency relative to the dense parent (1 / latency/host_speedup, mean ± 95% interval over the seeds); "
             "two latencies whose intervals overlap count as equal.", "",
             "| arm | test/acc | size/bytes_smallest | on the size frontier | relative latency | "
             "on the latency frontier |", "|---|---:|---:|---|---:|---|"]
    for a in arms:
        b = "n/a" if math.isnan(size[a][0]) else f"{size[a][0]:,.0f}"
        r = "n/a" if math.isnan(rel[a][0]) else f"{rel[a][0]:.3f}" + (f" ± {rel[a][1]:.3f}" if rel[a][1] else "")
        lines.append(f"| {a} | {acc[a]:.4f} | {b} | {'**yes**' if on_size[a] else ''} | {r} | "
                     f"{'**yes**' if on_lat[a] else ''} |")
    doc = {"frontier_size": [a for a in arms if on_size[a]], "frontier_latency": [a for a in arms if on_lat[a]],
           "relative_latency": {a: {"mean": m, "half": h} for a, (m, h) in rel.items()}}
    return {"markdown": "\n".join(lines), "json": doc}
