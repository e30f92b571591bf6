"""KURE robustness on ResNet-20 / Fashion-MNIST: accuracy with the weights quantised at 8..3 bits, with and without KURE.

One edgebench run (``+method=kure``): from the cached dense ResNet-20 (4 epochs, Adam 1e-3, cosine),
two fine-tunings of ``--epochs`` each with the same seed, schedule and learning rate: one with the
kurtosis regulariser (lambda 1.0, target 1.8), one without (the control). Each is then evaluated with
its conv and linear weights (all but the first and the last layer, as in the paper) quantised by
two post-training quantisers, uniform symmetric per-tensor min/max and per-layer k-means, at every
bit width. Accuracy is simulated (weights quantised, then dequantised to fp32).

    python experiments/kure_resnet20.py     # -> results/kure_resnet20.md, .json, .png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgebench import pipeline
from edgebench.plots import kure_robustness


def main() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs, KURE and control alike")
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--bits", default="8,6,5,4,3")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    root = Path.cwd()
    overrides = ["model=resnet20", "data=fashion_mnist", "trainer.max_epochs=4", f"seed={args.seed}",
                 "trainer.progress_bar=none", "measure.latency=false", "experiment_name=kure_resnet20",
                 "+method=kure", f"method.finetune_epochs={args.epochs}", f"method.lambda={args.lam}",
                 f"method.eval_bits=[{args.bits}]"]
    t0 = time.perf_counter()
    res = pipeline.run(pipeline.compose(overrides, root, root / "results" / "runs" / "kure_resnet20"))
    wall = time.perf_counter() - t0
    m = res.metrics
    step_dir = root / "results" / "runs" / "kure_resnet20" / res.run_id / "step0"  # the run's files, its one step
    table = json.loads((step_dir / "method" / "kure" / "robustness.json").read_text())
    bits = [int(b) for b in args.bits.split(",")]
    out = root / "results" / "kure_resnet20"
    kure_robustness(out.with_suffix(".png"), table, bits)  # the figure the run logged as quant/robustness.png
    from mlflow.tracking import MlflowClient

    run = MlflowClient(pipeline.compose(overrides, root).paths.mlflow_tracking_uri).get_run(res.run_id)
    kurt = {k: v for k, v in run.data.metrics.items() if "kurtosis" in k}
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "overrides": overrides, "wall_s": round(wall),
              "dense_test_acc": m["baseline/test_acc"], "kurtosis": kurt, "table": table, "run_id": res.run_id}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# KURE: accuracy of ResNet-20 (Fashion-MNIST) with quantised weights, with and without KURE", "",
             f"`experiments/kure_resnet20.py`, {result['date']}, {wall / 60:.0f} min wall on 2 CPU cores. Dense model: "
             f"4 epochs, test accuracy {m['baseline/test_acc']:.4f}. Both models fine-tuned {args.epochs} epochs from it "
             f"(Adam, lr 1e-4, cosine, seed {args.seed}); KURE with lambda {args.lam}, target kurtosis 1.8, on every "
             "conv/linear layer but the first. Weights of all layers but the first and last quantised after training; "
             "**accuracy simulated** (quantise, dequantise to fp32); activations stay fp32. Test split: 10,000 images.", "",
             f"Mean kurtosis of the regularised layers: KURE {kurt.get('method/kurtosis_mean', float('nan')):.2f} "
             f"(max {kurt.get('method/kurtosis_max', float('nan')):.2f}), "
             f"no KURE {kurt.get('method/control_kurtosis_mean', float('nan')):.2f} "
             f"(max {kurt.get('method/control_kurtosis_max', float('nan')):.2f}).", "",
             "| weight bits | uniform, KURE | uniform, no KURE | Δ (pt) | k-means, KURE | k-means, no KURE | Δ (pt) |",
             "|---:|---:|---:|---:|---:|---:|---:|",
             f"| fp32 | {table['kure']['acc_fp32']:.4f} | {table['control']['acc_fp32']:.4f} | "
             f"{(table['kure']['acc_fp32'] - table['control']['acc_fp32']) * 100:+.2f} | | | |"]
    for b in bits:
        k, c = table["kure"], table["control"]
        lines.append(f"| {b} | {k[f'acc_w{b}']:.4f} | {c[f'acc_w{b}']:.4f} | {(k[f'acc_w{b}'] - c[f'acc_w{b}']) * 100:+.2f} | "
                     f"{k[f'acc_w{b}_kmeans']:.4f} | {c[f'acc_w{b}_kmeans']:.4f} | "
                     f"{(k[f'acc_w{b}_kmeans'] - c[f'acc_w{b}_kmeans']) * 100:+.2f} |")
    lines += ["", "![accuracy against weight bits](kure_resnet20.png)"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
