"""Harness overhead: one epoch of lenet_300_100 on Fashion-MNIST through edgebench vs a plain loop.

Both sides get the same in-memory tensors, the same batch size and optimizer (the defaults of
conf/trainer/default.yaml), the same model built from the same seed, and do the same work: one
pass over the training split with Adam, then one pass over the validation split computing
loss and accuracy. edgebench's side is ``edgebench.training.fit`` (the call the pipeline makes:
it sets up Lightning Fabric, the classifier and its optimizer and scheduler, and trains). Pairs run interleaved in one
process with alternating order; the figure is the median of the per-pair ratios.

    python experiments/harness_overhead.py [--pairs 7] [--out results/harness_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from edgebench import training
from edgebench.config import DataConfig, ModelConfig, ProgressBar, TrainerConfig
from edgebench.data import EdgeDataModule, load_data
from edgebench.measure.latency import host_cpu
from edgebench.models import build_model

# Pass/fail threshold, fixed before the run: issue 12 ("the harness stays lean: <= 1.10x a plain loop,
# median of 7 interleaved pairs").
TARGET = 1.10
TARGET_SOURCE = "issue 12 item 8: <= 1.10x a plain loop, median of 7 interleaved pairs"


def plain_epoch(splits, cfg: TrainerConfig, seed: int) -> float:
    """A minimal hand-written PyTorch epoch: train, then validate. Returns seconds."""
    torch.manual_seed(seed)
    net = build_model(ModelConfig(name="lenet_300_100"), splits.input_shape, splits.num_classes)
    dm = EdgeDataModule(splits, cfg.batch_size, cfg.eval_batch_size, seed)
    t0 = time.perf_counter()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    net.train()
    for x, y in dm.train_dataloader():
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    net.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for x, y in dm.val_dataloader():
            logits = net(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    return time.perf_counter() - t0


def edgebench_epoch(splits, cfg: TrainerConfig, seed: int) -> float:
    torch.manual_seed(seed)
    net = build_model(ModelConfig(name="lenet_300_100"), splits.input_shape, splits.num_classes)
    dm = EdgeDataModule(splits, cfg.batch_size, cfg.eval_batch_size, seed)
    t0 = time.perf_counter()
    training.fit(net, dm, cfg, max_epochs=1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=TrainerConfig.batch_size)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", default="results/harness_overhead.json")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    cfg = TrainerConfig(max_epochs=1, batch_size=args.batch_size, progress_bar=ProgressBar.none)
    splits = load_data(DataConfig(name="fashion_mnist"), "data")
    training.quiet_lightning()
    # warm-up both paths once (imports, allocator, Lightning's first-fit set-up)
    plain_epoch(splits, cfg, 0)
    edgebench_epoch(splits, cfg, 0)

    rows = []
    for i in range(args.pairs):
        if i % 2 == 0:
            p = plain_epoch(splits, cfg, i)
            e = edgebench_epoch(splits, cfg, i)
        else:
            e = edgebench_epoch(splits, cfg, i)
            p = plain_epoch(splits, cfg, i)
        rows.append({"plain_s": p, "edgebench_s": e, "ratio": e / p})
        print(f"pair {i}: plain {p:.3f} s  edgebench {e:.3f} s  ratio {e / p:.3f}", flush=True)

    ratios = [r["ratio"] for r in rows]
    result = {
        "benchmark": "one epoch (train + validation) of lenet_300_100 on Fashion-MNIST",
        "batch_size": cfg.batch_size,
        "optimizer": f"{cfg.optimizer.value} lr={cfg.lr}",
        "train_samples": len(splits.train_y),
        "val_samples": len(splits.val_y),
        "threads": torch.get_num_threads(),
        "pairs": rows,
        "median_plain_s": statistics.median(r["plain_s"] for r in rows),
        "median_edgebench_s": statistics.median(r["edgebench_s"] for r in rows),
        "median_ratio": statistics.median(ratios),
        "target_ratio": TARGET,
        "target_source": TARGET_SOURCE,
        "meets_target": statistics.median(ratios) <= TARGET,
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip(),
        **host_cpu(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median ratio edgebench/plain = {result['median_ratio']:.3f} (target <= {TARGET}) -> {out}")


if __name__ == "__main__":
    main()
