"""The lottery-ticket paper's central LeNet-300-100 result, on Fashion-MNIST, averaged over seeds.

Frankle & Carbin (2019), Fig. 3/4: winning tickets (iterative magnitude pruning, survivors rewound to
their initialisation) keep the dense network's test accuracy down to a few percent of the weights
and learn faster, while the same masks with a random re-initialisation fall behind from ~21%.

Settings are the paper's (Adam 1.2e-3, batch 60, 20% of the fc weights and 10% of the output layer
per level, rewinding to iteration 0), except the training length: the paper trains 50K iterations
per level; here every level (and every control) trains ``--epochs`` epochs of 54K images, so the
whole experiment fits about an hour on 2 cores. Every seed is a real ``+method=lottery_ticket``
run of the pipeline; the per-level figures are read back from MLflow.

    python experiments/lth_lenet_fashion.py [--seeds 0,1,2] [--levels 14] [--epochs 4]
    # -> results/lth_lenet_fashion.md, .json, .png
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from edgebench import pipeline
from edgebench.plots import lottery_levels

KEYS = ["lth/remaining", "lth/test_acc", "lth/best_val_step", "lth/reinit_test_acc", "lth/reinit_best_val_step",
        "lth/random_prune_test_acc", "lth/random_prune_best_val_step"]


def run(overrides: list[str], root: Path):
    seed = next(o.split("=")[1] for o in overrides if o.startswith("seed="))
    cfg = pipeline.compose(overrides + ["trainer.progress_bar=none"], root,
                           root / "results" / "runs" / "lth_lenet_fashion" / f"seed{seed}")
    return cfg, pipeline.run(cfg)


def main() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--levels", type=int, default=14)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    root = Path.cwd()
    t0 = time.perf_counter()
    per_seed = {}
    for seed in map(int, args.seeds.split(",")):
        cfg, res = run(["model=lenet_300_100", "data=fashion_mnist", "trainer=lth", "trainer.scheduler=none",
                        f"seed={seed}", "+method=lottery_ticket", f"method.levels={args.levels}",
                        f"method.epochs={args.epochs}", "method.val_checks_per_epoch=4",
                        "measure.latency=false", "measure.export=false", "experiment_name=lth_lenet_fashion"], root)
        client = MlflowClient(cfg.paths.mlflow_tracking_uri)
        rows = {}
        for key in KEYS:
            for m in client.get_metric_history(res.run_id, key):
                rows.setdefault(m.step, {"round": m.step})[key] = m.value
        per_seed[seed] = [rows[k] for k in sorted(rows)]
        print(f"seed {seed}: {len(rows)} levels, run {res.run_id}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    wall = time.perf_counter() - t0

    seeds = sorted(per_seed)
    levels = min(len(v) for v in per_seed.values())
    mean_rows, table = [], []
    for L in range(levels):
        row, stats = {"round": L}, {}
        for key in KEYS:
            vals = [per_seed[s][L][key] for s in seeds if key in per_seed[s][L]]
            if vals:
                row[key] = statistics.mean(vals)
                stats[key] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0)
        mean_rows.append(row)
        table.append(stats)
    dense_acc, dense_step = table[0]["lth/test_acc"][0], table[0]["lth/best_val_step"][0]
    keep = [L for L in range(1, levels) if table[L]["lth/test_acc"][0] >= dense_acc - 0.002]
    lowest_kept = min((mean_rows[L]["lth/remaining"] for L in keep), default=1.0)
    reinit_below = [L for L in range(1, levels) if "lth/reinit_test_acc" in table[L]
                    and table[L]["lth/reinit_test_acc"][0] < table[L]["lth/test_acc"][0] - 0.002]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "seeds": seeds, "levels": args.levels, "epochs_per_level": args.epochs,
              "wall_seconds": wall, "settings": "Adam 1.2e-3, batch 60, no schedule, fc rate 0.2, output rate 0.1, rewind to init, "
              f"{args.epochs} epochs per level (the paper: 50K iterations = 56 epochs)",
              "per_seed": per_seed, "mean": mean_rows,
              "findings": {"lowest_remaining_where_tickets_keep_dense_acc": lowest_kept,
                           "levels_where_reinit_is_below_ticket": reinit_below}}
    out = Path("results/lth_lenet_fashion")
    out.parent.mkdir(exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")

    def fmt(stats, key, pct=False, steps=False):
        if key not in stats:
            return "-"
        m, s = stats[key]
        if steps:
            return f"{m:.0f} ± {s:.0f}"
        return f"{m:.4f} ± {s:.4f}"

    lines = ["# Lottery tickets: LeNet-300-100 on Fashion-MNIST", "",
             f"`experiments/lth_lenet_fashion.py`, {result['date']}; seeds {seeds}; {result['settings']}. "
             f"Mean ± standard deviation over the seeds; test accuracy on the 10,000-image test split; the early-stopping "
             f"iteration is the optimizer step of minimum validation loss (validated 4 times per epoch). "
             f"Wall time {wall / 60:.0f} min on 2 CPU cores.", "",
             "| level | weights remaining | ticket test acc | reinit test acc | random-mask test acc | ticket early-stop step | reinit early-stop step |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for L, stats in enumerate(table):
        lines.append(f"| {L} | {100 * mean_rows[L]['lth/remaining']:.1f}% | {fmt(stats, 'lth/test_acc')} | "
                     f"{fmt(stats, 'lth/reinit_test_acc')} | {fmt(stats, 'lth/random_prune_test_acc')} | "
                     f"{fmt(stats, 'lth/best_val_step', steps=True)} | {fmt(stats, 'lth/reinit_best_val_step', steps=True)} |")
    lines += ["", f"Dense (level 0): test accuracy {dense_acc:.4f}, early-stopping step {dense_step:.0f}.",
              f"Tickets keep the dense accuracy (within 0.2 pt) down to {100 * lowest_kept:.1f}% of the weights remaining.",
              "Random re-initialisation is below the ticket (by more than 0.2 pt) at levels "
              f"{reinit_below} (remaining: {[round(100 * mean_rows[L]['lth/remaining'], 1) for L in reinit_below]}%).",
              "", "![lottery tickets](lth_lenet_fashion.png)"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    lottery_levels(out.with_suffix(".png"), mean_rows,
                   title=f"LeNet-300-100, Fashion-MNIST, mean of {len(seeds)} seeds ({args.epochs} epochs per level)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
