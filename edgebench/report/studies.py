"""The report of a study (:mod:`edgebench.study`): which finished runs count, their figures by arm, metric and
seed, the declared comparisons (:mod:`edgebench.stats`), and ``NAME.md``, ``NAME.json`` and the plots
(:func:`edgebench.report.render.study_markdown`, :func:`edgebench.report.plots.study_plots`).

A study is passed in as :class:`edgebench.study.Study` (read, never imported: the runner imports this).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from edgebench.report.load import load_runs

# figures a study may name besides the metric contract's: derived from a run's own metrics, per run
DERIVED = {
    "size/bytes_smallest": ("the smaller of the deployable file and the analytic sparse encoding of its weights "
                            "(size/bytes_artifact, size/bytes_sparse)",
                            lambda m: min(m["size/bytes_artifact"], m.get("size/bytes_sparse", math.inf))),
    "size/log_bytes_artifact": ("the natural log of size/bytes_artifact: the paired difference of two arms' is the log "
                                "of the ratio of their files' bytes (at_most ln 0.3 = -1.204: at most 30%)",
                                lambda m: math.log(m["size/bytes_artifact"])),
    "memory/tflm_arena_est_error": ("edgebench's estimate of the TFLite Micro arena over the measured arena, minus 1 "
                                    "(memory/tflm_arena_bytes_est / memory/tflm_arena_bytes - 1)",
                                    lambda m: m["memory/tflm_arena_bytes_est"] / m["memory/tflm_arena_bytes"] - 1),
}
ARM, SPEC = "study.arm", "study.spec"  # the run tags the runner sets (with study and study.budget)


# what a ledger (NAME.runs.csv) keeps of each run: who it is, what it ran, and every figure the report layer reads
# (the study's metrics, the report table's columns, the selection split's); nothing of the machine that ran it
LEDGER = ["run_id", "run_name", "start_time", "end_time", "study", ARM, SPEC, "study.budget", "seed", "device",
          "config_hash", "replicate_group", "data", "model", "model.width_mult", "method", "chain", "steps",
          "select/val_acc", "select/val_loss", "export.name"]
LEDGER_SOURCE = "ledger"  # the column that marks a run read from the ledger, not from this MLflow store


def runs(study, budget: str, tracking_uri: str, ledger: Path | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The study's finished top-level runs at ``budget`` (:func:`edgebench.report.load_runs`), one per arm and seed
    (the latest of duplicates), and the runs left out with the reason: an arm no longer in the study, an arm edited
    since (another ``study.spec``), a seed not in the budget, an older run of the same arm and seed. With
    ``ledger`` (the study's ``NAME.runs.csv``, :func:`write_ledger`), its runs of this budget that this MLflow store
    does not have join them (column ``ledger`` true), judged by the same rules."""
    df = load_runs(tracking_uri, study.experiment(budget), children=False, tagged=(ARM,), missing_ok=True)
    if ledger is not None and Path(ledger).is_file():
        kept = read_ledger(ledger)
        kept = kept[(kept["study.budget"] == budget) & ~kept["run_id"].isin(df["run_id"] if len(df) else [])]
        if len(kept):
            df = pd.concat([df.assign(**{LEDGER_SOURCE: False}) if len(df) else None, kept], ignore_index=True)
    if df.empty:
        return pd.DataFrame(), []
    if LEDGER_SOURCE not in df:
        df[LEDGER_SOURCE] = False
    df[LEDGER_SOURCE] = df[LEDGER_SOURCE].fillna(False).astype(bool)
    left, keep = [], []
    for i, r in df.iterrows():
        arm = r[ARM]
        if arm not in study.arms:
            left.append((r["run_id"], f"arm {arm!r} is no longer in the study"))
        elif r.get(SPEC) != study.spec(arm, budget):
            left.append((r["run_id"], f"arm {arm!r} ran with other overrides (study.spec {r.get(SPEC)})"))
        elif pd.isna(r.get("seed")) or int(r["seed"]) not in study.seeds_of(arm, budget):
            left.append((r["run_id"], f"seed {r.get('seed')} is not in budget {budget}"))
        elif study.devices and r.get("device") not in study.devices_at(budget):
            left.append((r["run_id"], f"device {r.get('device')} is not one of the study's devices"))
        else:
            keep.append(i)
    df = df.loc[keep].sort_values("end_time")
    key = [ARM, "seed", "device"] if study.devices else [ARM, "seed"]
    dup = df.duplicated(key, keep="last")
    left += [(r["run_id"], "an older run of the same arm and seed" + (" on its device" if study.devices else ""))
             for _, r in df[dup].iterrows()]
    out = df[~dup].reset_index(drop=True)
    # where the runs are, for an extra hook that reads more of them (a step's child runs) through load_runs
    out.attrs.update(tracking_uri=tracking_uri, experiment=study.experiment(budget),
                     children_ledger=str(children_path(ledger)) if ledger is not None else None)
    return out, left


