"""Published measurements and the op-level model's calibration on them.

The data: every MLPerf Tiny closed result v0.5-v1.1 (``data/mlperf_tiny.json``, verbatim with its source paths)
plus vendor figures (``data/vendor_points.json``), and the graphs of the benchmark models as a TFLite converter
lays them out (``data/graphs.json``, written by ``experiments/calibrate_devices.py``). Each result is classified
here by the runtime that produced it (:func:`runtime_of`) and the core family it ran on (:func:`core_of`).

The fit (declared before it was run, 2026-12-06): per runtime and core family, the five cycle constants of
:class:`edgebench.devices.ops.OpCosts` minimise, in log space,

    sum over points (log predicted cycles - log published cycles)^2
    + RIDGE * sum over the MAC kinds (log c_kind - mean of the three)^2        # unidentified kinds -> the common level
    + RIDGE * (log c_elem - log c_conv)^2                                      # an elementwise element ~ a conv MAC
    + RIDGE_OP * (log c_op - log OP_PRIOR)^2                                   # weak: ~1,000 cycles of dispatch per op

with RIDGE = 1 and RIDGE_OP = 0.1 (a factor of ~2 and ~9 of prior spread). Published cycles = latency x clock.
Several boards of one core family and runtime are pooled. The honest accuracy figures are:

* **leave one model out**: refit without one benchmark model (on every board of the group), predict it;
* **leave one board out**: refit the runtime on its other core families, carry the constants over with the core
  factor (below) and predict the left-out board; only runtimes with two or more core families have one.

The core factor (cycles on core B / cycles on core A for the same model and runtime) is the geometric mean over
every *other* runtime that ran the same benchmark on both cores (MLPerf submitters with several boards), so a
runtime measured on one core (TFLite Micro with CMSIS-NN on a Cortex-M4) can be estimated on another (a Cortex-M7),
with the spread of those factors as part of its band.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgebench.devices.ops import MAC_KINDS, Op, OpCosts

DATA = Path(__file__).parent / "data"
RIDGE, RIDGE_OP, OP_PRIOR = 1.0, 0.1, 1000.0
BENCHMARKS = {"ic": "ResNet-8 (image classification)", "kws": "DS-CNN (keyword spotting)",
              "vww": "MobileNet v1 0.25 (visual wake words)", "ad": "FC autoencoder (anomaly detection)"}

# Runtime names (a profile's ``runtime`` + TFLite Micro's kernels): what loads the file, and with which kernels.
RUNTIME_LABEL = {
    "tflite_micro+reference": "TFLite Micro, reference kernels",
    "tflite_micro+cmsis_nn": "TFLite Micro with CMSIS-NN kernels",
    "tflite_micro+esp_nn": "TFLite Micro with ESP-NN kernels",
    "x_cube_ai": "ST X-CUBE-AI 8.1",
    "tflite": "LiteRT (TFLite) on the CPU",
}


def _core_family(text: str) -> str | None:
    t = (text or "").lower().replace(" ", "")
    if any(a in t for a in ("syntiant", "anpu", "xc7z")):  # a neural accelerator beside the core: not the core's speed
        return None
    for pat, fam in (("m0+", "cortex-m0+"), ("m33", "cortex-m33"), ("m7", "cortex-m7"), ("m4", "cortex-m4"),
                     ("a72", "cortex-a72"), ("rv32imac", "rv32imac"), ("risc-v", "risc-v")):
        if pat in t:
            return fam
    return None


# Boards whose records lack a core (ST's v1.0 rows): the core from the v1.1 system files of the same boards.
BOARD_CORE = {"NUCLEO_L4R5ZI": ("cortex-m4", 120.0), "NUCLEO-H7A3ZI-Q": ("cortex-m7", 280.0),
              "NUCLEO-U575ZI-Q": ("cortex-m33", 160.0)}


def board_of(system: str) -> str:
    """One name per physical board: MLPerf's system names carry runtime and OS suffixes."""
    s = system.upper().replace("-", "_")
    for b in ("NUCLEO_L4R5ZI", "NUCLEO_H7A3ZI", "NUCLEO_U575ZI", "DISCO_F746NG", "CY8CPROTO_062_4343W",
              "NUCLEO_G0B1RE", "NRF5340", "EK_RA6M4", "RX65N", "B_U585I", "NUMAKER_M467"):
        if b in s:
            return b
    return system


def core_of(rec: dict) -> tuple[str | None, float | None]:
    """(core family, clock MHz) of a record, from its own fields or its board."""
    fam = _core_family(rec.get("core") or "")
    if "PengCheng" in rec["submitter"]:
        fam = "rv32imac"
    clock = rec.get("clock_mhz")
    if isinstance(clock, str):
        m = re.match(r"([\d.]+)", clock)
        clock = float(m.group(1)) if m else None
    if fam is None or clock is None:
        for board, (f, c) in BOARD_CORE.items():
            if board_of(board) == board_of(rec["system"]):
                fam, clock = fam or f, clock or c
    return fam, clock


