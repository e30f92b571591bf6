"""The lth_lenet_fashion study's extra tables: every lottery level, its controls and the paired differences.

A ``+method=lottery_ticket`` run logs each level (0 = the dense network trained ``method.epochs``) as a child run
with the level's figures (``lth/*``). They are read here through :func:`edgebench.report.load_runs` (the study's
runs carry where they are in ``runs.attrs``), paired by seed, and judged by the one effect rule of
:mod:`edgebench.stats` with Holm's correction over every per-level comparison of these tables.
"""

from __future__ import annotations

import math

from edgebench.stats import holm, mean_ci, paired, verdict

ARM = "lottery_ticket"
KEYS = ["lth/remaining", "lth/test_acc", "lth/early_stop_test_acc", "lth/best_val_step", "lth/reinit_test_acc",
        "lth/reinit_early_stop_test_acc", "lth/reinit_best_val_step", "lth/random_prune_test_acc", "lth/steps"]
CUT_OFF = 0.9  # an early-stopping iteration at or past this share of the level's iterations may be cut off by the budget
# per level >= 1: (name, (key at level L), (key, level 0 | None = level L | "dense" = the dense arm), scale, unit)
DIFFS = [("ticket - reinit, end", "lth/test_acc", ("lth/reinit_test_acc", None)),
         ("ticket - reinit, early stop", "lth/early_stop_test_acc", ("lth/reinit_early_stop_test_acc", None)),
         ("ticket - level 0, end", "lth/test_acc", ("lth/test_acc", 0)),
         ("ticket - level 0, early stop", "lth/early_stop_test_acc", ("lth/early_stop_test_acc", 0)),
         ("reinit - level 0, end", "lth/reinit_test_acc", ("lth/test_acc", 0)),
         ("ticket - dense, end", "lth/test_acc", ("test/acc", "dense")),
         ("ticket - level 0, early-stop iteration", "lth/best_val_step", ("lth/best_val_step", 0)),
         ("reinit - ticket, early-stop iteration", "lth/reinit_best_val_step", ("lth/best_val_step", None))]


def per_level(runs) -> dict[int, dict[str, dict[int, float]]]:
    """``{level: {key: {seed: value}}}`` from the child runs of the study's lottery runs."""
    from edgebench.report.studies import child_runs

    ours = runs[runs["study.arm"] == ARM]
    seed_of = {r["run_id"]: int(r["seed"]) for _, r in ours.iterrows()}
    if not seed_of:
        return {}
    kids = child_runs(seed_of, runs.attrs)  # from MLflow, or from the ledger's children file for a ledger's runs
    if "lth/level" not in kids:
        return {}
    kids = kids[kids["lth/level"].notna()]
    out: dict[int, dict[str, dict[int, float]]] = {}
    for _, k in kids.iterrows():
        level, seed = int(k["lth/level"]), seed_of[k["parent_run_id"]]
        for key in KEYS:
            if key in k and not math.isnan(float(k[key])):
                out.setdefault(level, {}).setdefault(key, {})[seed] = float(k[key])
    return out


def _pm(xs: dict, fmt: str = "{:.4f}", scale: float = 1.0) -> str:
    if not xs:
        return "-"
    m, h = mean_ci([xs[s] for s in sorted(xs)])
    return fmt.format(m * scale) + ("" if math.isnan(h) else " ± " + fmt.replace("+", "").format(h * scale))


def _pct(xs: dict) -> str:
    return f"{100 * mean_ci([xs[s] for s in sorted(xs)])[0]:.1f}%" if xs else "-"


