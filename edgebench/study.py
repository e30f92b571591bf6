"""``python -m edgebench.study NAME``: a study is a config (``conf/study/NAME.yaml``), not a script.

A study names its arms (each a list of overrides on a shared base), the seeds of each budget, the metrics it
reports and the comparisons it makes, each comparison's threshold fixed in the file before the run, with its
source. This runner composes every arm x seed, checks them all before anything runs, launches one Hydra multirun
per arm (``python -m edgebench -m ... seed=0,1,2``; ``hydra/launcher=joblib`` with ``--jobs N``), and skips what
already finished: each run carries the tags ``study``, ``study.arm``, ``study.budget`` and ``study.spec`` (the
digest of its overrides) and ``resume=true``, so a rerun of an interrupted study continues where it stopped. Runs
go to the MLflow experiment ``study-NAME`` (``study-NAME-BUDGET`` for any budget but ``full``: a smoke run is
never mixed with the real one). The report (``results/NAME.md`` and ``.json``; other budgets under
``results/BUDGET/``) is written from the finished MLflow runs through :func:`edgebench.report.load_runs` and the
statistics of :mod:`edgebench.stats`: per arm the mean and 95% t interval of each metric; per comparison the
paired difference by seed against the reference arm, its 95% t interval, n, Holm's adjusted p over the file's
comparisons, the verdict of the one effect rule, and the declared threshold with its source and whether it passed.

    python -m edgebench.study pipelines --budget smoke          # minutes: digits, one epoch
    python -m edgebench.study pipelines --jobs 2                # the full budget, two jobs at once
    python -m edgebench.study pipelines --report-only           # rewrite the report from the runs

The schema is in docs/studies.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebench.config import ConfigError, config_dir

log = logging.getLogger("edgebench.study")

RULES = ("at_least", "at_most")  # the paired difference's whole 95% interval lies at or above / at or below
TABLES = ("arms", "comparisons")
ARM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+ >-]*")
# figures a study may name besides the metric contract's: derived from a run's own metrics, per run
DERIVED = {
    "size/bytes_smallest": ("the smaller of the deployable file and the analytic sparse encoding of its weights "
                            "(size/bytes_artifact, size/bytes_sparse)",
                            lambda m: min(m["size/bytes_artifact"], m.get("size/bytes_sparse", math.inf))),
}
KEYS = {"name", "title", "question", "base", "arms", "reference", "budgets", "metrics", "comparisons", "tables",
        "plots", "extra", "notes"}


class StudyError(ConfigError):
    """A study config that cannot run: the message names the key and the fix."""


@dataclass(frozen=True)
class Comparison:
    arm: str
    metric: str
    against: str
    rule: str | None = None
    threshold: float | None = None
    source: str | None = None

    @property
    def label(self) -> str:
        return f"{self.arm} - {self.against}"


@dataclass(frozen=True)
class Budget:
    name: str
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()


@dataclass
class Study:
    name: str
    title: str
    question: str
    base: list[str]
    arms: dict[str, list[str]]
    reference: str
    budgets: dict[str, Budget]
    metrics: list[str]
    comparisons: list[Comparison] = field(default_factory=list)
    tables: list[str] = field(default_factory=lambda: list(TABLES))
    plots: list[dict[str, str]] = field(default_factory=list)
    extra: str | None = None
    notes: str = ""
    path: Path | None = None

    def experiment(self, budget: str) -> str:
        """The MLflow experiment of a budget's runs: ``study-NAME`` for full, ``study-NAME-BUDGET`` otherwise."""
        return f"study-{self.name}" if budget == "full" else f"study-{self.name}-{budget}"

    def overrides(self, arm: str, budget: str) -> list[str]:
        """What every run of ``arm`` at ``budget`` is composed from (without its seed)."""
        return [*self.base, *self.arms[arm], *self.budgets[budget].overrides]

    def spec(self, arm: str, budget: str) -> str:
        """The digest of an arm's overrides (tag ``study.spec``): runs made before the arm was edited do not count."""
        from edgebench.store import digest

        return digest(self.overrides(arm, budget))


def _fail(where: str, problem: str, fix: str) -> StudyError:
    return StudyError(f"{where}: {problem}; {fix}")


def study_dir() -> Path:
    return config_dir() / "study"


