"""Rendering: the report's, the leaderboard's and a study's markdown (and a study's JSON), and their tables on the
console (rich). Nothing here decides anything: the figures, verdicts and answers come in computed. One way to write
a mean with its interval (:func:`pm`), one way to write a study's figure (:func:`fmt_metric`), one strict JSON
(:func:`strict_json`)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from edgebench.report.replicates import dropped_summary
from edgebench.report.table import sections


def console(width: int = 160):
    """A rich console: the terminal's width on a terminal, ``width`` otherwise (a log, a pipe)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else width)


def pm(mean: float, half: float = np.nan, fmt: str | Callable[[float], str] = "{:.4f}",
       half_fmt: str | Callable[[float], str] | None = None, zero: bool = True) -> str:
    """A mean with the half-width of its 95% interval, ``0.8952 ± 0.0008``; the mean alone when there is no
    interval (NaN: one replicate) or, with ``zero=False``, when the interval is 0. ``fmt`` (a format string or a
    function) writes the mean, ``half_fmt`` the half-width (default: ``fmt``)."""
    def text(f, v):
        return f(v) if callable(f) else f.format(v)

    if pd.isna(half) or (not zero and not half > 0):
        return text(fmt, mean)
    return f"{text(fmt, mean)} ± {text(half_fmt or fmt, half)}"


def pt(v: float, ci: float = np.nan) -> str:
    """An accuracy difference (a fraction) in percentage points, signed, with its interval: ``-2.00 ± 0.41``."""
    if pd.isna(v):
        return ""
    return pm(v * 100, np.nan if pd.isna(ci) else ci * 100, "{:+.2f}", "{:.2f}")


def versus(r: pd.Series, corrected: bool) -> str:
    """A row's verdict against the dense model with its evidence: ``lower: -10.33 ± 0.72 pt, n=3, Holm p=0.004``
    (the paired difference by seed and its 95% interval); the verdict alone when there is no paired figure."""
    effect = str(r.get("effect_vs_dense", "n/a"))
    if pd.isna(r.get("vs_dense", np.nan)):
        return effect
    p = r.get("vs_dense_p_holm" if corrected else "vs_dense_p", np.nan)
    stat = "" if pd.isna(p) else f", {'Holm p' if corrected else 'p'}={p:.2g}"
    return f"{effect}: {pt(r['vs_dense'], r.get('vs_dense_ci', np.nan))} pt, n={int(r['vs_dense_n'])}{stat}"


def rule(comparisons: int, whose: str) -> str:
    """The sentence that states the effect rule and the multiple-comparison correction of ``comparisons``."""
    text = (f"effect_vs_dense: test accuracy minus {whose}, paired by seed (the mean of the per-seed differences ± "
            "the half-width of its 95% t interval, in percentage points, over the n seeds both have): `higher`/`lower` "
            "only when that interval excludes zero")
    if comparisons > 1:
        text += (f" and Holm's adjusted p is below 0.05 (Holm-corrected over the {comparisons} comparisons with the "
                 "dense model in this file: family-wise 5%)")
    elif comparisons == 1:
        text += " (one comparison in this file: no multiple-comparison correction)"
    return text + (", `none` otherwise (a difference inside the interval is not an effect" +
                   ("; nor is one whose interval excludes zero while Holm's adjusted p is 0.05 or more" if comparisons > 1
                    else "") + "), `n/a` with fewer than two seeds shared with the dense model.")


def children_line(df: pd.DataFrame) -> str:
    """The sentence on the child runs the table left out, or ``""``."""
    n = int(df.attrs.get("children_left_out", 0) or 0)
    return (f"{n} child run{'' if n == 1 else 's'} (teachers, chain steps) left out: tag edgebench.child, "
            "not deployables of their own" if n else "")


def dropped_markdown(dropped: list[dict]) -> list[str]:
    """The paragraph on the runs left out of the replicate groups (every one named), or nothing."""
    if not dropped:
        return []
    return ["**Runs left out.** " + " ".join(f"{line}." for line in dropped_summary(dropped, limit=len(dropped))), ""]


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "**yes**" if v else ""
    if isinstance(v, float):
        return "" if np.isnan(v) else (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}")
    return str(v)


