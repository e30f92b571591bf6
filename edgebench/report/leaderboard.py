"""The leaderboard: per device profile and method family, the most accurate model (by validation accuracy) that fits,
with its test accuracy against the dense reference's paired by seed, built on the report's table
(:func:`edgebench.report.table.build`) and rendered by :mod:`edgebench.report.render`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from edgebench import stats
from edgebench.config import device_profiles  # noqa: F401  (re-exported: the board's default devices)
from edgebench.report import render
from edgebench.report.compare import COLUMNS as COMPARED, against, word
from edgebench.report.load import DENSE, load_runs
from edgebench.report.plots import plot
from edgebench.report.replicates import BY_SEED, VAL_LOSS_BY_SEED
from edgebench.report.table import build, frontiers

QUANT_STEPS = {"ptq_int8", "qat_int8", "fp16", "bf16", "uniform_quant", "nonuniform_quant", "kure"}
KBIT = {"uniform_quant", "nonuniform_quant", "kure"}  # k-bit codes: no runtime loads them (size-only on the board)
FAMILY = {"magnitude_pruning": "unstructured pruning", "random_pruning": "unstructured pruning",
          "structured_pruning": "structured pruning", "lottery_ticket": "lottery ticket", "low_rank": "low rank",
          "low_rank_sparse": "low rank + sparse", "distillation": "distillation"}


def family(chain: str) -> str:
    """A run's method family from its chain (tag ``chain``, e.g. ``structured_pruning->ptq_int8``).

    The family of its compressing step (unstructured or structured pruning, lottery ticket, low rank, low rank +
    sparse, distillation; ``Deep Compression`` for unstructured pruning followed by k-bit codes; ``chain`` for two
    or more compressing steps); with quantisation alone, the quantisation (``int8 PTQ``, ``int8 QAT``, ``k-bit
    codes``, ``fp16 / bf16``); ``dense`` for none. A final quantisation step is how the model is deployed, not its
    family."""
    steps = [s for s in str(chain or "none").split("->") if s and s != "none"]
    rest = [s for s in steps if s not in QUANT_STEPS]
    quant = [s for s in steps if s in QUANT_STEPS]
    if not steps:
        return "dense"
    if not rest:
        if "qat_int8" in quant:
            return "int8 QAT"
        if "ptq_int8" in quant:
            return "int8 PTQ"
        return "k-bit codes" if KBIT & set(quant) else "fp16 / bf16"
    if len(rest) > 1:
        return "chain"
    fam = FAMILY.get(rest[0], rest[0])
    if fam == "unstructured pruning" and KBIT & set(quant):
        return "Deep Compression"
    return fam


def chain_text(row: pd.Series) -> str:
    """A short name for what a run did: its steps with the settings that were set, e.g.
    ``structured_pruning(ratio=0.5, retrain_epochs=2) -> ptq_int8``, from the run's ``steps`` param when it has one
    (a chain), else its chain and label; ``dense`` for none."""
    import ast

    steps = row.get("steps")
    if isinstance(steps, str) and steps.startswith("["):
        try:
            items = ast.literal_eval(steps)
        except (ValueError, SyntaxError):
            items = None
        if isinstance(items, list) and items:
            parts = []
            for it in items:
                if isinstance(it, dict):
                    knobs = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in it.items() if k != "name" and v is not None)
                    parts.append(f"{it.get('name', '?')}({knobs})" if knobs else str(it.get("name", "?")))
                else:
                    parts.append(str(it))
            return " -> ".join(parts)
    chain = str(row.get("chain") or row.get("pipeline") or row.get("method") or DENSE)
    if chain in (DENSE, "nan"):
        return "dense"
    label = str(row.get("label") or "").split("steps=")[0]  # a chain's steps are shown above, when parsed
    label = " ".join(p for p in label.split() if not p.startswith("model="))
    return f"{chain} {label}".strip()


def by_validation(g: pd.DataFrame, acc: str = "select/val_acc", loss: str = "select/val_loss",
                  size: str = "size/bytes_artifact") -> pd.DataFrame:
    """``g`` most accurate on validation first; an exact tie in validation accuracy (two int8 files of one net often
    classify the same number of validation images right) goes to the lower validation loss, then the smaller file,
    then the order given: the pick never depends on how a sort breaks ties."""
    keys = [c for c in (acc, loss, size) if c in g]
    return g.sort_values(keys, ascending=[c != acc for c in keys], kind="mergesort", na_position="last")


def _pick(g: pd.DataFrame, fam: str) -> tuple[pd.Series | None, str]:
    """A family's row on one device: the dense reference (the most accurate dense group, fitting or not), else the
    group with the highest validation accuracy that fits; ``(None, why)`` when none fits."""
    if fam == "dense":
        pick = by_validation(g).iloc[0]
        return pick, "reference, fits" if pick["fits"] else "reference, does not fit"
    fit = g[g["fits"] & g["select/val_acc"].notna()]
    if len(fit):
        return by_validation(fit).iloc[0], "best that fits"
    reasons = g.get("device.fit", pd.Series(dtype=object)).dropna()
    why = reasons.mode().iloc[0] if len(reasons) else "no replicate fits"
    return None, f"nothing fits ({len(g)} tried): {why}"


# Families whose compression the deployed file does not realise: the device's runtime loads a dense file
SIZE_ONLY = {"unstructured pruning": "the runtime has no sparse kernels and loads the dense file",
             "Deep Compression": "no runtime loads k-bit codes or sparse weights: the file is dense",
             "k-bit codes": "no runtime loads k-bit codes: the file holds the dequantised weights",
             "low rank + sparse": "no runtime has sparse kernels: the file stores the sparse part S as a dense tensor"}


def size_note(fam: str, pick: pd.Series) -> str:
    """What the row's bytes are for a family whose compression no runtime realises: the file as loaded, with the
    analytic encoding (``size/bytes_sparse``, at the stored bit width) as a size-only figure."""
    if fam not in SIZE_ONLY:
        return ""
    sparse = pick.get("size/bytes_sparse", np.nan)
    enc = f"; {sparse:,.0f} B as an analytic encoding (size only)" if pd.notna(sparse) else ""
    return f"{SIZE_ONLY[fam]}{enc}"


def _row(device: str, fam: str, status: str, pick: pd.Series) -> dict:
    note = size_note(fam, pick)
    if status == "reference, does not fit" and isinstance(pick.get("device.fit"), str):
        note = pick["device.fit"]  # why (the flash, the RAM, or a format that cannot hold the model)
    return {"device": device, "family": fam, "status": status, "note": note, "model": pick["model"],
            "chain": chain_text(pick), "label": pick["label"], "replicates": pick["replicates"],
            "val_acc": pick["select/val_acc"], "val_loss": pick.get("select/val_loss", np.nan),
            "test_acc": pick["test/acc"],
            "test_acc_ci": pick["test/acc_ci"], "bytes_artifact": pick["size/bytes_artifact"],
            "ram_bytes": pick["device/ram_bytes"], "ram_source": pick.get("device.ram_source", np.nan),
            "latency_ms_est": pick["device/latency_ms_est"], "energy_mj_est": pick["device/energy_mj_est"],
            "latency_low": pick.get("device/latency_ms_low", np.nan),
            "latency_high": pick.get("device/latency_ms_high", np.nan),
            "runtime": pick.get("device.runtime", np.nan), "format": pick.get("export.name", np.nan),
            "fits": bool(pick["fits"]), "run_ids": pick["run_ids"], "test_acc_by_seed": pick.get(BY_SEED, {})}


# The leaderboard's second selection rule, declared before its study ran (2026-12-06): per device, the smallest file
# (bytes) among the groups that fit whose validation loss, paired by seed with the dense reference's, is at most this
# much higher (the whole 95% interval of candidate - dense at or below it). Cross-entropy in nats per example; 0.02
# is a choice (about a 2% relative change in the likelihood of the correct class), not a figure from a paper.
VAL_LOSS_TOLERANCE = 0.02


def smallest_within_tolerance(d: pd.DataFrame, tolerance: float = VAL_LOSS_TOLERANCE) -> dict | None:
    """Of one device's groups, the smallest that fits with paired validation loss to its dense reference within
    ``tolerance`` (non-inferiority: the interval's upper end); None when none qualifies or no dense reference has
    per-seed validation losses."""

    dense = d[(d["family"] == "dense")]
    if dense.empty or VAL_LOSS_BY_SEED not in d:
        return None
    ref = dense.sort_values("select/val_acc", ascending=False).iloc[0]
    ref_loss = ref.get(VAL_LOSS_BY_SEED)
    if not isinstance(ref_loss, dict) or len(ref_loss) < 2:
        return None
    best = None
    for _, r in d[d["fits"] & (d["family"] != "dense")].iterrows():
        loss = r.get(VAL_LOSS_BY_SEED)
        if not isinstance(loss, dict):
            continue
        diff = stats.paired(loss, ref_loss)
        if diff.n >= 2 and not np.isnan(diff.half) and diff.high <= tolerance:
            if best is None or r["size/bytes_artifact"] < best["bytes_artifact"]:
                best = {"family": r["family"], "model": r["model"], "chain": chain_text(r),
                        "bytes_artifact": r["size/bytes_artifact"], "val_loss_vs_dense": diff.mean,
                        "val_loss_vs_dense_ci": diff.half, "n": diff.n, "test_acc": r["test/acc"],
                        "test_acc_ci": r["test/acc_ci"]}
    return best


def _versus_reference(board: pd.DataFrame) -> pd.DataFrame:
    """Each family's pick against its device's dense reference, paired by seed and Holm-corrected over the board
    (:func:`edgebench.report.compare.against`)."""
    refs = {}
    if "model" in board:
        for _, g in board.groupby("device", sort=False):
            dense = g[(g["family"] == "dense") & g["model"].notna()]
            if len(dense) == 1:
                refs |= {i: dense.iloc[0]["test_acc_by_seed"] for i in g.index
                         if g.at[i, "family"] != "dense" and pd.notna(g.at[i, "model"])}
    compared = against(board, refs, by_seed="test_acc_by_seed")
    for col in COMPARED:
        board[col] = compared[col]
    board.attrs["comparisons"] = compared.attrs["comparisons"]
    return board


def leaderboard(df: pd.DataFrame, devices: list[str] | None = None, reference_model: str | None = None) -> pd.DataFrame:
    """Per device profile and method family, the group (replicates averaged, :func:`build`) with the highest mean
    validation accuracy (``select/val_acc``: never the test split) among those that fit the device, plus the most
    accurate dense group as the reference whether it fits or not, each with its test accuracy against the
    reference's, paired by seed (:data:`edgebench.report.compare.COLUMNS`). A family with runs of which none fits
    gets a row saying so, with the reason the device gave; a profile without runs gets one row saying that.

    ``reference_model``: a board about one model (the recurrent attention model's section): its families as usual,
    its dense group the reference, and every other model's groups candidates of their own (``conv2_small dense``,
    ``conv2_small int8 PTQ``), compared with that reference."""
    if "edgebench.child" in df:  # a chain's intermediate steps are not deployables of their own
        df = df[df["edgebench.child"] != "true"]
    chain_col = next((c for c in ("chain", "pipeline") if c in df), "method")  # "pipeline": runs before issue 26
    df = df.assign(family=df[chain_col].map(family), chain=df[chain_col].fillna("none"))
    if reference_model is not None:
        other = df["model"] != reference_model
        df.loc[other, "family"] = df.loc[other, "model"] + " " + df.loc[other, "family"]
    rows, smallest = [], {}
    for device in devices or device_profiles():
        d = df[df["device"] == device]
        if d.empty:
            rows.append({"device": device, "family": "", "status": "no runs for this device"})
            continue
        smallest[device] = smallest_within_tolerance(d)
        for fam in ["dense"] + sorted(f for f in d["family"].unique() if f != "dense"):
            g = d[d["family"] == fam]
            if g.empty:
                continue
            pick, status = _pick(g, fam)
            rows.append({"device": device, "family": fam, "status": status} if pick is None else
                        _row(device, fam, status, pick))
    board = _versus_reference(pd.DataFrame(rows))
    board.attrs["smallest_within_tolerance"] = smallest
    board.attrs["runner_up"] = runner_up(board)
    for col in RUNNER_UP:  # on the winner's row, for the CSV
        board[col] = pd.Series(np.nan, index=board.index, dtype=object)
    for r in board.attrs["runner_up"].values():
        board.loc[r["row"], RUNNER_UP] = [r["runner_up"], r["diff"], r["ci"], r["n"], r["p_holm"], r["effect"]]
    return board


RUNNER_UP = ["runner_up", "vs_runner_up", "vs_runner_up_ci", "vs_runner_up_n", "vs_runner_up_p_holm",
             "effect_vs_runner_up"]


FITS = ("best that fits", "reference, fits")
# Seeds the board asks for when its winner and runner-up on a device are within an interval (issue 28: 3 seeds
# minimum, 5 where two candidates are within an interval)
TIE_SEEDS = 5


def ranked(g: pd.DataFrame) -> pd.DataFrame:
    """One device's rows that fit, most accurate on validation first: the winner, the runner-up, ... (the one
    selection rule that :func:`answer`, :func:`runner_up` and :func:`short_table` read)."""
    if "status" not in g or "val_acc" not in g:
        return g.iloc[0:0]
    return by_validation(g[g["status"].isin(FITS) & g["val_acc"].notna()], "val_acc", "val_loss", "bytes_artifact")


def runner_up(board: pd.DataFrame) -> dict:
    """Per device, its winner (the fitting row with the highest validation accuracy, as :func:`answer` names it)
    against the runner-up (the next one), test accuracy paired by seed, Holm-corrected over the devices compared:
    ``{device: {winner, runner_up, diff, ci, n, p, p_holm, effect, same, tie}}``. ``same``: the same test accuracy on
    every paired seed. ``tie``: not distinguishable while fewer than
    :data:`TIE_SEEDS` seeds are paired and the two differ on some seed (both candidates need more seeds before the
    board may rank them; two that predict the same on every seed would not separate with more)."""

    if "val_acc" not in board or "status" not in board:
        return {}
    found = {}
    for device, g in board.groupby("device", sort=False):
        fits = ranked(g)
        if len(fits) < 2:
            continue
        a, b = fits.iloc[0], fits.iloc[1]
        by_a, by_b = a.get("test_acc_by_seed"), b.get("test_acc_by_seed")
        d = stats.paired(by_a if isinstance(by_a, dict) else {}, by_b if isinstance(by_b, dict) else {})
        found[device] = (a, b, d)
    tested = [k for k, (_, _, d) in found.items() if not np.isnan(d.p)]
    adjusted = dict(zip(tested, stats.holm([found[k][2].p for k in tested])))
    out = {}
    for device, (a, b, d) in found.items():
        effect = word(d, adjusted.get(device) if len(tested) > 1 else None)
        out[device] = {"row": a.name, "winner": _candidate(a), "runner_up": _candidate(b),
                       "runner_up_chain": b["chain"], "diff": d.mean, "ci": d.half, "n": d.n, "p": d.p,
                       "p_holm": adjusted.get(device, np.nan), "effect": effect,
                       "same": bool(d.n) and all(x == 0 for x in d.diffs),
                       "tie": effect == "none" and d.n < TIE_SEEDS and any(x != 0 for x in d.diffs)}
    return out


def _candidate(r: pd.Series) -> str:
    """``lenet5 int8 PTQ``: a row's model and family (once, when the family already names the model)."""
    fam = str(r["family"])
    return fam if fam.startswith(f"{r['model']} ") else f"{r['model']} {fam}"