def runtime_of(rec: dict) -> str:
    """The runtime that produced a record: one of RUNTIME_LABEL's keys, else a descriptive name of its own."""
    f = rec.get("framework") or ""
    if "TFLM" in f and "CMSIS-NN" in f and "RX" not in f:
        return "tflite_micro+cmsis_nn"
    if "TFLM" in f and "reference kernels" in f:
        return "tflite_micro+reference"
    if "X-CUBE-AI v8.1" in f:
        return "x_cube_ai"
    if "X-CUBE-AI" in f or "X-CUBE-AI" in rec["system"] or rec["submitter"] == "STMicroelectronics":
        m = re.search(r"X-CUBE-AI[ -]v?([\d.]+)", f + " " + rec["system"])
        return f"x_cube_ai {m.group(1) if m else '(' + rec['ver'] + ')'}"
    return f"{rec['submitter']}: {f or rec['system']} ({rec['ver']})"


@dataclass(frozen=True)
class Point:
    """One published latency (and energy) of one benchmark model on one board and runtime."""

    model: str  # a key of graphs.json
    board: str
    core: str
    clock_mhz: float
    runtime: str
    latency_ms: float
    energy_uj: float | None
    source: str

    @property
    def cycles(self) -> float:
        return self.latency_ms * 1e-3 * self.clock_mhz * 1e6


@lru_cache(maxsize=None)
def records() -> tuple[dict, ...]:
    return tuple(json.loads((DATA / "mlperf_tiny.json").read_text())["records"])


@lru_cache(maxsize=None)
def vendor_points() -> tuple[dict, ...]:
    path = DATA / "vendor_points.json"
    return tuple(json.loads(path.read_text())["points"]) if path.exists() else ()


def points() -> list[Point]:
    """Every published point edgebench can place: MLPerf Tiny records with a core and clock, then vendor figures."""
    out, seen = [], set()
    for r in records():
        fam, clock = core_of(r)
        if fam is None or clock is None or r["lat_ms"] is None:
            continue
        key = (r["ver"], r["submitter"], r["system"], r["bm"])
        if key in seen:  # LEIP submitted fp32 and int8 rows of one system: keep the first (int8 rows follow)
            continue
        seen.add(key)
        src = r["source_path"] or (f"github:mlcommons/tiny_results_{r['ver']}:closed/{r['submitter']}/results/"
                                   f"{r['system']}/{r['bm']}/performance (the results repository's layout)")
        out.append(Point(f"mlperf_{r['bm']}", board_of(r["system"]), fam, clock, runtime_of(r), r["lat_ms"],
                         r["uJ"], src))
    for v in vendor_points():
        out.append(Point(v["model"], v["board"], v["core"], v["clock_mhz"], v["runtime"], v["latency_ms"],
                         v.get("energy_uj"), v["source"]))
    return out


@lru_cache(maxsize=None)
def graphs() -> dict[str, list[Op]]:
    path = DATA / "graphs.json"
    if not path.exists():
        return {}
    return {k: [Op(**o) for o in v["ops"]] for k, v in json.loads(path.read_text()).items()}


# ---- the fit ---------------------------------------------------------------------------------------------------

def _features(ops: list[Op]) -> np.ndarray:
    """Per op-cost constant, the units of work it multiplies: MACs per kind, elementwise elements, op count."""
    f = np.zeros(5)
    for o in ops:
        if o.kind == "free":
            continue
        f[4] += 1
        if o.kind in MAC_KINDS:
            f[MAC_KINDS.index(o.kind)] += o.macs
        else:
            f[3] += o.elems
    return f


def fit(data: list[tuple[list[Op], float]], ridge: float | None = None) -> OpCosts:
    """The five cycle constants minimising the penalised squared log error over ``data`` = [(ops, cycles)]."""
    from scipy.optimize import minimize

    ridge = RIDGE if ridge is None else ridge
    X = np.array([_features(ops) for ops, _ in data])
    y = np.log([c for _, c in data])

    def loss(theta):
        pred = X @ np.exp(theta)
        r = np.log(np.maximum(pred, 1e-12)) - y
        mac = theta[:3]
        return (r @ r + ridge * ((mac - mac.mean()) ** 2).sum() + ridge * (theta[3] - theta[0]) ** 2
                + RIDGE_OP * (theta[4] - math.log(OP_PRIOR)) ** 2)

    theta0 = np.array([0.0, 0.0, 0.0, 0.0, math.log(OP_PRIOR)])
    res = minimize(loss, theta0, method="L-BFGS-B", bounds=[(-6, 6)] * 4 + [(0, 12)])
    return OpCosts(*(float(v) for v in np.exp(res.x)))


