"""edgebench.report on a synthetic set of runs: one frontier per device, unfit runs off it, points labelled,
host latency from the side-by-side speedup, a device's latency from its estimate."""

from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from edgebench import report


def _runs() -> pd.DataFrame:
    """A dense run and a sparsity sweep, on the host and on the Coral, where the two large runs do not fit."""
    rows = []
    for device in ("host", "coral_dev_board"):
        for method, sparsity, acc, nbytes, p50, speedup, fits_coral in [
                ("none", np.nan, 0.95, 1_000_000, 0.040, np.nan, 0.0),
                ("magnitude_pruning", 0.5, 0.97, 600_000, 0.080, 1.00, 0.0),  # timed at a busy moment: p50 x2
                ("magnitude_pruning", 0.9, 0.90, 150_000, 0.041, 1.00, 1.0),
                ("uniform_quant", np.nan, 0.93, 300_000, 0.020, 2.00, 1.0)]:
            host = device == "host"
            rows.append({"run_id": f"{device}/{method}/{sparsity}", "run_name": f"{method} {sparsity}",
                         "model": "lenet_300_100", "data": "digits", "method": method, "device": device,
                         "method.sparsity": sparsity, "test/acc": acc, "baseline/test_acc": 0.95,
                         # the Coral's export of the 0.9 run is smaller: mixed in one frontier it would hide the host's
                         "size/bytes_artifact": nbytes - (10_000 if not host and sparsity == 0.9 else 0),
                         "latency/host_p50_ms": p50, "latency/host_speedup": speedup,
                         "device/fits": 1.0 if host else fits_coral,
                         "device/latency_ms_est": np.nan if host else 10 * p50})
    return pd.DataFrame(rows)


def _row(df, device, method, sparsity=None):
    sel = (df["device"] == device) & (df["method"] == method)
    if sparsity is not None:
        sel &= df["method.sparsity"] == sparsity
    (i,) = df.index[sel]
    return df.loc[i]


def test_one_frontier_per_device_without_unfit_runs(tmp_path):
    df, bytes_label, lat_label = report.build(_runs(), ["method.sparsity"])
    # host: the 0.9 run is on the size frontier although the Coral has a smaller copy of it (separate frontiers)
    assert _row(df, "host", "magnitude_pruning", 0.9)["pareto_bytes"]
    assert _row(df, "coral_dev_board", "magnitude_pruning", 0.9)["pareto_bytes"]
    # the most accurate run fits the host (on its frontiers) but not the Coral: never on the Coral's frontier
    assert _row(df, "host", "magnitude_pruning", 0.5)["pareto_bytes"]
    unfit = _row(df, "coral_dev_board", "magnitude_pruning", 0.5)
    assert not unfit["fits"] and not unfit["pareto_bytes"] and not unfit["pareto_latency"]
    assert not _row(df, "coral_dev_board", "none")["pareto_latency"]
    # labels: the swept value, and the dense baseline
    assert _row(df, "host", "magnitude_pruning", 0.5)["label"] == "sparsity=0.5"
    assert _row(df, "host", "none")["label"] == "dense"
    # host latency = dense p50 / side-by-side speedup (the 0.080 ms p50 of a busy moment does not count)
    assert _row(df, "host", "magnitude_pruning", 0.5)["latency_ms"] == 0.040
    assert _row(df, "host", "uniform_quant")["latency_ms"] == 0.020
    assert "side by side" in report.latency_label(df, "host")
    # a target device: its estimate, never the host p50
    assert _row(df, "coral_dev_board", "uniform_quant")["latency_ms"] == 0.2
    assert "coral_dev_board: estimated" in lat_label

    # the plots: one panel per device; drawn without error
    assert report.plot(df, "bytes", bytes_label, "pareto_bytes", tmp_path / "b.png", "size").exists()
    assert report.plot(df, "latency_ms", lat_label, "pareto_latency", tmp_path / "l.png", "latency").exists()


def test_device_filter_uses_that_devices_estimate():
    runs = _runs()
    coral = runs[runs["device"] == "coral_dev_board"].reset_index(drop=True)
    coral.loc[coral["method"] == "none", "device/latency_ms_est"] = np.nan  # a run the profile could not estimate
    df, _, lat_label = report.build(coral)
    assert set(df["device"]) == {"coral_dev_board"}
    est = df["device/latency_ms_est"].notna()
    assert np.allclose(df.loc[est, "latency_ms"], df.loc[est, "device/latency_ms_est"])
    assert df.loc[~est, "latency_ms"].isna().all()  # not the host p50 in its place
    assert "host" not in lat_label


def test_host_latency_without_a_speedup_says_it_was_timed_apart():
    runs = _runs()
    runs = runs[(runs["device"] == "host") & (runs["method"] == "none")].copy()
    other = runs.copy()
    other["model"], other["run_id"], other["latency/host_p50_ms"] = "conv2", "conv2", 0.1
    df, _, lat_label = report.build(pd.concat([runs, other], ignore_index=True))
    assert sorted(df["latency_ms"]) == [0.04, 0.1]
    assert "timed in different processes" in lat_label