def levels(study, runs, values) -> dict:
    lv = per_level(runs)
    if not lv:
        return {"markdown": "No lottery level runs found (child runs of the lottery_ticket arm).", "json": {}}
    dense = values["dense"]["test/acc"]
    lines = ["## Per level", "", "Mean ± half-width of the 95% t interval over the seeds; the iteration columns are the "
             "early-stopping iteration.", "",
             "| level | weights remaining | ticket end | ticket early stop | reinit end | reinit early stop | "
             "random mask end | ticket early-stop iter. | reinit early-stop iter. | n |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for L in sorted(lv):
        d = lv[L]
        n = len(d.get("lth/test_acc", {}))
        lines.append(f"| {L} | {_pct(d.get('lth/remaining', {}))} | {_pm(d.get('lth/test_acc', {}))} | "
                     f"{_pm(d.get('lth/early_stop_test_acc', {}))} | {_pm(d.get('lth/reinit_test_acc', {}))} | "
                     f"{_pm(d.get('lth/reinit_early_stop_test_acc', {}))} | {_pm(d.get('lth/random_prune_test_acc', {}))} | "
                     f"{_pm(d.get('lth/best_val_step', {}), '{:.0f}')} | {_pm(d.get('lth/reinit_best_val_step', {}), '{:.0f}')} | {n} |")
    # the paired differences, then Holm over all of them
    tests = []
    for L in sorted(x for x in lv if x >= 1):
        for name, a, (b, at) in DIFFS:
            left = lv[L].get(a, {})
            right = dense if at == "dense" else lv.get(L if at is None else at, {}).get(b, {})
            tests.append((L, name, paired(left, right)))
    adjusted = holm([t[2].p for t in tests])
    level0 = lv.get(0, {})
    gap = paired(level0.get("lth/test_acc", {}), dense)
    gap_es = paired(level0.get("lth/early_stop_test_acc", {}), dense)
    lines += ["", "## References", "",
              f"- Level 0 (the dense network trained as long as every ticket): {_pm(level0.get('lth/test_acc', {}))} at "
              f"the end, {_pm(level0.get('lth/early_stop_test_acc', {}))} at early stopping.",
              f"- Fully trained dense baseline (the dense arm): {_pm(dense)}.",
              f"- Level 0 minus the dense baseline, paired by seed: {100 * gap.mean:+.2f} pt "
              f"[{100 * gap.low:+.2f}, {100 * gap.high:+.2f}] at the end ({verdict(gap)}), {100 * gap_es.mean:+.2f} pt "
              f"[{100 * gap_es.low:+.2f}, {100 * gap_es.high:+.2f}] at early stopping ({verdict(gap_es)})."]
    lines += ["", f"## Paired differences by level (Holm over all {len(tests)} of them)", "",
              "Accuracy differences in points, iterations in training steps; mean [95% t interval], then the verdict "
              "of the one effect rule with Holm's adjusted p (an effect only when the interval excludes zero and "
              "the adjusted p < 0.05).", "",
              "| level | remaining | " + " | ".join(n for n, _, _ in DIFFS) + " |",
              "|---:|---:|" + "---|" * len(DIFFS)]
    rows, doc = {}, []
    for (L, name, d), p_adj in zip(tests, adjusted):
        v = verdict(d, p_adj)
        scale, fmt = (1.0, "{:+.0f}") if "iteration" in name else (100.0, "{:+.2f}")
        cell = "n/a" if d.n == 0 else (f"{fmt.format(scale * d.mean)} [{fmt.format(scale * d.low)}, "
                                       f"{fmt.format(scale * d.high)}]" + (f" **{v}**" if v in ("higher", "lower") else ""))
        rows.setdefault(L, []).append(cell)
        doc.append({"level": L, "comparison": name, "mean": d.mean, "low": d.low, "high": d.high, "n": d.n, "p": d.p,
                    "p_holm": p_adj, "verdict": v, "diffs": list(d.diffs), "seeds": list(d.seeds)})
    for L, cells in rows.items():
        lines.append(f"| {L} | {_pct(lv[L].get('lth/remaining', {}))} | " + " | ".join(cells) + " |")
    # findings, from the verdicts above
    pct = {L: 100 * mean_ci(list(lv[L]["lth/remaining"].values()))[0] for L in lv if lv[L].get("lth/remaining")}

    def where(name, v):
        return [round(pct[r["level"]], 1) for r in doc if r["comparison"] == name and r["verdict"] == v]

    reinit = [r for r in doc if r["comparison"] == "ticket - reinit, end"]
    sustained = next((pct[r["level"]] for i, r in enumerate(reinit) if all(e["verdict"] == "higher" for e in reinit[i:])),
                     None)
    findings = {"ticket_below_level0_at_pct": where("ticket - level 0, end", "lower"),
                "ticket_above_level0_at_pct": where("ticket - level 0, end", "higher"),
                "reinit_below_ticket_at_pct": where("ticket - reinit, end", "higher"),
                "reinit_below_ticket_early_stop_at_pct": where("ticket - reinit, early stop", "higher"),
                "reinit_below_ticket_from_pct_on": sustained,
                "reinit_below_level0_at_pct": where("reinit - level 0, end", "lower"),
                "ticket_above_dense_at_pct": where("ticket - dense, end", "higher"),
                "ticket_below_dense_at_pct": where("ticket - dense, end", "lower"),
                "ticket_stops_earlier_than_level0_at_pct": where("ticket - level 0, early-stop iteration", "lower"),
                "reinit_stops_later_than_ticket_at_pct": where("reinit - ticket, early-stop iteration", "higher")}
    # the budget: was the early-stopping iteration (minimum validation loss) inside the training, or at its end?
    cut = {}
    for branch, key in (("ticket", "lth/best_val_step"), ("reinit", "lth/reinit_best_val_step")):
        cut[branch] = [round(pct[L], 1) for L in sorted(lv) if L >= 1 and lv[L].get(key) and lv[L].get("lth/steps")
                       and mean_ci(list(lv[L][key].values()))[0] >= CUT_OFF * mean_ci(list(lv[L]["lth/steps"].values()))[0]]
    logged = any(lv[L].get("lth/steps") for L in lv)
    findings["early_stop_cut_off_at_pct"] = cut if logged else None
    f = findings
    budget_line = ("- The budget: the runs did not log the iterations per level (lth/steps), so whether early stopping "
                   "was cut off is not known." if not logged else
                   "- The budget: early stopping (mean over seeds) at or past "
                   f"{CUT_OFF:.0%} of a level's iterations, so possibly cut off by the budget, for tickets at: "
                   f"{cut['ticket'] or 'no level'}; for reinit at: {cut['reinit'] or 'no level'}"
                   + (" (their early-stop comparisons are not comparable to the paper's: train longer)."
                      if cut["ticket"] or cut["reinit"] else "."))
    lines += ["", "## Findings (from the verdicts above; % of weights remaining)", "", budget_line,
              f"- Tickets below level 0 at the end of training at: {f['ticket_below_level0_at_pct'] or 'no level'}; "
              f"above it at: {f['ticket_above_level0_at_pct'] or 'no level'}.",
              f"- Reinit below its ticket at: {f['reinit_below_ticket_at_pct'] or 'no level'} (end), "
              f"{f['reinit_below_ticket_early_stop_at_pct'] or 'no level'} (early stop); reinit below level 0 at: "
              f"{f['reinit_below_level0_at_pct'] or 'no level'}.",
              f"- Tickets above the fully trained dense baseline at: {f['ticket_above_dense_at_pct'] or 'no level'}; "
              f"below it at: {f['ticket_below_dense_at_pct'] or 'no level'}.",
              f"- Tickets stop earlier than level 0 at: {f['ticket_stops_earlier_than_level0_at_pct'] or 'no level'}; "
              f"reinit stops later than its ticket at: {f['reinit_stops_later_than_ticket_at_pct'] or 'no level'}.",
              "- **The paper's reinit degradation "
              + (f"reproduces**: from {sustained:.1f}% remaining on, every level's reinit is below its ticket (the "
                 "paper: from about 21%)." if sustained is not None else "does not reproduce as a sustained effect** "
                 "in this budget.")]
    means = {L: {k: mean_ci(list(v.values())) for k, v in d.items()} for L, d in lv.items()}
    return {"markdown": "\n".join(lines),
            "json": {"per_level": {str(L): {k: {str(s): x for s, x in v.items()} for k, v in d.items()}
                                   for L, d in sorted(lv.items())},
                     "mean": {str(L): {k: {"mean": m, "half": h} for k, (m, h) in d.items()} for L, d in means.items()},
                     "paired_differences": doc, "findings": findings,
                     "level0_minus_dense": {"end": [gap.mean, gap.low, gap.high], "early_stop": [gap_es.mean, gap_es.low, gap_es.high]}}}