def runner_up_text(r: dict | None) -> str:
    """The answer's sentence on the runner-up (:func:`runner_up`)."""
    if not r or r["effect"] == "n/a":
        return ""
    diff = f"{render.pt(r['diff'], r['ci'])} pt, n={r['n']}"
    if r.get("same"):  # the same test accuracy on every seed: more seeds would not separate them
        return (f" **Runner-up** {r['runner_up']} ({r['runner_up_chain']}): the same test accuracy on every seed "
                f"({diff}).")
    if r["effect"] == "none":
        more = (f" (the board's rule: {TIE_SEEDS} seeds for two candidates within an interval; "
                f"{r['n']} so far: both arms' further seeds go under the study's budgets.full.more_seeds)"
                if r["tie"] else f" at {r['n']} seeds, the board's rule for two candidates within an interval"
                if r["n"] >= TIE_SEEDS else "")
        why = _why_none(r["diff"], r["ci"])
        return (f" **Runner-up** {r['runner_up']} ({r['runner_up_chain']}): not distinguishable by test accuracy "
                f"({diff}, paired by seed: {why}){more}.")
    return (f" **Runner-up** {r['runner_up']} ({r['runner_up_chain']}): the winner's test accuracy is "
            f"{r['effect']} ({diff}, paired by seed).")


