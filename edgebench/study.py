"""``python -m edgebench.study NAME``: a study is a config (``conf/study/NAME.yaml``), not a script.

A study names its arms (each a list of overrides on a shared base), the seeds of each budget, the metrics it
reports and the comparisons it makes, each comparison's threshold fixed in the file before the run, with its
source. This runner composes every arm x seed, checks them all before anything runs, launches one Hydra multirun
per arm (``python -m edgebench -m ... seed=0,1,2``; ``hydra/launcher=joblib`` with ``--jobs N``), and skips what
already finished: each run carries the tags ``study``, ``study.arm``, ``study.budget`` and ``study.spec`` (the
digest of its overrides) and ``resume=true``, so a rerun of an interrupted study continues where it stopped. Runs
go to the MLflow experiment ``study-NAME`` (``study-NAME-BUDGET`` for any budget but ``full``: a smoke run is
never mixed with the real one). The report (``results/NAME.md`` and ``.json``; other budgets under
``results/BUDGET/``) is written from the finished MLflow runs by the report layer (:mod:`edgebench.report.studies`:
runs read by :func:`edgebench.report.load_runs`, the statistics of :mod:`edgebench.stats`, rendered by
:mod:`edgebench.report.render` and :mod:`edgebench.report.plots`): per arm the mean and 95% t interval of each
metric; per comparison the paired difference by seed against the reference arm, its 95% t interval, n, Holm's
adjusted p over the file's comparisons, the verdict of the one effect rule, and the declared threshold with its
source and whether it passed. This module parses and checks a study, launches its runs and calls the report layer.

    python -m edgebench.study pipelines --budget smoke          # minutes: digits, one epoch
    python -m edgebench.study pipelines --jobs 2                # the full budget, two jobs at once
    python -m edgebench.study pipelines --report-only           # rewrite the report from the runs

The schema is in docs/studies.md.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import logging
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

from edgebench.config import ConfigError, config_dir, device_profiles

log = logging.getLogger("edgebench.study")

RULES = ("at_least", "at_most")  # the paired difference's whole 95% interval lies at or above / at or below
TABLES = ("arms", "comparisons")
ARM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+ >-]*")
KEYS = {"name", "title", "question", "base", "arms", "reference", "budgets", "metrics", "comparisons", "tables",
        "plots", "extra", "extra_args", "notes", "devices", "ledger"}


class StudyError(ConfigError):
    """A study config that cannot run: the message names the key and the fix."""


@dataclass(frozen=True)
class Comparison:
    arm: str
    metric: str
    against: str | None  # None: the arm's own values (one sample), for a metric that is already a difference
    rule: str | None = None
    threshold: float | None = None
    source: str | None = None
    # a selection declared before the run: ``arm`` is the one of these with the highest mean ``by`` (a validation
    # metric, select/*), picked when the report is written; the comparison is the pick's
    best_of: tuple[str, ...] = ()
    by: str | None = None

    @property
    def label(self) -> str:
        return self.label_for(self.arm or None)

    def label_for(self, picked: str | None) -> str:
        """The comparison's name, with the arm a selection ``picked`` (None: not picked yet)."""
        arm = self.arm
        if self.best_of:
            choice = f"best of {len(self.best_of)} on {self.by}"
            arm = f"{picked} ({choice})" if picked else choice
        return f"{arm} - {self.against}" if self.against is not None else f"{arm} (own values)"