def _cell(r: pd.Series, c: str, corrected: bool) -> str:
    if c == "Δ acc (pt)":
        return pt(r["delta/acc"], r.get("delta/acc_ci", np.nan))
    if c == "effect_vs_dense":
        return versus(r, corrected)
    ci = r.get(f"{c}_ci", np.nan)
    if c in ("test/acc", "select/val_acc") and not pd.isna(r[c]) and not pd.isna(ci):
        return pm(r[c], ci)
    if c == "fits":
        return "yes" if r["fits"] else "no"
    if c == "latency_ms" and pd.notna(r[c]) and r.get("latency_noise_ms", 0) > 0:
        return pm(r[c], r["latency_noise_ms"], "{:.4g}", "{:.2g}")  # the band inside which latencies count as equal
    return _fmt(r[c])


def markdown(df: pd.DataFrame, title: str, bytes_label: str, lat_label: str, plots: list[str]) -> str:
    """``report.md``: what the columns mean, what was left out, one table per (data, model) section, the plots."""
    cols = ["run_name", "device", "method", "label", "replicates"] + [c for c in df.columns if c.startswith("method.")] + [
        "test/acc", "Δ acc (pt)", "effect_vs_dense", "select/val_acc", "bytes", "latency_ms", "fits",
        "pareto_bytes", "pareto_latency"]
    if "duplicates_dropped" in df and df["duplicates_dropped"].fillna(0).any():
        cols.insert(cols.index("replicates") + 1, "duplicates_dropped")
    comparisons = int(df.attrs.get("comparisons", 0) or 0)
    n = int(df["replicates"].sum())
    kids = children_line(df)
    lines = [f"# {title}", "", f"{n} finished runs in {len(df)} groups (runs that differ only in the seed are the "
             "replicates of one group: mean ± the half-width of the 95% t interval), in one section per data set and "
             "model: runs of different data or models are never on one frontier. bytes = "
             f"{bytes_label}; latency = {lat_label}. Δ acc (pt): test accuracy minus the dense model's, in percentage "
             "points (the runs' `delta/acc`). "
             + rule(comparisons, "the dense group's of the same model, data and device") +
             " Pareto, per data set, model and device, "
             "on the means: fits the device (every replicate) and is not beaten on both accuracy and cost by another "
             "group that fits it; groups that do not fit are never on the frontier. latency_ms ± its noise: the larger of "
             "the replicates' 95% interval and, on the host, half the interleaved timing's IQR (all of it when the "
             "measurement was flagged noisy); two latencies whose bands overlap are equal for the frontier, so the "
             "more accurate run dominates.", "",
             *([kids + ".", ""] if kids else []), *dropped_markdown(df.attrs.get("dropped", []))]
    for name, g in sections(df):
        lines += [f"## {name}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(r, c, comparisons > 1) for c in cols) + " |" for _, r in g.iterrows()]
        lines.append("")
    for name in plots:
        lines += [f"![{name[:-4].replace('_', ' ')}]({name})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def print_dropped(dropped: list[dict], out=None) -> None:
    """The runs left out, as plain lines after a table (up to 5 named per kind; the report's markdown names all)."""
    for line in dropped_summary(dropped):
        (out or console()).print(line, soft_wrap=True, markup=False, highlight=False, emoji=False)


def print_frontier(df: pd.DataFrame, title: str, out=None) -> None:
    """The Pareto-optimal runs as one rich table per (data, model) group, each with its devices' frontiers, then
    what was left out (child runs, duplicates)."""
    from rich.markup import escape
    from rich.table import Table

    out = out or console(140)
    for name, g in sections(df):
        table = Table(title=escape(f"{title}: {name}: Pareto-optimal runs (per device, among runs that fit)"),
                      title_justify="left")
        for col in ("device", "run", "swept", "method", "test acc", "Δ acc (pt)", "bytes", "latency ms", "frontier"):
            table.add_column(col)
        front = g[g["pareto_bytes"] | g["pareto_latency"]].sort_values(["device", "bytes"])
        for _, r in front.iterrows():
            which = " + ".join(k for k, f in (("size", r["pareto_bytes"]), ("latency", r["pareto_latency"])) if f)
            lat = "" if pd.isna(r["latency_ms"]) else f"{r['latency_ms']:.3g}"
            table.add_row(*map(escape, (str(r["device"]), str(r["run_name"]), str(r["label"]), str(r["method"]),
                                        pm(r["test/acc"], r.get("test/acc_ci", np.nan)),
                                        pt(r["delta/acc"], r.get("delta/acc_ci", np.nan)), f"{r['bytes']:,.0f}", lat, which)))
        out.print(table)
    if children_line(df):
        out.print(children_line(df), soft_wrap=True, markup=False, highlight=False, emoji=False)
    print_dropped(df.attrs.get("dropped", []), out)


LEADERBOARD_INTRO = (
    "Per device profile and method family: the model with the highest mean **validation** accuracy among "
    "those that fit the device in its own format (every replicate fits), with its **test** accuracy (mean ± "
    "95% t interval over the replicates), the artifact's bytes, its RAM on one basis per device (`measured "
    "arena`: TFLite Micro's arena, measured on the file, wherever a TFLite Micro file exists; `estimate, "
    "uncalibrated`: estimated peak activations, plus weights where the device loads them, for the other runtimes: "
    "no published measurement calibrates it), and "
    "the device's estimated latency and energy (estimates: see the README's *Device estimates*). The dense "
    "row is the reference, whether it fits or not. A dash: no figure, because the profile has none to "
    "estimate from (no sourced power figure for energy, no peak compute for latency; the host's latency is "
    "measured, not estimated, and only when `measure.latency` is on).")


RAM_LABELS = {"tflm_arena": "measured arena", "estimate": "estimate, uncalibrated"}


def ram_label(source: str) -> str:
    """How a RAM figure was obtained, as the leaderboard says it (``device.ram_source``)."""
    return RAM_LABELS.get(source, source)


def _num(v, f="{:,.0f}") -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f.format(v)


def latency_cell(r) -> str:
    """A device latency estimate as it may be shown: with its band, or labelled uncalibrated (never a plain figure).
    ``r`` has latency_ms_est and, when the estimate was calibrated, latency_low / latency_high."""
    ms = r.get("latency_ms_est", np.nan)
    if ms is None or pd.isna(ms):
        return "–"
    lo, hi = r.get("latency_low", np.nan), r.get("latency_high", np.nan)
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return f"~{ms:.3g} (uncalibrated)"
    return f"{ms:.3g} ({lo:.3g}-{hi:.3g})"


def leaderboard_markdown(board: pd.DataFrame, title: str, plots: list[str], dropped: list[dict] = (),
                         answers: dict[str, str] | None = None) -> str:
    """``leaderboard.md``: per device, its answer (``answers[device]``), then one row per method family with its
    verdict against the dense reference, paired by seed (``board.attrs["comparisons"]``: how many, Holm-corrected)."""
    comparisons = int(board.attrs.get("comparisons", 0) or 0)
    lines = [f"# {title}", "", LEADERBOARD_INTRO + " " + rule(comparisons, "the device's dense reference's"), "",
             *dropped_markdown(list(dropped))]
    for device, g in board.groupby("device", sort=False):
        lines += [f"## {device}", "", (answers or {}).get(device, ""), "",
                  "| family | status | model | chain | n | val acc | test acc | effect_vs_dense | bytes | RAM (B) | "
                  "latency est (ms, band) | energy est (mJ) |", "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
        for _, r in g.iterrows():
            if pd.isna(r.get("model", np.nan)):
                lines.append(f"| {r['family']} | {r['status']} | | | | | | | | | | |")
                continue
            test = pm(r["test_acc"], r["test_acc_ci"])
            ram = _num(r["ram_bytes"]) + (f" ({ram_label(r['ram_source'])})" if isinstance(r["ram_source"], str) else "")
            vs = "reference" if r["family"] == "dense" else versus(r, comparisons > 1)
            status = r["status"] + (f" ({r['note']})" if isinstance(r.get("note"), str) and r.get("note") else "")
            lines.append(f"| {r['family']} | {status} | {r['model']} | {r['chain']} | "
                         f"{int(r['replicates'])} | {r['val_acc']:.4f} | {test} | {vs} | {_num(r['bytes_artifact'])} | "
                         f"{ram} | {latency_cell(r)} | {_num(r['energy_mj_est'], '{:.3g}')} |")
        lines.append("")
    lines += [f"![{p[:-4]}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def print_leaderboard(board: pd.DataFrame, title: str, out=None) -> None:
    """The leaderboard as one rich table."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    for col in ("device", "family", "model / chain", "test acc", "bytes", "RAM", "latency est ms (band)", "status"):
        table.add_column(col)
    for _, r in board.iterrows():
        if pd.isna(r.get("model", np.nan)):
            table.add_row(escape(str(r["device"])), escape(str(r["family"])), "", "", "", "", "", escape(str(r["status"])))
            continue
        acc = pm(r["test_acc"], r["test_acc_ci"])
        table.add_row(*map(escape, (str(r["device"]), str(r["family"]), f"{r['model']} / {r['chain']}", acc,
                                    f"{r['bytes_artifact']:,.0f}", "" if pd.isna(r["ram_bytes"]) else f"{r['ram_bytes']:,.0f}",
                                    "" if pd.isna(r["latency_ms_est"]) else latency_cell(r), str(r["status"]))))
    (out or console()).print(table)


# ---------------------------------------------------------------------------------------------- a study's report

def fmt_metric(v: float | None, metric: str) -> str:
    """A study's figure: accuracies and ``delta/*`` to 4 decimals, 1,000 and above with thousands separators,
    3 significant digits otherwise; ``n/a`` for none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if metric.endswith("acc") or metric.startswith("delta/"):
        return f"{v:.4f}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def mean_ci_text(xs: dict, metric: str) -> str:
    """``{seed: value}`` as the mean ± the half-width of its 95% t interval (:func:`edgebench.stats.mean_ci`), the
    mean alone for one seed or no spread, ``n/a`` for none."""
    from edgebench.stats import mean_ci

    if not xs:
        return "n/a"
    m, h = mean_ci([xs[s] for s in sorted(xs)])
    return pm(m, h, lambda v: fmt_metric(v, metric), zero=False)


def strict_json(o):
    """``o`` for strict JSON: NaN and infinities (an interval of one seed, a p value of none) as null."""
    if isinstance(o, float):
        return None if math.isnan(o) or math.isinf(o) else o
    if isinstance(o, dict):
        return {k: strict_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [strict_json(v) for v in o]
    return o


def study_markdown(study, budget: str, df: pd.DataFrame, left: list, vals: dict, rows: list[dict], facts: dict,
                   pngs: list[str], launched: dict | None = None, command: str = "") -> str:
    """A study's ``NAME.md`` (:func:`edgebench.report.studies.write` computes what goes in): the budget, the wall
    times and the command, the host CPU when latency is reported, the missing runs, the arms, the arms' table (mean
    ± 95% interval per metric), the comparisons' table, the derived figures, the plots, the ``extra:`` hook's
    markdown, the notes, the runs left out and every run id."""
    seeds, b, shared, cpu = facts["seeds"], study.budgets[budget], facts["shared"], facts["cpu"]
    lines = [f"# {study.title}", ""]
    if study.question:
        lines += [f"**Question.** {study.question}", ""]
    lines += [f"Study `{study.name}` (conf/study/{study.name}.yaml), budget **{budget}**: seeds "
              f"{', '.join(map(str, seeds))}"
              + "".join(f" (and {', '.join(map(str, more))} for {arm})" for arm, more in b.more_seeds)
              + f"; model {', '.join(shared['model'])}; data {', '.join(shared['data'])}; "
              f"trainer.max_epochs {', '.join(shared['epochs'])}"
              + (f"; budget overrides `{' '.join(b.overrides)}`" if b.overrides else "") + ". "
              f"{len(df)} runs in MLflow experiment `{study.experiment(budget)}`"
              + (f" ({facts['ledger_runs']} of them read from `{study.name}.runs.csv`, the study's ledger: runs "
                 "made where that store is not here)" if facts.get("ledger_runs") else "") + "; run wall time "
              f"{facts['run_wall_s'] / 60:.1f} min in all (first start to last end {facts['span_s'] / 60:.1f} min; a "
              "dense baseline found in the store is not trained again)"
              + (f"; this invocation {launched['wall_s'] / 60:.1f} min, {launched['ran']} runs launched, "
                 f"{launched['finished_before']} finished before" if launched else "")
              + f". Report written {facts['date']}.", ""]
    if command:
        lines += [f"    {command}", ""]
    if cpu:
        lines += [f"Host latency measured on {cpu.get('cpu')} (flags: {cpu.get('cpu_flags')}), the machine that "
                  "wrote this report.", ""]
    if facts["missing"]:
        by_arm: dict[str, list] = {}
        for a, s in facts["missing"]:
            by_arm.setdefault(a, []).append(s)
        lines += ["**Missing runs** (no finished run): " + "; ".join(
            f"{a} seed{'s' if len(ss) > 1 else ''} {', '.join(map(str, ss))}" for a, ss in by_arm.items()) + ".", ""]
    lines += ["Arms (overrides on the base `" + " ".join(study.base) + "`): "
              + "; ".join(f"**{a}**: `{' '.join(o) or '(none)'}`" for a, o in study.arms.items()) + ".", ""]
    if "arms" in study.tables:
        lines += _arms_table(study, vals)
    if "comparisons" in study.tables and rows:
        lines += _comparisons_table(rows)
    if facts["derived"]:
        lines += ["Derived: " + "; ".join(f"`{m}` = {what}" for m, what in facts["derived"].items()) + ".", ""]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in pngs] + ([""] if pngs else [])
    if facts["extra"].get("markdown"):
        lines += [facts["extra"]["markdown"].strip(), ""]
    if study.notes:
        lines += [study.notes, ""]
    if left:
        lines += ["Runs left out: " + "; ".join(f"{rid[:8]} ({why})" for rid, why in left) + ".", ""]
    lines += ["Runs: " + "; ".join(f"{a}: " + ", ".join(df[df["study.arm"] == a].sort_values("seed")["run_id"].str[:8])
                                   for a in study.arms) + "."]
    return "\n".join(lines) + "\n"


def _arms_table(study, vals: dict) -> list[str]:
    """Per arm: n, the mean ± 95% interval of each metric, and the first metric per seed."""
    first = study.metrics[0]
    lines = [f"Mean ± half-width of the 95% t interval over the seeds; n = finished seeds; per-seed {first} in "
             "seed order.", "",
             "| arm | n | " + " | ".join(study.metrics) + f" | {first} per seed |",
             "|---|---:|" + "---:|" * len(study.metrics) + "---|"]
    for arm in study.arms:
        n = max((len(vals[arm][m]) for m in study.metrics), default=0)
        per = " / ".join(fmt_metric(vals[arm][first][s], first) for s in sorted(vals[arm][first]))
        lines.append(f"| {arm} | {n} | " + " | ".join(mean_ci_text(vals[arm][m], m) for m in study.metrics)
                     + f" | {per} |")
    return lines + [""]


def _comparisons_table(rows: list[dict]) -> list[str]:
    """Per declared comparison: the paired difference, its interval, n, p, Holm's p, the verdict and the threshold."""
    lines = ["## Comparisons (declared in the study file before the run)", "",
             "Paired difference `arm - against` by seed, 95% t interval, n seeds, two-sided p of a paired t test "
             f"and Holm's adjusted p over the {len(rows)} comparisons of this file. Verdict by the one rule: an "
             "effect (higher / lower) only when the interval excludes zero and Holm's p < 0.05; otherwise not "
             "distinguishable (an interval that covers zero shows no effect, and does not rule one out). A threshold passes when the whole 95% interval (not Holm-adjusted) lies at or above it "
             "(at_least) or at or below it (at_most).", "",
             "| arm - against | metric | difference | 95% interval | n | p | p (Holm) | verdict | threshold | "
             "passed | source |", "|---|---|---:|---|---:|---:|---:|---|---|---|---|"]
    for r in rows:
        c, d = r["comparison"], r["paired"]
        thr = "" if c.rule is None else f"{c.rule} {c.threshold:g}"
        passed = "" if c.rule is None else ("n/a" if r["passed"] is None else ("yes" if r["passed"] else "**no**"))
        lines.append(f"| {r.get('label', c.label)} | {c.metric} | {fmt_metric(d.mean, c.metric)} | "
                     f"[{fmt_metric(d.low, c.metric)}, {fmt_metric(d.high, c.metric)}] | {d.n} | {d.p:.3g} | "
                     f"{r['p_holm']:.3g} | {r['verdict']} | {thr} | {passed} | {c.source or ''} |")
    return lines + [""]


def study_json(study, budget: str, df: pd.DataFrame, left: list, vals: dict, rows: list[dict], facts: dict,
               arms_info: dict[str, dict], launched: dict | None = None, command: str = "") -> dict[str, Any]:
    """A study's ``NAME.json``: the per-seed values of every metric, the run ids by arm and seed, each comparison
    with its per-seed differences, the budget, the wall times, the host CPU, what is missing or left out, the arms
    that failed and the ``extra:`` hook's ``json``. Not yet strict: :func:`strict_json` before writing."""
    extra = facts["extra"]
    return {"study": study.name, "title": study.title, "budget": budget, "seeds": list(facts["seeds"]),
            "budget_overrides": list(study.budgets[budget].overrides), "base": study.base, "arms": study.arms,
            "reference": study.reference,
            "arm_configs": {a: {k: v for k, v in i.items() if k != "tracking_uri"} for a, i in arms_info.items()},
            "experiment": study.experiment(budget), "date": facts["date"], "command": command,
            "run_wall_s": round(facts["run_wall_s"], 1), "span_s": round(facts["span_s"], 1),
            "ledger_runs": facts.get("ledger_runs", 0),
            "invocation_wall_s": round(launched["wall_s"], 1) if launched else None, **facts["cpu"],
            "values": {a: {m: {str(s): v for s, v in sorted(xs.items())} for m, xs in ms.items()}
                       for a, ms in vals.items()},
            "run_ids": {a: {str(int(r["seed"])): r["run_id"] for _, r in df[df["study.arm"] == a].iterrows()}
                        for a in study.arms},
            "comparisons": [{"arm": r.get("picked", r["comparison"].arm), "against": r["comparison"].against,
                             **({"best_of": list(r["comparison"].best_of), "by": r["comparison"].by,
                                 "pick_means": r["pick_means"]} if r["comparison"].best_of else {}),
                             "metric": r["comparison"].metric, "mean": r["paired"].mean, "half": r["paired"].half,
                             "low": r["paired"].low, "high": r["paired"].high, "n": r["paired"].n,
                             "p": r["paired"].p, "p_holm": r["p_holm"], "verdict": r["verdict"],
                             "rule": r["comparison"].rule, "threshold": r["comparison"].threshold,
                             "source": r["comparison"].source, "passed": r["passed"],
                             "diffs": list(r["paired"].diffs), "seeds": list(r["paired"].seeds)} for r in rows],
            "missing": [[a, s] for a, s in facts["missing"]], "left_out": [list(x) for x in left],
            "failed": (launched or {}).get("failed", {}), **({"extra": extra["json"]} if "json" in extra else {})}
