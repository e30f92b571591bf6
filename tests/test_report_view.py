"""What the report shows (issue 25): a section and a frontier per (data, model) group, child runs left out and
counted, delta/acc in percentage points everywhere, fits as yes/no; latency frontiers that ignore differences
inside the measurement's noise; plots readable at their size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edgebench import report

# ------------------------------------------------------------------------------------------------ item 7


def _two_groups() -> pd.DataFrame:
    """Two (data, model) groups on the host: in each a dense run and a pruned one; plus a teacher (a child run)
    and a pruned run that does not fit. The conv model's runs are smaller and more accurate than every MLP run:
    on one shared frontier they would push the MLP's runs off it."""
    rows = []
    for data, model, scale, acc0 in (("fashion_mnist", "lenet_300_100", 10, 0.88), ("digits", "conv2", 1, 0.97)):
        for method, acc, nbytes, fits in (("none", acc0, 100_000, 1.0), ("magnitude_pruning", acc0 - 0.02, 40_000, 1.0),
                                          ("uniform_quant", acc0 - 0.1, 10_000, 0.0)):
            rows.append({"run_id": f"{model}/{method}", "run_name": f"{model} {method}", "model": model, "data": data,
                         "method": method, "device": "host", "test/acc": acc, "delta/acc": acc - acc0,
                         "baseline/test_acc": acc0, "size/bytes_artifact": nbytes * scale, "device/fits": fits,
                         "edgebench.child": np.nan})
    rows.append({**rows[0], "run_id": "teacher", "run_name": "lenet_300_100 distillation / teacher",
                 "method": "none", "test/acc": 0.99, "size/bytes_artifact": 1000.0, "edgebench.child": "true"})
    return pd.DataFrame(rows)


def test_the_report_groups_by_data_and_model_and_leaves_children_out():
    from rich.console import Console

    df, bl, ll = report.build(_two_groups())
    assert "teacher" not in set(df["run_id"]) and df.attrs["children_left_out"] == 1
    mlp = df[df["model"] == "lenet_300_100"].set_index("method")
    # its own frontier: the conv model's smaller, more accurate runs do not take the MLP's runs off it
    assert mlp.loc["none", "pareto_bytes"] and mlp.loc["magnitude_pruning", "pareto_bytes"]
    text = report._markdown(df, "t", bl, ll, [])
    assert "## fashion_mnist / lenet_300_100" in text and "## digits / conv2" in text
    conv = text.split("## digits / conv2")[1].split("## ")[0]
    assert "conv2 none" in conv and "lenet_300_100" not in conv
    assert "1 child run (teachers, pipeline steps) left out" in text
    # delta/acc in percentage points, labelled so; the fraction never shown
    assert "Δ acc (pt)" in text and "-2.00" in text and "-0.02 " not in text and "| -0.02 |" not in text
    # a run that does not fit says no
    header = [l for l in text.splitlines() if l.startswith("| run_name")][0].split(" | ")
    fits_col = header.index("fits")
    quant = [l for l in text.splitlines() if "uniform_quant" in l and l.startswith("|")]
    assert quant and all(l.split(" | ")[fits_col].strip() == "no" for l in quant)
    console = Console(record=True, width=250)
    report.print_frontier(df, "synthetic", console)
    out = console.export_text()
    assert "fashion_mnist / lenet_300_100" in out and "digits / conv2" in out
    assert "1 child run (teachers, pipeline steps) left out" in out
    assert "-2.00" in out and "Δ acc (pt)" in out


def test_build_keeps_children_when_asked():
    df, _, _ = report.build(_two_groups(), children=True)
    assert "teacher" in set(df["run_id"])


# ------------------------------------------------------------------------------------------------ item 8


def _noisy_latency() -> pd.DataFrame:
    """The case of the issue: random pruning at -10.6 pt is 0.0007 ms faster than the dense model, a difference
    inside both measurements' interleaved IQR (and flagged noisy); structured pruning (less accurate still) is faster by far more."""
    rows = []
    for method, acc, speedup, iqr, noisy, sparsity in (
            ("none", 0.8954, np.nan, 0.0040, 0.0, np.nan),
            ("random_pruning", 0.7894, 0.0345 / 0.0338, 0.0050, 1.0, 0.9),  # 0.0338 ms: 0.0007 ms faster
            ("structured_pruning", 0.7000, 0.0345 / 0.0123, 0.0010, 0.0, 0.75)):
        rows.append({"run_id": method, "run_name": method, "model": "lenet_300_100", "data": "fashion_mnist",
                     "method": method, "device": "host", "method.sparsity": sparsity, "test/acc": acc,
                     "delta/acc": acc - 0.8954, "baseline/test_acc": 0.8954, "size/bytes_artifact": 1_000_000.0,
                     "latency/host_p50_ms": 0.0345 if method == "none" else 0.0345 / speedup,
                     "latency/host_speedup": speedup, "latency/host_iqr_ms": iqr, "latency/host_noisy": noisy,
                     "device/fits": 1.0})
    return pd.DataFrame(rows)


def test_a_latency_difference_inside_the_noise_does_not_make_a_frontier_point():
    df, _, _ = report.build(_noisy_latency())
    r = df.set_index("method")
    assert r.loc["random_pruning", "delta/acc"] == pytest.approx(-0.106)
    assert r.loc["none", "latency_ms"] - r.loc["random_pruning", "latency_ms"] == pytest.approx(0.0007)
    # within each other's noise the two latencies are equal: the more accurate dense run dominates
    assert not r.loc["random_pruning", "pareto_latency"]
    assert r.loc["none", "pareto_latency"]
    assert r.loc["structured_pruning", "pareto_latency"]  # faster by far more than the noise


def test_pareto_with_noise_and_replicate_intervals():
    acc = pd.Series([0.90, 0.80, 0.70])
    cost = pd.Series([1.00, 0.99, 0.50])
    assert report.pareto(acc, cost).tolist() == [True, True, True]  # no noise: a 0.01 lead is a lead
    assert report.pareto(acc, cost, pd.Series([0.02, 0.0, 0.0])).tolist() == [True, False, True]
    assert report.pareto(acc, cost, pd.Series([0.0, 0.02, 0.0])).tolist() == [True, False, True]  # either's noise
    # a latency interval over replicates counts the same way (half-widths added)
    df = _noisy_latency().drop(columns=["latency/host_iqr_ms", "latency/host_noisy"])
    df = pd.concat([df.assign(seed=s, replicate_group=df["method"], run_id=df["run_id"] + str(s),
                              **{"latency/host_speedup": df["latency/host_speedup"] * (1 + 0.05 * (s - 1))})
                    for s in range(3)], ignore_index=True)
    r = report.build(df)[0].set_index("method")
    assert r.loc["random_pruning", "latency_ms_ci"] > 0.0007 and not r.loc["random_pruning", "pareto_latency"]