@dataclass(frozen=True)
class Budget:
    name: str
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()  # a study over devices: these of its devices at this budget (empty: all)
    # more seeds for named arms, beyond ``seeds``: ((arm, (seed, ...)), ...) (e.g. the leaderboard's rule: 5 seeds
    # for two candidates within an interval)
    more_seeds: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # overrides for the arms whose name matches a glob, after ``overrides``: ((glob, (override, ...)), ...) (e.g. a
    # smoke budget's extra epochs for a net that learns nothing in its 2)
    arm_overrides: tuple[tuple[str, tuple[str, ...]], ...] = ()


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
    extra_args: dict[str, Any] = field(default_factory=dict)  # the hook's parameters and its own thresholds
    notes: str = ""
    path: Path | None = None
    # a second axis beside the seeds: every arm x seed runs on each of these device profiles (the model is trained
    # once per arm and seed, through the store; each device deploys it in its own format). Such a study's tables
    # are its extra hook's (the leaderboard): its arms are not compared as one value per seed.
    devices: list[str] = field(default_factory=list)
    # its finished runs' figures also kept in NAME.runs.csv beside the report (committed with it): a checkout without
    # the MLflow store that ran them counts them as finished and reports them, so a study longer than one sitting (or
    # one machine's life) runs in chunks (edgebench.report.studies.write_ledger)
    ledger: bool | str = False  # "children": the runs' child runs (a lottery run's levels) kept too, NAME.children.csv

    def experiment(self, budget: str) -> str:
        """The MLflow experiment of a budget's runs: ``study-NAME`` for full, ``study-NAME-BUDGET`` otherwise."""
        return f"study-{self.name}" if budget == "full" else f"study-{self.name}-{budget}"

    def overrides(self, arm: str, budget: str) -> list[str]:
        """What every run of ``arm`` at ``budget`` is composed from (without its seed)."""
        b = self.budgets[budget]
        return [*self.base, *self.arms[arm], *b.overrides,
                *(o for glob, extra in b.arm_overrides if fnmatch.fnmatchcase(arm, glob) for o in extra)]

    def seeds_of(self, arm: str, budget: str) -> tuple[int, ...]:
        """An arm's seeds at ``budget``: the budget's seeds and any ``more_seeds`` it names for the arm."""
        b = self.budgets[budget]
        return b.seeds + dict(b.more_seeds).get(arm, ())

    def devices_at(self, budget: str) -> list[str]:
        """The device axis at ``budget`` (empty for a study without one)."""
        return list(self.budgets[budget].devices or self.devices) if self.devices else []

    def spec(self, arm: str, budget: str) -> str:
        """The digest of an arm's overrides (tag ``study.spec``): runs made before the arm was edited do not count."""
        from edgebench.store import digest

        return digest(self.overrides(arm, budget))


