"""Knowledge distillation on Fashion-MNIST: which kind helps which student, and by more than the seed spread?

Teacher: ResNet-20 trained on the full training split (``TEACHER_EPOCHS``), seed 0, from the store (trained
once, shared by every run). Students: LeNet-5 and LeNet-300-100, each trained alone (the run's dense
baseline) and with response KD, FitNets hints, RKD and similarity-preserving distillation, from scratch
with the same epochs and data (``STUDENT``: a tenth of the training split per epoch, so that 3 seeds
of everything fit in about 30 minutes on 2 cores: a low-data regime). Then the DistilBERT-style half-depth ResNet-20
(a ResNet-14-like student) initialised from the teacher's blocks vs the same architecture from
scratch, both distilled from the teacher. Then one pipeline that uses distillation to recover accuracy:
structured pruning of a ResNet-20 -> distil from its dense self -> int8, against structured pruning ->
fine-tune -> int8 with the same budget (one epoch of retraining). 3 seeds each; differences are paired by
seed, mean and 95% t interval; a gain counts only when its interval excludes 0.

    python experiments/distillation.py [--seeds 0,1,2] [--out results/distillation]
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

TEACHER_EPOCHS = 2  # ResNet-20 on the full split with the default trainer: the model the tflm_zoo study stores
STUDENT = ["trainer.max_epochs=2", "trainer.limit_train_batches=0.1"]
TEACHER = ["method.teacher.model=resnet20", "method.teacher.seed=0",
           f"method.teacher.trainer.max_epochs={TEACHER_EPOCHS}", "+method.teacher.trainer.limit_train_batches=1.0"]
KINDS = {"response KD": ["method.kind=response"], "FitNets": ["method.kind=feature"],
         "RKD": ["method.kind=relation", "method.relation=rkd"],
         "similarity-preserving": ["method.kind=relation", "method.relation=sp"]}
STUDENTS = ["lenet5", "lenet_300_100"]
log = logging.getLogger("distillation")


DATA = ["data=fashion_mnist"]


def run(overrides: list[str], seed: int, root: Path) -> dict:
    cfg = pipeline.compose([*DATA, "trainer.progress_bar=none", "experiment_name=distillation",
                            f"seed={seed}", *STUDENT, *overrides], root)
    res = pipeline.run(cfg)
    m = res.metrics
    return {"test_acc": m["test/acc"], "alone_acc": m["baseline/test_acc"], "params": m["size/params"],
            "macs": m["compute/macs"], "p50_ms": m.get("latency/host_p50_ms"), "speedup": m.get("latency/host_speedup"),
            "noisy": bool(m.get("latency/host_noisy", 0)), "teacher_acc": m.get("distill/teacher_test_acc"),
            "run_id": res.run_id}


def fmt(ci: tuple[float, float], scale: float = 100.0) -> str:
    m, h = ci
    return f"{m * scale:+.2f} +- {h * scale:.2f}"


def effect(ci: tuple[float, float]) -> str:
    m, h = ci
    return "yes" if abs(m) > h else "no (inside the interval)"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="results/distillation")
    ap.add_argument("--smoke", action="store_true", help="sklearn digits, 1-epoch teacher: checks the script end to end")
    args = ap.parse_args()
    if args.smoke:
        DATA[:] = ["data=digits", "experiment_name=distillation_smoke"]
        TEACHER[2] = "method.teacher.trainer.max_epochs=3"
        STUDENT[:] = ["trainer.max_epochs=4"]
    seeds = [int(s) for s in args.seeds.split(",")]
    root = Path.cwd()
    t0 = time.perf_counter()
    out: dict = {"seeds": seeds, "student_trainer": STUDENT, "teacher": TEACHER, "rows": {}, **host_cpu()}
    rows = out["rows"]
    for student in STUDENTS:
        for kind, extra in KINDS.items():
            rows[f"{student} / {kind}"] = [run([f"model={student}", "+method=distillation", *TEACHER, *extra,
                                                 "method.epochs=2"], s, root) for s in seeds]
            log.info("%s / %s done (%.0f min)", student, kind, (time.perf_counter() - t0) / 60)
    for init in ("from_teacher", "half_depth_scratch"):
        rows[f"resnet20 half-depth / {init}"] = [run(["model=resnet20", "+method=distillation", *TEACHER,
                                                      f"method.init={init}", "method.epochs=2"], s, root) for s in seeds]
    prune = "{name: structured_pruning, ratio: 0.5, retrain_epochs: 0}"
    rows["prune -> distil -> int8"] = [run(["model=resnet20", f"steps=[{prune}, {{name: distillation, epochs: 1}}, ptq_int8]"],
                                           s, root) for s in seeds]
    rows["prune -> fine-tune -> int8"] = [run(["model=resnet20", "steps=[{name: structured_pruning, ratio: 0.5, "
                                               "retrain_epochs: 1}, ptq_int8]"], s, root) for s in seeds]
    out["wall_s"] = round(time.perf_counter() - t0)
    out["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    Path(args.out + ".json").write_text(json.dumps(out, indent=2))

    teacher_acc = next(r["teacher_acc"] for rs in rows.values() for r in rs if r.get("teacher_acc"))
    lines = ["# Knowledge distillation on Fashion-MNIST", "",
             f"`experiments/distillation.py`, {out['date']}, {round(out['wall_s'] / 60)} min on 2 cores. CPU: "
             f"{out['cpu']} (flags: {out['cpu_flags']}). Teacher: ResNet-20 trained {TEACHER_EPOCHS} epochs on the "
             f"full training split, seed 0 (test accuracy {teacher_acc:.4f}), the same stored teacher for every run. "
             "Students: 2 epochs over a random tenth of the training split per epoch "
             "(`trainer.limit_train_batches=0.1`, a low-data regime chosen so that 3 seeds of everything fit in half "
             "an hour on 2 cores), trained alone (the run's dense baseline, same trainer) or "
             "distilled from scratch with the same budget; T=4, alpha=0.9, FitNets hints between the middle "
             "convolutions (LeNet-300-100: its middle linear layer) with weight 1, RKD 25/50, SP 3000. Seeds "
             f"{', '.join(map(str, seeds))}; differences paired by seed, mean and 95% t interval (pt); "
             "'effect' only where the interval excludes 0. Latency: batch 1 in ONNX Runtime on this host, "
             "interleaved with the run's dense model.", "",
             "| student | method | test acc (95% CI) | vs trained alone (pt) | effect | params | MACs | host p50 ms |",
             "|---|---|---:|---:|---|---:|---:|---:|"]
    summary = {}
    for student in STUDENTS:
        alone = [r["alone_acc"] for r in rows[f"{student} / response KD"]]
        a = mean_ci(alone)
        r0 = rows[f"{student} / response KD"][0]
        lines.append(f"| {student} | trained alone | {a[0]:.4f} +- {a[1]:.4f} | | | {int(r0['params']):,} | "
                     f"{int(r0['macs']):,} | |")
        for kind in KINDS:
            rs = rows[f"{student} / {kind}"]
            acc = mean_ci([r["test_acc"] for r in rs])
            diff = mean_ci([r["test_acc"] - r["alone_acc"] for r in rs])
            summary[f"{student} / {kind}"] = {"acc": acc, "diff": diff}
            p50 = sorted(r["p50_ms"] for r in rs if r["p50_ms"] is not None)
            lines.append(f"| {student} | {kind} | {acc[0]:.4f} +- {acc[1]:.4f} | {fmt(diff)} | {effect(diff)} | "
                         f"{int(rs[0]['params']):,} | {int(rs[0]['macs']):,} | {p50[len(p50) // 2]:.4f} |")
    ft, hs = rows["resnet20 half-depth / from_teacher"], rows["resnet20 half-depth / half_depth_scratch"]
    diff = mean_ci([a["test_acc"] - b["test_acc"] for a, b in zip(ft, hs)])
    summary["half-depth from teacher vs scratch"] = {"diff": diff}
    lines += ["", "DistilBERT-style initialisation: the half-depth ResNet-20 (2 blocks per stage, a ResNet-14) "
              "distilled from the teacher for 2 epochs (same budget as above), initialised from the teacher's "
              "blocks 0 and 2 of every stage vs the same architecture from a random initialisation:", "",
              "| init | test acc (95% CI) | params | MACs | host p50 ms | speedup vs ResNet-20 |", "|---|---:|---:|---:|---:|---:|"]
    for name, rs in (("from the teacher", ft), ("from scratch", hs)):
        acc = mean_ci([r["test_acc"] for r in rs])
        sp = sorted(r["speedup"] for r in rs if r["speedup"])
        lines.append(f"| {name} | {acc[0]:.4f} +- {acc[1]:.4f} | {int(rs[0]['params']):,} | {int(rs[0]['macs']):,} | "
                     f"{sorted(r['p50_ms'] for r in rs)[1]:.4f} | {sp[len(sp) // 2]:.2f}x |")
    lines.append(f"\nFrom the teacher minus from scratch: {fmt(diff)} pt, effect: {effect(diff)}.")
    pd, pf = rows["prune -> distil -> int8"], rows["prune -> fine-tune -> int8"]
    diff = mean_ci([a["test_acc"] - b["test_acc"] for a, b in zip(pd, pf)])
    summary["prune-distil-int8 vs prune-finetune-int8"] = {"diff": diff}
    lines += ["", "Recovering a pruned ResNet-20 (its dense self trained 2 epochs on a tenth of the split per epoch, as the "
              "students): 50% of channels removed by structured pruning, then one tenth-split epoch of either "
              "distillation from the dense model (T=4, alpha=0.9) or plain fine-tuning, then int8 (ONNX Runtime):", "",
              "| chain | test acc (95% CI) | dense acc | params | host p50 ms |", "|---|---:|---:|---:|---:|"]
    for name, rs in (("structured_pruning -> distillation -> ptq_int8", pd), ("structured_pruning (1 epoch fine-tune) -> ptq_int8", pf)):
        acc = mean_ci([r["test_acc"] for r in rs])
        dense = mean_ci([r["alone_acc"] for r in rs])
        lines.append(f"| {name} | {acc[0]:.4f} +- {acc[1]:.4f} | {dense[0]:.4f} | {int(rs[0]['params']):,} | "
                     f"{sorted(r['p50_ms'] for r in rs)[1]:.4f} |")
    lines.append(f"\nDistil minus fine-tune: {fmt(diff)} pt, effect: {effect(diff)}.")
    out["summary"] = summary
    Path(args.out + ".json").write_text(json.dumps(out, indent=2))
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    _plot(rows, Path(args.out + ".png"))
    print("\n".join(lines))


def _plot(rows: dict, path: Path) -> None:
    from edgebench.report.plots import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, len(STUDENTS), figsize=(5 * len(STUDENTS), 3.6), sharey=False)
    for ax, student in zip(axes, STUDENTS):
        names = ["alone", *KINDS]
        vals = [mean_ci([r["alone_acc"] for r in rows[f"{student} / response KD"]])]
        vals += [mean_ci([r["test_acc"] for r in rows[f"{student} / {k}"]]) for k in KINDS]
        ax.bar(range(len(names)), [v[0] for v in vals], yerr=[v[1] for v in vals], capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
        lo = min(v[0] - v[1] for v in vals)
        ax.set_ylim(lo - 0.01, max(v[0] + v[1] for v in vals) + 0.005)
        ax.set_title(f"{student} (mean, 95% CI, 3 seeds)")
        ax.set_ylabel("test accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
