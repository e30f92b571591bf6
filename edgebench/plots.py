"""The figures of a method's report and matplotlib's entry point, kept importable here for the pipeline, the
methods' docs and the experiments: they live in :mod:`edgebench.report.method_plots` and
:mod:`edgebench.report.plots`."""

from edgebench.report.method_plots import DRAWERS, draw, glimpse_paths, kure_robustness, lottery_levels
from edgebench.report.plots import pyplot

__all__ = ["DRAWERS", "draw", "glimpse_paths", "kure_robustness", "lottery_levels", "pyplot"]