def children_path(ledger: Path) -> Path:
    """Where a study with ``ledger: children`` keeps its runs' child runs (``NAME.children.csv`` beside the ledger)."""
    return Path(ledger).with_name(Path(ledger).name.removesuffix(".runs.csv") + ".children.csv")


def child_runs(run_ids, attrs: dict) -> pd.DataFrame:
    """The child runs of ``run_ids`` (a lottery run's levels, one row each with the parent's ``seed``): from the MLflow
    store of ``attrs`` (:func:`runs` sets it), and, for parents this store does not have, from the ledger's children
    file (``ledger: children``)."""
    parents = set(run_ids)
    kids = load_runs(attrs["tracking_uri"], attrs["experiment"], missing_ok=True)
    if len(kids) and "parent_run_id" in kids:
        kids = kids[kids["parent_run_id"].isin(parents)]
    else:
        kids = pd.DataFrame(columns=["run_id", "parent_run_id"])
    path = attrs.get("children_ledger")
    if path and Path(path).is_file():
        kept = pd.read_csv(path)
        kept = kept[kept["parent_run_id"].isin(parents - set(kids["parent_run_id"]))]
        if len(kept):
            kids = pd.concat([kids if len(kids) else None, kept], ignore_index=True)
    return kids.reset_index(drop=True)


def ledger_columns(study, df: pd.DataFrame) -> list[str]:
    """The columns a ledger keeps: :data:`LEDGER`, the study's metrics (the ones derived from others: those others)
    and the report table's (:data:`edgebench.report.table.COLUMNS`), as far as the runs have them."""
    from edgebench.report.table import COLUMNS

    derived = {"size/bytes_artifact", "size/bytes_sparse", "memory/tflm_arena_bytes_est", "memory/tflm_arena_bytes"}
    want = [*LEDGER, *study.metrics, *sorted(derived), *COLUMNS]
    return [c for c in dict.fromkeys(want) if c in df and c not in DERIVED]


def write_ledger(study, df: pd.DataFrame, path: Path) -> int:
    """Keep the study's finished runs ``df`` (:func:`runs`, the ledger's own among them) in ``path`` as CSV, one row
    per run sorted by arm, seed and device: the figures of :func:`ledger_columns`, the MLflow run id and the
    ``study.spec`` each was made under. Written whole to a temporary file and renamed. Returns the rows written."""
    from edgebench.store import atomic_write

    cols = ledger_columns(study, df)
    order = [c for c in (ARM, "seed", "device") if c in df]
    out = df[cols].sort_values(order, kind="stable")
    path.parent.mkdir(parents=True, exist_ok=True)
    if study.ledger == "children" and "tracking_uri" in df.attrs:  # read before either file is rewritten
        kids = child_runs(df["run_id"], df.attrs)
        keep = ["run_id", "parent_run_id", "seed", *sorted(c for c in kids if isinstance(c, str) and "/" in c
                                                            and kids[c].notna().any())]
        kids = kids[[c for c in keep if c in kids]].sort_values(["parent_run_id", "run_id"], kind="stable")
    atomic_write(path, lambda tmp: out.to_csv(tmp, index=False))
    if study.ledger == "children" and "tracking_uri" in df.attrs:
        atomic_write(children_path(path), lambda tmp: kids.to_csv(tmp, index=False))
    return len(out)


def read_ledger(path: Path) -> pd.DataFrame:
    """A ledger's runs as :func:`runs` reads MLflow's: times as UTC timestamps, seeds as integers, column
    ``ledger`` true."""
    df = pd.read_csv(path)
    for col in ("start_time", "end_time"):
        df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    df["seed"] = df["seed"].astype("Int64").astype(object)
    for col in (ARM, SPEC, "study.budget", "run_id", "device"):
        if col in df:
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    df[LEDGER_SOURCE] = True
    return df


def _value(row, metric: str) -> float | None:
    if metric in DERIVED:
        m = {k: row[k] for k in row.index if isinstance(k, str) and "/" in k and pd.notna(row[k])}
        try:
            return float(DERIVED[metric][1](m))
        except KeyError:
            return None
    v = row.get(metric)
    return None if v is None or pd.isna(v) else float(v)