def names() -> list[str]:
    return sorted(p.stem for p in study_dir().glob("*.yaml"))


def load(name_or_path: str | Path) -> Study:
    """The study ``conf/study/NAME.yaml`` (or a YAML file's path), checked: every error names the key and the fix."""
    import yaml

    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = study_dir() / f"{name_or_path}.yaml"
        if not path.exists():
            raise StudyError(f"no study {str(name_or_path)!r}: studies are {', '.join(names()) or 'none'} "
                             f"(conf/study/NAME.yaml), or pass the path of a study YAML file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise StudyError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the file") from None
    return parse(raw, path)


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise _fail(where, f"must be a list of overrides, got {value!r}", 'write e.g. ["model=lenet5", "seed=1"]')
    return [str(v) for v in value]


def parse(raw: Any, path: Path | None = None) -> Study:
    """A :class:`Study` from the YAML's mapping, or a :class:`StudyError` naming the first problem."""
    where = str(path or "study")
    if not isinstance(raw, dict):
        raise _fail(where, "a study is a mapping of keys", f"start from conf/study/pipelines.yaml")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise _fail(where, f"unknown key {unknown[0]!r}", f"the keys are {', '.join(sorted(KEYS))}")
    for key in ("name", "arms", "reference", "budgets", "metrics"):
        if key not in raw:
            raise _fail(where, f"missing key {key!r}", "docs/studies.md shows the schema")
    name = str(raw["name"])
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]*", name):
        raise _fail(f"{where}: name", f"{name!r} is not a plain name", "use letters, digits, _ and -")
    if not isinstance(raw["arms"], dict) or not raw["arms"]:
        raise _fail(f"{where}: arms", "must map each arm's name to its overrides", "write e.g. dense: []")
    arms = {}
    for arm, ovr in raw["arms"].items():
        if not ARM_NAME.fullmatch(str(arm)):
            raise _fail(f"{where}: arms", f"arm name {arm!r} has characters a tag value cannot carry here",
                        "use letters, digits, spaces and _ . + > -")
        arms[str(arm)] = _strings(ovr, f"{where}: arms.{arm}")
        for o in arms[str(arm)]:
            if o.split("=", 1)[0].lstrip("+~") in ("seed", "experiment_name", "tags", "resume", "replicates"):
                raise _fail(f"{where}: arms.{arm}", f"{o!r} is set by the study runner",
                            "leave seed to budgets.*.seeds and the experiment and tags to the runner")
    reference = str(raw["reference"])
    if reference not in arms:
        raise _fail(f"{where}: reference", f"{reference!r} is not an arm", f"name one of {', '.join(arms)}")
    if not isinstance(raw["budgets"], dict) or "full" not in raw["budgets"]:
        raise _fail(f"{where}: budgets", "needs a 'full' budget (what results/NAME.md is made with)",
                    "add budgets: {full: {seeds: [0, 1, 2]}}")
    budgets = {}
    for b, spec in raw["budgets"].items():
        if not isinstance(spec, dict) or not spec.get("seeds"):
            raise _fail(f"{where}: budgets.{b}", "needs seeds", "write e.g. {seeds: [0, 1, 2], overrides: []}")
        extra = sorted(set(spec) - {"seeds", "overrides"})
        if extra:
            raise _fail(f"{where}: budgets.{b}", f"unknown key {extra[0]!r}", "a budget has seeds and overrides")
        seeds = spec["seeds"]
        if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise _fail(f"{where}: budgets.{b}.seeds", f"must be a list of distinct integers, got {seeds!r}",
                        "write e.g. [0, 1, 2]")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(b)):
            raise _fail(f"{where}: budgets", f"budget name {b!r} is not a plain name", "use letters, digits, _ and -")
        budgets[str(b)] = Budget(str(b), tuple(seeds), tuple(_strings(spec.get("overrides"), f"{where}: budgets.{b}.overrides")))
    metrics = _strings(raw["metrics"], f"{where}: metrics")
    if not metrics:
        raise _fail(f"{where}: metrics", "names no metric", "list e.g. [test/acc, size/bytes_artifact]")
    comparisons = []
    for i, c in enumerate(raw.get("comparisons") or []):
        at = f"{where}: comparisons[{i}]"
        if not isinstance(c, dict):
            raise _fail(at, "must be a mapping", "write {arm: A, metric: test/acc}")
        extra = sorted(set(c) - {"arm", "metric", "against", "rule", "threshold", "source"})
        if extra:
            raise _fail(at, f"unknown key {extra[0]!r}", "the keys are arm, against, metric, rule, threshold, source")
        arm, against = str(c.get("arm")), str(c.get("against", reference))
        for key, a in (("arm", arm), ("against", against)):
            if a not in arms:
                raise _fail(f"{at}.{key}", f"{a!r} is not an arm", f"name one of {', '.join(arms)}")
        if arm == against:
            raise _fail(at, f"compares {arm!r} with itself", "set against: to another arm")
        metric = str(c.get("metric", ""))
        if metric not in metrics:
            raise _fail(f"{at}.metric", f"{metric!r} is not one of the study's metrics", "add it to metrics: first")
        rule, threshold, source = c.get("rule"), c.get("threshold"), c.get("source")
        if (rule is None) != (threshold is None):
            raise _fail(at, "a threshold needs its rule and a rule its threshold",
                        f"give both (rule: {' | '.join(RULES)}) or neither")
        if rule is not None:
            if rule not in RULES:
                raise _fail(f"{at}.rule", f"unknown rule {rule!r}", f"use {' or '.join(RULES)}")
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                raise _fail(f"{at}.threshold", f"must be a number, got {threshold!r}", "write e.g. threshold: -0.01")
            if not source or not str(source).strip():
                raise _fail(f"{at}.source", "a threshold needs its source (a paper's table, an issue)",
                            'add source: "Han et al. 2015, Table 1"')
        comparisons.append(Comparison(arm, metric, against, rule, None if threshold is None else float(threshold),
                                      None if source is None else str(source)))
    tables = _strings(raw.get("tables", list(TABLES)), f"{where}: tables")
    for t in tables:
        if t not in TABLES:
            raise _fail(f"{where}: tables", f"unknown table {t!r}", f"use {', '.join(TABLES)}")
    plots = raw.get("plots") or []
    for p in plots:
        if not isinstance(p, dict) or set(p) != {"x", "y"} or p["x"] not in metrics or p["y"] not in metrics:
            raise _fail(f"{where}: plots", f"{p!r} is not {{x: METRIC, y: METRIC}} of the study's metrics",
                        "write e.g. {x: size/bytes_artifact, y: test/acc}")
    extra = raw.get("extra")
    if extra is not None and not re.fullmatch(r"[\w.]+:\w+", str(extra)):
        raise _fail(f"{where}: extra", f"{extra!r} is not module:function", "write e.g. extra: mypkg.figures:speed")
    return Study(name, str(raw.get("title") or name), str(raw.get("question") or ""), _strings(raw.get("base"), f"{where}: base"),
                 arms, reference, budgets, metrics, comparisons, tables, [dict(p) for p in plots],
                 None if extra is None else str(extra), str(raw.get("notes") or "").strip(), path)


