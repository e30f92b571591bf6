"""tflm_zoo's extra: fit of each arm's int8 TFLite Micro file on several MCU profiles, and the untrained models.

Fit is decided from the runs' own metrics (the measured arena ``memory/tflm_arena_bytes`` and the file's bytes,
neither depends on the seed) on each profile of ``extra_args.devices``; a run checks only its own device. The
models of ``extra_args.untrained`` are not runs: training them takes about an hour a seed on 2 cores, so they are
converted with random weights and random calibration (``seed`` of extra_args), which gives the file bytes, the
measured arena, edgebench's estimates and the fit (none depends on the weights' values), not an accuracy. They are
converted only for the budgets in ``extra_args.untrained_budgets`` (a smoke report skips them).
"""

from __future__ import annotations

import tempfile
from typing import Any


def untrained(model: str, seed: int, shape: tuple[int, ...] = (1, 28, 28), classes: int = 10) -> dict[str, Any]:
    """File bytes, measured arena and estimates of ``model`` with random weights (no training, no accuracy)."""
    import torch

    from edgebench.config import ModelConfig
    from edgebench.export import QuantSpec, export
    from edgebench.measure.memory import peak_activation_bytes, tflm_arena_estimate
    from edgebench.models import build_model

    torch.manual_seed(seed)
    net = build_model(ModelConfig(name=model), shape, classes).eval()
    x = torch.rand(1, *shape)
    with tempfile.TemporaryDirectory() as tmp:
        art = export("tflite_micro", net, x, tmp, QuantSpec("int8", calibration=[torch.rand(32, *shape)]))
        size = art.path.stat().st_size
    return {"size/bytes_artifact": size, "memory/tflm_arena_bytes": art.arena_bytes,
            "memory/tflm_arena_bytes_est": tflm_arena_estimate(net, x)["total"],
            "memory/peak_activation_bytes": peak_activation_bytes(net, x, 1),
            "size/params": sum(p.numel() for p in net.parameters())}


def fit(metrics: dict[str, float], devices: list[str]) -> dict[str, str]:
    from edgebench.devices import evaluate_device
    from edgebench.measure import load_device

    out = {}
    for d in devices:
        r = evaluate_device(load_device(d), [], dtype="int8", artifact_bytes=int(metrics["size/bytes_artifact"]),
                            peak_activation_bytes=int(metrics["memory/tflm_arena_bytes_est"]),
                            artifact_format="tflite_micro", arena_bytes=int(metrics["memory/tflm_arena_bytes"]))
        out[d] = "yes" if r.fits else "no: " + "; ".join(r.reasons)
    return out


def fits(study, runs, values) -> dict[str, Any]:
    a = study.extra_args
    devices = list(a.get("devices", []))
    keys = ("size/bytes_artifact", "memory/tflm_arena_bytes", "memory/tflm_arena_bytes_est")
    rows: dict[str, dict] = {}
    for arm in study.arms:  # the file and the arena do not depend on the seed: the first seed's run
        first = {k: values[arm][k][min(values[arm][k])] for k in keys if values[arm].get(k)}
        if len(first) == len(keys):
            rows[arm] = {**first, "fit": fit(first, devices)}
    budget = str(runs["study.budget"].iloc[0]) if len(runs) and "study.budget" in runs else ""
    lines = ["## Fit on MCU profiles", "",
             "Fit of each arm's int8 TFLite Micro file (measured arena and file bytes, from the runs; they do not "
             "depend on the seed) on each device profile:", "",
             "| arm | int8 .tflite bytes | TFLM arena (B) | " + " | ".join(devices) + " |",
             "|---|---:|---:|" + "---|" * len(devices)]
    for arm, r in rows.items():
        lines.append(f"| {arm} | {r['size/bytes_artifact']:,.0f} | {r['memory/tflm_arena_bytes']:,.0f} | "
                     + " | ".join(r["fit"][d] for d in devices) + " |")
    extra: dict[str, dict] = {}
    if budget in a.get("untrained_budgets", []):
        failures = {}
        for model in a.get("untrained", []):
            try:
                m = untrained(model, int(a.get("seed", 0)))
            except Exception as e:  # noqa: BLE001 - a model TFLite cannot take is a result too
                failures[model] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                continue
            m["memory/tflm_arena_est_error"] = m["memory/tflm_arena_bytes_est"] / m["memory/tflm_arena_bytes"] - 1
            extra[model] = {**m, "fit": fit(m, devices)}
        tol = a.get("arena_tolerance")
        lines += ["", "## Untrained models (converted, not runs)", "",
                  "Random weights and random calibration (seed %s), no training, so no accuracy: the file bytes, the "
                  "measured arena and the estimate do not depend on the weights' values. Measured when this report "
                  "was written." % a.get("seed", 0), "",
                  "| model | params | int8 .tflite bytes | TFLM arena (B) | arena estimate (B) | estimate / arena - 1 |"
                  + (f" within {tol:.0%} |" if tol else "") + " peak activations (B) | " + " | ".join(devices) + " |",
                  "|---|---:|---:|---:|---:|---:|" + ("---|" if tol else "") + "---:|" + "---|" * len(devices)]
        for model, m in extra.items():
            err = m["memory/tflm_arena_est_error"]
            lines.append(f"| {model} | {m['size/params']:,} | {m['size/bytes_artifact']:,} | "
                         f"{m['memory/tflm_arena_bytes']:,} | {m['memory/tflm_arena_bytes_est']:,} | {err:+.3f} | "
                         + (f"{'yes' if abs(err) <= tol else '**no**'} | " if tol else "")
                         + f"{m['memory/peak_activation_bytes']:,} | " + " | ".join(m["fit"][d] for d in devices) + " |")
        if failures:
            lines += ["", "Models TFLite could not take:", ""] + [f"- {m}: {e}" for m, e in failures.items()]
        if tol:
            lines += ["", f"The tolerance ({tol:.0%}) is the study's arena threshold (extra_args.arena_tolerance, "
                      f"source: {a.get('arena_tolerance_source', '')})."]
    corpus_rows: list[dict] = []
    if budget in a.get("corpus_budgets", []):  # the arena estimate on architectures it was not tuned on
        from edgebench.report.figures import arena_corpus

        failed = {}
        for name in arena_corpus.corpus():
            try:
                corpus_rows.append(arena_corpus.measure(name, int(a.get("seed", 0))))
            except Exception as e:  # noqa: BLE001 - a model TFLite cannot take is a result too
                failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        lines += ["", *arena_corpus.markdown(corpus_rows, int(a.get("seed", 0)))]
        if failed:
            lines += ["Corpus models TFLite could not take:", ""] + [f"- {m}: {e}" for m, e in failed.items()]
    return {"markdown": "\n".join(lines), "json": {"fit": rows, "untrained": extra, "devices": devices,
                                                   "arena_corpus": corpus_rows}}
