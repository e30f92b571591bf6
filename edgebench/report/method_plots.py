"""Figures of a method's report, drawn from data: a method returns a :class:`edgebench.methods.base.Plot`
(``kind`` and data) in ``CompressionResult.plots`` and the run draws it here (:func:`draw`), so no
method imports matplotlib. Experiments call the drawers directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgebench.report.plots import pyplot


def lottery_levels(path: Path, rows: list[dict], title: str = "",
                   references: list[tuple[str, float, float]] = ()) -> None:
    """Test accuracy and early-stopping step against % of weights remaining (log x), with the controls.

    A row may carry ``<key>_ci`` (the half-width of a 95% interval over replicates): drawn as a band.
    ``references``: ``(label, accuracy, half-width)`` drawn as horizontal lines (with bands) on the accuracy panel.
    """
    plt = pyplot()
    x = [100 * r["lth/remaining"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    series = [("lth/test_acc", "lth/best_val_step", "ticket (rewound)", "o-")]
    series += [(f"lth/{c}_test_acc", f"lth/{c}_best_val_step", label, st)
               for c, label, st in (("reinit", "random reinit", "s--"), ("random_prune", "random mask", "^:"))]
    for acc_key, step_key, label, style in series:
        keys = (acc_key, step_key)
        pts = [(xi, r) for xi, r in zip(x, rows) if acc_key in r]
        if acc_key != "lth/test_acc" and pts:  # controls start from the dense net
            first = {k2: rows[0].get(k1) for k1, k2 in (("lth/test_acc", acc_key), ("lth/best_val_step", step_key),
                                                        ("lth/test_acc_ci", acc_key + "_ci"),
                                                        ("lth/best_val_step_ci", step_key + "_ci"))}
            pts = [(x[0], first)] + pts
        if not pts:
            continue
        for ax, key in zip((a, b), keys):
            xs, ys = [p[0] for p in pts], [p[1].get(key) for p in pts]
            line, = ax.plot(xs, ys, style, label=label)
            ci = [p[1].get(key + "_ci") for p in pts]
            if all(c is not None and c == c for c in ci):
                ax.fill_between(xs, [y - c for y, c in zip(ys, ci)], [y + c for y, c in zip(ys, ci)],
                                color=line.get_color(), alpha=0.15, lw=0)
    for n, (label, acc, ci) in enumerate(references):
        a.axhline(acc, color=f"C{4 + n}", lw=1, ls="-.", label=label)
        if ci == ci:
            a.axhspan(acc - ci, acc + ci, color=f"C{4 + n}", alpha=0.1, lw=0)
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ticks = [t for t in (100, 50, 30, 20, 10, 5, 3, 2, 1, 0.5) if t >= min(x) * 0.8]
    for ax, ylabel in ((a, "test accuracy"), (b, "iteration of minimum validation loss")):
        ax.set_xscale("log")
        ax.set_xlim(105, min(x) * 0.8)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("weights remaining (%)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def kure_robustness(path: Path, table: dict[str, dict[str, float]], bits: list[int],
                    ci: dict[str, dict[str, float]] | None = None) -> None:
    """KURE: test accuracy when the weights are quantised to each of ``bits``, by the uniform and the k-means
    quantiser, for the KURE model and (when there) its control; dotted lines at fp32. ``table``:
    ``{"kure" | "control": {"acc_fp32": a, "acc_w<b>": a, "acc_w<b>_kmeans": a}}``; ``ci`` (same shape, the
    half-widths of 95% intervals over replicates) draws error bars."""
    plt = pyplot()
    bits = sorted(bits, reverse=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"kure": "C0", "control": "C1"}
    for label, row in table.items():
        for suffix, ls, quantiser in (("", "-", "uniform"), ("_kmeans", "--", "k-means")):
            err = [ci[label][f"acc_w{b}{suffix}"] for b in bits] if ci else None
            ax.errorbar(bits, [row[f"acc_w{b}{suffix}"] for b in bits], yerr=err, ls=ls, marker="o", capsize=3,
                        color=styles[label], label=f"{'KURE' if label == 'kure' else 'no KURE'}, {quantiser}")
        ax.axhline(row["acc_fp32"], color=styles[label], lw=0.8, ls=":")
    ax.set_xlabel("weight bits")
    ax.set_ylabel("test accuracy")
    ax.invert_xaxis()
    ax.set_title("Accuracy when the weights are quantised (dotted: fp32)"
                 + ("\nmean and 95% interval over the replicates" if ci else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def glimpse_paths(path: Path, images: list, locations: list, labels: list, predictions: list, glimpse_size: int,
                  scales: int, classes: list[str] | None = None) -> None:
    """Where a recurrent attention model looked: each image with its glimpses in order (numbered, the smallest
    patch as a square, the largest scale dashed) and the path between them; title: label -> prediction."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    n = len(images)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), squeeze=False)
    name = (lambda i: classes[i]) if classes else str
    for ax, img, locs, y, p in zip(axes.flat, images, locations, labels, predictions):
        h, w = len(img), len(img[0])
        ax.imshow(img, cmap="gray")
        pts = [(((x + 1) * w - 1) / 2, ((yy + 1) * h - 1) / 2) for x, yy in locs]  # pixel centres
        ax.plot([q[0] for q in pts], [q[1] for q in pts], "-", color="tab:orange", lw=1)
        for t, (cx, cy) in enumerate(pts):
            color = plt.cm.viridis(t / max(len(pts) - 1, 1))
            for s, style in ((0, "-"), (scales - 1, "--")) if scales > 1 else ((0, "-"),):
                side = glimpse_size * 2 ** s
                ax.add_patch(Rectangle((cx - side / 2, cy - side / 2), side, side, fill=False, ec=color, ls=style, lw=1))
            ax.text(cx, cy, str(t + 1), color=color, fontsize=8, ha="center", va="center", weight="bold")
        ax.set_title(f"{name(y)} -> {name(p)}", fontsize=8, color="black" if y == p else "tab:red")
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


DRAWERS: dict[str, Callable[..., None]] = {"lottery_levels": lottery_levels, "kure_robustness": kure_robustness,
                                           "glimpse_paths": glimpse_paths}


def draw(plot, path: Path) -> Path:
    """Draw a :class:`edgebench.methods.base.Plot` into ``path`` (folders made); returns ``path``."""
    if plot.kind not in DRAWERS:
        raise KeyError(f"no drawer for plot kind {plot.kind!r}; known: {', '.join(sorted(DRAWERS))}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    DRAWERS[plot.kind](path, **plot.data)
    return path