def test_frontier_table_names_device_and_swept_value():
    from rich.console import Console

    df, _, _ = report.build(_runs(), ["method.sparsity"])
    console = Console(record=True, width=250)
    report.print_frontier(df, "synthetic", console)
    text = console.export_text()
    assert "coral_dev_board" in text and "host" in text and "sparsity=0.9" in text


def test_the_confidence_interval_of_a_known_sample():
    from edgebench.stats import mean_ci, t95

    assert t95(3) == pytest.approx(4.302653, abs=1e-6)  # two-sided 95%, 2 degrees of freedom
    m, h = mean_ci([1.0, 2.0, 3.0])  # sd 1, n 3
    assert m == 2.0 and h == pytest.approx(4.302653 / 3 ** 0.5, abs=1e-6)
    assert np.isnan(mean_ci([0.5])[1])  # one replicate: no interval


def _replicated() -> pd.DataFrame:
    """A dense group and two pruned groups of 3 seeds each; the 0.5 group's interval overlaps the dense one's."""
    rows = []
    for method, sparsity, accs in [("none", np.nan, [0.90, 0.91, 0.92]),
                                   ("magnitude_pruning", 0.5, [0.905, 0.915, 0.92]),
                                   ("magnitude_pruning", 0.9, [0.80, 0.81, 0.805])]:
        for seed, acc in enumerate(accs):
            rows.append({"run_id": f"{method}/{sparsity}/{seed}", "run_name": f"{method} {sparsity}", "seed": seed,
                         "replicate_group": f"g-{method}-{sparsity}", "model": "lenet_300_100", "data": "digits",
                         "method": method, "device": "host", "method.sparsity": sparsity, "test/acc": acc,
                         "baseline/test_acc": [0.90, 0.91, 0.92][seed], "size/bytes_artifact": 100_000 * (1 + seed % 2),
                         "latency/host_p50_ms": 0.05, "latency/host_speedup": 1.0, "device/fits": 1.0})
    return pd.DataFrame(rows)


def test_replicates_are_grouped_by_everything_but_the_seed_and_averaged(tmp_path):
    from edgebench.stats import mean_ci

    df, bytes_label, lat_label = report.build(_replicated(), ["method.sparsity", "seed"])
    assert len(df) == 3 and set(df["replicates"]) == {3}
    g = _row(df, "host", "magnitude_pruning", 0.9)
    m, h = mean_ci([0.80, 0.81, 0.805])
    assert g["test/acc"] == pytest.approx(m) and g["test/acc_ci"] == pytest.approx(h)
    assert g["seeds"] == "0,1,2" and g["label"] == "sparsity=0.9"  # the seed is not a label: it is what varies
    assert g["bytes"] == pytest.approx(400_000 / 3) and g["bytes_ci"] > 0
    # without the tag every run is its own group (n = 1, no interval)
    single = report.build(_replicated().drop(columns="replicate_group"))[0]
    assert len(single) == 9 and single["test/acc_ci"].isna().all()
    # error bars drawn, the markdown says mean ± interval
    assert report.plot(df, "bytes", bytes_label, "pareto_bytes", tmp_path / "b.png", "size").exists()
    text = report.render.markdown(df, "t", bytes_label, lat_label, [])
    assert f"{m:.4f} ± {h:.4f}" in text and "9 finished runs in 3 groups" in text


def test_a_difference_inside_the_paired_interval_is_not_called_an_effect():
    from edgebench.stats import paired

    df, _, _ = report.build(_replicated(), ["method.sparsity"])
    half = _row(df, "host", "magnitude_pruning", 0.5)  # per seed +0.5, +0.5, 0.0 pt: the interval covers zero
    d = paired({"0": 0.905, "1": 0.915, "2": 0.92}, {"0": 0.90, "1": 0.91, "2": 0.92})
    assert half["vs_dense"] == pytest.approx(d.mean) and half["vs_dense_ci"] == pytest.approx(d.half)
    assert half["vs_dense_n"] == 3 and d.low < 0 < d.high and half["effect_vs_dense"] == "none"
    assert _row(df, "host", "magnitude_pruning", 0.9)["effect_vs_dense"] == "lower"
    assert _row(df, "host", "none")["effect_vs_dense"] == "n/a"  # the dense group is the reference
    # the Pareto frontier is computed on the means: 0.5 (mean 0.9133 > dense 0.91) at the same mean bytes is on it
    assert _row(df, "host", "magnitude_pruning", 0.5)["pareto_bytes"]


