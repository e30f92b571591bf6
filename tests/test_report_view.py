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
    text = report.render.markdown(df, "t", bl, ll, [])
    assert "## fashion_mnist / lenet_300_100" in text and "## digits / conv2" in text
    conv = text.split("## digits / conv2")[1].split("## ")[0]
    assert "conv2 none" in conv and "lenet_300_100" not in conv
    assert "1 child run (teachers, chain steps) left out" in text
    # delta/acc in percentage points, labelled so; the fraction never shown
    assert "Δ acc (pt)" in text and "-2.00" in text and "-0.02 " not in text and "| -0.02 |" not in text
    # a run that does not fit says no
    header = next(l for l in text.splitlines() if l.startswith("| run_name")).split(" | ")
    fits_col = header.index("fits")
    quant = [l for l in text.splitlines() if "uniform_quant" in l and l.startswith("|")]
    assert quant and all(l.split(" | ")[fits_col].strip() == "no" for l in quant)
    console = Console(record=True, width=250)
    report.print_frontier(df, "synthetic", console)
    out = console.export_text()
    assert "fashion_mnist / lenet_300_100" in out and "digits / conv2" in out
    assert "1 child run (teachers, chain steps) left out" in out
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


# ------------------------------------------------------------------------------------------------ item 11


def _sweep() -> pd.DataFrame:
    """The Fashion-MNIST sweep (its measured figures of 2026-11-24, one seed, before it was the fashion_sweep study):
    accuracies near 0.89, 3 bits at 0.835 and 2 bits collapsed at 0.199; on the host nine runs within 0.003 ms of
    the dense model (side-by-side speedups near 1) and structured pruning 0.5 and 0.65 at the same p50; on three
    devices, two of which see the same figures (the Pi and the Apalis: same estimates here); on the host the
    0.75-sparsity run does not fit."""
    rows = []
    for device in ("host", "raspberry_pi_4", "apalis_imx6"):
        for method, key, v, acc, nbytes, p50, speedup in (
                ("magnitude_pruning", "sparsity", 0.75, 0.8941, 301115, 0.035187, 0.994600),
                ("magnitude_pruning", "sparsity", 0.5, 0.8936, 567315, 0.059904, 0.998498),
                ("magnitude_pruning", "sparsity", 0.875, 0.8865, 168015, 0.037245, 1.001638),
                ("magnitude_pruning", "sparsity", 0.9375, 0.8626, 101463, 0.034386, 0.998110),
                ("none", None, None, 0.8954, 991503, 0.034591, np.nan),
                ("structured_pruning", "ratio", 0.25, 0.8939, 723147, 0.030826, 1.109161),
                ("structured_pruning", "ratio", 0.5, 0.8904, 468578, 0.027215, 1.262392),
                ("structured_pruning", "ratio", 0.65, 0.8889, 322442, 0.027210, 1.430448),
                ("structured_pruning", "ratio", 0.75, 0.8850, 227880, 0.012338, 3.284435),
                ("uniform_quant", "bits", 8, 0.8957, 267852, 0.033504, 1.012133),
                ("uniform_quant", "bits", 4, 0.8940, 106953, 0.034512, 1.008997),
                ("uniform_quant", "bits", 3, 0.8353, 53411, 0.034096, 1.000748),
                ("uniform_quant", "bits", 2, 0.1987, 8444, 0.035753, 0.998042)):
            rows.append({"run_id": f"{device}/{method}/{v}", "run_name": f"{method} {v}", "model": "lenet_300_100",
                         "data": "fashion_mnist", "method": method, "device": device, f"method.{key}": v,
                         "test/acc": acc, "delta/acc": acc - 0.8954, "baseline/test_acc": 0.8954,
                         "size/bytes_artifact": float(nbytes), "latency/host_p50_ms": p50, "latency/host_speedup": speedup,
                         "device/latency_ms_est": np.nan if device == "host" else 0.3459 / np.nan_to_num(speedup, nan=1.0),
                         "device/fits": 0.0 if device == "host" and v == 0.75 and key == "sparsity" else 1.0})
    df = pd.DataFrame(rows)
    return report.build(df, ["method.sparsity", "method.ratio", "method.bits"])[0]


def _axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.has_data()]


def test_devices_with_identical_panels_share_one_panel_naming_them():
    df = _sweep()
    fig = report.figure(df, "bytes", "bytes", "pareto_bytes", "size")
    axes = _axes(fig)
    assert len(axes) == 2  # host; the Pi and the Apalis (the same figures) in one
    titles = sorted(ax.get_title() for ax in axes)
    assert any("apalis_imx6" in t and "raspberry_pi_4" in t for t in titles) and any(t.endswith("host") for t in titles)


def test_the_accuracy_axis_is_zoomed_to_the_data_and_a_collapsed_run_is_marked_at_its_edge():
    fig = report.figure(_sweep(), "bytes", "bytes", "pareto_bytes", "size")
    for ax in _axes(fig):
        lo, hi = ax.get_ylim()
        assert 0.80 < lo < 0.8353 and 0.8957 < hi < 0.92  # every other run inside, with a margin; not from 0.2
        (clipped,) = [c for c in ax.collections if c.get_gid() == "below"]
        (y,) = {round(p[1], 9) for p in clipped.get_offsets()}
        assert lo <= y <= lo + 0.1 * (hi - lo)  # at the bottom edge, inside the axes
        assert any("0.199" in t.get_text() for t in ax.texts)  # its accuracy written beside it


def _boxes(fig, ax):
    from matplotlib.text import Text

    r = fig.canvas.get_renderer()
    return [Text.get_window_extent(t, r) for t in ax.texts if t.get_text()]


def test_labels_do_not_overlap_even_at_the_same_latency():
    fig = report.figure(_sweep(), "latency_ms", "latency", "pareto_latency", "latency")
    for ax in _axes(fig):
        boxes = _boxes(fig, ax)
        assert len(boxes) >= 10
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not a.overlaps(b), (a, b)


def test_a_run_that_does_not_fit_is_drawn_on_top_with_its_own_marker():
    fig = report.figure(_sweep(), "bytes", "bytes", "pareto_bytes", "size")
    host = next(ax for ax in _axes(fig) if ax.get_title().endswith("host"))
    fit = [c for c in host.collections if c.get_gid() == "fits"]
    (unfit,) = [c for c in host.collections if c.get_gid() == "does not fit"]
    assert len(unfit.get_offsets()) == 1 and unfit.get_zorder() > max(c.get_zorder() for c in host.collections
                                                                       if c is not unfit)
    assert all(unfit.get_paths()[0] != c.get_paths()[0] or
               not np.allclose(unfit.get_paths()[0].vertices, c.get_paths()[0].vertices) for c in fit)