def _paired_text(r: pd.Series) -> str:
    p = r.get("vs_dense_p_holm", np.nan)
    holm = "" if p is None or pd.isna(p) else f", Holm p={p:.2g}"
    return f"paired by seed: {render.pt(r['vs_dense'], r['vs_dense_ci'])} pt, n={int(r['vs_dense_n'])}{holm}"


def _why_none(d: float, ci: float) -> str:
    """Why a paired difference ``d`` ± ``ci`` is not an effect (:func:`edgebench.stats.why_not_effect`), Holm's
    family being the board."""
    return stats.why_not_effect(float(d), float(ci), family="the board")


def _latency_text(r: pd.Series) -> str:
    """``, latency 22.8 ms (band 12.6-43.8 ms; estimate for tflite_micro+cmsis_nn)``, or ``~0.0525 ms (uncalibrated
    estimate ...)``; empty without an estimate."""
    ms = r.get("latency_ms_est", np.nan)
    if ms is None or pd.isna(ms):
        return ""
    runtime = f" for {r['runtime']}" if isinstance(r.get("runtime"), str) else ""
    lo, hi = r.get("latency_low", np.nan), r.get("latency_high", np.nan)
    if pd.isna(lo) or pd.isna(hi):
        return f", latency ~{ms:.3g} ms (uncalibrated estimate{runtime})"
    return f", latency {ms:.3g} ms (band {lo:.3g}-{hi:.3g} ms; estimate{runtime})"