def _seed_blocked() -> pd.DataFrame:
    """3 seeds whose dense accuracies differ a lot (0.80, 0.90, 0.85) and a pruned group 1 point below its dense
    parent on every seed: the groups' unpaired intervals overlap, the paired one lies below zero."""
    rows = []
    for method, accs in [("none", [0.80, 0.90, 0.85]), ("magnitude_pruning", [0.790, 0.891, 0.838])]:
        for seed, acc in enumerate(accs):
            rows.append({"run_id": f"{method}{seed}", "run_name": method, "seed": seed, "replicate_group": method,
                         "model": "lenet5", "data": "digits", "method": method, "device": "host",
                         "method.sparsity": 0.5 if method != "none" else np.nan, "test/acc": acc,
                         "size/bytes_artifact": 1000.0 if method == "none" else 400.0, "device/fits": 1.0})
    return pd.DataFrame(rows)


def test_vs_dense_is_paired_by_seed_where_unpaired_intervals_would_overlap():
    from edgebench.stats import mean_ci

    df, _, _ = report.build(_seed_blocked())
    pruned = df[df["method"] == "magnitude_pruning"].iloc[0]
    (mp, hp), (md, hd) = mean_ci([0.790, 0.891, 0.838]), mean_ci([0.80, 0.90, 0.85])
    assert mp + hp > md - hd  # unpaired, the two groups' 95% intervals overlap: no claim could be made
    assert pruned["vs_dense"] == pytest.approx(-0.0103333, abs=1e-6)  # the per-seed differences -1.0, -0.9, -1.2 pt
    assert pruned["vs_dense"] + pruned["vs_dense_ci"] < 0 and pruned["vs_dense_n"] == 3
    assert pruned["vs_dense_p"] < 0.05 and pruned["effect_vs_dense"] == "lower"
    assert df.attrs["comparisons"] == 1
    text = report.render.markdown(df, "t", "b", "l", [])
    assert "lower: -1.03 ± " in text and "paired by seed" in text and "no multiple-comparison correction" in text


def test_several_comparisons_are_holm_corrected_and_the_markdown_says_so():
    from edgebench.stats import holm, paired

    dense = _seed_blocked().query("method == 'none'")
    weak = {"random_pruning": [0.7975, 0.8955, 0.8455], "structured_pruning": [0.7975, 0.895, 0.846]}
    groups = [dense.assign(method=m, replicate_group=m, run_id=m + dense["run_id"], **{"test/acc": accs})
              for m, accs in weak.items()]  # each about 0.4 pt below the dense parent on every seed
    df, _, _ = report.build(pd.concat([dense, *groups], ignore_index=True))
    ref = {"0": 0.80, "1": 0.90, "2": 0.85}
    alone = [paired(dict(zip("012", accs)), ref) for accs in weak.values()]
    assert all(d.excludes_zero() and d.p < 0.05 for d in alone)  # uncorrected, each would be called lower
    adjusted = holm([d.p for d in alone])
    assert all(p >= 0.05 for p in adjusted)  # family-wise, neither is
    assert df.attrs["comparisons"] == 2
    for (method, _), p in zip(weak.items(), adjusted):
        r = df[df["method"] == method].iloc[0]
        assert r["vs_dense_p_holm"] == pytest.approx(p) and r["effect_vs_dense"] == "none"
    text = report.render.markdown(df, "t", "b", "l", [])
    assert "Holm-corrected over the 2 comparisons" in text and "none: -0.38 ± " in text and "Holm p=0.058" in text


