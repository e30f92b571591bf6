"""The report's figures: test accuracy against bytes and against latency, one panel and one dashed Pareto frontier
per (data, model) group and device; a study's figures (:func:`study_plots`: one metric against another, mean ± 95%
interval per arm); and :func:`pyplot`, the one matplotlib entry every edgebench figure uses.

One colour per method; the dense baseline (method ``none``) is a star, or a dotted line at its accuracy when no
dense run is in the set; runs that do not fit their device are drawn on top as an ``X`` and kept off the frontier;
points are labelled by their swept values without overlaps (:mod:`edgebench.report.placement`).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from edgebench.report.load import DENSE
from edgebench.report.placement import place_labels
from edgebench.report.table import GROUP_BY, latency_label

log = logging.getLogger(__name__)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend: every figure edgebench and its experiments draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _si_bytes(v: float) -> str:
    for div, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if v >= div:
            return f"{v / div:.3g} {suffix}"
    return f"{v:.3g} B"


def _log_ticks(lo: float, hi: float) -> list[float]:
    """3 to 8 round ticks (1-2-5 and finer) between lo and hi, for a log axis that spans little."""
    exps = range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
    for subs in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0 ** e for e in exps for m in subs if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= 3:
            return ticks[::-(-len(ticks) // 8)]
    return [float(f"{t:.2g}") for t in np.geomspace(lo, hi, 4)]


def _log_axis(ax, values: pd.Series, fmt) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    lo, hi = float(values.min()) / 1.4, float(values.max()) * 1.4
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator(_log_ticks(lo, hi)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _accuracy_range(acc: pd.Series, ci: pd.Series) -> tuple[float, float, float]:
    """The accuracy axis of one panel: ``(bottom, top, cut)``, zoomed to the runs with a margin. A run that
    collapsed far below the others (a gap under it wider than twice the spread of the runs above it and than
    5 points, with at least half of the runs above it) is below ``cut``: drawn at the bottom edge, not stretching
    the axis down to it."""
    vals = np.sort(acc.dropna().to_numpy(float))[::-1]
    cut = -np.inf
    for k in range(max(2, -(-len(vals) // 2)), len(vals)):
        gap, spread = vals[k - 1] - vals[k], vals[0] - vals[k - 1]
        if gap > max(2 * spread, 0.05):
            cut = (vals[k - 1] + vals[k]) / 2
            break
    kept = acc >= cut
    e = ci.fillna(0)
    lo, hi = float((acc - e)[kept].min()), float((acc + e)[kept].max())
    margin = max(0.08 * (hi - lo), 0.005)
    return lo - margin * (2.2 if cut > -np.inf else 1), hi + 1.5 * margin, cut


def _panels(df: pd.DataFrame, x: str, flag: str, by: list[str]) -> list[tuple[str, list[str], pd.DataFrame]]:
    """``(group, devices, rows)`` per panel: one per group (``by``) and device, devices whose rows draw the same
    (method, label, cost, accuracy, interval, fit, frontier) sharing one panel that names them all."""
    def sig(d):
        return tuple(sorted((str(r["method"]), str(r["label"]), f"{r[x]:.6g}", f"{r['test/acc']:.6g}",
                             f"{r.get('test/acc_ci', np.nan):.4g}", bool(r["fits"]), bool(r[flag])) for _, r in d.iterrows()))

    panels: list = []
    for key, g in df.groupby(by, dropna=False, sort=True) if by else [((), df)]:
        key = key if isinstance(key, tuple) else (key,)
        name = " / ".join("?" if pd.isna(k) else str(k) for k in key)
        seen: dict = {}
        for device in sorted(g["device"].unique()):
            d = g[g["device"] == device]
            s = sig(d)
            if s in seen:
                seen[s][1].append(device)
            else:
                seen[s] = (name, [device], d)
                panels.append(seen[s])
    return panels


def plot(df: pd.DataFrame, x: str, xlabel: str, flag: str, path: Path, title: str,
         by: list[str] = GROUP_BY) -> Path | None:
    """:func:`figure` saved to ``path``; None (nothing written) when no run has ``x``."""
    fig = figure(df, x, xlabel, flag, title, by)
    if fig is None:
        log.warning("no run has %s: %s not drawn", xlabel, path.name)
        return None
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path


def _methods(ax, d: pd.DataFrame, x: str, colour: dict, low: pd.Series, shown: pd.Series, drawn: set) -> None:
    """One panel's points, one colour per method: the 95% intervals of replicated groups, the runs that fit, those
    that do not (an ``X`` on top) and those far below the axis (a triangle at its edge). ``drawn`` collects which
    of the rarer markers were used (``unfit``, ``below``), for the legend."""
    ci = d.get("test/acc_ci", pd.Series(np.nan, index=d.index))
    for method, g in d.groupby("method", dropna=False):
        c = colour.get(method, "grey")
        marker, size = ("*", 160) if method == DENSE else ("o", 32)
        inside = g[~low[g.index]]
        fit, unfit = inside[inside["fits"]], inside[~inside["fits"]]
        bars = inside[ci[inside.index].notna()]
        if len(bars):  # replicates: the 95% intervals of the mean accuracy (and of the cost, when it varied)
            xerr = bars[f"{x}_ci"].fillna(0).to_numpy() if f"{x}_ci" in bars else None
            ax.errorbar(bars[x], bars["test/acc"], yerr=bars["test/acc_ci"].to_numpy(), xerr=xerr, fmt="none",
                        ecolor=c, elinewidth=0.9, capsize=2.5, zorder=2.5)
        ax.scatter(fit[x], fit["test/acc"], color=c, marker=marker, s=size, zorder=3, gid="fits")
        if len(unfit):  # on top of everything, its own marker: never hidden behind a run that fits
            ax.scatter(unfit[x], unfit["test/acc"], color=c, marker="X", s=70, edgecolors="black",
                       linewidths=0.6, zorder=5, gid="does not fit")
            drawn.add("unfit")
        under = g[low[g.index]]
        if len(under):
            ax.scatter(under[x], shown[under.index], color=c, marker="v", s=46, edgecolors="black",
                       linewidths=0.5, zorder=4, gid="below", clip_on=False)
            drawn.add("below")


def _panel(ax, d: pd.DataFrame, x: str, flag: str, colour: dict, drawn: set) -> tuple[list, list]:
    """Draw one panel (points, dense line, frontier, axes); returns what its labels must avoid (the frontier) and
    the points to label."""
    ci = d.get("test/acc_ci", pd.Series(np.nan, index=d.index))
    bottom, top, cut = _accuracy_range(d["test/acc"], ci)
    low = d["test/acc"] < cut
    edge = bottom + 0.04 * (top - bottom)  # where a run below the axis is drawn
    shown = d["test/acc"].where(~low, edge)
    _methods(ax, d, x, colour, low, shown, drawn)
    if not (d["method"] == DENSE).any() and d["baseline/test_acc"].notna().any():
        ax.axhline(d["baseline/test_acc"].median(), color="0.4", ls=":", lw=1, zorder=1)
        drawn.add("line")
    front = d[d[flag]].sort_values(x)
    ax.step(front[x], shown[front.index], where="post", color="black", lw=1, ls="--", zorder=2)
    ax.scatter(front[x], shown[front.index], facecolors="none", edgecolors="black", s=110, lw=0.8, zorder=2,
               gid="frontier")
    _log_axis(ax, d[x], _si_bytes if x == "bytes" else (lambda v: f"{v:.3g}"))
    ax.set_ylim(bottom, top)
    ax.grid(alpha=0.3)
    points = [(r[x], shown[i], f"{r['label'] or r['method']}: {r['test/acc']:.3f}" if low[i] else r["label"])
              for i, r in d.iterrows() if r["label"] or low[i]]
    return [(list(front[x]), list(shown[front.index]))], points


def _handles(methods: list, present: set, colour: dict, drawn: set) -> list:
    """The legend: one entry per method drawn, the frontier, and the rarer markers that were used."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="*" if m == DENSE else "o", color=colour[m], markersize=10 if m == DENSE else 6,
                      label="dense baseline (none)" if m == DENSE else m) for m in methods if m in present]
    handles.append(Line2D([], [], color="black", ls="--", lw=1, marker="o", markersize=10, markerfacecolor="none",
                          markeredgewidth=0.8, label="Pareto frontier (runs that fit), ringed"))
    if "unfit" in drawn:
        handles.append(Line2D([], [], ls="", marker="X", color="0.5", markeredgecolor="black", markersize=7,
                              label="X: does not fit the device (never on the frontier)"))
    if "below" in drawn:
        handles.append(Line2D([], [], ls="", marker="v", color="0.5", markeredgecolor="black", markersize=7,
                              label="far below the axis: drawn at its edge, accuracy written"))
    if "line" in drawn:
        handles.append(Line2D([], [], color="0.4", ls=":", lw=1, label="dense baseline accuracy"))
    return handles


