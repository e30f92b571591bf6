"""conf/study/attention.yaml's ``extra`` hook: what the study's runs cannot log.

1. Mnih et al. 2014's errors (MNIST, their Tables 1 and 2), for orientation.
2. The canvas sweep: every model of the study built for 28, 60 and 100 pixel canvases, untrained (compute and
   latency do not depend on the weights): params, MACs, peak activations, ONNX bytes, and batch-1 latency in ONNX
   Runtime, every model of a canvas interleaved in one measurement, on the machine that writes the report; drawn as
   ``attention_canvas.png`` (MACs and latency against the canvas).
3. Where the 6-glimpse RAM of the budget's first seed looked on the first 8 test images of each dataset (its stored
   model): ``attention_glimpses_<data>.png``.

The arms it reads are ``<data> <model label>``: ``translated RAM 6 glimpses``, ``cluttered LeNet-5`` ...
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

CANVASES = (28, 60, 100)
THREADS, CALLS = 1, 200
GLIMPSES_ARM = "RAM 6 glimpses"
# Mnih et al. 2014, Tables 1-2 (test error %, MNIST, trained to convergence): 60x60 translated and cluttered
# translated (4 8x8 pieces)
PAPER = {"translated": {"convolutional, 2 layers": 1.62, "RAM, 4 glimpses": 1.54, "RAM, 6 glimpses": 1.22,
                        "RAM, 8 glimpses": 1.2},
         "cluttered": {"convolutional, 2 layers": 8.09, "RAM, 4 glimpses": 4.96, "RAM, 6 glimpses": 4.08,
                       "RAM, 8 glimpses": 4.04, "random glimpses": 14.4}}


def _models(study, context) -> dict:
    """One model config per label (the first dataset's arms): ``{label: ModelConfig}``."""
    from edgebench.report.figures.stored import arm_spec

    data = study.arms and next(iter(study.arms)).split(" ", 1)[0]
    return {arm.split(" ", 1)[1]: arm_spec(study, arm, context).model for arm in study.arms
            if arm.split(" ", 1)[0] == data}


def canvas_sweep(models: dict, canvases=CANVASES, threads: int = THREADS, calls: int = CALLS) -> dict:
    from edgebench.export.onnx import export_onnx, onnxruntime_runner
    from edgebench.measure.compute import count_macs
    from edgebench.measure.latency import measure_latency
    from edgebench.measure.memory import peak_activation_bytes
    from edgebench.models import build_model

    out: dict = {}
    with tempfile.TemporaryDirectory() as d:
        for canvas in canvases:
            torch.manual_seed(0)
            x = torch.randn(1, 1, canvas, canvas)
            runners, rows = {}, {}
            for k, (name, cfg) in enumerate(models.items()):
                net = build_model(cfg, (1, canvas, canvas), 10).eval()
                art = export_onnx(net, x, Path(d) / f"{canvas}_{k}" / "model.onnx")
                rows[name] = {"params": sum(p.numel() for p in net.parameters()), "macs": count_macs(net, x),
                              "peak_activation_bytes": peak_activation_bytes(net, x, 4),
                              "onnx_bytes": sum(os.path.getsize(f) for f in Path(art.path).parent.iterdir())}
                runners[name] = onnxruntime_runner(art.path, x, threads)
            stats = measure_latency(runners, threads=threads, calls=calls, retries=2)
            for name, s in stats.items():
                rows[name].update({"p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "iqr_ms": s.iqr_ms, "noisy": bool(s.noisy)})
            out[str(canvas)] = rows
    return out


def _plot_sweep(sweep: dict, path: Path) -> None:
    from edgebench.report.plots import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    canvases = [int(c) for c in sweep]
    for name in next(iter(sweep.values())):
        axes[0].plot(canvases, [sweep[str(c)][name]["macs"] / 1e6 for c in canvases], "o-", label=name)
        axes[1].plot(canvases, [sweep[str(c)][name]["p50_ms"] for c in canvases], "o-", label=name)
    axes[0].set_ylabel("MACs per image (M)")
    axes[1].set_ylabel("host latency p50, ONNX Runtime (ms)")
    for ax in axes:
        ax.set_xlabel("canvas side (pixels)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def glimpse_figures(study, context) -> tuple[list[str], dict]:
    """Where the 6-glimpse RAM of the first seed looks on 8 test images of each dataset (its stored model)."""
    from edgebench.report.method_plots import draw
    from edgebench.report.figures.stored import dense_model

    files, skipped = [], {}
    for arm in study.arms:
        data, label = arm.split(" ", 1)
        if label != GLIMPSES_ARM:
            continue
        try:
            net, splits = dense_model(study, arm, context)
        except FileNotFoundError as e:
            skipped[arm] = str(e)
            continue
        figure = net.report_plots(splits.test_x[:8], splits.test_y[:8], splits.class_names)["attention/glimpses.png"]
        path = Path(context["out_dir"]) / f"attention_glimpses_{data}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        draw(figure, path)
        files.append(path.name)
    return files, skipped


def figures(study, runs, values, context) -> dict:
    from edgebench.measure.latency import host_cpu

    sweep = canvas_sweep(_models(study, context))
    png = Path(context["out_dir"]) / "attention_canvas.png"
    _plot_sweep(sweep, png)
    files, skipped = glimpse_figures(study, context)
    seed = study.budgets[context["budget"]].seeds[0]
    cpu = host_cpu()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    L = ["## Mnih et al. 2014 (MNIST, test error %, their Tables 1 and 2; trained to convergence)", "",
         "| model | 60x60 translated | 60x60 cluttered |", "|---|---:|---:|"]
    for name in PAPER["cluttered"]:
        t = PAPER["translated"].get(name)
        L.append(f"| {name} | {'' if t is None else f'{t:.2f}'} | {PAPER['cluttered'][name]:.2f} |")
    L += ["", "## Compute against the canvas (untrained models; batch 1)", "",
          f"{date}, measured when this report was written, on {cpu.get('cpu')} (flags: {cpu.get('cpu_flags')}): "
          f"ONNX Runtime, {THREADS} thread(s), every model of a canvas interleaved in one measurement ({CALLS} calls); "
          "'noisy' = the interquartile range exceeded 10% of the median after 2 repeats.", "",
          f"![MACs and latency against the canvas]({png.name})", "",
          "| canvas | model | params | MACs | peak activations (B) | ONNX bytes | latency p50 (ms) | noisy |",
          "|---:|---|---:|---:|---:|---:|---:|---|"]
    for canvas, rows in sweep.items():
        for name, r in rows.items():
            L.append(f"| {canvas} | {name} | {r['params']:,} | {r['macs']:,} | {r['peak_activation_bytes']:,} | "
                     f"{r['onnx_bytes']:,} | {r['p50_ms']:.3f} | {'yes' if r['noisy'] else ''} |")
    L += ["", f"## Where the 6-glimpse RAM looked (seed {seed}, first 8 test images; title: label -> prediction)", ""]
    L += [f"![{f}]({f})" for f in files]
    if skipped:
        L += ["", "Not drawn: " + "; ".join(f"{a} ({why})" for a, why in skipped.items()) + "."]
    return {"markdown": "\n".join(L), "json": {"paper_error_pct": PAPER, "canvas_sweep": sweep,
                                               "latency": {"date": date, "threads": THREADS, "calls": CALLS, **cpu},
                                               "glimpse_seed": seed, "glimpse_figures": files, "skipped": skipped}}
