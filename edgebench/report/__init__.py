"""The report layer: runs loaded from MLflow, statistics, Pareto fronts, plots and rendering, used by
``python -m edgebench.report``, the leaderboard, the sweep's closing table and the studies.

    load.py         runs from MLflow as a DataFrame, one row per run (seed)
    replicates.py   a configuration's replicates as one row: mean ± 95% interval (edgebench.stats)
    compare.py      each configuration against its dense parent, paired by seed, Holm-corrected
    pareto.py       Pareto fronts, with latency noise as a tie
    table.py        the report's table: bytes, latency, labels, comparisons, frontiers
    plots.py        the frontier figures and a study's plots (placement.py: their point labels; method_plots.py:
                    methods' figures)
    render.py       markdown and console output (the report's, the leaderboard's, a study's; one mean ± interval)
    studies.py      a study's report (edgebench.study): its runs by arm and seed, its comparisons, its files
    leaderboard.py  per device and method family, the best model that fits (``leaderboard.leaderboard``: the
                    package's name ``leaderboard`` is this module, not the function)
    cli.py          ``python -m edgebench.report``
"""

from edgebench.report.compare import vs_dense
from edgebench.report.load import DENSE, load_runs
from edgebench.report.pareto import latency_noise, pareto
from edgebench.report.plots import figure, plot
from edgebench.report.render import print_dropped, print_frontier, print_leaderboard
from edgebench.report.replicates import group_replicates
from edgebench.report.table import COLUMNS, GROUP_BY, build, labels, latency_label, sections
from edgebench.report.leaderboard import answer, chain_text, family, report_leaderboard
from edgebench.report.cli import main, path_component, report

__all__ = ["COLUMNS", "DENSE", "GROUP_BY", "answer", "build", "chain_text", "family", "figure", "group_replicates",
           "labels", "latency_label", "latency_noise", "load_runs", "main", "pareto", "path_component",
           "plot", "print_dropped", "print_frontier", "print_leaderboard", "report", "report_leaderboard", "sections",
           "vs_dense"]