def colours(methods: list[str]) -> dict[str, object]:
    """One colour per method, none repeated: matplotlib's ten default colours, and past ten tab20's twenty (its dark
    shades first, then the light ones), so that a board of 13 families never gives two of them one colour."""
    if len(methods) <= 10:
        return {m: f"C{i}" for i, m in enumerate(methods)}
    import matplotlib

    tab20 = matplotlib.colormaps["tab20"].colors
    order = [tab20[i] for i in range(0, 20, 2)] + [tab20[i] for i in range(1, 20, 2)]
    return {m: order[i % 20] for i, m in enumerate(methods)}


def figure(df: pd.DataFrame, x: str, xlabel: str, flag: str, title: str, by: list[str] = GROUP_BY):
    """Accuracy against ``x``: one panel and one dashed frontier per group (``by``: data set and model) and device,
    devices whose panels would be identical in one panel naming them; one colour per method; points labelled by
    their swept values without overlaps; runs that do not fit drawn on top as an ``X``; the accuracy axis zoomed
    to the runs, a run that collapsed far below the others drawn as a triangle at the bottom edge with its
    accuracy written. None when no run has ``x``.

    ``xlabel`` is used as is, except for ``latency_ms``, whose label is each device's :func:`latency_label`."""
    import textwrap

    full = df
    df = df[df[x].notna() & (df[x] > 0) & df["test/acc"].notna()]
    if df.empty:
        return None
    panels = _panels(df, x, flag, list(by))
    groups = len({p[0] for p in panels})
    methods = sorted(full["method"].dropna().unique(), key=lambda m: (m != DENSE, m))
    colour = colours(methods)
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    fig, axes = pyplot().subplots(nrows, ncols, figsize=(6.8 * ncols, 4.9 * nrows + 0.8), squeeze=False,
                                  layout="constrained")
    drawn: set = set()
    labelled = []
    for ax, (group, devices, d) in zip(axes.flat, panels):
        labelled.append((ax, *_panel(ax, d, x, flag, colour, drawn)))
        if x == "latency_ms":
            xl = latency_label(full, devices[0]) if len(devices) == 1 or devices[0] == "host" else \
                "estimated latency on each, device/latency_ms_est (ms)"
        else:
            xl = xlabel
        ax.set_xlabel(xl, fontsize=9)
        name = ", ".join(devices) if groups == 1 else f"{group}: {', '.join(devices)}"
        ax.set_title(textwrap.fill(f"{title}: {name}" if len(panels) == 1 else name, 70), fontsize=10)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (mean of replicates, 95% CI bars)" if df["replicates"].max() > 1 else "test accuracy")
    handles = _handles(methods, set(df["method"]), colour, drawn)
    if len(panels) > 1:
        fig.suptitle(title)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3), fontsize=8, frameon=False)
    fig.canvas.draw()  # settle the layout, then freeze it and place the labels where they do not collide
    fig.set_layout_engine("none")
    for ax, lines, points in labelled:
        place_labels(fig, ax, points, lines)
    return fig


def study_plots(study, vals: dict, out_dir: Path, budget: str) -> list[str]:
    """A study's ``plots:`` (``{x: METRIC, y: METRIC}`` each), one PNG each under ``out_dir``: per arm the mean ±
    the half-width of the 95% t interval of both metrics over the seeds that have both (``vals``: ``{arm: {metric:
    {seed: value}}}``). Returns the files' paths."""
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