def test_leaderboard_picks_by_validation_accuracy_among_models_that_fit():
    rows = []
    for device, chain_tag, val, test, fits, model in [
            ("arduino_nano_33_ble_sense", "none", 0.90, 0.91, 0.0, "lenet5"),  # dense: reference, does not fit
            ("arduino_nano_33_ble_sense", "ptq_int8", 0.89, 0.80, 1.0, "lenet5"),
            ("arduino_nano_33_ble_sense", "ptq_int8", 0.85, 0.95, 1.0, "lenet_300_100"),  # better test, worse val
            ("arduino_nano_33_ble_sense", "structured_pruning->ptq_int8", 0.88, 0.88, 0.0, "lenet5"),
            ("jetson_nano_2gb", "none", 0.90, 0.91, 1.0, "lenet5")]:
        for seed in (0, 1):
            rows.append({"run_id": f"{device}{chain_tag}{model}{seed}", "run_name": "r", "model": model,
                         "data": "fashion_mnist", "method": chain_tag.split("->")[-1], "chain": chain_tag,
                         "device": device, "seed": seed, "replicate_group": f"{device}{chain_tag}{model}",
                         "test/acc": test + 0.01 * seed, "select/val_acc": val, "device/fits": fits,
                         "size/bytes_artifact": 1000.0, "device/ram_bytes": 500.0, "device.ram_source": "tflm_arena",
                         "device.fit": "no: RAM 300,000 B > 262,144 B" if not fits else "fits"})
    df, _, _ = report.build(pd.DataFrame(rows))
    board = report.leaderboard.leaderboard(df, ["arduino_nano_33_ble_sense", "jetson_nano_2gb", "vcu128"])
    ard = board[board["device"] == "arduino_nano_33_ble_sense"].set_index("family")
    assert ard.loc["dense", "status"] == "reference, does not fit"
    assert ard.loc["int8 PTQ", "model"] == "lenet5"  # chosen on validation, not on the higher test accuracy
    assert ard.loc["int8 PTQ", "test_acc"] == pytest.approx(0.805) and ard.loc["int8 PTQ", "test_acc_ci"] > 0
    assert ard.loc["structured pruning", "status"].startswith("nothing fits (1 tried): no: RAM")
    assert board[board["device"] == "vcu128"]["status"].tolist() == ["no runs for this device"]
    assert report.family("low_rank->ptq_int8") == "low rank" and report.family("ptq_int8") == "int8 PTQ"
    assert report.family("none") == "dense" and report.family("structured_pruning") == "structured pruning"
    text = report.leaderboard.markdown(board, "t", [])
    assert "## arduino_nano_33_ble_sense" in text and "0.8050 ± " in text
    # the one-line answer: the best that fits by validation accuracy, and its test accuracy against the dense one's
    assert report.answer(board[board["device"] == "arduino_nano_33_ble_sense"]).startswith(
        "**Answer:** lenet5, int8 PTQ: ptq_int8: test accuracy 0.8050 ± ")
    # paired by seed with the dense reference (-11 pt on both seeds): below it, though n = 2 gives wide intervals
    assert "test accuracy below the dense reference's (paired by seed: -11.00 ± 0.00 pt, n=2, Holm p=" in text
    assert "nothing edgebench made fits" in report.answer(board[board["device"] == "vcu128"])
    # the short answer (what the README shows): one line per device, the same pick, paired with dense
    short = text.split("## The short answer", 1)[1]
    assert "| arduino_nano_33_ble_sense | lenet5, int8 PTQ | 0.8050 ± " in short
    assert "| -11.00 ± 0.00 (lower) | 1,000 | 500 B (measured arena) |" in short
    assert "| jetson_nano_2gb | lenet5, dense | 0.9150 ± " in short and "| vcu128 | no runs for this device |" in short


def test_a_child_run_is_not_averaged_with_its_parent():
    runs = _replicated()
    child = runs.iloc[[3]].assign(run_id="child", run_name="magnitude_pruning 0.5 / step 0.magnitude_pruning",
                                  **{"edgebench.child": "true", "test/acc": 0.5})
    df, _, _ = report.build(pd.concat([runs.assign(**{"edgebench.child": np.nan}), child], ignore_index=True),
                            children=True)
    assert sorted(df["replicates"]) == [1, 3, 3, 3]  # the child is a group of its own
    # children tagged with their own group (parent's group / name): the same child of two replicates is one group
    g = runs.iloc[3]["replicate_group"] + " / step 0.magnitude_pruning"
    kids = pd.concat([child.assign(replicate_group=g), child.assign(replicate_group=g, run_id="child2", seed=1)],
                     ignore_index=True)
    df, _, _ = report.build(pd.concat([runs.assign(**{"edgebench.child": np.nan}), kids], ignore_index=True),
                            children=True)
    assert sorted(df["replicates"]) == [2, 3, 3, 3]


def test_chain_text_names_each_step_with_the_settings_that_were_set():
    steps = "[{'name': 'structured_pruning', 'ratio': 0.5, 'retrain_epochs': 2, 'scope': None}, 'ptq_int8']"
    assert report.chain_text(pd.Series({"steps": steps, "chain": "structured_pruning->ptq_int8"})) == \
        "structured_pruning(ratio=0.5, retrain_epochs=2) -> ptq_int8"
    assert report.chain_text(pd.Series({"steps": np.nan, "chain": "none", "label": "dense"})) == "dense"
    assert report.chain_text(pd.Series({"chain": "magnitude_pruning", "label": "model=lenet5 sparsity=0.9"})) == \
        "magnitude_pruning sparsity=0.9"


def test_the_leaderboard_csv_has_a_column_per_seed():
    import pandas as pd

    from edgebench.report.leaderboard import csv_table

    board = pd.DataFrame({"device": ["a", "a", "b"], "family": ["dense", "pruning", "dense"],
                          "test_acc_by_seed": [{0: 0.9, 1: 0.8}, {0: 0.85, 2: 0.7}, float("nan")]})
    out = csv_table(board)
    assert "test_acc_by_seed" not in out and list(out.columns[-3:]) == ["test_acc_seed0", "test_acc_seed1",
                                                                         "test_acc_seed2"]
    assert out["test_acc_seed0"].tolist()[:2] == [0.9, 0.85] and pd.isna(out.loc[1, "test_acc_seed1"])
    assert pd.isna(out.loc[2, "test_acc_seed0"])


@pytest.mark.parametrize("chain, fam", [
    ("none", "dense"), ("magnitude_pruning", "unstructured pruning"), ("random_pruning->ptq_int8", "unstructured pruning"),
    ("magnitude_pruning->nonuniform_quant", "Deep Compression"), ("structured_pruning->ptq_int8", "structured pruning"),
    ("lottery_ticket->ptq_int8", "lottery ticket"), ("ptq_int8", "int8 PTQ"), ("qat_int8", "int8 QAT"),
    ("uniform_quant", "k-bit codes"), ("kure", "k-bit codes"), ("fp16", "fp16 / bf16"), ("distillation", "distillation"),
    ("low_rank", "low rank"), ("low_rank_sparse->ptq_int8", "low rank + sparse"),
    ("structured_pruning->low_rank->ptq_int8", "chain")])