def core_factor(to: str, frm: str, exclude: str | None = None) -> tuple[float, float, float, int] | None:
    """Cycles on core ``to`` over cycles on core ``frm`` for the same model and runtime: (geomean, min, max, n).

    Over every runtime other than ``exclude`` that ran a benchmark on both cores (boards of one core averaged
    geometrically). None when no runtime ran on both.
    """
    if to == frm:
        return (1.0, 1.0, 1.0, 0)
    by: dict[tuple[str, str, str], list[float]] = {}
    for p in points():
        if p.runtime == exclude or not p.model.startswith("mlperf_"):
            continue
        by.setdefault((p.runtime, p.model, p.core), []).append(math.log(p.cycles))
    ratios = []
    for (rt, model, core), logs in by.items():
        if core != to or (rt, model, frm) not in by:
            continue
        ratios.append(np.mean(logs) - np.mean(by[(rt, model, frm)]))
    if not ratios:
        return None
    r = np.array(ratios)
    return float(np.exp(r.mean())), float(np.exp(r.min())), float(np.exp(r.max())), len(r)


@dataclass
class Group:
    """The calibration of one runtime on one core family."""

    runtime: str
    core: str
    points: list[Point]
    costs: OpCosts
    loo_model: list[dict]  # per point: {"model", "board", "published_ms", "estimate_ms", "error"}
    loo_board: list[dict]

    def errors(self, which: str = "model") -> list[float]:
        return [r["error"] for r in (self.loo_model if which == "model" else self.loo_board)]


def _data(pts: list[Point]) -> list[tuple[list[Op], float]]:
    g = graphs()
    return [(g[p.model], p.cycles) for p in pts]


def calibrate_group(runtime: str, core: str, pts: list[Point]) -> Group:
    g = graphs()
    costs = fit(_data(pts))
    loo = []
    models = sorted({p.model for p in pts})
    if len(models) > 1:
        for m in models:
            rest = [p for p in pts if p.model != m]
            c = fit(_data(rest))
            for p in pts:
                if p.model == m:
                    est = c.cycles(g[m]) / (p.clock_mhz * 1e3)
                    loo.append({"model": m, "board": p.board, "published_ms": p.latency_ms, "estimate_ms": est,
                                "error": est / p.latency_ms - 1})
    return Group(runtime, core, pts, costs, loo, [])


def usable(p: Point) -> bool:
    return p.model in graphs()


def calibrate_runtime(runtime: str) -> dict[str, Group]:
    """Every core family of ``runtime`` with its points, fit and leave-one-out errors (model, and board)."""
    pts = [p for p in points() if p.runtime == runtime and usable(p)]
    groups = {core: calibrate_group(runtime, core, [p for p in pts if p.core == core])
              for core in sorted({p.core for p in pts})}
    if len(groups) > 1:  # leave one board out: the runtime's other cores, carried over by the core factor
        g = graphs()
        for core, grp in groups.items():
            for board in sorted({p.board for p in grp.points}):
                others = [p for p in pts if p.board != board and p.core != core]
                for src in sorted({p.core for p in others}):
                    cf = core_factor(core, src, exclude=runtime)
                    if cf is None:
                        continue
                    c = fit(_data([p for p in others if p.core == src]))
                    for p in grp.points:
                        if p.board == board:
                            est = c.cycles(g[p.model]) * cf[0] / (p.clock_mhz * 1e3)
                            grp.loo_board.append({"model": p.model, "board": board, "from": src,
                                                  "published_ms": p.latency_ms, "estimate_ms": est,
                                                  "error": est / p.latency_ms - 1})
    return groups


def power_mw(board: str, runtime: str | None = None) -> tuple[float, float, float, int, list[str]] | None:
    """Average power (mean of energy / latency over the benchmark models) of ``board`` under ``runtime`` (any
    runtime when None, the most recent result set): (mean mW, min, max, n, sources)."""
    rows = [p for p in points() if p.board == board and p.energy_uj and (runtime is None or p.runtime == runtime)]
    if not rows:
        return None
    if runtime is None:  # one result set: the runtime with the most energy results on this board (ties: latest)
        counts: dict[str, int] = {}
        for p in rows:
            counts[p.runtime] = counts.get(p.runtime, 0) + 1
        runtime = max(counts, key=lambda rt: (counts[rt], max(p.source for p in rows if p.runtime == rt)))
        rows = [p for p in rows if p.runtime == runtime]
    mw = [p.energy_uj / p.latency_ms for p in rows]
    return float(np.mean(mw)), float(min(mw)), float(max(mw)), len(mw), [p.source for p in rows]


# ---- estimates for a profile ----------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def runtime_groups(runtime: str) -> dict[str, Group]:
    return calibrate_runtime(runtime)