def answer(g: pd.DataFrame) -> str:
    """One device's answer in a sentence: the most accurate model (by validation accuracy) that fits, with its method
    and cost, and whether its test accuracy differs from the dense reference's, paired by seed (the verdict of
    :func:`leaderboard`, Holm-corrected over the board)."""
    fits = ranked(g)
    if fits.empty:
        return "**Answer:** nothing edgebench made fits this device in its own format (reasons below)."
    best = fits.iloc[0]
    dense = g[g["family"] == "dense"]
    vs = ""
    if len(dense) and best["family"] != "dense" and pd.notna(dense.iloc[0].get("test_acc")):
        d = dense.iloc[0]
        e = best.get("effect_vs_dense", "n/a")
        vs = {"higher": f"; test accuracy above the dense reference's ({_paired_text(best)})",
              "lower": f"; test accuracy below the dense reference's ({_paired_text(best)})",
              "none": f"; test accuracy not distinguishable from the dense reference's ({_paired_text(best)}: "
                      f"{_why_none(best.get('vs_dense'), best.get('vs_dense_ci'))})",
              "n/a": ""}[e]
        if pd.notna(d["bytes_artifact"]) and d["bytes_artifact"]:
            vs += f", at {best['bytes_artifact'] / d['bytes_artifact']:.0%} of its bytes"
    if best["family"] == "dense" and len(fits) > 1:  # a smaller model as good, paired by seed, is worth naming
        same = [r for _, r in fits[fits["family"] != "dense"].iterrows() if r.get("effect_vs_dense") in ("none", "higher")]
        if same:
            small = min(same, key=lambda r: r["bytes_artifact"])
            higher = small.get("effect_vs_dense") == "higher"
            vs = (f"; {small['family']} ({small['chain']}) "
                  + ("is above it by test accuracy " if higher else "is not distinguishable from it by test accuracy ")
                  + f"({render.pm(small['test_acc'], small['test_acc_ci'])}; {_paired_text(small)}"
                  + ("" if higher else f": {_why_none(small.get('vs_dense'), small.get('vs_dense_ci'))}") + ") at "
                  f"{small['bytes_artifact'] / best['bytes_artifact']:.0%} of its bytes")
    ram = (f", RAM {best['ram_bytes']:,.0f} B ({render.ram_label(best['ram_source'])})"
           if pd.notna(best.get("ram_bytes")) else "")
    lat = _latency_text(best)
    fam = str(best["family"]).removeprefix(f"{best['model']} ")  # a board about one model names the others' families
    what = "dense, uncompressed" if fam == "dense" else f"{fam}: {best['chain']}"
    text = (f"**Answer:** {best['model']}, {what}: test accuracy {render.pm(best['test_acc'], best['test_acc_ci'])}, "
            f"{best['bytes_artifact']:,.0f} B{ram}{lat}{vs}.")
    device = str(g["device"].iloc[0]) if len(g) else ""
    text += runner_up_text((g.attrs.get("runner_up") or {}).get(device))
    small = (g.attrs.get("smallest_within_tolerance") or {}).get(str(g["device"].iloc[0])) if len(g) else None
    if small:
        text += (f" **Smallest within tolerance** (validation loss at most {VAL_LOSS_TOLERANCE} nats above the dense "
                 f"reference's, paired by seed): {small['model']}, {small['chain']}, {small['bytes_artifact']:,.0f} B "
                 f"(validation loss {render.pm(small['val_loss_vs_dense'], small['val_loss_vs_dense_ci'], '{:+.3f}', '{:.3f}')} "
                 "vs dense, "
                 f"n={small['n']}; test accuracy {render.pm(small['test_acc'], small['test_acc_ci'])}).")
    return text


