"""Low rank, low rank + sparse, magnitude and structured pruning at a matched parameter budget.

On Fashion-MNIST, each model's dense baseline (cached per seed) is compressed to about half its
conv/linear weights by four methods, fine-tuned for the same epochs, and measured: test accuracy
(3 seeds, mean and 95% t interval), parameters kept (nonzero), ONNX file bytes, the analytic sparse
size, and host latency in ONNX Runtime interleaved with the dense model (batch 1). Then, on each
model's seed-0 dense weights, the reconstruction error of every factorisable layer at the same
parameter budget (half the layer) by low rank alone, sparse alone (the largest half of the entries)
and low rank + sparse (Yu et al.'s claim: L + S reconstructs better than either alone).

    python experiments/low_rank.py [--models lenet_300_100,conv4,resnet20] [--seeds 0,1,2] [--out results/low_rank]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path

import torch

from edgebench import cache, pipeline
from edgebench.config import ModelConfig, validate
from edgebench.measure.latency import host_cpu
from edgebench.measure.size import weight_layers
from edgebench.methods.low_rank import LowRankConfig, _top_k, godec, plan, svd_layers, tucker_layers
from edgebench.models import build_model
from edgebench.stats import mean_ci

# The training budget per model, chosen so that 3 seeds of everything finish in about an hour on 2 cores:
# dense epochs, fine-tuning epochs of every method, and the fraction of the training batches seen per epoch.
BUDGET = {"lenet_300_100": {"epochs": 3, "retrain": 2, "limit": 1.0},
          "conv4": {"epochs": 2, "retrain": 1, "limit": 0.5},
          "resnet20": {"epochs": 2, "retrain": 1, "limit": 0.15}}
# Structured pruning's channel ratio that keeps about half of each model's parameters (measured on the
# untrained nets: LeNet-300-100 0.5 -> 47%, Conv-4 0.3 -> 49%, ResNet-20 0.3 -> 48%).
STRUCTURED_RATIO = {"lenet_300_100": 0.5, "conv4": 0.3, "resnet20": 0.3}
LR_RATIO, LRS_RATIO, LRS_SPARSE = 0.5, 0.45, 0.05  # L alone at half a layer; L + S at 45% + 5%
log = logging.getLogger("low_rank")


def methods(model: str) -> dict[str, list[str]]:
    rt = f"method.retrain_epochs={BUDGET[model]['retrain']}"
    return {
        "low rank": ["+method=low_rank", "method.energy=null", f"method.ratio={LR_RATIO}", rt],
        "low rank + sparse": ["+method=low_rank_sparse", "method.energy=null", f"method.ratio={LRS_RATIO}",
                              f"method.sparse_fraction={LRS_SPARSE}", rt],
        "magnitude pruning": ["+method=magnitude_pruning", "method.sparsity=0.5", rt],
        "structured pruning": ["+method=structured_pruning", f"method.ratio={STRUCTURED_RATIO[model]}", rt],
    }


def common(model: str, seed: int) -> list[str]:
    b = BUDGET[model]
    return [f"model={model}", "data=fashion_mnist", f"trainer.max_epochs={b['epochs']}",
            f"trainer.limit_train_batches={b['limit']}", f"seed={seed}", "trainer.progress_bar=none",
            "experiment_name=low_rank"]


def dense_params(model: str) -> int:
    return sum(p.numel() for p in build_model(ModelConfig(name=model), (1, 28, 28), 10).parameters())


def reconstruction(model: str, root: Path) -> dict:
    """Relative Frobenius error, summed over the factorisable layers of the seed-0 dense model, at half of each
    layer's weights: low rank alone, sparse alone (the largest entries) and low rank + sparse (GoDec)."""
    spec = validate(pipeline.compose(common(model, 0), root))
    dense = build_model(spec.model, (1, 28, 28), 10)
    dense.load_state_dict(torch.load(cache.entry_dir(spec.paths.store_dir, spec) / "model.pt", weights_only=True))
    layers = dict(weight_layers(dense))
    lr_plans = {p.name: p for p in plan(copy.deepcopy(dense), LowRankConfig(energy=None, ratio=LR_RATIO)) if p.kind}
    lrs_plans = {p.name: p for p in plan(copy.deepcopy(dense), LowRankConfig(energy=None, ratio=LRS_RATIO)) if p.kind}
    out = {"low rank": [0.0, 0, 0.0], "sparse": [0.0, 0, 0.0], "low rank + sparse": [0.0, 0, 0.0]}  # sq err, params, |W|^2
    for name in lr_plans.keys() & lrs_plans.keys():
        m = layers[name]
        w = m.weight.detach()
        norm2 = float(w.norm() ** 2)
        p = lr_plans[name]
        _, e = svd_layers(m, p.rank[0]) if p.kind == "svd" else tucker_layers(m, *p.rank)
        out["low rank"][0] += e ** 2 * norm2
        out["low rank"][1] += p.params_after
        s = _top_k(w, p.params_after)  # sparse alone with as many weights as L alone
        out["sparse"][0] += float((w - s).norm() ** 2)
        out["sparse"][1] += p.params_after
        q = lrs_plans[name]
        lps, e, _ = godec(m, q, LRS_SPARSE, 10)
        out["low rank + sparse"][0] += e ** 2 * norm2
        out["low rank + sparse"][1] += q.params_after + int((lps.sparse.weight != 0).sum())
        for v in out.values():
            v[2] += norm2
    return {k: {"rel_error": (v[0] / v[2]) ** 0.5, "params": v[1]} for k, v in out.items()}