def label(runtime: str) -> str:
    return RUNTIME_LABEL.get(runtime, runtime)


@dataclass
class LatencyEstimate:
    """One latency estimate with the band its calibration's leave-one-out errors give (None: uncalibrated)."""

    ms: float
    low_ms: float | None
    high_ms: float | None
    runtime: str
    calibration: str  # what calibrates it; starts with "uncalibrated" when there is no band

    @property
    def calibrated(self) -> bool:
        return self.low_ms is not None

    def text(self) -> str:
        if not self.calibrated:
            return f"~{self.ms:.3g} ms (uncalibrated)"
        return f"{self.ms:.3g} ms (band {self.low_ms:.3g}-{self.high_ms:.3g} ms)"


def _band(ms: float, errors: list[float]) -> tuple[float, float]:
    """The published value lies between these if this estimate errs like the leave-one-out ones did."""
    return ms / (1 + max(errors)), ms / (1 + min(errors))


def estimate(runtime: str, core: str, board: str | None, ops: list[Op], clock_hz: float) -> LatencyEstimate | None:
    """The op-level estimate of ``ops`` on ``core`` at ``clock_hz`` under ``runtime``; None when nothing published
    calibrates this runtime on any core."""
    groups = runtime_groups(runtime)
    if not groups:
        return None
    board_errors = [e for g in groups.values() for e in g.errors("board")]
    if core in groups:
        g, factor = groups[core], 1.0
        boards = sorted({p.board for p in g.points})
        errors = g.errors("model")
        how = f"{label(runtime)} on {core}: {len(g.points)} published points ({', '.join(boards)})"
        if board not in boards:
            errors = errors + board_errors
            how += ("; this board was not measured, so the band adds the runtime's leave-one-board-out errors"
                    if board_errors else "; this board was not measured (no other board of this runtime to check "
                                         "the transfer)")
    else:
        cands = [(core_factor(core, c, exclude=runtime), grp) for c, grp in groups.items()]
        cands = [(f, grp) for f, grp in cands if f is not None]
        if not cands:  # a runtime measured on another instruction set only: its cycles, unchecked
            g = max(groups.values(), key=lambda grp: len(grp.points))
            ms = g.costs.cycles(ops) / clock_hz * 1e3
            return LatencyEstimate(ms, None, None, runtime,
                                   f"uncalibrated: {label(runtime)} measured on {g.core} only; its cycles applied to "
                                   f"{core} (no runtime ran on both to give a core factor)")
        (f, g) = max(cands, key=lambda c: (c[0][3], len(c[1].points)))
        factor = f[0]
        errors = g.errors("model") + board_errors
        how = (f"{label(runtime)} measured on {g.core} ({', '.join(sorted({p.board for p in g.points}))}), carried to "
               f"{core} by a core factor x{f[0]:.2f} (x{f[1]:.2f}-x{f[2]:.2f} over {f[3]} model/runtime pairs of "
               "other runtimes)")
    ms = g.costs.cycles(ops) * factor / clock_hz * 1e3
    if len(errors) < 2:
        return LatencyEstimate(ms, None, None, runtime, f"uncalibrated: {how}; too few points for a leave-one-out band")
    lo, hi = _band(ms, errors)
    return LatencyEstimate(ms, lo, hi, runtime, f"{how}; leave-one-out errors {min(errors):+.0%} to {max(errors):+.0%}")


def power(board: str | None, runtime: str) -> tuple[float, str, float, float] | None:
    """(average power in W, how it was measured, lowest, highest over the models) for ``board`` under ``runtime``,
    else under the board's latest runtime with energy results; None when no energy was published for this board."""
    if not board:
        return None
    own = power_mw(board, runtime)
    if own is not None:
        mw, lo, hi, n, _ = own
        return mw / 1e3, (f"measured: MLPerf Tiny energy / latency of {label(runtime)} on {board}, mean of {n} models "
                          f"({lo:.3g}-{hi:.3g} mW)"), lo / 1e3, hi / 1e3
    family = runtime.split("+")[0]  # TFLite Micro's other kernels first: the same interpreter on the same board
    related = sorted({p.runtime for p in points() if p.board == board and p.energy_uj and p.runtime != runtime
                      and p.runtime.split("+")[0] == family})
    other = power_mw(board, related[0]) if related else power_mw(board)
    if other is not None:
        mw, lo, hi, n, src = other
        rt = next(p.runtime for p in points() if p.source == src[0] and p.board == board)
        how = (f"measured under another runtime: MLPerf Tiny energy / latency of {label(rt)} on {board}, mean of {n} "
               f"models ({lo:.3g}-{hi:.3g} mW); {label(runtime)} was not measured for energy")
        return mw / 1e3, how, lo / 1e3, hi / 1e3
    return None
