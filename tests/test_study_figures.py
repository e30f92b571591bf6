"""The studies' own tables (edgebench/report/figures/, each a study's ``extra:`` hook), on made-up values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from edgebench import study as st
from edgebench.report.figures import deep_compression, fashion_sweep, lth_lenet_fashion


def _values(study, per_arm):
    return {a: {m: dict(per_arm.get(a, {}).get(m, {})) for m in study.metrics} for a in study.arms}


def test_deep_compression_ratios_are_the_dense_bytes_over_each_size():
    s = st.load("deep_compression")
    fp32 = {0: 1000.0, 1: 1000.0, 2: 1000.0}
    vals = _values(s, {"dense": {"size/bytes_fp32": fp32, "test/acc": {0: 0.9, 1: 0.9, 2: 0.9}},
                       "pruned": {"size/bytes_sparse": {0: 125.0, 1: 125.0, 2: 125.0}},
                       "deep_compression": {"size/bytes_sparse": {0: 50.0, 1: 50.0, 2: 50.0},
                                            "size/bytes_dc_pq": {0: 40.0, 1: 40.0, 2: 40.0},
                                            "size/bytes_dc_pqh": {0: 20.0, 1: 25.0, 2: 40.0},
                                            "test/acc": {0: 0.89, 1: 0.88, 2: 0.89}}})
    out = deep_compression.next_to_han(s, pd.DataFrame({"data": ["fashion_mnist"]}), vals)
    ratios = out["json"]["ratios"]
    assert ratios["pruned size/bytes_sparse"] == {"0": 8.0, "1": 8.0, "2": 8.0}
    assert ratios["deep_compression size/bytes_dc_pqh"] == {"0": 50.0, "1": 40.0, "2": 25.0}
    assert out["json"]["this_study"]["ratio_pqh"] == pytest.approx(115 / 3)
    assert "| Han et al. 2016, LeNet-300-100 (P+Q+H) | MNIST |" in out["markdown"]
    assert "| fashion_mnist | 10.00% -> 11.33% |" in out["markdown"]


def test_fashion_sweep_frontiers_are_on_the_arms_means():
    s = st.load("fashion_sweep")
    seeds = (0, 1, 2)
    acc = {"dense": 0.90, "magnitude_pruning 0.5": 0.899, "uniform_quant 4": 0.89, "uniform_quant 2": 0.2,
           "structured_pruning 0.5": 0.895}
    size = {"dense": 1000, "magnitude_pruning 0.5": 500, "uniform_quant 4": 100, "uniform_quant 2": 10,
            "structured_pruning 0.5": 500}
    speedup = {"magnitude_pruning 0.5": 1.0, "uniform_quant 4": 0.98, "uniform_quant 2": 1.0,
               "structured_pruning 0.5": 1.5}
    vals = _values(s, {a: {"test/acc": {k: acc[a] for k in seeds}, "size/bytes_smallest": {k: size[a] for k in seeds},
                           "latency/host_speedup": {k: speedup.get(a, math.nan) + 0.01 * k for k in seeds}}
                       for a in acc})
    vals["dense"]["latency/host_speedup"] = {}  # a dense run has none: it is the reference, 1
    out = fashion_sweep.frontiers(s, pd.DataFrame(), vals)["json"]
    assert out["frontier_size"] == ["dense", "magnitude_pruning 0.5", "uniform_quant 4", "uniform_quant 2"]
    # magnitude pruning is as fast as dense (inside the intervals) and less accurate: dominated
    assert out["frontier_latency"] == ["dense", "structured_pruning 0.5"]
    assert out["relative_latency"]["dense"] == {"mean": 1.0, "half": 0.0}


def test_lth_levels_pairs_each_level_by_seed_with_holm_over_all(monkeypatch):
    s = st.load("lth_lenet_fashion")
    seeds = (0, 1, 2)
    lv = {0: {"lth/remaining": {k: 1.0 for k in seeds}, "lth/test_acc": {0: 0.880, 1: 0.882, 2: 0.881}}}
    for L in (1, 2):
        lv[L] = {"lth/remaining": {k: 0.8 ** L for k in seeds},
                 "lth/test_acc": {0: 0.890, 1: 0.891, 2: 0.892},
                 "lth/reinit_test_acc": {0: 0.850, 1: 0.852, 2: 0.851 + 0.001 * L}}
    monkeypatch.setattr(lth_lenet_fashion, "per_level", lambda runs: lv)
    vals = _values(s, {"dense": {"test/acc": {0: 0.885, 1: 0.886, 2: 0.887}}})
    out = lth_lenet_fashion.levels(s, pd.DataFrame(), vals)
    doc = out["json"]
    tests = [d for d in doc["paired_differences"] if d["n"] >= 2]
    first = next(d for d in tests if d["level"] == 1 and d["comparison"] == "ticket - reinit, end")
    assert first["diffs"] == pytest.approx([0.04, 0.039, 0.040]) and first["verdict"] == "higher"
    assert all(d["p_holm"] >= d["p"] for d in tests)
    assert doc["findings"]["reinit_below_ticket_from_pct_on"] == pytest.approx(80.0)
    assert "## Paired differences by level (Holm over all" in out["markdown"]


def test_lth_levels_say_where_early_stopping_was_cut_off_by_the_budget(monkeypatch):
    """Reinit's minimum validation loss at 6,975 of 7,200 iterations (issue 29) is at the end of its budget: the report
    names those levels instead of reading the early-stop comparison as the paper's."""
    s = st.load("lth_lenet_fashion")
    seeds = (0, 1, 2)
    lv = {0: {"lth/remaining": {k: 1.0 for k in seeds}, "lth/test_acc": {k: 0.88 for k in seeds},
              "lth/steps": {k: 7200 for k in seeds}}}
    for L, reinit_step in ((1, 4000), (2, 6975)):
        lv[L] = {"lth/remaining": {k: 0.8 ** L for k in seeds}, "lth/test_acc": {k: 0.89 + 0.001 * k for k in seeds},
                 "lth/best_val_step": {k: 3000 + 100 * k for k in seeds}, "lth/steps": {k: 7200 for k in seeds},
                 "lth/reinit_best_val_step": {k: reinit_step for k in seeds}}
    monkeypatch.setattr(lth_lenet_fashion, "per_level", lambda runs: lv)
    out = lth_lenet_fashion.levels(s, pd.DataFrame(), _values(s, {"dense": {"test/acc": {k: 0.885 for k in seeds}}}))
    assert out["json"]["findings"]["early_stop_cut_off_at_pct"] == {"ticket": [], "reinit": [64.0]}
    assert "for reinit at: [64.0] (their early-stop comparisons are not comparable" in out["markdown"]
    del lv[0]["lth/steps"], lv[1]["lth/steps"], lv[2]["lth/steps"]  # runs from before lth/steps was logged
    out = lth_lenet_fashion.levels(s, pd.DataFrame(), _values(s, {"dense": {"test/acc": {k: 0.885 for k in seeds}}}))
    assert out["json"]["findings"]["early_stop_cut_off_at_pct"] is None and "is not known" in out["markdown"]