def test_each_chain_has_its_family(chain, fam):
    assert report.family(chain) == fam


def test_the_leaderboards_second_rule_the_smallest_within_the_validation_loss_tolerance():
    """Declared before the run: the smallest fitting file whose validation loss, paired by seed with the dense
    reference's, is at most VAL_LOSS_TOLERANCE higher (the interval's upper end)."""
    from edgebench.report.leaderboard import VAL_LOSS_TOLERANCE

    rows = []
    for chain_tag, size, losses in [("none", 4000.0, (0.40, 0.42, 0.41)),
                                    ("ptq_int8", 1000.0, (0.405, 0.425, 0.415)),          # +0.005: within
                                    ("structured_pruning->ptq_int8", 500.0, (0.50, 0.52, 0.51)),  # +0.10: not
                                    ("low_rank->ptq_int8", 800.0, (0.40, 0.46, 0.41))]:    # wide interval: not
        for seed, loss in enumerate(losses):
            rows.append({"run_id": f"{chain_tag}{seed}", "run_name": "r", "model": "lenet5", "data": "fashion_mnist",
                         "method": chain_tag.split("->")[-1], "chain": chain_tag, "device": "stm32l4", "seed": seed,
                         "replicate_group": chain_tag, "test/acc": 0.9 - loss / 10, "select/val_acc": 0.9 - loss / 10,
                         "select/val_loss": loss, "device/fits": 1.0, "size/bytes_artifact": size,
                         "device/ram_bytes": 100.0, "device.ram_source": "tflm_arena"})
    df, _, _ = report.build(pd.DataFrame(rows))
    board = report.leaderboard.leaderboard(df, ["stm32l4"])
    small = board.attrs["smallest_within_tolerance"]["stm32l4"]
    assert small["chain"].startswith("ptq_int8") and small["bytes_artifact"] == 1000.0 and small["n"] == 3
    assert small["val_loss_vs_dense"] == pytest.approx(0.005) and small["val_loss_vs_dense"] + small[
        "val_loss_vs_dense_ci"] <= VAL_LOSS_TOLERANCE
    text = report.leaderboard.markdown(board, "t", [])
    assert "**Smallest within tolerance**" in text and "1,000 B" in text


def test_the_pareto_frontier_is_chosen_on_validation_accuracy():
    """A group that is best on test but dominated on validation is not on the frontier (selection never reads test)."""
    rows = []
    for name, size, val, test in [("a", 1000.0, 0.90, 0.80), ("b", 2000.0, 0.85, 0.95)]:
        rows.append({"run_id": name, "run_name": name, "model": "lenet5", "data": "digits", "method": name,
                     "chain": name, "device": "host", "seed": 0, "replicate_group": name, "test/acc": test,
                     "select/val_acc": val, "size/bytes_artifact": size})
    df, _, _ = report.build(pd.DataFrame(rows))
    front = dict(zip(df["method"], df["pareto_bytes"]))
    assert front == {"a": True, "b": False}  # b is larger and less accurate on validation, though better on test


def test_the_boards_figure_draws_one_frontier_across_the_models():
    """The board's figure asks which model a device should take: its frontier spans the models of a data set (a
    larger, less accurate model of another net is not on it), where a report's frontier is one per model."""
    from edgebench.report.leaderboard import deployed

    rows = []
    for name, model, size, val in [("a", "resnet8", 100e3, 0.92), ("b", "lenet_300_100", 134e3, 0.89),
                                   ("c", "lenet5", 70e3, 0.91)]:
        rows.append({"run_id": name, "run_name": name, "model": model, "data": "fashion_mnist", "method": name,
                     "chain": name, "device": "host", "seed": 0, "replicate_group": name, "test/acc": val,
                     "select/val_acc": val, "size/bytes_artifact": size})
    df, _, _ = report.build(pd.DataFrame(rows))
    assert dict(zip(df["method"], df["pareto_bytes"])) == {"a": True, "b": True, "c": True}  # one per model
    board = deployed(df)
    assert dict(zip(board["method"], board["pareto_bytes"])) == {"a": True, "b": False, "c": True}