# ---------------------------------------------------------------------------------------------------------- running

def run_overrides(study: Study, arm: str, budget: str, results_dir: Path | None = None) -> list[str]:
    """The overrides of one arm's runs at ``budget`` (the seed aside): the study's, then the runner's own."""
    tags = {"study": study.name, "study.arm": arm, "study.budget": budget, "study.spec": study.spec(arm, budget)}
    quoted = ",".join(f'{k}:"{v}"' for k, v in tags.items())
    own = [f"experiment_name={study.experiment(budget)}", f"++tags={{{quoted}}}", "resume=true",
           "trainer.progress_bar=none"]
    if results_dir is not None:
        own.append(f"paths.results_dir={results_dir}")
    return [*study.overrides(arm, budget), *own]


def command(study: Study, arm: str, budget: str, seeds, jobs: int = 1, results_dir: Path | None = None) -> list[str]:
    """The Hydra multirun of one arm's ``seeds``: ``python -m edgebench -m ... seed=0,1,2``, through the joblib
    launcher when ``jobs`` > 1 (at most one job per seed)."""
    cmd = [sys.executable, "-m", "edgebench", "-m", *run_overrides(study, arm, budget, results_dir),
           f"seed={','.join(map(str, seeds))}"]
    if jobs > 1 and len(seeds) > 1:
        cmd += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={min(jobs, len(seeds))}"]
    return cmd