def values(study, df: pd.DataFrame) -> dict[str, dict[str, dict[int, float]]]:
    """``{arm: {metric: {seed: value}}}`` from the loaded runs (a metric a run did not log is absent)."""
    out = {arm: {m: {} for m in study.metrics} for arm in study.arms}
    for _, r in df.iterrows():
        for m in study.metrics:
            v = _value(r, m)
            if v is not None:
                out[r[ARM]][m][int(r["seed"])] = v
    return out


def compare(study, vals) -> list[dict[str, Any]]:
    """Every declared comparison: the paired difference by seed, its interval, p, Holm's p over the file's
    comparisons, the verdict and the threshold's check."""
    from edgebench.stats import holm, paired, verdict

    rows = []
    for c in study.comparisons:
        arm, extra = c.arm, {}
        if c.best_of:  # the declared selection: the highest mean of the validation metric ``by``
            means = {a: statistics.fmean(vals[a][c.by].values()) for a in c.best_of if vals[a][c.by]}
            best = min if c.by.endswith("loss") else max  # a loss is best lowest, an accuracy highest
            arm = best(means, key=means.get) if means else c.best_of[0]
            extra = {"picked": arm, "pick_means": means, "label": c.label_for(arm)}
        own = vals[arm][c.metric]  # against: null -> the arm's own values against zero (one sample)
        d = paired(own, vals[c.against][c.metric] if c.against is not None else {s: 0.0 for s in own})
        rows.append({"comparison": c, "paired": d, **extra})
    adjusted = holm([r["paired"].p for r in rows])
    for r, p_adj in zip(rows, adjusted):
        c, d = r["comparison"], r["paired"]
        r["p_holm"] = p_adj
        r["verdict"] = verdict(d, p_adj if len(rows) > 1 else None)
        if c.rule is None or d.n < 2 or math.isnan(d.half):
            r["passed"] = None
        elif c.rule == "at_least":
            r["passed"] = d.low >= c.threshold
        else:
            r["passed"] = d.high <= c.threshold
    return rows


def write(study, budget: str, df: pd.DataFrame, left: list, arms_info: dict[str, dict], out_dir: Path,
          launched: dict[str, Any] | None = None, command: str = "",
          extra: Callable[[Any, pd.DataFrame, dict], dict] | None = None, echo=print) -> dict[str, Any]:
    """Write ``NAME.md`` and ``NAME.json`` (and a PNG per plot) under ``out_dir`` from the study's finished runs
    ``df`` (:func:`runs`; ``left``: those left out). ``arms_info``: per arm what its runs are (model, data, epochs;
    :func:`edgebench.study.check`); ``launched``: what this invocation ran (:func:`edgebench.study.launch`);
    ``extra``: the study's ``extra:`` hook, called as ``extra(study, df, values)`` and returning
    ``{"markdown": str, "json": ...}`` (either optional). Returns the JSON document."""
    from edgebench.report import plots, render

    # a study over devices has several runs per arm and seed: its tables are its hook's (the leaderboard)
    vals = values(study, df) if not study.devices else {arm: {m: {} for m in study.metrics} for arm in study.arms}
    rows = compare(study, vals)
    seeds = study.budgets[budget].seeds
    facts = {
        "seeds": seeds,
        "missing": [(a, s) for a in study.arms for s in study.seeds_of(a, budget)
                    if not ((df[ARM] == a) & (df["seed"] == s)).any()],
        "run_wall_s": float((df["end_time"] - df["start_time"]).dt.total_seconds().sum()),
        "ledger_runs": int(df[LEDGER_SOURCE].sum()) if LEDGER_SOURCE in df else 0,
        "span_s": (df["end_time"].max() - df["start_time"].min()).total_seconds(),
        "cpu": _host_cpu() if any(m.startswith("latency/") for m in study.metrics) else {},
        "extra": (extra(study, df, vals) or {}) if extra else {},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "shared": {k: sorted({str(i[k]) for i in arms_info.values()}) for k in ("model", "data", "epochs")},
        "derived": {m: DERIVED[m][0] for m in study.metrics if m in DERIVED},
    }
    pngs = plots.study_plots(study, vals, out_dir, budget)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{study.name}.md"
    md.write_text(render.study_markdown(study, budget, df, left, vals, rows, facts, pngs, launched, command))
    doc = render.study_json(study, budget, df, left, vals, rows, facts, arms_info, launched, command)
    (out_dir / f"{study.name}.json").write_text(json.dumps(render.strict_json(doc), indent=1, default=str,
                                                           allow_nan=False) + "\n")
    echo(f"study {study.name} [{budget}]: wrote {md} and {md.with_suffix('.json')}")
    return doc


def _host_cpu() -> dict[str, str]:
    from edgebench.measure.latency import host_cpu

    return host_cpu()