def compressed_forms(model: str, root: Path) -> dict:
    """Each method's deployed structure built from the seed-0 dense weights, without fine-tuning (a dense runtime's
    latency depends on the shapes, not the values): dense, low rank, low rank + sparse, magnitude (50% zeros),
    structured (the matched channel ratio)."""
    import torch_pruning as tp

    from edgebench.methods.low_rank import LowRankConfig, factorise
    from edgebench.methods.pruning import _output_layer, _set_module

    spec = validate(pipeline.compose(common(model, 0), root))
    dense = build_model(spec.model, (1, 28, 28), 10)
    dense.load_state_dict(torch.load(cache.entry_dir(spec.paths.store_dir, spec) / "model.pt", weights_only=True))
    dense.eval()
    forms = {"dense": dense}
    low = copy.deepcopy(dense)
    factorise(low, plan(low, LowRankConfig(energy=None, ratio=LR_RATIO)))
    forms["low rank"] = low
    lps = copy.deepcopy(dense)
    layers = dict(weight_layers(lps))
    for p in plan(copy.deepcopy(dense), LowRankConfig(energy=None, ratio=LRS_RATIO)):
        if p.kind:
            _set_module(lps, p.name, godec(layers[p.name], p, LRS_SPARSE, 10)[0])
    forms["low rank + sparse"] = lps
    mag = copy.deepcopy(dense)
    with torch.no_grad():
        for _, m in weight_layers(mag):
            w = m.weight
            w.mul_(w.abs() > w.abs().flatten().kthvalue(max(1, w.numel() // 2)).values)
    forms["magnitude pruning"] = mag
    st = copy.deepcopy(dense)
    x = torch.randn(1, 1, 28, 28)
    tp.pruner.MetaPruner(st, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=STRUCTURED_RATIO[model],
                         ignored_layers=[_output_layer(st)]).step()
    forms["structured pruning"] = st.eval()
    return forms


def quiet_latency(models: list[str], root: Path, threads: int, calls: int) -> dict:
    """Batch-1 latency in ONNX Runtime of every form of a model, all interleaved in one measurement (run it on a
    quiet machine: ``--latency-only``)."""
    import os
    import tempfile

    from edgebench.export.onnx import export_onnx
    from edgebench.measure.latency import measure_latency, onnxruntime_runner

    out = {}
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as d:
        for model in models:
            runners, nbytes = {}, {}
            for name, net in compressed_forms(model, root).items():
                art = export_onnx(net, x, Path(d) / model / name.replace(" ", "_") / "model.onnx")
                runners[name] = onnxruntime_runner(art.path, x, threads)
                nbytes[name] = os.path.getsize(art.path)
            stats = measure_latency(runners, threads=threads, calls=calls, retries=2)
            ref = stats["dense"].p50_ms
            out[model] = {n: {"p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "iqr_ms": s.iqr_ms, "noisy": s.noisy,
                              "speedup": ref / s.p50_ms, "onnx_bytes": nbytes[n]} for n, s in stats.items()}
            log.info("%s: %s", model, {n: round(v["speedup"], 2) for n, v in out[model].items()})
    return out


def plot(rows: dict, models: list[str], path: Path) -> None:
    import matplotlib.ticker

    from edgebench.report.plots import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        first = rows[f"{model} / low rank"]
        d = mean_ci([r["dense_acc"] for r in first])
        ax.errorbar([first[0]["dense_params"]], [d[0]], yerr=[d[1]], fmt="k*", ms=10, capsize=3, label="dense")
        for name, marker in zip(methods(model), "osD^"):
            rs = rows[f"{model} / {name}"]
            acc = mean_ci([r["test_acc"] for r in rs])
            ax.errorbar([rs[0]["nonzero"]], [acc[0]], yerr=[acc[1]], fmt=marker, capsize=3, label=name)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1e3:,.0f}k"))
        ax.set_title(model)
        ax.set_xlabel("nonzero parameters")
        ax.set_ylabel("test accuracy (mean, 95% CI)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="lenet_300_100,conv4,resnet20")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="results/low_rank")
    ap.add_argument("--latency-only", action="store_true",
                    help="only the side-by-side latency of every method's deployed form (after the training runs, on a "
                         "quiet machine): appended to <out>.json and <out>.md")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    root = Path.cwd()
    if args.latency_only:
        result = json.loads(Path(args.out + ".json").read_text())
        lat = quiet_latency(models, root, args.threads, args.calls)
        result["quiet_latency"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads,
                                   "calls": args.calls, **host_cpu(), "models": lat}
        Path(args.out + ".json").write_text(json.dumps(result, indent=2))
        L = ["", "## Latency of the deployed forms, side by side", "",
             f"{result['quiet_latency']['date']}, on a machine running nothing else: for each model, every method's "
             "deployed structure (built from the seed-0 dense weights; a dense runtime's speed depends on the shapes, "
             "not the values) exported to ONNX and timed in ONNX Runtime, batch 1, "
             f"{args.threads} threads, all of a model interleaved in one measurement ({args.calls} calls, up to 2 "
             "re-measurements when noisy). Low rank + sparse runs its sparse branch as a dense tensor (no sparse "
             "kernel in ONNX Runtime); magnitude pruning's zeros are stored and multiplied like any weight.", "",
             "| model | form | ONNX bytes | p50 ms | IQR ms | speedup vs dense | noisy |", "|---|---|---:|---:|---:|---:|---|"]
        for model, forms in lat.items():
            for name, r in forms.items():
                L.append(f"| {model} | {name} | {r['onnx_bytes']:,} | {r['p50_ms']:.4f} | {r['iqr_ms']:.4f} | "
                         f"{r['speedup']:.2f}x | {'yes' if r['noisy'] else ''} |")
        with open(args.out + ".md", "a") as f:
            f.write("\n".join(L) + "\n")
        print("\n".join(L))
        return
    t0 = time.perf_counter()
    rows: dict = {}
    recon: dict = {}
    for model in models:
        for name, extra in methods(model).items():
            rs = []
            for seed in seeds:
                res = pipeline.run(pipeline.compose(common(model, seed) + extra, root))
                m = res.metrics
                rs.append({"test_acc": m["test/acc"], "dense_acc": m["baseline/test_acc"], "params": m["size/params"],
                           "dense_params": dense_params(model), "nonzero": m["size/params_nonzero"],
                           "bytes": m["size/bytes_artifact"],
                           "bytes_sparse": m["size/bytes_sparse"], "p50_ms": m["latency/host_p50_ms"],
                           "speedup": m["latency/host_speedup"], "noisy": bool(m["latency/host_noisy"]),
                           "acc_before_ft": m.get("low_rank/test_acc_before_finetune"), "run_id": res.run_id})
            rows[f"{model} / {name}"] = rs
            log.info("%s / %s done (%.1f min)", model, name, (time.perf_counter() - t0) / 60)
        recon[model] = reconstruction(model, root)
    out = {"seeds": seeds, "models": models, "budget": BUDGET, "methods": {m: methods(m) for m in models},
           "rows": rows, "reconstruction": recon, **host_cpu(),
           "wall_s": round(time.perf_counter() - t0), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    Path(args.out + ".json").write_text(json.dumps(out, indent=2))
    plot(rows, models, Path(args.out + ".png"))

    budget = "; ".join(f"{m}: dense {BUDGET[m]['epochs']} epochs, fine-tuning {BUDGET[m]['retrain']} epoch(s), "
                       f"{BUDGET[m]['limit']:.0%} of the training batches per epoch" for m in models)
    lines = ["# Low rank vs pruning at about half the weights (Fashion-MNIST)", "",
             f"`experiments/low_rank.py`, {out['date']}, {round(out['wall_s'] / 60, 1)} min on 2 cores. CPU: {out['cpu']} "
             f"(flags: {out['cpu_flags']}). Budget ({budget}): short, so the accuracies are below fully trained "
             f"ones; every method gets the same fine-tuning. Seeds {', '.join(map(str, seeds))}: mean and 95% t "
             "interval; 'vs dense' is paired by seed. Methods: low rank at half of each factorised layer "
             f"(method.ratio={LR_RATIO}), low rank + sparse (ratio {LRS_RATIO} + {LRS_SPARSE:.0%} of the entries in S), "
             "magnitude pruning (50% of the weights), structured pruning (the channel ratio that keeps about half "
             f"the parameters: {', '.join(f'{m} {STRUCTURED_RATIO[m]}' for m in models)}). Bytes: the ONNX file as "
             "written (fp32), and the analytic sparse size (each tensor in the smallest of dense, bitmask and CSR). "
             "Latency: batch 1 in ONNX Runtime, interleaved with the dense model in the same process; the median "
             "of the seeds' speedups; 'noisy' counts the runs whose latency spread flagged the machine as noisy.",
             "", "![accuracy vs parameters](low_rank.png)", "",
             "| model | method | test acc (95% CI) | vs dense (pt) | nonzero params | ONNX bytes | sparse bytes | speedup | noisy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for model in models:
        first = rows[f"{model} / low rank"]
        d = mean_ci([r["dense_acc"] for r in first])
        lines.append(f"| {model} | dense | {d[0]:.4f} +- {d[1]:.4f} | | {int(first[0]['dense_params']):,} | | | 1.00x | |")
        for name in methods(model):
            rs = rows[f"{model} / {name}"]
            acc = mean_ci([r["test_acc"] for r in rs])
            diff = mean_ci([r["test_acc"] - r["dense_acc"] for r in rs])
            sp = sorted(r["speedup"] for r in rs)
            lines.append(f"| {model} | {name} | {acc[0]:.4f} +- {acc[1]:.4f} | {diff[0] * 100:+.2f} +- {diff[1] * 100:.2f} | "
                         f"{int(rs[0]['nonzero']):,} | {int(rs[0]['bytes']):,} | {int(rs[0]['bytes_sparse']):,} | "
                         f"{sp[len(sp) // 2]:.2f}x | {sum(r['noisy'] for r in rs)}/{len(rs)} |")
    lines += ["", "## Reconstruction at the same budget (seed-0 dense weights, before fine-tuning)", "",
              "Relative Frobenius error over all factorisable layers together, each layer kept at about half its "
              "weights by: low rank alone, sparse alone (the largest entries, as many as low rank keeps), low rank + "
              f"sparse (rank at {LRS_RATIO} of the layer + {LRS_SPARSE:.0%} of the entries, 10 GoDec alternations).", "",
              "| model | low rank | sparse | low rank + sparse | L + S best? |", "|---|---:|---:|---:|---|"]
    for model in models:
        r = recon[model]
        e = {k: v["rel_error"] for k, v in r.items()}
        cells = " | ".join(f"{e[k]:.4f} ({r[k]['params']:,} w)" for k in ("low rank", "sparse", "low rank + sparse"))
        lines.append(f"| {model} | {cells} | {'yes' if e['low rank + sparse'] < min(e['low rank'], e['sparse']) else 'no'} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