def markdown(board: pd.DataFrame, title: str, plots: list[str], dropped: list[dict] = ()) -> str:
    """``leaderboard.md``: :func:`short_table`, then :func:`edgebench.report.render.leaderboard_markdown` with each
    device's :func:`answer`."""
    answers = {}
    for device, g in board.groupby("device", sort=False):
        g.attrs["smallest_within_tolerance"] = board.attrs.get("smallest_within_tolerance", {})
        g.attrs["runner_up"] = board.attrs.get("runner_up", {})
        answers[device] = answer(g)
    text = render.leaderboard_markdown(board, title, plots, dropped, answers)
    head, rest = text.split("\n", 1)
    return f"{head}\n\n## The short answer\n\n{short_table(board)}\n{rest}"


def short_table(board: pd.DataFrame) -> str:
    """One line per device: the most accurate model that fits (by validation accuracy, as :func:`answer` picks), in
    the format its runtime loads, with its test accuracy, its difference from the dense reference paired by seed,
    bytes, RAM and latency with their basis; what the README shows."""
    lines = ["| device | most accurate that fits (family, file) | test acc | vs dense, paired (pt) | bytes | RAM | "
             "latency (estimate) |", "|---|---|---:|---:|---:|---:|---:|"]
    for device, g in board.groupby("device", sort=False):
        fits = ranked(g)
        if fits.empty:
            why = g["status"].iloc[0] if "status" in g and len(g) == 1 else "nothing edgebench made fits"
            lines.append(f"| {device} | {why} | | | | | |")
            continue
        b = fits.iloc[0]
        fam = str(b["family"]).removeprefix(f"{b['model']} ")
        fmt = f" ({b['format']})" if isinstance(b.get("format"), str) else ""
        vs = "reference" if b["family"] == "dense" else (
            f"{render.pt(b['vs_dense'], b['vs_dense_ci'])} ({EFFECT_WORDS.get(b['effect_vs_dense'], b['effect_vs_dense'])})"
            if pd.notna(b.get("vs_dense"))
            else "n/a")
        ram = (f"{b['ram_bytes']:,.0f} B ({render.ram_label(b['ram_source'])})" if pd.notna(b.get("ram_bytes"))
               else "–")
        lat = _latency_text(b).removeprefix(", latency ") or "–"
        lines.append(f"| {device} | {b['model']}, {fam}{fmt} | {render.pm(b['test_acc'], b['test_acc_ci'])} | {vs} "
                     f"| {b['bytes_artifact']:,.0f} | {ram} | {lat} |")
    return "\n".join(lines) + "\n"