def test_the_leaderboard_says_where_the_deployed_file_does_not_realise_the_compression():
    from edgebench.report.leaderboard import size_note

    pick = pd.Series({"size/bytes_sparse": 11705.0})
    assert size_note("unstructured pruning", pick) == ("the runtime has no sparse kernels and loads the dense file; "
                                                       "11,705 B as an analytic encoding (size only)")
    assert size_note("k-bit codes", pick).startswith("no runtime loads k-bit codes")
    assert "no runtime loads k-bit codes or sparse weights" in size_note("Deep Compression", pd.Series(dtype=float))
    assert size_note("low rank + sparse", pick).startswith("no runtime has sparse kernels: the file stores the sparse")
    assert size_note("structured pruning", pick) == "" and size_note("int8 PTQ", pick) == ""
    from edgebench.report import render

    board = pd.DataFrame([{"device": "host", "family": "k-bit codes", "status": "best that fits",
                           "note": size_note("k-bit codes", pick), "model": "lenet5", "chain": "uniform_quant(bits=4)",
                           "replicates": 3, "val_acc": 0.9, "test_acc": 0.89, "test_acc_ci": 0.01,
                           "bytes_artifact": 250000.0, "ram_bytes": 1000.0, "ram_source": "estimate",
                           "latency_ms_est": np.nan, "energy_mj_est": np.nan, "effect_vs_dense": "none",
                           "vs_dense": -0.001, "vs_dense_ci": 0.002, "vs_dense_n": 3, "vs_dense_p_holm": 1.0}])
    assert "| k-bit codes | best that fits (no runtime loads k-bit codes: the file holds the dequantised weights; " \
           "11,705 B as an analytic encoding (size only)) | lenet5 |" in render.leaderboard_markdown(board, "t", [])


def test_the_leaderboard_compares_its_winner_with_the_runner_up_paired_by_seed():
    """Per device, the winner (highest validation accuracy that fits) against the next one, test accuracy paired by
    seed and Holm-corrected over the devices; within an interval at fewer than 5 seeds it says more seeds are due."""
    rows = []
    for device, chain_tag, val, tests in [
            ("stm32l4", "none", 0.90, (0.900, 0.910, 0.905)),
            ("stm32l4", "ptq_int8", 0.89, (0.899, 0.912, 0.904)),           # within an interval of dense
            ("stm32l4", "structured_pruning->ptq_int8", 0.80, (0.80, 0.81, 0.805)),
            ("esp32_s3", "none", 0.90, (0.900, 0.910, 0.905)),
            ("esp32_s3", "structured_pruning->ptq_int8", 0.85, (0.850, 0.861, 0.854)),  # 5 pt below on every seed
            ("host", "none", 0.90, (0.900, 0.910, 0.905)),
            ("host", "fp16", 0.89, (0.900, 0.910, 0.905)),  # the same predictions: no more seeds asked
            ("stm32h7", "none", 0.90, (0.900, 0.910, 0.905, 0.902, 0.908)),
            ("stm32h7", "ptq_int8", 0.89, (0.901, 0.909, 0.905, 0.903, 0.907))]:  # within an interval at 5 seeds
        for seed, test in enumerate(tests):
            rows.append({"run_id": f"{device}{chain_tag}{seed}", "run_name": "r", "model": "lenet5",
                         "data": "fashion_mnist", "method": chain_tag.split("->")[-1], "chain": chain_tag,
                         "device": device, "seed": seed, "replicate_group": f"{device}{chain_tag}",
                         "test/acc": test, "select/val_acc": val, "device/fits": 1.0, "size/bytes_artifact": 1000.0,
                         "device/ram_bytes": 100.0, "device.ram_source": "tflm_arena"})
    df, _, _ = report.build(pd.DataFrame(rows))
    board = report.leaderboard.leaderboard(df, ["stm32l4", "esp32_s3", "host", "stm32h7"])
    tie, clear = board.attrs["runner_up"]["stm32l4"], board.attrs["runner_up"]["esp32_s3"]
    same, five = board.attrs["runner_up"]["host"], board.attrs["runner_up"]["stm32h7"]
    assert same["effect"] == "none" and not same["tie"] and same["same"]
    assert five["effect"] == "none" and five["n"] == 5 and not five["tie"] and not five["same"]
    assert tie["winner"] == "lenet5 dense" and tie["runner_up"] == "lenet5 int8 PTQ" and tie["n"] == 3
    assert tie["diff"] == pytest.approx(np.mean([0.001, -0.002, 0.001])) and tie["effect"] == "none" and tie["tie"]
    assert clear["diff"] == pytest.approx(np.mean([0.05, 0.049, 0.051])) and clear["effect"] == "higher"
    assert not clear["tie"] and clear["p_holm"] >= clear["p"]  # Holm over the devices
    csv = report.leaderboard.csv_table(board)
    winner = csv[(csv["device"] == "esp32_s3") & (csv["family"] == "dense")].iloc[0]
    assert winner["runner_up"] == "lenet5 structured pruning" and winner["effect_vs_runner_up"] == "higher"
    assert csv[csv["family"] != "dense"]["vs_runner_up"].isna().all()  # only the winner's row carries it
    text = report.leaderboard.markdown(board, "t", [])
    assert "**Runner-up** lenet5 int8 PTQ (ptq_int8): not distinguishable by test accuracy (+0.00 ± " in text
    assert "5 seeds for two candidates within an interval; 3 so far" in text
    assert "**Runner-up** lenet5 fp16 / bf16 (fp16): the same test accuracy on every seed (+0.00 ± 0.00 pt, n=3)" in text
    assert "**Runner-up** lenet5 int8 PTQ (ptq_int8): not distinguishable by test accuracy (+0.00 ± " in text
    assert ("n=5, paired by seed: the interval covers zero) at 5 seeds, the board's rule for two candidates within an "
            "interval.") in text
    assert text.count("the same test accuracy on every seed") == 1
    assert ("**Runner-up** lenet5 structured pruning (structured_pruning->ptq_int8): the winner's test accuracy "
            "is higher (+5.00 ± ") in text