def _selection(spec: Any, at: str, arms: dict, metrics: list[str]) -> tuple[tuple[str, ...], str | None]:
    """A comparison's ``arm: {best_of: [A, B, ...], by: select/val_acc}``: the arms and the validation metric that
    picks one of them (``((), None)`` for a plain arm name)."""
    if not isinstance(spec, dict):
        return (), None
    extra = sorted(set(spec) - {"best_of", "by"})
    if extra:
        raise _fail(at, f"unknown key {extra[0]!r}", "write {best_of: [A, B], by: select/val_acc}")
    best_of = spec.get("best_of")
    if not isinstance(best_of, list) or len(best_of) < 2:
        raise _fail(f"{at}.best_of", "must list two or more arms", "write best_of: [A, B]")
    for a in best_of:
        if str(a) not in arms:
            raise _fail(f"{at}.best_of", f"{a!r} is not an arm", f"name arms of {', '.join(arms)}")
    by = str(spec.get("by", ""))
    if not by.startswith("select/"):
        raise _fail(f"{at}.by", f"{by!r} would pick on the test split or an unknown figure",
                    "pick on a validation metric: by: select/val_acc (or select/val_loss)")
    if by not in metrics:
        raise _fail(f"{at}.by", f"{by!r} is not one of the study's metrics", "add it to metrics: first")
    return tuple(str(a) for a in best_of), by


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
            import difflib

            close = difflib.get_close_matches(str(name_or_path), names(), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise StudyError(f"no study {str(name_or_path)!r}: {hint}studies are {', '.join(names()) or 'none'} "
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
        extra = sorted(set(spec) - {"seeds", "overrides", "devices", "more_seeds", "arm_overrides"})
        if extra:
            raise _fail(f"{where}: budgets.{b}", f"unknown key {extra[0]!r}", "a budget has seeds, overrides, "
                        "arm_overrides, more_seeds and (a study over devices) devices")
        per_arm = spec.get("arm_overrides") or {}
        if not isinstance(per_arm, dict):
            raise _fail(f"{where}: budgets.{b}.arm_overrides", f"must map a glob of arm names to overrides, got "
                        f"{per_arm!r}", "write e.g. {'mobilenet*': [trainer.max_epochs=8]}")
        for glob in per_arm:
            if not any(fnmatch.fnmatchcase(a, str(glob)) for a in arms):
                raise _fail(f"{where}: budgets.{b}.arm_overrides", f"{glob!r} matches no arm of the study",
                            f"use a glob of {', '.join(map(repr, arms))}")
        seeds = spec["seeds"]
        if not _distinct_ints(seeds):
            raise _fail(f"{where}: budgets.{b}.seeds", f"must be a list of distinct integers, got {seeds!r}",
                        "write e.g. [0, 1, 2]")
        more = spec.get("more_seeds") or {}
        if not isinstance(more, dict):
            raise _fail(f"{where}: budgets.{b}.more_seeds", f"must be a mapping of arm to seeds, got {more!r}",
                        "write e.g. {'lenet5 int8 PTQ': [3, 4]}")
        for arm, extra_seeds in more.items():
            if arm not in arms:
                raise _fail(f"{where}: budgets.{b}.more_seeds", f"names no arm of the study: {arm!r}",
                            f"use one of {', '.join(map(repr, arms))}")
            if not _distinct_ints(extra_seeds) or set(extra_seeds) & set(seeds):
                raise _fail(f"{where}: budgets.{b}.more_seeds.{arm}",
                            f"must be distinct integers not among the budget's seeds {seeds}, got {extra_seeds!r}",
                            "write e.g. [3, 4]")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(b)):
            raise _fail(f"{where}: budgets", f"budget name {b!r} is not a plain name", "use letters, digits, _ and -")
        budgets[str(b)] = Budget(str(b), tuple(seeds), tuple(_strings(spec.get("overrides"), f"{where}: budgets.{b}.overrides")),
                                 tuple(_strings(spec.get("devices"), f"{where}: budgets.{b}.devices")),
                                 tuple((str(a), tuple(v)) for a, v in more.items()),
                                 tuple((str(g), tuple(_strings(v, f"{where}: budgets.{b}.arm_overrides.{g}")))
                                       for g, v in per_arm.items()))
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
        one_sample = "against" in c and c["against"] is None  # against: null -> the arm's own values
        against = None if one_sample else str(c.get("against", reference))
        best_of, by = _selection(c.get("arm"), f"{at}.arm", arms, metrics)
        arm = "" if best_of else str(c.get("arm"))
        for key, a in (("arm", arm or None), ("against", against)):
            if a is not None and a not in arms:
                raise _fail(f"{at}.{key}", f"{a!r} is not an arm", f"name one of {', '.join(arms)}")
        if against is not None and (arm == against or against in best_of):
            raise _fail(at, f"compares {against!r} with itself", "set against: to another arm")
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
                                      None if source is None else str(source), best_of, by))
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
    extra_args = raw.get("extra_args") or {}
    if not isinstance(extra_args, dict):
        raise _fail(f"{where}: extra_args", f"must be a mapping, got {extra_args!r}", "write e.g. extra_args: {calls: 300}")
    if extra_args and extra is None:
        raise _fail(f"{where}: extra_args", "given without an extra: hook to read it", "add extra: module:function")
    ledger = raw.get("ledger", False)
    if not isinstance(ledger, bool) and ledger != "children":
        raise _fail(f"{where}: ledger", f"must be true, false or children, got {ledger!r}",
                    "write ledger: true (or ledger: children to keep the runs' child runs too)")
    devices = _strings(raw.get("devices"), f"{where}: devices")
    if not devices and any(b.devices for b in budgets.values()):
        raise _fail(f"{where}: budgets", "a budget names devices but the study has no devices:",
                    "add devices: [..] to the study or drop the budget's devices")
    if devices:
        known = device_profiles()
        bad = [d for d in devices if d not in known]
        if bad:
            raise _fail(f"{where}: devices", f"{bad[0]!r} is not a device profile", f"use {', '.join(known)}")
        if tables or comparisons or plots or extra is None:
            raise _fail(f"{where}: devices", "a study over devices writes its tables in its extra hook",
                        "set tables: [], no comparisons or plots, and extra: (e.g. edgebench.report.leaderboard:study)")
        for b in budgets.values():
            if not set(b.devices) <= set(devices):
                raise _fail(f"{where}: budgets.{b.name}.devices", f"{sorted(set(b.devices) - set(devices))[0]!r} is "
                            "not one of the study's devices", f"use some of {', '.join(devices)}")
        for arm, ovr in arms.items():
            if any(o.split("=", 1)[0].lstrip("+~") == "device" for o in [*ovr, *_strings(raw.get("base"), where)]):
                raise _fail(f"{where}: arms.{arm}", "sets device= although the study has devices:",
                            "leave the device to devices:")
    return Study(name, str(raw.get("title") or name), str(raw.get("question") or ""), _strings(raw.get("base"), f"{where}: base"),
                 arms, reference, budgets, metrics, comparisons, tables, [dict(p) for p in plots],
                 None if extra is None else str(extra), dict(extra_args), str(raw.get("notes") or "").strip(), path,
                 devices, ledger)


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


