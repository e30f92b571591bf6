"""conf/study/low_rank.yaml's ``extra`` hook: what the study's runs cannot log, measured on each model's dense weights
of the budget's first seed (its dense arm's stored baseline, the parent of every method arm of that seed).

1. Reconstruction at the same budget (Yu et al.'s claim that L + S reconstructs better than either part alone): the
   relative Frobenius error over all factorisable layers together, each layer kept at about half its weights by low
   rank alone (the ``low rank`` arm's ratio), sparse alone (the largest entries, as many as low rank keeps) and low
   rank + sparse (the ``low rank + sparse`` arm's ratio and sparse fraction, its GoDec alternations).
2. Latency of the deployed forms side by side: every method's deployed structure built from the same dense weights
   (a dense runtime's speed depends on the shapes, not the values), exported to ONNX and timed in ONNX Runtime,
   batch 1, all forms of a model interleaved in one measurement, on the machine that writes the report.

The arms it reads are ``<model> dense``, ``<model> low rank``, ``<model> low rank + sparse``, ``<model> magnitude
pruning`` and ``<model> structured pruning``; their methods' settings come from the study file.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import torch

FORMS = ("low rank", "low rank + sparse", "magnitude pruning", "structured pruning")
THREADS, CALLS = 2, 300


def reconstruction(dense, lr, lrs) -> dict:
    """Relative Frobenius error over the layers both plans factorise: low rank alone (``lr``'s ratio), sparse alone
    (as many entries as low rank keeps) and L + S (``lrs``'s ratio and sparse fraction, GoDec)."""
    from edgebench.measure.size import weight_layers
    from edgebench.methods.low_rank import LowRankConfig, _top_k, decompose, godec, plan

    layers = dict(weight_layers(dense))
    lr_plans = {p.name: p for p in plan(copy.deepcopy(dense), LowRankConfig(energy=None, ratio=lr.ratio)) if p.kind}
    lrs_plans = {p.name: p for p in plan(copy.deepcopy(dense), LowRankConfig(energy=None, ratio=lrs.ratio)) if p.kind}
    out = {"low rank": [0.0, 0, 0.0], "sparse": [0.0, 0, 0.0], "low rank + sparse": [0.0, 0, 0.0]}  # err^2, params, |W|^2
    for name in sorted(lr_plans.keys() & lrs_plans.keys()):
        m = layers[name]
        w = m.weight.detach()
        norm2 = float(w.norm() ** 2)
        p = lr_plans[name]
        _, e = decompose(m, p)
        out["low rank"][0] += e ** 2 * norm2
        out["low rank"][1] += p.params_after
        out["sparse"][0] += float((w - _top_k(w, p.params_after)).norm() ** 2)
        out["sparse"][1] += p.params_after
        q = lrs_plans[name]
        lps, e, _ = godec(m, q, lrs.sparse_fraction, lrs.iterations)
        out["low rank + sparse"][0] += e ** 2 * norm2
        out["low rank + sparse"][1] += q.params_after + int((lps.sparse.weight != 0).sum())
        for v in out.values():
            v[2] += norm2
    return {k: {"rel_error": (v[0] / v[2]) ** 0.5 if v[2] else float("nan"), "params": v[1]} for k, v in out.items()}


def forms(dense, steps: dict, shape) -> dict:
    """Each method's deployed structure from the dense weights, without fine-tuning."""
    import torch_pruning as tp

    from edgebench.measure.size import weight_layers
    from edgebench.methods.low_rank import LowRankConfig, factorise, godec, plan
    from edgebench.methods.pruning import _output_layer, _set_module

    out = {"dense": dense}
    low = copy.deepcopy(dense)
    factorise(low, plan(low, LowRankConfig(energy=None, ratio=steps["low rank"].ratio)))
    out["low rank"] = low
    lrs = steps["low rank + sparse"]
    lps = copy.deepcopy(dense)
    layers = dict(weight_layers(lps))
    for p in plan(copy.deepcopy(dense), LowRankConfig(energy=None, ratio=lrs.ratio)):
        if p.kind:
            _set_module(lps, p.name, godec(layers[p.name], p, lrs.sparse_fraction, lrs.iterations)[0])
    out["low rank + sparse"] = lps
    mag = copy.deepcopy(dense)
    with torch.no_grad():
        for _, m in weight_layers(mag):
            w = m.weight
            k = max(1, int(w.numel() * steps["magnitude pruning"].sparsity))
            w.mul_(w.abs() > w.abs().flatten().kthvalue(k).values)
    out["magnitude pruning"] = mag
    st = copy.deepcopy(dense)
    tp.pruner.MetaPruner(st, torch.randn(1, *shape), importance=tp.importance.MagnitudeImportance(p=1),
                         pruning_ratio=steps["structured pruning"].ratio, ignored_layers=[_output_layer(st)]).step()
    out["structured pruning"] = st.eval()
    return out


def side_by_side(nets: dict, shape, threads: int = THREADS, calls: int = CALLS) -> dict:
    """Batch-1 ONNX Runtime latency of every form, interleaved in one measurement (up to 2 re-measurements)."""
    from edgebench.export.onnx import export_onnx, onnxruntime_runner
    from edgebench.measure.latency import measure_latency

    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    runners, nbytes = {}, {}
    with tempfile.TemporaryDirectory() as d:
        for name, net in nets.items():
            art = export_onnx(net, x, Path(d) / name.replace(" ", "_").replace("+", "p") / "model.onnx")
            runners[name] = onnxruntime_runner(art.path, x, threads)
            nbytes[name] = sum(f.stat().st_size for f in Path(art.path).parent.iterdir() if f.is_file())
        stats = measure_latency(runners, threads=threads, calls=calls, retries=2)
    ref = stats["dense"].p50_ms
    return {n: {"p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "iqr_ms": s.iqr_ms, "noisy": bool(s.noisy),
                "speedup": ref / s.p50_ms, "onnx_bytes": nbytes[n]} for n, s in stats.items()}


def figures(study, runs, values, context) -> dict:
    from edgebench.measure.latency import host_cpu
    from edgebench.report.figures.stored import arm_step, dense_model

    models = [a[: -len(" dense")] for a in study.arms if a.endswith(" dense")]
    recon, lat, skipped = {}, {}, {}
    for model in models:
        try:
            dense, splits = dense_model(study, f"{model} dense", context)
        except FileNotFoundError as e:
            skipped[model] = str(e)
            continue
        shape = splits.input_shape
        steps = {f: arm_step(study, f"{model} {f}", context) for f in FORMS}
        recon[model] = reconstruction(dense, steps["low rank"], steps["low rank + sparse"])
        lat[model] = side_by_side(forms(dense, steps, shape), shape)
    seed = study.budgets[context["budget"]].seeds[0]
    lrs = arm_step(study, f"{models[0]} low rank + sparse", context) if models else None
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cpu = host_cpu()
    L = [f"## Reconstruction at the same budget (seed-{seed} dense weights, before fine-tuning)", "",
         "Relative Frobenius error over all factorisable layers together, each layer kept at about half its weights "
         "by: low rank alone, sparse alone (the largest entries, as many as low rank keeps), low rank + sparse"
         + (f" (rank at {lrs.ratio} of the layer + {lrs.sparse_fraction:.0%} of the entries, {lrs.iterations} GoDec "
            "alternations)" if lrs else "") + ". Yu et al.'s claim: L + S reconstructs better than either alone.", "",
         "| model | low rank | sparse | low rank + sparse | L + S best? |", "|---|---:|---:|---:|---|"]
    for model, r in recon.items():
        e = {k: v["rel_error"] for k, v in r.items()}
        cells = " | ".join(f"{e[k]:.4f} ({r[k]['params']:,} w)" for k in ("low rank", "sparse", "low rank + sparse"))
        L.append(f"| {model} | {cells} | {'yes' if e['low rank + sparse'] < min(e['low rank'], e['sparse']) else 'no'} |")
    L += ["", "## Latency of the deployed forms, side by side", "",
          f"{date}, measured when this report was written, on {cpu.get('cpu')} (flags: {cpu.get('cpu_flags')}): for "
          f"each model, every method's deployed structure built from the seed-{seed} dense weights (a dense runtime's "
          "speed depends on the shapes, not the values) exported to ONNX and timed in ONNX Runtime, batch 1, "
          f"{THREADS} threads, all forms of a model interleaved in one measurement ({CALLS} calls, up to 2 "
          "re-measurements when noisy). Low rank + sparse runs its sparse branch as a dense tensor (no sparse kernel "
          "in ONNX Runtime); magnitude pruning's zeros are stored and multiplied like any weight. A machine busy with "
          "other work makes these figures noisy: rewrite the report (--report-only) on a quiet one.", "",
          "| model | form | ONNX bytes | p50 ms | IQR ms | speedup vs dense | noisy |", "|---|---|---:|---:|---:|---:|---|"]
    for model, fs in lat.items():
        for name, r in fs.items():
            L.append(f"| {model} | {name} | {r['onnx_bytes']:,} | {r['p50_ms']:.4f} | {r['iqr_ms']:.4f} | "
                     f"{r['speedup']:.2f}x | {'yes' if r['noisy'] else ''} |")
    if skipped:
        L += ["", "Not measured: " + "; ".join(f"{m} ({why})" for m, why in skipped.items()) + "."]
    return {"markdown": "\n".join(L), "json": {"seed": seed, "reconstruction": recon,
                                               "side_by_side_latency": {"date": date, "threads": THREADS, "calls": CALLS,
                                                                        **cpu, "models": lat},
                                               "skipped": skipped}}