EFFECT_WORDS = {"none": "not distinguishable"}  # the report's short verdict word, as the results files say it


def csv_table(board: pd.DataFrame) -> pd.DataFrame:
    """The board as ``leaderboard.csv``: one column per seed's test accuracy (``test_acc_seed<N>``: what the paired
    comparisons read) instead of the dict, so the file can be checked without edgebench."""
    out = board.drop(columns=["test_acc_by_seed"], errors="ignore").copy()
    by_seed = board.get("test_acc_by_seed", pd.Series(dtype=object))
    seeds = sorted({int(s) for d in by_seed if isinstance(d, dict) for s in d})
    for s in seeds:
        out[f"test_acc_seed{s}"] = [d.get(s, d.get(str(s), np.nan)) if isinstance(d, dict) else np.nan for d in by_seed]
    return out


DEPLOYED_BYTES = "bytes of the deployed file (as the device's runtime loads it)"


def deployed(table: pd.DataFrame) -> pd.DataFrame:
    """The report table as the board's figure draws it: bytes are the file as the device loads it (not the smallest
    encoding: no device runtime loads sparse or k-bit codes), the Pareto frontier chosen again on them (on
    validation accuracy) across the models of a data set (which model a device should take), points named by their
    model only (the colour is the chain)."""
    out = table.assign(bytes=table["size/bytes_artifact"], label=table["model"])
    frontiers(out, by=["data"])
    return out


def write_board(table: pd.DataFrame, devices: list[str] | None, out: Path, stem: str,
                title: str, reference_model: str | None = None) -> tuple[pd.DataFrame, str]:
    """:func:`leaderboard` of a report table (:func:`build`), written as ``<out>/<stem>.csv`` (per-seed columns) and
    ``.png`` (accuracy against bytes, one panel per device); returns the board and its markdown."""
    board = leaderboard(table, devices, reference_model)
    out.mkdir(parents=True, exist_ok=True)
    csv_table(board).to_csv(out / f"{stem}.csv", index=False)
    png = plot(deployed(table), "bytes", DEPLOYED_BYTES, "pareto_bytes", out / f"{stem}.png",
               "Accuracy against size, per device", by=["data"])  # the models side by side: which one fits
    return board, markdown(board, title, [png.name] if png else [], table.attrs.get("dropped", []))


def report_leaderboard(tracking_uri: str, experiment: str = "edgebench", sweep: str | None = None,
                       out: str | Path | None = None) -> pd.DataFrame:
    """``python -m edgebench.report --leaderboard``: :func:`leaderboard` of the store (or one sweep) written to
    ``<out>/leaderboard.md`` and ``.csv`` with an accuracy-against-bytes plot (one panel per device), and printed."""
    runs = load_runs(tracking_uri, experiment, sweep)
    if runs.empty:
        raise SystemExit(f"no finished runs in experiment {experiment!r}" + (f" for sweep {sweep}" if sweep else ""))
    df, _, _ = build(runs, runs.attrs.get("swept_keys", []))
    out = Path(out or "results")
    title = f"edgebench leaderboard: {sweep or experiment}"
    board, text = write_board(df, None, out, "leaderboard", title)
    (out / "leaderboard.md").write_text(text)
    render.print_leaderboard(board, title)
    render.print_dropped(df.attrs.get("dropped", []))
    print(f"wrote {out / 'leaderboard.md'} and {out / 'leaderboard.csv'}")
    return board


