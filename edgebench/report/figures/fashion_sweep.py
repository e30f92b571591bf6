"""The fashion_sweep study's extra table: which arms are on the accuracy / size and accuracy / latency frontiers.

On the arms' means over the seeds (``values``: ``{arm: {metric: {seed: value}}}``), through the report layer's
:func:`edgebench.report.pareto.pareto`: an arm is on a frontier when no other arm has a higher-or-equal mean test
accuracy at a lower-or-equal mean cost (one of them strictly). For latency, two arms whose latencies' 95% intervals
over the seeds overlap count as equally fast (the more accurate one dominates).
"""

from __future__ import annotations

import math

import pandas as pd

from edgebench.report.pareto import pareto
from edgebench.stats import mean_ci

COSTS = [("size/bytes_smallest", "size", False), ("latency/host_p50_ms", "host latency", True)]


def _stat(xs: dict) -> tuple[float, float]:
    if not xs:
        return math.nan, math.nan
    m, h = mean_ci([xs[s] for s in sorted(xs)])
    return m, 0.0 if math.isnan(h) else h


def frontiers(study, runs, values) -> dict:
    arms = list(study.arms)
    acc = pd.Series({a: _stat(values[a]["test/acc"])[0] for a in arms})
    table = pd.DataFrame({"test/acc": acc})
    for metric, _, noisy in COSTS:
        stats = {a: _stat(values[a].get(metric, {})) for a in arms}
        cost = pd.Series({a: m for a, (m, _) in stats.items()})
        noise = pd.Series({a: h for a, (_, h) in stats.items()}) if noisy else None
        table[metric] = cost
        table[f"front {metric}"] = pareto(acc, cost, noise)
    lines = ["## Frontiers (on the arms' means; latency ties within the 95% intervals)", "",
             "| arm | test/acc | size/bytes_smallest | on the size frontier | latency/host_p50_ms | "
             "on the latency frontier |", "|---|---:|---:|---|---:|---|"]
    for a, r in table.iterrows():
        size = "n/a" if math.isnan(r["size/bytes_smallest"]) else f"{r['size/bytes_smallest']:,.0f}"
        lat = "n/a" if math.isnan(r["latency/host_p50_ms"]) else f"{r['latency/host_p50_ms']:.4f}"
        lines.append(f"| {a} | {r['test/acc']:.4f} | {size} | {'**yes**' if r['front size/bytes_smallest'] else ''} | "
                     f"{lat} | {'**yes**' if r['front latency/host_p50_ms'] else ''} |")
    doc = {"frontier_size": [a for a in arms if table.loc[a, "front size/bytes_smallest"]],
           "frontier_latency": [a for a in arms if table.loc[a, "front latency/host_p50_ms"]]}
    return {"markdown": "\n".join(lines), "json": doc}
