"""The constrained Optuna preset for real: every trial of ``python -m edgebench -m +sweep=optuna_arduino``.

Not a study: a TPE search is a sequence, each trial chosen from the scores of the ones before it, not a grid of
arms x seeds to compare by paired differences. This launches the preset (TPE seed 0, 12 trials over structured
pruning's ``steps.0.ratio`` in [0, 0.9], then ptq_int8 to a TFLite Micro file, ``objective=fits_device``) and
lists its trials in order from the report layer (:func:`edgebench.report.load_runs` of the sweep): ratio,
validation accuracy (what the search selects on), test accuracy (for reading only), file bytes, fit and score.

    python experiments/optuna_arduino.py                               # -> results/optuna_arduino.md, .json
    python experiments/optuna_arduino.py --device azure_sphere_mt3620  # -> results/optuna_azure_sphere_mt3620.*
    python experiments/optuna_arduino.py --out results/smoke data=digits hydra.sweeper.n_trials=3   # a minute
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import time
from pathlib import Path

from edgebench import report
from edgebench.measure import load_device
from edgebench.sweep import objective


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="arduino_nano_33_ble_sense")
    ap.add_argument("--out", type=Path, default=Path("results"), help="folder of optuna_DEVICE.md/.json")
    ap.add_argument("overrides", nargs="*", help="more overrides of the sweep (e.g. data=digits for a smoke run)")
    args = ap.parse_args()
    tag = "arduino" if args.device == "arduino_nano_33_ble_sense" else args.device
    root, t0 = Path.cwd(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgebench", "-m", "+sweep=optuna_arduino", f"device={args.device}",
                    f"experiment_name=optuna_{tag}", "trainer.progress_bar=none", "resume=false", *args.overrides], cwd=root, check=True)
    wall = time.perf_counter() - t0
    sweep_file = max((root / "results" / "multiruns").glob("*/sweep.json"), key=lambda p: p.stat().st_mtime)
    info = json.loads(sweep_file.read_text())
    runs = report.load_runs(info["tracking_uri"], f"optuna_{tag}", sweep=info["sweep_id"])
    runs = runs[runs.get("edgebench.child", "").astype(str) != "true"]  # the trials, not their steps' child runs
    runs = runs.assign(trial=runs["hydra.job.num"].astype(int)).sort_values("start_time")
    runs = runs.drop_duplicates("trial", keep="last").sort_values("trial")  # a relaunch: this launch's trial per job
    device = load_device(args.device)
    rows = [{"trial": int(r["trial"]), "ratio": float(ast.literal_eval(str(r["steps"]))[0]["ratio"]), "val_acc": float(r.get("select/val_acc", float("nan"))),
             "test_acc": float(r["test/acc"]), "bytes_artifact": float(r["size/bytes_artifact"]),
             "device_ram_bytes": float(r["device/ram_bytes"]), "fits": bool(r["device/fits"]),
             "score": objective(r.dropna().to_dict(), device, "fits_device"), "run_id": r["run_id"]}
            for _, r in runs.iterrows()]
    best = max(rows, key=lambda r: r["score"])
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "wall_s": round(wall),
              "sweep_id": info["sweep_id"], "device": args.device, "best": best, "trials": rows}
    (args.out / f"optuna_{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    limits = f"{device.storage_bytes:,} B storage, {device.memory_bytes:,} B memory" + (
        ", weights loaded into memory" if device.weights_in_ram else ", weights executed from flash")
    lines = [f"# Optuna search: the most accurate structured-pruned int8 LeNet-300-100 (Fashion-MNIST) that fits "
             f"{args.device}", "",
             f"`python experiments/optuna_arduino.py --device {args.device}{''.join(' ' + o for o in args.overrides)}`, {result['date']}, {wall / 60:.1f} min "
             f"wall. The preset `+sweep=optuna_arduino`: TPE (seed 0, 4 random start-up trials), {len(rows)} trials "
             "over structured pruning's ratio in [0, 0.9] (2 retraining epochs in the preset), then ptq_int8 to a TFLite Micro file; "
             "the score is the deployed model's validation accuracy (the search never reads the test split); a trial "
             f"that does not fit ({limits}) scores -1 - overshoot. One seed: a search, not an accuracy claim. Test "
             "accuracy is shown for reading, not for choosing.", "",
             "| trial | ratio | val acc (selection) | test acc | file bytes | device RAM bytes | fits | score |",
             "|---:|---:|---:|---:|---:|---:|---|---:|"]
    lines += [f"| {r['trial']} | {r['ratio']:.3f} | {r['val_acc']:.4f} | {r['test_acc']:.4f} | {r['bytes_artifact']:,.0f} "
              f"| {r['device_ram_bytes']:,.0f} | {'yes' if r['fits'] else 'no'} | {r['score']:.4f} |" for r in rows]
    lines += ["", f"Best: trial {best['trial']}, ratio {best['ratio']:.4f} -> score {best['score']:.4f}."]
    (args.out / f"optuna_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