def study(study, df: pd.DataFrame, values, context: dict) -> dict:
    """The ``extra:`` hook of a study over devices (``conf/study/leaderboard.yaml``): the board of the study's runs
    (:func:`write_board`: ``NAME.csv`` and ``NAME.png`` beside the report) as markdown under the report's own title.
    ``extra_args: {reference_model: NAME}``: a board about one model (:func:`leaderboard`)."""
    unknown = set(study.extra_args) - {"reference_model"}
    if unknown:
        raise ValueError(f"{study.name}: extra_args {sorted(unknown)} unknown to the leaderboard; it takes "
                         "reference_model (a board about one model)")
    df, partial = complete_arms(study, df, context["budget"])
    if df.empty:
        return {"markdown": "No arm has finished all its seeds yet: no board.\n", "json": []}
    table, _, _ = build(df, [])
    board, text = write_board(table, study.devices_at(context["budget"]), Path(context["out_dir"]),
                              study.name, study.title, study.extra_args.get("reference_model"))
    text = text.split("\n", 2)[2]
    if study.extra_args.get("reference_model") is None:
        text += "\n" + per_net(table, study.devices_at(context["budget"]))
    if partial:
        text = ("**Not on the board yet, or not with all its seeds** (an arm joins when every seed of the budget "
                "has finished, and its more seeds when all of them have, so that each comparison is paired over one "
                "set of seeds): " + "; ".join(partial) + ".\n\n" + text)
    return {"markdown": text, "json": json_records(board)}


def per_net(table: pd.DataFrame, devices: list[str] | None) -> str:
    """Per device and net, the net's most accurate file (on validation) that fits, by the board's own rule
    (:func:`leaderboard` on that net's groups, :func:`ranked`): which family, its test accuracy, the file's bytes and
    its RAM with how it was obtained. The board above names one net per family; this shows every net, so that a net
    whose activations, not its weights, decide the fit is seen on each device."""
    if "model" not in table or table["model"].nunique() < 2:
        return ""
    models = sorted(table["model"].dropna().unique())
    cells: dict[tuple[str, str], str] = {}
    order: list[str] = []
    for m in models:
        board = leaderboard(table[table["model"] == m], devices)
        for device, g in board.groupby("device", sort=False):
            if device not in order:
                order.append(device)
            fits = ranked(g)
            if fits.empty:
                cells[(device, m)] = "nothing fits"
                continue
            r = fits.iloc[0]
            ram = ("" if pd.isna(r.get("ram_bytes")) else
                   f", RAM {r['ram_bytes'] / 1000:,.1f} kB ({render.ram_label(r['ram_source'])})")
            cells[(device, m)] = (f"{r['family']}: {r['test_acc']:.4f}, {r['bytes_artifact'] / 1000:,.1f} kB{ram}")
    rows = ["| device | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    rows += [f"| {d} | " + " | ".join(cells.get((d, m), "no runs") for m in models) + " |" for d in order]
    return ("## Per net\n\nEach net's most accurate file that fits each device (validation picks it; test accuracy "
            "shown; mean over the seeds; kB = 1,000 bytes), by the board's own rule: the board above keeps one net "
            "per family, this table keeps every net.\n\n" + "\n".join(rows) + "\n")


def complete_arms(study, df: pd.DataFrame, budget: str) -> tuple[pd.DataFrame, list[str]]:
    """The runs of the arms whose every seed (at ``budget``, :meth:`edgebench.study.Study.seeds_of`) finished on
    at least one device, and ``"arm (n of N seeds)"`` for each arm left out with some runs. An arm whose
    ``more_seeds`` have not all finished stays on the board with the budget's seeds (its extra seeds join together,
    so that its comparisons are paired over one set of seeds), and is named with how many it has."""
    from edgebench.report.studies import ARM

    base = set(study.budgets[budget].seeds)
    keep, partial = [], []
    for arm, g in df.groupby(ARM, sort=False):
        want = set(study.seeds_of(arm, budget)) if arm in study.arms else set()
        have = {int(x) for x in g["seed"].dropna()}
        if want and want <= have:
            keep.append(g)
        elif want and base <= have:
            keep.append(g[g["seed"].isin(base)])
            partial.append(f"{arm} (on the board with seeds {', '.join(map(str, sorted(base)))}: "
                           f"{len(have & want)} of its {len(want)} seeds have finished)")
        else:
            partial.append(f"{arm} ({len(have & want)} of {len(want)} seeds)")
    return (pd.concat(keep) if keep else df.iloc[:0]), partial


def json_records(board: pd.DataFrame) -> list[dict]:
    """The board's rows for the study's JSON, as in the CSV (a column per seed), NaN as null."""
    rows = csv_table(board).to_dict("records")
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in rows]