def check(study: Study, budget: str, root: Path, results_dir: Path | None = None) -> dict[str, dict]:
    """Compose and validate every arm at ``budget`` before anything runs: a typo in one arm fails the study at once.
    Returns, per arm, what its runs are (model, data, epochs, chain) and the tracking URI."""
    from edgebench import methods, pipeline
    from edgebench.config import validate

    if budget not in study.budgets:
        raise StudyError(f"study {study.name}: unknown budget {budget!r}; use --budget "
                         f"{' or '.join(study.budgets)}")
    out = {}
    for arm in study.arms:
        overrides = run_overrides(study, arm, budget, results_dir) + [f"seed={study.budgets[budget].seeds[0]}"]
        try:
            cfg = pipeline.compose(overrides, root)
            spec = validate(cfg)
            steps = [methods.build(c) for c in methods.parse_steps(spec.method, spec.steps)]
        except ConfigError as e:
            raise StudyError(f"study {study.name}, arm {arm!r}: {e}") from None
        except Exception as e:  # Hydra's own errors (a missing config group option, bad override syntax)
            raise StudyError(f"study {study.name}, arm {arm!r}: {type(e).__name__}: {str(e).splitlines()[0]}; "
                             "fix the arm's overrides") from None
        out[arm] = {"model": spec.model.name.value, "data": spec.data.name.value, "epochs": spec.trainer.max_epochs,
                    "chain": [s.name for s in steps] or ["none"],
                    "tracking_uri": str(cfg.paths.mlflow_tracking_uri)}
    return out


def load_runs(study: Study, budget: str, tracking_uri: str):
    """The study's finished top-level runs at ``budget`` (through :func:`edgebench.report.load_runs`), one per arm and
    seed (the latest of duplicates), and the runs left out with the reason."""
    import pandas as pd

    from edgebench import report

    try:
        df = report.load_runs(tracking_uri, study.experiment(budget))
    except SystemExit:  # no such experiment yet: nothing has run
        return pd.DataFrame(), []
    if df.empty or "study.arm" not in df:
        return pd.DataFrame(), []
    left = []
    if "edgebench.child" in df:
        df = df[df["edgebench.child"].astype(str) != "true"]  # a step's child run carries its parent's tags
    df = df[df["study.arm"].notna()]
    keep = []
    for i, r in df.iterrows():
        arm = r["study.arm"]
        if arm not in study.arms:
            left.append((r["run_id"], f"arm {arm!r} is no longer in the study"))
        elif r.get("study.spec") != study.spec(arm, budget):
            left.append((r["run_id"], f"arm {arm!r} ran with other overrides (study.spec {r.get('study.spec')})"))
        elif pd.isna(r.get("seed")) or int(r["seed"]) not in study.budgets[budget].seeds:
            left.append((r["run_id"], f"seed {r.get('seed')} is not in budget {budget}"))
        else:
            keep.append(i)
    df = df.loc[keep].sort_values("end_time")
    dup = df.duplicated(["study.arm", "seed"], keep="last")
    left += [(r["run_id"], "an older run of the same arm and seed") for _, r in df[dup].iterrows()]
    return df[~dup].reset_index(drop=True), left


def _done(study: Study, budget: str, uri: str) -> set[tuple[str, int]]:
    df, _ = load_runs(study, budget, uri)
    return set() if df.empty else {(r["study.arm"], int(r["seed"])) for _, r in df.iterrows()}