def command(study: Study, arm: str, budget: str, seeds, jobs: int = 1, results_dir: Path | None = None,
            ray: dict[str, str] | None = None) -> list[str]:
    """The Hydra multirun of one arm's ``seeds``: ``python -m edgebench -m ... seed=0,1,2``, through the joblib
    launcher when ``jobs`` > 1 (at most one job per seed), or as Ray tasks on the cluster at ``ray["address"]``
    (Hydra's Ray launcher; every job told the launch folder and the tracking URI, which a Ray worker would otherwise
    resolve on its own machine)."""
    cmd = [sys.executable, "-m", "edgebench", "-m", *run_overrides(study, arm, budget, results_dir)]
    if study.devices:  # resume=true: a device already done for a seed is skipped by its config hash
        # before seed=: Hydra's sweep varies the last key fastest, so jobs side by side are of different seeds and
        # train their dense parents at once (with seed first, both wait on one seed's parent in the store)
        cmd.append(f"device={','.join(study.devices_at(budget))}")
    cmd.append(f"seed={','.join(map(str, seeds))}")
    if ray:
        # the launcher asks ray.init for a local object store, which Ray refuses when it joins a running cluster
        cmd += ["hydra/launcher=ray", f"+hydra.launcher.ray.init.address={ray['address']}",
                "+hydra.launcher.ray.init.object_store_memory=null", f"paths.root_dir={ray['root']}",
                f"paths.mlflow_tracking_uri={ray['tracking_uri']}"]
    elif jobs > 1 and len(seeds) > 1:
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
        overrides = run_overrides(study, arm, budget, results_dir) + [f"seed={study.budgets[budget].seeds[0]}"] + (
            [f"device={study.devices_at(budget)[0]}"] if study.devices else [])
        try:
            cfg = pipeline.compose(overrides, root)
            spec = validate(cfg)
            steps = [methods.build(c) for c in methods.parse_steps(spec.method, spec.steps)]
        except ConfigError as e:
            raise StudyError(f"study {study.name}, arm {arm!r}: {e}") from None
        except Exception as e:  # Hydra's own errors (a missing config group option, bad override syntax)
            why = [str(x).strip().splitlines()[0] for x in (e, e.__cause__) if x is not None and str(x).strip()]
            raise StudyError(f"study {study.name}, arm {arm!r}: {type(e).__name__}: {': '.join(why)}; "
                             "fix the arm's overrides") from None
        out[arm] = {"model": spec.model.name.value, "data": spec.data.name.value, "epochs": spec.trainer.max_epochs,
                    "chain": [s.name for s in steps] or ["none"],
                    "tracking_uri": str(cfg.paths.mlflow_tracking_uri)}
    return out


def load_runs(study: Study, budget: str, tracking_uri: str, ledger: Path | None = None):
    """The study's finished top-level runs at ``budget``, one per arm and seed (the latest of duplicates), and the
    runs left out with the reason (:func:`edgebench.report.studies.runs`); with ``ledger`` (the study's
    ``NAME.runs.csv``), also the runs it keeps that this MLflow store does not have."""
    from edgebench.report import studies

    return studies.runs(study, budget, tracking_uri, ledger)