def test_a_board_about_one_model_names_the_others_as_candidates():
    """The attention model's section (reference_model=ram): its dense form is the reference (here not fitting, and
    the row says why), the conv net beside it a candidate of its own, compared with it paired by seed."""
    why = "TFLite Micro (tflite_micro_fp32) cannot hold this model: model.tflite does not run in TFLite Micro"
    rows = []
    for model, chain_tag, tests, fits, size in [("ram", "none", (0.70, 0.71, 0.72), 0.0, np.nan),
                                                ("conv2_small", "none", (0.76, 0.77, 0.78), 1.0, 125000.0),
                                                ("conv2_small", "ptq_int8", (0.75, 0.77, 0.78), 1.0, 38000.0)]:
        for seed, test in enumerate(tests):
            rows.append({"run_id": f"{model}{chain_tag}{seed}", "run_name": "r", "model": model, "data": "translated",
                         "method": chain_tag, "chain": chain_tag, "device": "arduino_nano_33_ble_sense",
                         "seed": seed, "replicate_group": f"{model}{chain_tag}", "test/acc": test,
                         "select/val_acc": test, "device/fits": fits, "size/bytes_artifact": size,
                         "device.fit": "fits" if fits else why})
    df, _, _ = report.build(pd.DataFrame(rows))
    board = report.leaderboard.leaderboard(df, ["arduino_nano_33_ble_sense"], reference_model="ram")
    fam = board.set_index("family")
    assert list(fam.index) == ["dense", "conv2_small dense", "conv2_small int8 PTQ"]
    assert fam.loc["dense", "model"] == "ram" and fam.loc["dense", "note"] == why
    assert fam.loc["conv2_small dense", "vs_dense"] == pytest.approx(0.06)  # paired with the attention model's seeds
    text = report.answer(board)
    assert text.startswith("**Answer:** conv2_small, dense, uncompressed: test accuracy 0.7700 ± ")
    assert "nan%" not in text and "**Runner-up** conv2_small int8 PTQ (ptq_int8)" in text
    md = report.leaderboard.markdown(board, "t", [])
    assert f"| dense | reference, does not fit ({why}) | ram |" in md


def test_the_boards_figure_puts_each_model_at_the_bytes_its_device_loads():
    """Unstructured pruning's sparse encoding is 10x smaller than its file, but the device loads the dense file:
    on the board's figure it sits at the file's bytes, and a smaller structured-pruned file is on the frontier."""
    rows = [{"run_id": name, "run_name": name, "model": "lenet5", "data": "digits", "method": name, "chain": name,
             "device": "stm32l4", "seed": 0, "replicate_group": name, "test/acc": val, "select/val_acc": val,
             "size/bytes_artifact": file, "size/bytes_sparse": sparse, "device/fits": 1.0}
            for name, file, sparse, val in [("magnitude_pruning", 1000.0, 100.0, 0.90),
                                            ("structured_pruning", 500.0, 450.0, 0.85)]]
    table, _, _ = report.build(pd.DataFrame(rows))
    assert dict(zip(table["method"], table["pareto_bytes"])) == {"magnitude_pruning": True,
                                                                  "structured_pruning": False}  # smallest encoding
    fig = report.leaderboard.deployed(table)
    assert dict(zip(fig["method"], fig["bytes"])) == {"magnitude_pruning": 1000.0, "structured_pruning": 500.0}
    assert dict(zip(fig["method"], fig["pareto_bytes"])) == {"magnitude_pruning": True, "structured_pruning": True}


