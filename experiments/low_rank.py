"""Low rank, low rank + sparse, magnitude and structured pruning at a matched parameter budget.

On Fashion-MNIST, each model's dense baseline (cached per seed) is compressed to about half its
conv/linear weights by four methods, fine-tuned for the same epochs, and measured: test accuracy
(3 seeds, mean and 95% t interval), parameters kept (nonzero), ONNX file bytes, the analytic sparse
size, and host latency in ONNX Runtime interleaved with the dense model (batch 1). The reconstruction
errors of low rank alone and low rank + sparse at the same rank are compared per layer (Yu et al.'s
claim: L + S reconstructs better than either alone at the same budget).

    python experiments/low_rank.py [--models lenet_300_100] [--seeds 0,1,2] [--out results/low_rank]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from edgebench import pipeline
from edgebench.measure.latency import host_cpu
from edgebench.stats import mean_ci

RETRAIN = 2
METHODS = {  # about half of the weights kept by each
    "low rank (ratio 0.5)": ["+method=low_rank", "method.energy=null", "method.ratio=0.5", f"method.retrain_epochs={RETRAIN}"],
    "low rank + sparse (ratio 0.45, S 5%)": ["+method=low_rank_sparse", "method.energy=null", "method.ratio=0.45",
                                             "method.sparse_fraction=0.05", f"method.retrain_epochs={RETRAIN}"],
    "magnitude pruning (50%)": ["+method=magnitude_pruning", "method.sparsity=0.5", f"method.retrain_epochs={RETRAIN}"],
    "structured pruning (30% channels)": ["+method=structured_pruning", "method.ratio=0.3", f"method.retrain_epochs={RETRAIN}"],
}
EPOCHS = {"lenet_300_100": 3, "conv4": 2, "resnet20": 2}
log = logging.getLogger("low_rank")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="lenet_300_100")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="results/low_rank")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    root = Path.cwd()
    t0 = time.perf_counter()
    rows: dict = {}
    for model in models:
        for name, extra in METHODS.items():
            rs = []
            for seed in seeds:
                cfg = pipeline.compose([f"model={model}", "data=fashion_mnist", f"trainer.max_epochs={EPOCHS[model]}",
                                        f"seed={seed}", "trainer.progress_bar=none", "experiment_name=low_rank", *extra], root)
                res = pipeline.run(cfg)
                m = res.metrics
                rs.append({"test_acc": m["test/acc"], "dense_acc": m["baseline/test_acc"], "params": m["size/params"],
                           "nonzero": m["size/params_nonzero"], "bytes": m["size/bytes_artifact"],
                           "bytes_sparse": m["size/bytes_sparse"], "p50_ms": m["latency/host_p50_ms"],
                           "speedup": m["latency/host_speedup"], "noisy": bool(m["latency/host_noisy"]),
                           "err": m.get("low_rank/mean_rel_error"),
                           "err_low_only": m.get("low_rank/mean_rel_error_low_rank_only"),
                           "acc_before_ft": m.get("low_rank/test_acc_before_finetune"), "run_id": res.run_id})
            rows[f"{model} / {name}"] = rs
            log.info("%s / %s done (%.1f min)", model, name, (time.perf_counter() - t0) / 60)
    out = {"seeds": seeds, "models": models, "methods": METHODS, "rows": rows, **host_cpu(),
           "wall_s": round(time.perf_counter() - t0), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    Path(args.out + ".json").write_text(json.dumps(out, indent=2))

    lines = ["# Low rank vs pruning at about half the weights (Fashion-MNIST)", "",
             f"`experiments/low_rank.py`, {out['date']}, {round(out['wall_s'] / 60, 1)} min on 2 cores. CPU: {out['cpu']} "
             f"(flags: {out['cpu_flags']}). Dense models trained {', '.join(f'{m} {EPOCHS[m]} epochs' for m in models)}; "
             f"every method fine-tunes {RETRAIN} epochs. Seeds {', '.join(map(str, seeds))}: mean and 95% t interval. "
             "Bytes: the ONNX file as written (fp32), and the analytic sparse size (each tensor in the smallest of "
             "dense, bitmask and CSR). Latency: batch 1 in ONNX Runtime, interleaved with the dense model; the "
             "median of the seeds' speedups.", "",
             "| model | method | test acc (95% CI) | vs dense (pt) | nonzero params | ONNX bytes | sparse bytes | speedup | noisy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for model in models:
        first = rows[f"{model} / {next(iter(METHODS))}"]
        d = mean_ci([r["dense_acc"] for r in first])
        lines.append(f"| {model} | dense | {d[0]:.4f} +- {d[1]:.4f} | | | | | 1.00x | |")
        for name in METHODS:
            rs = rows[f"{model} / {name}"]
            acc = mean_ci([r["test_acc"] for r in rs])
            diff = mean_ci([r["test_acc"] - r["dense_acc"] for r in rs])
            sp = sorted(r["speedup"] for r in rs)
            lines.append(f"| {model} | {name} | {acc[0]:.4f} +- {acc[1]:.4f} | {diff[0] * 100:+.2f} +- {diff[1] * 100:.2f} | "
                         f"{int(rs[0]['nonzero']):,} | {int(rs[0]['bytes']):,} | {int(rs[0]['bytes_sparse']):,} | "
                         f"{sp[len(sp) // 2]:.2f}x | {sum(r['noisy'] for r in rs)}/{len(rs)} |")
        lrs = rows[f"{model} / low rank + sparse (ratio 0.45, S 5%)"]
        e, e0 = mean_ci([r["err"] for r in lrs]), mean_ci([r["err_low_only"] for r in lrs])
        lines.append("")
        lines.append(f"{model}: mean relative reconstruction error of the factorised layers at the same rank (ratio 0.45): "
                     f"low rank alone {e0[0]:.4f}, low rank + 5% sparse {e[0]:.4f} (before fine-tuning).")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