def ledger_path(study: Study, out_dir: Path) -> Path | None:
    """Where a study with ``ledger: true`` keeps its finished runs' figures: ``NAME.runs.csv`` beside its report."""
    return Path(out_dir) / f"{study.name}.runs.csv" if study.ledger else None


def _done(study: Study, budget: str, uri: str, ledger: Path | None = None) -> set[tuple[str, int]]:
    """The (arm, seed) pairs with a finished run (on every device of a study over devices)."""
    df, _ = load_runs(study, budget, uri, ledger)
    if df.empty:
        return set()
    if not study.devices:
        return {(r["study.arm"], int(r["seed"])) for _, r in df.iterrows()}
    got = df.groupby(["study.arm", "seed"])["device"].agg(set)
    return {(a, int(s)) for (a, s), d in got.items() if set(study.devices_at(budget)) <= d}


def _distinct_ints(xs) -> bool:
    return isinstance(xs, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in xs) \
        and len(set(xs)) == len(xs)


def _eta(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def select_arms(study: Study, patterns: list[str] | None) -> list[str]:
    """The arms of ``study`` that any of the shell ``patterns`` (``fnmatch``, case-sensitive) matches, in the study's
    order; all of them when ``patterns`` is empty. A pattern that matches no arm is an error naming the arms."""
    if not patterns:
        return list(study.arms)
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(a, p) for a in study.arms)]
    if unmatched:
        raise StudyError(f"study {study.name}: --arms {', '.join(map(repr, unmatched))} matches no arm; the arms are "
                         f"{', '.join(map(repr, study.arms))} (shell patterns: 'resnet8 *')")
    return [a for a in study.arms if any(fnmatch.fnmatchcase(a, p) for p in patterns)]


