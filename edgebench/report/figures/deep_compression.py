"""The deep_compression study's extra table: the Deep Compression sizes as compression ratios, next to Han et al. 2016.

Every figure is read from the runs' own metrics (``values``: ``{arm: {metric: {seed: value}}}``); the ratios are
``size/bytes_fp32`` of the seed's dense model over the arm's size, with their 95% t interval over the seeds.
"""

from __future__ import annotations

import math

from edgebench.stats import mean_ci

# Han, Mao, Dally, Deep Compression, ICLR 2016, Table 1 and Table 2 (LeNet-300-100 on MNIST), as transcribed in the
# project's reference notes (papers_and_devices.md, section A2).
HAN = {"source": "Han, Mao, Dally, Deep Compression, ICLR 2016, Table 1 and Table 2 (LeNet-300-100 on MNIST)",
       "dataset": "MNIST", "error_ref": 0.0164, "error_compressed": 0.0158, "size_ref_kb": 1070,
       "size_compressed_kb": 27, "ratio_pqh": 40, "ratio_pq": 32, "weights_kept": 0.08, "weight_bits": 6,
       "index_bits": 5}

SIZES = [("pruned", "size/bytes_sparse", "pruned: fp32 values, smallest of dense / bitmask / CSR (32-bit indices)"),
         ("deep_compression", "size/bytes_sparse", "+ 5-bit sharing: codes in the smallest of dense / bitmask / CSR"),
         ("deep_compression", "size/bytes_dc_pq", "same model, Deep Compression format, fixed width (P+Q)"),
         ("deep_compression", "size/bytes_dc_pqh", "same model, + Huffman coding (P+Q+H)")]


def _pm(xs: list[float], fmt: str) -> str:
    m, h = mean_ci(xs)
    return fmt.format(m) + ("" if math.isnan(h) else " ± " + fmt.format(h))


def _data(runs) -> str:
    """The data set the runs trained on (the ``data`` tag or param), as one text."""
    for col in ("data", "data.name", "params.data"):
        if col in getattr(runs, "columns", ()):
            return ", ".join(sorted({str(v) for v in runs[col].dropna()})) or "?"
    return "?"


def next_to_han(study, runs, values) -> dict:
    dense = values["dense"]["size/bytes_fp32"]
    rows, doc = [], {"han_et_al_2016": HAN, "ratios": {}}
    for arm, metric, label in SIZES:
        got = values.get(arm, {}).get(metric, {})
        seeds = sorted(set(got) & set(dense))
        if not seeds:
            rows.append(f"| {label} | `{arm}` `{metric}` | n/a | n/a | 0 |")
            continue
        ratios = [dense[s] / got[s] for s in seeds]
        doc["ratios"][f"{arm} {metric}"] = {str(s): r for s, r in zip(seeds, ratios)}
        rows.append(f"| {label} | `{arm}` `{metric}` | {_pm([got[s] for s in seeds], '{:,.0f}')} | "
                    f"{_pm(ratios, '{:.1f}x')} | {len(seeds)} |")
    lines = ["## Compression ratios (dense fp32 bytes of the seed's model / the size)", "",
             "| step | run figure | bytes (mean ± 95% CI) | compression | n |", "|---|---|---:|---:|---:|", *rows]
    acc_d, acc_c = values["dense"]["test/acc"], values["deep_compression"]["test/acc"]
    pqh = values["deep_compression"].get("size/bytes_dc_pqh", {})
    seeds = sorted(set(acc_d) & set(acc_c) & set(pqh) & set(dense))
    if seeds:
        err_d = 100 * (1 - mean_ci([acc_d[s] for s in seeds])[0])
        err_c = 100 * (1 - mean_ci([acc_c[s] for s in seeds])[0])
        size_d = mean_ci([dense[s] for s in seeds])[0] / 1e3
        size_c = mean_ci([pqh[s] for s in seeds])[0] / 1e3
        ratio = mean_ci([dense[s] / pqh[s] for s in seeds])[0]
        doc["this_study"] = {"error_ref": err_d / 100, "error_compressed": err_c / 100, "size_ref_kb": size_d,
                             "size_compressed_kb": size_c, "ratio_pqh": ratio, "n": len(seeds)}
        lines += ["", "## Next to Han et al. 2016", "",
                  "| | dataset | error ref -> compressed | size ref -> compressed | compression |",
                  "|---|---|---|---|---:|",
                  f"| Han et al. 2016, LeNet-300-100 (P+Q+H) | MNIST | 1.64% -> 1.58% | 1070 KB -> 27 KB | 40x |",
                  f"| this study, LeNet-300-100 (P+Q+H, mean of {len(seeds)}) | {_data(runs)} | "
                  f"{err_d:.2f}% -> {err_c:.2f}% | {size_d:.0f} kB -> {size_c:.1f} kB | {ratio:.1f}x |", "",
                  f"Source: {HAN['source']}. Theirs is MNIST, ours Fashion-MNIST at the full budget (a harder "
                  "task), so the error columns are not comparable; the sizes are (same network, "
                  "their 1070 KB). Their settings differ too: 8% of the weights kept and 6-bit codes (ours: 8% kept, "
                  "5-bit codes); their P+Q is 32x and P+Q+H 40x. Their layers keep 8% / 9% / 26% (fc1 / fc2 / fc3); "
                  "ours prune every layer to the same 92% (`scope: layer`), the 10-way output layer included. Han et "
                  "al.'s LeNet-300-100: 6-bit weights -> 5.1 bits average after Huffman, 5-bit indices -> 3.7 bits "
                  "(their Table 2). kB = 1000 bytes."]
    return {"markdown": "\n".join(lines), "json": doc}
