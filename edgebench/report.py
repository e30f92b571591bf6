"""What a run prints at the end: a summary table, the MLflow run id and how to open the UI."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from edgebench.pipeline import RunResult


def _si(n: float, unit: str = "") -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".strip()


def print_summary(result: "RunResult", ui: str, console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    m, t = result.metrics, result.tags
    table = Table(title="edgebench run", title_justify="left")
    compressed = t["method"] != "none"
    cols = ["model", "data", "method", "device", "test acc", *(["Δ acc"] if compressed else []), "params",
            *(["sparsity"] if compressed else []), "file", "MACs", "peak act.", "host p50",
            *(["speedup host / MACs"] if compressed else []), "fits device", "device est."]
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "data", "method", "device", "fits device") else "right")
    r = result.device_report
    fits = "-" if r is None else ("yes" if r.fits else "[bold red]NO[/]")
    est = "-"
    if r is not None and r.latency_ms_est is not None:
        est = f"{r.latency_ms_est:.3g} ms (est.)"
    p50 = f"{m['latency/host_p50_ms']:.3g} ms" if "latency/host_p50_ms" in m else "-"
    file = _si(m["size/bytes_artifact"], "B") if "size/bytes_artifact" in m else "-"
    peak = _si(m["memory/peak_activation_bytes"], "B") if "memory/peak_activation_bytes" in m else "-"
    extra_acc = [f"{m['delta/acc']:+.4f}"] if compressed else []
    extra_size = [f"{m.get('size/sparsity', 0):.1%}"] if compressed else []
    speed = []
    if compressed:
        host = f"{m['latency/host_speedup']:.2f}x" if "latency/host_speedup" in m else "-"
        speed = [f"{host} / {m.get('compute/theoretical_speedup', 1):.2f}x"]
    table.add_row(t["model"], t["data"], t["method"], t["device"], f"{m['test/acc']:.4f}", *extra_acc,
                  _si(m["size/params"]), *extra_size, file, _si(m["compute/macs"]), peak, p50, *speed, fits, est)
    console.print(table)
    if r is not None and not r.fits:
        console.print(f"[bold red]does not fit {r.name}:[/] " + "; ".join(r.reasons), soft_wrap=True)
    if r is not None and r.note and t["device"] != "host":
        console.print(f"device estimate: {r.note}", soft_wrap=True)
    if m.get("latency/host_noisy"):
        console.print("host latency was noisy (IQR/median > max_noise after re-measuring)", soft_wrap=True)
    # plain lines, never wrapped, so they can be copied
    console.print(f"baseline: {'from cache' if result.baseline_from_cache else 'trained in this run'}", soft_wrap=True)
    console.print(f"MLflow run id: {result.run_id}", soft_wrap=True, highlight=False)
    console.print(f"open the MLflow UI: {ui}", soft_wrap=True, highlight=False)