def launch(study: Study, budget: str, root: Path, jobs: int = 1, results_dir: Path | None = None,
           log_dir: Path | None = None, echo=print, ray_address: str | None = None,
           ledger: Path | None = None, only: list[str] | None = None,
           only_seeds: list[int] | None = None) -> dict[str, Any]:
    """Run every arm x seed of ``budget`` that has no finished run: one Hydra multirun per arm (its seeds as Ray
    tasks on the cluster at ``ray_address`` when given). Returns what ran, what was skipped and what failed (with
    the tail of its output). With ``ledger`` (:func:`ledger_path`), the runs it keeps count as finished, and it is
    written again after every arm (commit it as it grows). ``only`` (shell patterns of arm names) runs just the
    arms it matches, in the study's order; the others wait for a later command. ``only_seeds`` runs just those seeds (a chunk of a
    long study whose arms share each seed's dense parent: every arm's seeds 0-3 in one sitting, so that each finished
    chunk is paired)."""
    selected = select_arms(study, only)
    if only_seeds is not None:
        every = {x for arm in study.arms for x in study.seeds_of(arm, budget)}
        unknown = sorted(set(only_seeds) - every)
        if unknown:
            raise StudyError(f"study {study.name} [{budget}]: --seeds {' '.join(map(str, unknown))} not in the "
                             f"budget's seeds {' '.join(map(str, sorted(every)))}; pick from those")
    arms = check(study, budget, root, results_dir)
    uri = next(iter(arms.values()))["tracking_uri"]
    ray = {"address": ray_address, "root": str(root), "tracking_uri": uri} if ray_address else None
    seeds = study.budgets[budget].seeds
    per = max(1, len(study.devices_at(budget)))  # runs per arm and seed
    total = sum(len(study.seeds_of(arm, budget)) for arm in study.arms) * per
    done = _done(study, budget, uri, ledger)
    todo = {arm: [s for s in study.seeds_of(arm, budget) if (arm, s) not in done
                  and (only_seeds is None or s in only_seeds)] if arm in selected else []
            for arm in study.arms}
    n_todo = sum(map(len, todo.values())) * per
    n_done = sum((arm, x) in done for arm in study.arms for x in study.seeds_of(arm, budget)) * per
    n_out = total - n_done - n_todo  # the unfinished runs that --arms or --seeds leave out
    more = sum(map(len, dict(study.budgets[budget].more_seeds).values()))
    axes = (f"{len(study.arms)} arms x {len(seeds)} seeds" + (f" + {more} more seeds of named arms" if more else "")
            + (f" x {per} devices" if study.devices else ""))
    echo(f"study {study.name} [{budget}]: {total} runs ({axes}), "
         f"{n_done} finished before, {n_todo} to run" + (f" ({n_out} more that --arms / --seeds leave out)" if n_out else "")
         + f"; MLflow experiment {study.experiment(budget)} in {uri}")
    log_dir = log_dir or (results_dir or root / "results") / "studies"
    log_dir.mkdir(parents=True, exist_ok=True)
    failed: dict[str, str] = {}
    started, ran = time.perf_counter(), 0
    for k, (arm, missing) in enumerate(todo.items(), 1):
        if not missing:
            continue
        first = ran + 1
        eta = "" if not ran else f", ETA {_eta((time.perf_counter() - started) / ran * (n_todo - ran))}"
        n_arm = len(missing) * per
        echo(f"[{first}-{ran + n_arm} of {n_todo}] arm {k}/{len(todo)} {arm!r}: seeds "
             f"{','.join(map(str, missing))}" + (f" on {per} devices" if study.devices else "") + eta)
        cmd = command(study, arm, budget, missing, jobs, results_dir, ray)
        # a chunk of seeds (--seeds) logs to a file of its own: two processes on one arm's seeds keep both logs
        chunk = "" if only_seeds is None else "-seeds-" + "_".join(map(str, missing))
        logfile = log_dir / f"{study.name}-{budget}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', arm)}{chunk}.log"
        t = time.perf_counter()
        with logfile.open("w") as fh:
            fh.write(shlex.join(cmd) + "\n")
            fh.flush()
            proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
            seen: set[str] = set()  # run ids: a Ray worker's output can reach us twice
            try:
                for line in proc.stdout:
                    fh.write(line)
                    m = re.search(r"MLflow run ([0-9a-f]{32}) \(|skipped: run ([0-9a-f]{32})", line)
                    if m and (m.group(1) or m.group(2)) not in seen:
                        seen.add(m.group(1) or m.group(2))
                        what = "skipped (finished before)" if "skipped:" in line else "started"
                        if len(seen) > n_arm:
                            what += " again (an earlier attempt died)"
                        echo(f"  run {ran + min(len(seen), n_arm)} of {n_todo} ({arm!r}): {what}")
                rc = proc.wait()
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the multirun closes its runs as KILLED, then we stop
                if proc.poll() is None:
                    # SIGTERM, not SIGINT: a study launched in the background (nohup, &, cron) starts its arms with
                    # SIGINT ignored; edgebench's CLI ends on SIGTERM as on Ctrl-C (its runs KILLED)
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                raise
        ran += n_arm
        if rc != 0:
            tail = logfile.read_text().strip().splitlines()[-5:]
            failed[arm] = f"exit {rc}: " + " | ".join(tail)[-600:]
            echo(f"  arm {arm!r} FAILED (exit {rc}); its output: {logfile}")
        else:
            echo(f"  arm {arm!r} done in {_eta(time.perf_counter() - t)}")
        if ledger is not None:
            _write_ledger(study, budget, uri, ledger, echo)
    return {"arms": arms, "tracking_uri": uri, "ran": n_todo, "finished_before": total - n_todo, "failed": failed,
            "wall_s": time.perf_counter() - started}


def _write_ledger(study: Study, budget: str, uri: str, ledger: Path, echo=print) -> None:
    from edgebench.report import studies

    df, _ = load_runs(study, budget, uri, ledger)
    if not df.empty:
        n = studies.write_ledger(study, df, ledger)
        echo(f"  {n} finished runs kept in {ledger}")


# ---------------------------------------------------------------------------------------------------------- report