def _eta(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def launch(study: Study, budget: str, root: Path, jobs: int = 1, results_dir: Path | None = None,
           log_dir: Path | None = None, echo=print) -> dict[str, Any]:
    """Run every arm x seed of ``budget`` that has no finished run: one Hydra multirun per arm. Returns what ran,
    what was skipped and what failed (with the tail of its output)."""
    arms = check(study, budget, root, results_dir)
    uri = next(iter(arms.values()))["tracking_uri"]
    seeds = study.budgets[budget].seeds
    total = len(study.arms) * len(seeds)
    done = _done(study, budget, uri)
    todo = {arm: [s for s in seeds if (arm, s) not in done] for arm in study.arms}
    n_todo = sum(map(len, todo.values()))
    echo(f"study {study.name} [{budget}]: {total} runs ({len(study.arms)} arms x {len(seeds)} seeds), "
         f"{total - n_todo} finished before, {n_todo} to run; MLflow experiment {study.experiment(budget)} in {uri}")
    log_dir = log_dir or (results_dir or root / "results") / "studies"
    log_dir.mkdir(parents=True, exist_ok=True)
    failed: dict[str, str] = {}
    started, ran = time.perf_counter(), 0
    for k, (arm, missing) in enumerate(todo.items(), 1):
        if not missing:
            continue
        first = ran + 1
        eta = "" if not ran else f", ETA {_eta((time.perf_counter() - started) / ran * (n_todo - ran))}"
        echo(f"[{first}-{ran + len(missing)} of {n_todo}] arm {k}/{len(todo)} {arm!r}: seeds "
             f"{','.join(map(str, missing))}{eta}")
        cmd = command(study, arm, budget, missing, jobs, results_dir)
        logfile = log_dir / f"{study.name}-{budget}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', arm)}.log"
        t = time.perf_counter()
        with logfile.open("w") as fh:
            fh.write(shlex.join(cmd) + "\n")
            fh.flush()
            proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
            seen = 0
            try:
                for line in proc.stdout:
                    fh.write(line)
                    if re.search(r"MLflow run [0-9a-f]{32} \(|skipped: run [0-9a-f]{32}", line):
                        seen += 1
                        what = "skipped (finished before)" if "skipped:" in line else "started"
                        echo(f"  run {ran + min(seen, len(missing))} of {n_todo} ({arm!r}): {what}")
                rc = proc.wait()
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the multirun closes its runs as KILLED, then we stop
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                raise
        ran += len(missing)
        if rc != 0:
            tail = logfile.read_text().strip().splitlines()[-5:]
            failed[arm] = f"exit {rc}: " + " | ".join(tail)[-600:]
            echo(f"  arm {arm!r} FAILED (exit {rc}); its output: {logfile}")
        else:
            echo(f"  arm {arm!r} done in {_eta(time.perf_counter() - t)}")
    return {"arms": arms, "tracking_uri": uri, "ran": n_todo, "finished_before": total - n_todo, "failed": failed,
            "wall_s": time.perf_counter() - started}


# ---------------------------------------------------------------------------------------------------------- report

def _value(row, metric: str) -> float | None:
    import pandas as pd

    if metric in DERIVED:
        m = {k: row[k] for k in row.index if isinstance(k, str) and "/" in k and pd.notna(row[k])}
        try:
            return float(DERIVED[metric][1](m))
        except KeyError:
            return None
    v = row.get(metric)
    return None if v is None or pd.isna(v) else float(v)


def values(study: Study, df) -> dict[str, dict[str, dict[int, float]]]:
    """``{arm: {metric: {seed: value}}}`` from the loaded runs (a metric a run did not log is absent)."""
    out = {arm: {m: {} for m in study.metrics} for arm in study.arms}
    for _, r in df.iterrows():
        for m in study.metrics:
            v = _value(r, m)
            if v is not None:
                out[r["study.arm"]][m][int(r["seed"])] = v
    return out


def compare(study: Study, vals) -> list[dict[str, Any]]:
    """Every declared comparison: the paired difference by seed, its interval, p, Holm's p over the file's
    comparisons, the verdict and the threshold's check."""
    from edgebench.stats import holm, paired, verdict

    rows = []
    for c in study.comparisons:
        d = paired(vals[c.arm][c.metric], vals[c.against][c.metric])
        rows.append({"comparison": c, "paired": d})
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


def _fmt(v: float, metric: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if metric.endswith("acc") or metric.startswith("delta/"):
        return f"{v:.4f}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _mean_ci(xs: dict[int, float], metric: str) -> str:
    from edgebench.stats import mean_ci

    if not xs:
        return "n/a"
    m, h = mean_ci([xs[s] for s in sorted(xs)])
    return f"{_fmt(m, metric)} ± {_fmt(h, metric)}" if len(xs) > 1 and h > 0 else _fmt(m, metric)


def _host_cpu() -> dict[str, str]:
    from edgebench.measure.latency import host_cpu

    return host_cpu()


def write_report(study: Study, budget: str, root: Path, out_dir: Path, results_dir: Path | None = None,
                 launched: dict[str, Any] | None = None, command: str = "", echo=print) -> dict[str, Any]:
    """Write ``NAME.md`` and ``NAME.json`` (and a PNG per plot) under ``out_dir`` from the study's finished runs."""
    arms_info = (launched or {}).get("arms") or check(study, budget, root, results_dir)
    uri = next(iter(arms_info.values()))["tracking_uri"]
    df, left = load_runs(study, budget, uri)
    if df.empty:
        raise StudyError(f"study {study.name} [{budget}]: no finished runs in MLflow experiment "
                         f"{study.experiment(budget)} of {uri}; run it without --report-only first")
    vals = values(study, df)
    rows = compare(study, vals)
    seeds = study.budgets[budget].seeds
    missing = [(a, s) for a in study.arms for s in seeds if not ((df["study.arm"] == a) & (df["seed"] == s)).any()]
    durations = (df["end_time"] - df["start_time"]).dt.total_seconds()
    span = (df["end_time"].max() - df["start_time"].min()).total_seconds()
    latency = any(m.startswith("latency/") for m in study.metrics)
    cpu = _host_cpu() if latency else {}
    extra = _extra(study, df, vals, {"budget": budget, "root": root, "out_dir": out_dir, "results_dir": results_dir,
                                     "tracking_uri": uri}) if study.extra else {}
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    shared = {k: sorted({str(i[k]) for i in arms_info.values()}) for k in ("model", "data", "epochs")}
    b = study.budgets[budget]

    lines = [f"# {study.title}", ""]
    if study.question:
        lines += [f"**Question.** {study.question}", ""]
    lines += [f"Study `{study.name}` (conf/study/{study.name}.yaml), budget **{budget}**: seeds "
              f"{', '.join(map(str, seeds))}; model {', '.join(shared['model'])}; data {', '.join(shared['data'])}; "
              f"trainer.max_epochs {', '.join(shared['epochs'])}"
              + (f"; budget overrides `{' '.join(b.overrides)}`" if b.overrides else "") + ". "
              f"{len(df)} runs in MLflow experiment `{study.experiment(budget)}`; run wall time {durations.sum() / 60:.1f} "
              f"min in all (first start to last end {span / 60:.1f} min; a dense baseline found in the store is not "
              "trained again)" + (f"; this invocation {launched['wall_s'] / 60:.1f} min, {launched['ran']} runs "
                                  f"launched, {launched['finished_before']} finished before" if launched else "")
              + f". Report written {date}.", ""]
    if command:
        lines += [f"    {command}", ""]
    if cpu:
        lines += [f"Host latency measured on {cpu.get('cpu')} (flags: {cpu.get('cpu_flags')}), the machine that "
                  "wrote this report.", ""]
    if missing:
        lines += [f"**Missing runs** (no finished run): {', '.join(f'{a} seed {s}' for a, s in missing)}.", ""]
    lines += ["Arms (overrides on the base `" + " ".join(study.base) + "`): "
              + "; ".join(f"**{a}**: `{' '.join(o) or '(none)'}`" for a, o in study.arms.items()) + ".", ""]
    if "arms" in study.tables:
        first = study.metrics[0]
        lines += [f"Mean ± half-width of the 95% t interval over the seeds; n = finished seeds; per-seed {first} in "
                  "seed order.", "",
                  "| arm | n | " + " | ".join(study.metrics) + f" | {first} per seed |",
                  "|---|---:|" + "---:|" * len(study.metrics) + "---|"]
        for arm in study.arms:
            n = max((len(vals[arm][m]) for m in study.metrics), default=0)
            per = " / ".join(_fmt(vals[arm][first][s], first) for s in sorted(vals[arm][first]))
            lines.append(f"| {arm} | {n} | " + " | ".join(_mean_ci(vals[arm][m], m) for m in study.metrics)
                         + f" | {per} |")
        lines.append("")
    if "comparisons" in study.tables and rows:
        lines += ["## Comparisons (declared in the study file before the run)", "",
                  "Paired difference `arm - against` by seed, 95% t interval, n seeds, two-sided p of a paired t test "
                  f"and Holm's adjusted p over the {len(rows)} comparisons of this file. Verdict by the one rule: an "
                  "effect (higher / lower) only when the interval excludes zero and Holm's p < 0.05; otherwise no "
                  "effect. A threshold passes when the whole 95% interval (not Holm-adjusted) lies at or above it "
                  "(at_least) or at or below it (at_most).", "",
                  "| arm - against | metric | difference | 95% interval | n | p | p (Holm) | verdict | threshold | "
                  "passed | source |", "|---|---|---:|---|---:|---:|---:|---|---|---|---|"]
        for r in rows:
            c, d = r["comparison"], r["paired"]
            thr = "" if c.rule is None else f"{c.rule} {c.threshold:g}"
            passed = "" if c.rule is None else ("n/a" if r["passed"] is None else ("yes" if r["passed"] else "**no**"))
            lines.append(f"| {c.label} | {c.metric} | {_fmt(d.mean, c.metric)} | "
                         f"[{_fmt(d.low, c.metric)}, {_fmt(d.high, c.metric)}] | {d.n} | {d.p:.3g} | "
                         f"{r['p_holm']:.3g} | {r['verdict']} | {thr} | {passed} | {c.source or ''} |")
        lines.append("")
    used = [m for m in study.metrics if m in DERIVED]
    if used:
        lines += ["Derived: " + "; ".join(f"`{m}` = {DERIVED[m][0]}" for m in used) + ".", ""]
    pngs = _plots(study, vals, out_dir, budget)
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in pngs] + ([""] if pngs else [])
    if extra.get("markdown"):
        lines += [extra["markdown"].strip(), ""]
    if study.notes:
        lines += [study.notes, ""]
    if left:
        lines += ["Runs left out: " + "; ".join(f"{rid[:8]} ({why})" for rid, why in left) + ".", ""]
    lines += ["Runs: " + "; ".join(f"{a}: " + ", ".join(df[df["study.arm"] == a].sort_values("seed")["run_id"].str[:8])
                                   for a in study.arms) + "."]
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{study.name}.md"
    md.write_text("\n".join(lines) + "\n")
    doc = {"study": study.name, "title": study.title, "budget": budget, "seeds": list(seeds),
           "budget_overrides": list(b.overrides), "base": study.base, "arms": study.arms, "reference": study.reference,
           "arm_configs": {a: {k: v for k, v in i.items() if k != "tracking_uri"} for a, i in arms_info.items()},
           "experiment": study.experiment(budget), "date": date, "command": command,
           "run_wall_s": round(float(durations.sum()), 1), "span_s": round(span, 1),
           "invocation_wall_s": round(launched["wall_s"], 1) if launched else None, **cpu,
           "values": {a: {m: {str(s): v for s, v in sorted(xs.items())} for m, xs in ms.items()} for a, ms in vals.items()},
           "run_ids": {a: {str(int(r["seed"])): r["run_id"] for _, r in df[df["study.arm"] == a].iterrows()}
                       for a in study.arms},
           "comparisons": [{"arm": r["comparison"].arm, "against": r["comparison"].against,
                            "metric": r["comparison"].metric, "mean": r["paired"].mean, "half": r["paired"].half,
                            "low": r["paired"].low, "high": r["paired"].high, "n": r["paired"].n, "p": r["paired"].p,
                            "p_holm": r["p_holm"], "verdict": r["verdict"], "rule": r["comparison"].rule,
                            "threshold": r["comparison"].threshold, "source": r["comparison"].source,
                            "passed": r["passed"], "diffs": list(r["paired"].diffs),
                            "seeds": list(r["paired"].seeds)} for r in rows],
           "missing": [[a, s] for a, s in missing], "left_out": [list(x) for x in left],
           "failed": (launched or {}).get("failed", {}), **({"extra": extra["json"]} if "json" in extra else {})}
    (out_dir / f"{study.name}.json").write_text(json.dumps(_clean(doc), indent=1, default=str, allow_nan=False) + "\n")
    echo(f"study {study.name} [{budget}]: wrote {md} and {md.with_suffix('.json')}")
    return doc


def _clean(o):
    """Strict JSON: NaN (an interval of one seed, a p value of none) as null."""
    if isinstance(o, float):
        return None if math.isnan(o) or math.isinf(o) else o
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _plots(study: Study, vals, out_dir: Path, budget: str) -> list[str]:
    from edgebench.plots import pyplot
    from edgebench.stats import mean_ci

    files = []
    for p in study.plots:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for arm in study.arms:
            xs, ys = vals[arm][p["x"]], vals[arm][p["y"]]
            common = sorted(set(xs) & set(ys))
            if not common:
                continue
            (mx, hx), (my, hy) = mean_ci([xs[s] for s in common]), mean_ci([ys[s] for s in common])
            ax.errorbar(mx, my, xerr=None if math.isnan(hx) else hx, yerr=None if math.isnan(hy) else hy,
                        fmt="o", capsize=3, label=arm)
        ax.set_xlabel(p["x"])
        ax.set_ylabel(p["y"])
        ax.set_title(f"{study.name} [{budget}]: mean ± 95% t interval over seeds", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{study.name}_{re.sub(r'[^A-Za-z0-9]+', '_', p['y'])}_vs_{re.sub(r'[^A-Za-z0-9]+', '_', p['x'])}.png"
        out_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(str(path))
    return files


def _extra(study: Study, df, vals, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The study's ``extra: module:function`` hook: called with the study, the loaded runs and the values; returns
    ``{"markdown": str, "json": ...}`` (either optional) for figures that are not the runs' metrics. A hook with a
    ``context`` parameter also gets ``{"budget", "root", "out_dir", "results_dir", "tracking_uri"}``: the budget
    reported, the launch directory, the report's folder (for a figure of its own), the runs' ``paths.results_dir``
    (None: the default) and their MLflow store."""
    import inspect

    module, _, fn = study.extra.partition(":")
    try:
        hook = getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError) as e:
        raise StudyError(f"study {study.name}: extra {study.extra!r} cannot be imported ({e}); fix extra:") from None
    if "context" in inspect.signature(hook).parameters:
        return hook(study, df, vals, context=dict(context or {})) or {}
    return hook(study, df, vals) or {}


# ---------------------------------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    ap = argparse.ArgumentParser(prog="python -m edgebench.study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", help="a study in conf/study/ (or a study YAML file)")
    ap.add_argument("--budget", default="full", help="a budget of the study (default full)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once within an arm (Hydra's joblib launcher)")
    ap.add_argument("--report-only", action="store_true", help="write the report from the finished runs; run nothing")
    ap.add_argument("--out", type=Path, help="folder of NAME.md/.json (default results/, results/BUDGET/ "
                                             "for a budget other than full)")
    ap.add_argument("--results-dir", type=Path, help="paths.results_dir of the runs (default ./results)")
    ap.add_argument("--list", action="store_true", help="list the studies")
    args = ap.parse_args(argv)
    if args.list or not args.name:
        print("\n".join(f"{n}: {load(n).title}" for n in names()))
        return 0
    root = Path.cwd()
    from edgebench import signals

    signals.install()  # SIGTERM stops the study as Ctrl-C does
    try:
        if args.jobs < 1:
            raise StudyError(f"--jobs {args.jobs}: must be at least 1; pass --jobs 1 (one run at a time) or more")
        study = load(args.name)
        if args.budget not in study.budgets:
            raise StudyError(f"study {study.name}: unknown budget {args.budget!r}; use --budget "
                             f"{' or '.join(study.budgets)}")
        out = args.out or (root / "results" if args.budget == "full" else root / "results" / args.budget)
        results_dir = args.results_dir.resolve() if args.results_dir else None
        command = shlex.join(["python", "-m", "edgebench.study", study.name, "--budget", args.budget]
                             + (["--jobs", str(args.jobs)] if args.jobs > 1 else []))
        launched = None
        if not args.report_only:
            launched = launch(study, args.budget, root, args.jobs, results_dir)
        write_report(study, args.budget, root, out, results_dir, launched, command)
    except StudyError as e:
        print(f"edgebench.study: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nedgebench.study: interrupted; the runs that finished stay. Run the same command again to continue: "
              "finished runs are not launched again", file=sys.stderr)
        return 130
    if launched and launched["failed"]:
        print("edgebench.study: " + "; ".join(f"arm {a!r} failed ({why})" for a, why in launched["failed"].items())
              + "; run the same command again to retry only what did not finish", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
