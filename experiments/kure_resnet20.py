"""KURE robustness on ResNet-20 / Fashion-MNIST: accuracy with the weights quantised at 8..2 bits, with and without KURE.

One edgebench run (``+method=kure``) per seed: from that seed's cached dense ResNet-20 (3 epochs, Adam 1e-3, cosine),
two fine-tunings of ``--epochs`` each with the same seed, schedule and learning rate: one with the
kurtosis regulariser (lambda 1.0, target 1.8), one without (the control). Each is then evaluated with
its conv and linear weights (all but the first and the last layer, as in the paper) quantised by
two post-training quantisers, uniform symmetric per-tensor min/max and per-layer k-means, at every
bit width. Accuracy is simulated (weights quantised, then dequantised to fp32).

The report gives the mean and 95% t interval over ``--seeds``, and KURE - control paired by seed.

    python experiments/kure_resnet20.py     # -> results/kure_resnet20.md, .json, .png
    python experiments/kure_resnet20.py --seeds 1 --runs-only   # one seed's run only (one process per core)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgebench import pipeline
from edgebench.plots import kure_robustness
from edgebench.stats import mean_ci


def main() -> None:
    import logging

    from mlflow.tracking import MlflowClient

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs, KURE and control alike")
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--bits", default="8,4,3,2")
    ap.add_argument("--seeds", default="0,1,2", help="replicates: one dense model and one KURE run per seed")
    ap.add_argument("--runs-only", action="store_true",
                    help="run (or reuse) the runs and stop; a later call with every seed writes the report")
    args = ap.parse_args()
    root = Path.cwd()
    seeds = [int(s) for s in args.seeds.split(",")]
    bits = [int(b) for b in args.bits.split(",")]
    t0 = time.perf_counter()
    per_seed = {}
    for seed in seeds:
        overrides = ["model=resnet20", "data=fashion_mnist", "trainer.max_epochs=3", f"seed={seed}",
                     "trainer.progress_bar=none", "measure.latency=false", "experiment_name=kure_resnet20",
                     "+method=kure", f"method.finetune_epochs={args.epochs}", f"method.lambda={args.lam}",
                     f"method.eval_bits=[{args.bits}]"]
        cfg = pipeline.compose(overrides, root, root / "results" / "runs" / "kure_resnet20" / f"seed{seed}")
        res = pipeline.run(cfg)
        client = MlflowClient(cfg.paths.mlflow_tracking_uri)
        table = json.loads(Path(client.download_artifacts(res.run_id, "quant/robustness.json")).read_text())
        run = client.get_run(res.run_id)
        per_seed[seed] = {"run_id": res.run_id, "dense_test_acc": res.metrics["baseline/test_acc"], "table": table,
                          "kurtosis": {k: v for k, v in run.data.metrics.items() if "kurtosis" in k}}
        print(f"seed {seed}: run {res.run_id} [{time.perf_counter() - t0:.0f} s]", flush=True)
    if args.runs_only:
        return
    wall = time.perf_counter() - t0

    # mean and 95% t interval over the seeds; Δ = KURE - control, paired by seed (same dense model)
    cols = ["acc_fp32"] + [f"acc_w{b}{s}" for b in bits for s in ("", "_kmeans")]
    table = {}
    for which in ("kure", "control"):
        table[which] = {c: mean_ci([per_seed[s]["table"][which][c] for s in seeds]) for c in cols}
    table["delta"] = {c: mean_ci([per_seed[s]["table"]["kure"][c] - per_seed[s]["table"]["control"][c] for s in seeds])
                      for c in cols}
    kurt = {k: mean_ci([per_seed[s]["kurtosis"][k] for s in seeds if k in per_seed[s]["kurtosis"]])
            for k in per_seed[seeds[0]]["kurtosis"]}
    dense = mean_ci([per_seed[s]["dense_test_acc"] for s in seeds])
    out = root / "results" / "kure_resnet20"
    kure_robustness(out.with_suffix(".png"), {k: {c: v[0] for c, v in table[k].items()} for k in ("kure", "control")},
                    bits, ci={k: {c: v[1] for c, v in table[k].items()} for k in ("kure", "control")})
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "seeds": seeds, "epochs": args.epochs, "lambda": args.lam,
              "wall_s": round(wall), "dense_test_acc": dense, "kurtosis": kurt, "table": table, "per_seed": per_seed}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")

    def pm(v, f="{:.4f}", scale=1.0):
        m, ci = v
        return f"{f.format(m * scale)} ± {f.replace('+', '').format(ci * scale)}" if ci == ci else f.format(m * scale)

    def verdict(v):
        m, ci = v
        if ci != ci:
            return ""
        return " (KURE higher)" if m - ci > 0 else " (KURE lower)" if m + ci < 0 else ""

    k, c, d = table["kure"], table["control"], table["delta"]
    lines = ["# KURE: accuracy of ResNet-20 (Fashion-MNIST) with quantised weights, with and without KURE", "",
             f"`experiments/kure_resnet20.py`, {result['date']}, {wall / 60:.0f} min wall on 2 CPU cores (runs already "
             f"in the store are reused). Seeds {seeds}: one dense model per seed (3 epochs, Adam 1e-3, cosine; test "
             f"accuracy {pm(dense)}), and from it two fine-tunings of {args.epochs} epochs (Adam, lr 1e-4, cosine, the "
             f"same seed): KURE with lambda {args.lam}, target kurtosis 1.8, on every conv/linear layer but the first, "
             "and the control without it. Weights of all layers but the first and last quantised after training; "
             "**accuracy simulated** (quantise, dequantise to fp32); activations stay fp32. Test split: 10,000 images. "
             "Mean ± the half-width of the 95% t interval over the seeds; Δ = KURE - control, paired by seed, "
             "called an effect only when its interval excludes zero.", "",
             f"Mean kurtosis of the regularised layers: KURE {pm(kurt.get('method/kurtosis_mean', (float('nan'),) * 2), '{:.2f}')}, "
             f"no KURE {pm(kurt.get('method/control_kurtosis_mean', (float('nan'),) * 2), '{:.2f}')}.", "",
             "| weight bits | uniform, KURE | uniform, no KURE | Δ (pt) | k-means, KURE | k-means, no KURE | Δ (pt) |",
             "|---:|---:|---:|---:|---:|---:|---:|",
             f"| fp32 | {pm(k['acc_fp32'])} | {pm(c['acc_fp32'])} | {pm(d['acc_fp32'], '{:+.2f}', 100)}{verdict(d['acc_fp32'])} | | | |"]
    for b in bits:
        u, km = f"acc_w{b}", f"acc_w{b}_kmeans"
        lines.append(f"| {b} | {pm(k[u])} | {pm(c[u])} | {pm(d[u], '{:+.2f}', 100)}{verdict(d[u])} | "
                     f"{pm(k[km])} | {pm(c[km])} | {pm(d[km], '{:+.2f}', 100)}{verdict(d[km])} |")
    lines += ["", "![accuracy against weight bits](kure_resnet20.png)"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