def write_report(study: Study, budget: str, root: Path, out_dir: Path, results_dir: Path | None = None,
                 launched: dict[str, Any] | None = None, command: str = "", echo=print) -> dict[str, Any]:
    """Write ``NAME.md`` and ``NAME.json`` (and a PNG per plot) under ``out_dir`` from the study's finished runs,
    through the report layer (:func:`edgebench.report.studies.write`); a study with a ledger reads and rewrites its
    ``NAME.runs.csv`` there too."""
    from edgebench.report import studies

    arms_info = (launched or {}).get("arms") or check(study, budget, root, results_dir)
    uri = next(iter(arms_info.values()))["tracking_uri"]
    ledger = ledger_path(study, out_dir)
    df, left = load_runs(study, budget, uri, ledger)
    if ledger is not None and not df.empty:
        studies.write_ledger(study, df, ledger)
    if df.empty:
        raise StudyError(f"study {study.name} [{budget}]: no finished runs in MLflow experiment "
                         f"{study.experiment(budget)} of {uri}; run it without --report-only first")
    context = {"budget": budget, "root": root, "out_dir": out_dir, "results_dir": results_dir, "tracking_uri": uri}
    hook = (lambda s, d, v: _extra(s, d, v, context)) if study.extra else None
    return studies.write(study, budget, df, left, arms_info, out_dir, launched, command, hook, echo)


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


def __getattr__(name: str):
    """``DERIVED``, ``values`` and ``compare`` live in :mod:`edgebench.report.studies`; still importable from here."""
    if name in ("DERIVED", "values", "compare"):
        from edgebench.report import studies

        return getattr(studies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    ap = argparse.ArgumentParser(prog="python -m edgebench.study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", help="a study in conf/study/ (or a study YAML file)")
    ap.add_argument("--budget", default="full", help="a budget of the study (default full)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once within an arm (Hydra's joblib launcher)")
    ap.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                    help="run each arm's seeds as Ray tasks on a running Ray cluster (Hydra's Ray launcher; default "
                         "address auto: the cluster `ray start --head` started on this machine); needs the ray extra")
    ap.add_argument("--arms", nargs="+", metavar="PATTERN",
                    help="run only the arms these shell patterns match (e.g. 'resnet8 *'); the report still reads "
                         "every arm's finished runs")
    ap.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                    help="run only these seeds of the budget (a chunk: every selected arm's seeds in one sitting, so "
                         "arms that share a seed's dense parent finish paired)")
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
        if args.ray and args.jobs > 1:
            raise StudyError("--jobs and --ray: Ray runs as many jobs at once as the cluster has CPUs; drop --jobs")
        if args.ray and not args.report_only and importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None:
            raise StudyError("--ray needs Hydra's Ray launcher; install it with pip install -e '.[ray]'")
        study = load(args.name)
        if args.budget not in study.budgets:
            raise StudyError(f"study {study.name}: unknown budget {args.budget!r}; use --budget "
                             f"{' or '.join(study.budgets)}")
        out = args.out or (root / "results" if args.budget == "full" else root / "results" / args.budget)
        results_dir = args.results_dir.resolve() if args.results_dir else None
        command = shlex.join(["python", "-m", "edgebench.study", study.name, "--budget", args.budget]
                             + (["--jobs", str(args.jobs)] if args.jobs > 1 else [])
                             + (["--ray", args.ray] if args.ray else []))
        launched = None
        if not args.report_only:
            launched = launch(study, args.budget, root, args.jobs, results_dir, ray_address=args.ray,
                              ledger=ledger_path(study, out), only=args.arms,
                              only_seeds=args.seeds)
        write_report(study, args.budget, root, out, results_dir, launched, command)
    except StudyError as e:
        print(f"edgebench.study: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nedgebench.study: interrupted; the runs that finished stay. Run the same command again to continue: "
              "finished runs are not launched again", file=sys.stderr)
        return 130
    if launched and launched["failed"]:
        by_reason: dict[str, list[str]] = {}
        for a, why in launched["failed"].items():
            by_reason.setdefault(why, []).append(repr(a))
        print("edgebench.study: " + "; ".join(f"arm {arms[0]} failed ({why})" if len(arms) == 1 else
                                              f"{len(arms)} arms failed ({', '.join(arms)}), each for one reason ({why})"
                                              for why, arms in by_reason.items())
              + "; run the same command again to retry only what did not finish", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