def fine_tuning_ranking(study, df: pd.DataFrame, values) -> dict:
    """The ``extra:`` hook of ``leaderboard_budget``: does the longer fine-tuning change the families' ranking?
    Its arms ``FAMILY x1`` / ``FAMILY x3`` are ranked by mean validation accuracy at each budget (never test; an
    exact tie goes to the lower mean validation loss, as on the board); the
    table gives both ranks, Kendall's tau between them, and for each pair that swaps, its paired validation difference
    by seed at the longer budget (a swap whose interval covers zero is a tie, not a change of ranking)."""
    from scipy.stats import kendalltau

    from edgebench.report.studies import ARM

    val = "select/val_acc"
    by_arm = {a: dict(zip(g["seed"].astype(int), g[val])) for a, g in df.dropna(subset=[val]).groupby(ARM)}
    names = {a.rsplit(" ", 1)[0] for a in by_arm if a.endswith((" x1", " x3"))}
    fams = sorted(f for f in names if f"{f} x1" in by_arm and f"{f} x3" in by_arm)
    if len(fams) < 2:
        return {}
    mean = {(f, b): float(np.mean(list(by_arm[f"{f} {b}"].values()))) for f in fams for b in ("x1", "x3")}
    loss = df.groupby(ARM)["select/val_loss"].mean() if "select/val_loss" in df else pd.Series(dtype=float)
    # the board's own order (by_validation): an exact tie on validation accuracy goes to the lower validation loss
    rank = {b: {f: i + 1 for i, f in enumerate(by_validation(pd.DataFrame(
        {"select/val_acc": [mean[(f, b)] for f in fams], "select/val_loss": [loss.get(f"{f} {b}", np.nan) for f in fams]},
        index=fams)).index)} for b in ("x1", "x3")}
    tau = kendalltau([rank["x1"][f] for f in fams], [rank["x3"][f] for f in fams]).statistic
    rows = ["| family | val acc x1 | rank x1 | val acc x3 | rank x3 |", "|---|---:|---:|---:|---:|"]
    rows += [f"| {f} | {mean[(f, 'x1')]:.4f} | {rank['x1'][f]} | {mean[(f, 'x3')]:.4f} | {rank['x3'][f]} |"
             for f in sorted(fams, key=lambda f: rank["x3"][f])]
    swaps, out = [], []
    for i, f in enumerate(fams):
        for g in fams[i + 1:]:
            if (rank["x1"][f] - rank["x1"][g]) * (rank["x3"][f] - rank["x3"][g]) < 0:
                hi, lo = (f, g) if rank["x3"][f] < rank["x3"][g] else (g, f)
                d = stats.paired(by_arm[f"{hi} x3"], by_arm[f"{lo} x3"])
                tie = not stats.excludes_zero(d.mean, d.half)
                swaps.append(f"{hi} over {lo} at x3: {render.pt(d.mean, d.half)} pt on validation, n={d.n} "
                             f"({'the interval covers zero: a tie' if tie else 'the interval excludes zero'})")
                out.append({"above": hi, "below": lo, "diff": d.mean, "ci": d.half, "n": d.n, "tie": tie})
    held = all(s["tie"] for s in out)
    verdict = ("the ranking holds: no pair swaps" if not out else
               "the ranking holds up to ties: every pair that swaps is within its interval" if held else
               "the ranking changes: a pair swaps beyond its interval")
    text = ("## Does the longer fine-tuning change the ranking?\n\n"
            f"The families ranked by mean validation accuracy at the fine-tuning first planned (x1) and three times "
            f"it (x3, the board's), on the same seeds: Kendall's tau {tau:.2f}; {verdict}"
            + ("" if not swaps else " (" + "; ".join(swaps) + ")") + ".\n\n" + "\n".join(rows) + "\n")
    return {"markdown": text, "json": {"kendall_tau": tau, "held": held, "swaps": out,
                                       "rank": rank, "val_acc": {f"{f} {b}": v for (f, b), v in mean.items()}}}
