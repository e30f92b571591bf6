"""What a run prints at the end: a summary table, the MLflow run id and how to open the UI."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from edgebench.record import RunResult


def _si(n: float, unit: str = "") -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".strip()


def print_summary(result: "RunResult", ui: str, console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    m, t = result.metrics, result.tags
    r = result.device_report
    compressed = t["method"] != "none"
    rows: list[tuple[str, str]] = [
        ("model / data", f"{t['model']} on {t['data']}"),
        ("method", t["method"]),
        ("test accuracy", f"{m['test/acc']:.4f}" + (f"  ({m['delta/acc'] * 100:+.2f} pt vs dense "
                                                     f"{m['baseline/test_acc']:.4f})" if compressed else "")),
        ("parameters", _si(m["size/params"]) + (f"  ({_si(m['size/params_nonzero'])} nonzero, sparsity "
                                                f"{m['size/sparsity']:.1%})" if m.get("size/sparsity", 0) >= 5e-4
                                                else "")),  # only where weights were removed: 0.0% says nothing
    ]
    if "distill/teacher_test_acc" in m:  # distillation: what the student learned from
        teacher = t.get("distill.teacher", "")
        teacher = f"the dense baseline ({t['model']})" if teacher in ("", "baseline") else teacher
        rows.insert(3, ("teacher", f"{teacher}: test accuracy {m['distill/teacher_test_acc']:.4f}"
                        + (f", {_si(m['distill/teacher_params'])} parameters" if "distill/teacher_params" in m else "")))
    if "lth/delta_vs_level0" in m:  # lottery tickets: the second reference, named
        rows.append(("vs level 0 (same budget)", f"{m['lth/delta_vs_level0'] * 100:+.2f} pt vs its level-0 network "
                     f"{m['lth/level0_test_acc']:.4f} (the line above: vs the fully trained dense baseline)"))
    if "quant.accuracy" in t:
        rows.append(("quantisation", f"accuracy {t['quant.accuracy'].split(':')[0]}, size {t['quant.size'].split(':')[0]}"))
    if "size/bytes_artifact" in m:
        from edgebench.export.registry import label

        kind = label(t.get("export.name"), t.get("export.format", "onnx"))  # the exporter's name for its format
        rows.append((f"model file ({t.get('export.dtype', 'fp32')} {kind})", f"{_si(m['size/bytes_artifact'], 'B')}  (gzip {_si(m['size/bytes_gzip'], 'B')}, "
                                         f"sparse encoding {_si(m['size/bytes_sparse'], 'B')})"))
    if "size/compression_ratio" in m:  # the dense fp32 weights over the smallest form (file, gzip, sparse encoding)
        ratio = m["size/compression_ratio"]
        smallest = min(m[k] for k in ("size/bytes_artifact", "size/bytes_gzip", "size/bytes_sparse") if k in m)
        rows.append(("compression", f"{ratio:.2f}x  ({_si(smallest, 'B')} smallest form vs {_si(smallest * ratio, 'B')} "
                                    "dense fp32 weights)"))
    rows.append(("MACs", _si(m["compute/macs"]) + (f"  ({_si(m['compute/macs_nonzero'])} touch nonzero weights)"
                                                  if compressed else "")))
    if "memory/peak_activation_bytes" in m:
        rows.append(("peak activations (estimate)", _si(m["memory/peak_activation_bytes"], "B")))
    if "memory/tflm_arena_bytes" in m:
        rows.append(("TFLite Micro arena (measured)", f"{int(m['memory/tflm_arena_bytes']):,} B on a 64-bit host "
                                                       "(declare it: model_data.h, kTensorArenaSize)"))
    if "latency/host_p50_ms" in m:
        rows.append(("host latency (measured)", escape(
            f"p50 {m['latency/host_p50_ms']:.3g} ms, p90 {m['latency/host_p90_ms']:.3g} ms, "
            f"{int(m['latency/host_threads'])} threads, {t.get('latency.runtime', 'onnxruntime')}")))
        if m.get("latency/host_noisy"):  # escaped: rich would read a bare [noisy] as markup and drop it
            iqr = f"IQR/median {m['latency/host_iqr_ms'] / m['latency/host_p50_ms']:.2f}" \
                if m.get("latency/host_iqr_ms") and m.get("latency/host_p50_ms") else "IQR/median"
            rows.append(("", escape(f"[noisy] {iqr} stayed above measure.max_noise after re-measuring: "
                                    "this machine was busy; treat the figures as rough")))
    if compressed:
        host = f"{m['latency/host_speedup']:.2f}x measured" if "latency/host_speedup" in m else "not measured"
        rows.append(("speedup vs dense", f"{host}; {m.get('compute/theoretical_speedup', 1):.2f}x fewer MACs (theoretical)"))
    if r is not None:
        rows.append((f"fits {t['device']}", ("yes" if r.fits else "[bold red]NO[/]: " + escape("; ".join(r.reasons)))
                     + f"  (RAM {r.ram_bytes:,} B, {'measured arena' if r.ram_source == 'tflm_arena' else 'estimate'})"))
        if r.latency_ms_est is not None:
            from edgebench.devices.published import label

            energy = ""
            if r.energy_mj_est is not None:
                bound = "upper bound" if r.energy_source.startswith("upper bound") else "from measured power"
                energy = f"; {r.energy_mj_est:.3g} mJ ({bound})"
            rows.append((f"on {t['device']} (estimate)", escape(f"{r.latency_text()}{energy}; for "
                                                                f"{label(r.runtime) if r.runtime else 'its runtime'}")))
            if r.calibration:  # an uncalibrated one says so itself
                rows.append(("", escape(r.calibration if not r.calibrated else f"calibration: {r.calibration}")))
    table = Table(title="edgebench run", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if r is not None and r.note and t["device"] != "host":
        console.print(f"device estimate: {escape(r.note)}", soft_wrap=True)
    # plain lines, never wrapped, so they can be copied
    console.print(f"baseline: {'from cache' if result.baseline_from_cache else 'trained in this run'}", soft_wrap=True)
    if getattr(result, "deployable", None):  # verbatim, one line: the file to copy onto the device
        console.print(f"deployable file: {result.deployable}", soft_wrap=True, highlight=False, markup=False)
    console.print(f"MLflow run id: {result.run_id}", soft_wrap=True, highlight=False)
    from edgebench.record import job_context

    if job_context() is None:  # a sweep prints the command once, at its end (edgebench.sweep)
        console.print(f"open the MLflow UI: {ui}", soft_wrap=True, highlight=False, markup=False,
                      emoji=False)  # verbatim: a quoted path keeps its brackets and colons
