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
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    m, t = result.metrics, result.tags
    table = Table(title="edgebench run", title_justify="left")
    for col in ("model", "data", "method", "device", "test acc", "params", "size fp32", "MACs"):
        table.add_column(col, justify="right" if col not in ("model", "data", "method", "device") else "left")
    table.add_row(t["model"], t["data"], t["method"], t["device"], f"{m['test/acc']:.4f}",
                  _si(m["size/params"]), _si(m["size/bytes_fp32"], "B"), _si(m["compute/macs"]))
    console.print(table)
    # plain lines, never wrapped, so they can be copied
    console.print(f"baseline: {'from cache' if result.baseline_from_cache else 'trained in this run'}", soft_wrap=True)
    console.print(f"MLflow run id: {result.run_id}", soft_wrap=True, highlight=False)
    console.print(f"open the MLflow UI: {ui}", soft_wrap=True, highlight=False)