def test_the_board_takes_an_arm_when_all_its_seeds_have_finished():
    """A study run in chunks: an arm with some seeds finished stays off the board (its comparisons would pair fewer
    seeds than the others') and is named."""
    from types import SimpleNamespace

    from edgebench.report.leaderboard import complete_arms

    budgets = {"full": SimpleNamespace(seeds=(0, 1, 2))}
    study = SimpleNamespace(arms={"dense": [], "int8": []}, seeds_of=lambda arm, budget: (0, 1, 2), budgets=budgets)
    df = pd.DataFrame({"study.arm": ["dense"] * 3 + ["int8"], "seed": [0, 1, 2, 0]})
    kept, partial = complete_arms(study, df, "full")
    assert kept["study.arm"].unique().tolist() == ["dense"] and partial == ["int8 (1 of 3 seeds)"]
    # the 5-seed rule for a tie: dense's more seeds 3, 4 join when both have finished; until then its seeds 0-2 stay
    study.seeds_of = lambda arm, budget: (0, 1, 2, 3, 4) if arm == "dense" else (0, 1, 2)
    df = pd.DataFrame({"study.arm": ["dense"] * 4 + ["int8"] * 3, "seed": [0, 1, 2, 3, 0, 1, 2]})
    kept, partial = complete_arms(study, df, "full")
    assert sorted(kept[kept["study.arm"] == "dense"]["seed"]) == [0, 1, 2] and len(kept) == 6
    assert partial == ["dense (on the board with seeds 0, 1, 2: 4 of its 5 seeds have finished)"]
    df = pd.concat([df, pd.DataFrame({"study.arm": ["dense"], "seed": [4]})])
    kept, partial = complete_arms(study, df, "full")
    assert sorted(kept[kept["study.arm"] == "dense"]["seed"]) == [0, 1, 2, 3, 4] and partial == []


def test_an_answer_says_why_a_difference_is_not_an_effect():
    """A paired interval that excludes zero is still `none` when Holm's correction over the board keeps it: the answer
    must not say the interval covers zero."""
    import pandas as pd

    from edgebench.report import leaderboard as lb

    kept = pd.Series({"vs_dense": -0.0138, "vs_dense_ci": 0.0046, "vs_dense_n": 3, "vs_dense_p_holm": 0.31})
    assert lb._paired_text(kept) == "paired by seed: -1.38 ± 0.46 pt, n=3, Holm p=0.31"
    assert lb._why_none(-0.0138, 0.0046).startswith("the interval excludes zero, but not after Holm")
    assert lb._why_none(-0.001, 0.0046) == "the interval covers zero"


def test_the_fine_tuning_check_ranks_families_on_validation_and_calls_a_swap_inside_its_interval_a_tie():
    from edgebench.report.leaderboard import fine_tuning_ranking

    val = {"a x1": [0.90, 0.91, 0.92], "a x3": [0.91, 0.92, 0.93],  # a stays first
           "b x1": [0.85, 0.86, 0.87], "b x3": [0.880, 0.870, 0.880],  # b and c swap, by 0.0033 +- a wide interval
           "c x1": [0.86, 0.87, 0.88], "c x3": [0.870, 0.875, 0.875], "dense 15 epochs": [0.9, 0.9, 0.9]}
    df = pd.DataFrame([{"study.arm": a, "seed": s, "select/val_acc": v, "test/acc": 0.0}
                       for a, vs in val.items() for s, v in enumerate(vs)])
    out = fine_tuning_ranking(None, df, None)
    j = out["json"]
    assert j["rank"]["x1"] == {"a": 1, "c": 2, "b": 3} and j["rank"]["x3"] == {"a": 1, "b": 2, "c": 3}
    assert [(s["above"], s["below"], s["n"], s["tie"]) for s in j["swaps"]] == [("b", "c", 3, True)]
    assert j["held"] and j["kendall_tau"] == pytest.approx(1 / 3)
    assert "the ranking holds up to ties" in out["markdown"] and "b over c at x3: +0.33 ± " in out["markdown"]
    # test accuracy plays no part: the same runs with another test/acc give the same answer
    assert fine_tuning_ranking(None, df.assign(**{"test/acc": 1.0}), None)["json"] == j
    # an exact tie on validation accuracy goes to the lower validation loss, as on the board
    tied = df[df["study.arm"].str.match("[bc] ")].copy()
    tied.loc[tied["study.arm"] == "c x3", "select/val_acc"] = [0.880, 0.870, 0.880]
    for loss_b, first in ((0.30, "c"), (0.20, "b")):
        tied["select/val_loss"] = np.where(tied["study.arm"] == "b x3", loss_b, 0.25)
        assert fine_tuning_ranking(None, tied, None)["json"]["rank"]["x3"][first] == 1


def test_a_board_of_thirteen_families_gives_each_its_own_colour():
    from edgebench.report.plots import colours

    assert colours(["none", "ptq_int8"]) == {"none": "C0", "ptq_int8": "C1"}
    many = colours([f"m{i}" for i in range(13)])
    assert len(set(map(str, many.values()))) == 13


def test_an_exact_tie_on_validation_accuracy_goes_to_the_lower_validation_loss_whatever_the_order():
    from edgebench.report.leaderboard import by_validation

    g = pd.DataFrame({"select/val_acc": [0.921, 0.921, 0.90], "select/val_loss": [0.25, 0.24, 0.1],
                      "size/bytes_artifact": [99008, 99008, 10], "name": ["qat", "ptq", "small"]})
    for order in ([0, 1, 2], [1, 0, 2], [2, 1, 0]):
        assert by_validation(g.iloc[order])["name"].tolist() == ["ptq", "qat", "small"]
    # never the test split: a test column plays no part
    assert by_validation(g.assign(**{"test/acc": [0.99, 0.1, 0.5]}))["name"].iloc[0] == "ptq"
