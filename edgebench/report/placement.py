"""Point labels on a plot that never overlap each other, a marker or the frontier line."""

from __future__ import annotations

import itertools

import numpy as np


def label_offsets() -> list[tuple[float, float, str]]:
    """Candidate label offsets (points) with their alignment, nearest first: around the marker, then further out."""
    near = [(8, -3, "left"), (-8, -3, "right"), (0, 9, "center"), (0, -17, "center"), (8, 4, "left"), (-8, 4, "right"),
            (8, -10, "left"), (-8, -10, "right")]
    grid = [(dx, dy, "left" if dx > 0 else "right" if dx < 0 else "center")
            for dx in range(-140, 141, 8) for dy in range(-90, 91, 5)]
    grid.sort(key=lambda o: (abs(o[0]) ** 2 + (2 * o[1]) ** 2))  # prefer beside the point to above or below it
    return near + grid


def _obstacles(ax, markers: list, lines: list[tuple[list, list]], scale: float) -> np.ndarray:
    """Boxes (x0, y0, x1, y1 in pixels) a label may not cover: every marker, and each segment of ``lines``."""
    r = 6.5 * scale  # a marker's radius, the frontier's ring included
    obstacles = [(px - r, py - r, px + r, py + r) for px, py in markers]
    for xs, ys in lines:  # the step's segments, as thin boxes
        if len(xs) < 2:
            continue
        pix = ax.transData.transform(np.column_stack([xs, ys]))
        for (x0, y0), (x1, y1) in itertools.pairwise(pix):
            obstacles += [(min(x0, x1), y0 - 1, max(x0, x1), y0 + 1), (x1 - 1, min(y0, y1), x1 + 1, max(y0, y1))]
    return np.array(obstacles, float).reshape(-1, 4)


def _free_spot(cand: np.ndarray, w: float, h: float, obs: np.ndarray, frame) -> tuple[int, np.ndarray]:
    """The first candidate box (lower-left corners ``cand``, size w x h) that covers no obstacle, inside the axes
    when one is free there; its index and box (with a 2-pixel margin)."""
    x0, y0 = cand[:, 0] - 2, cand[:, 1] - 2
    x1, y1 = x0 + w + 4, y0 + h + 4
    hit = ((x0[:, None] < obs[None, :, 2]) & (x1[:, None] > obs[None, :, 0]) &
           (y0[:, None] < obs[None, :, 3]) & (y1[:, None] > obs[None, :, 1])).any(axis=1)
    inside = (x0 >= frame.x0) & (x1 <= frame.x1) & (y0 >= frame.y0) & (y1 <= frame.y1)
    free = np.flatnonzero(~hit & inside)
    if not len(free):
        free = np.flatnonzero(~hit)
    k = int(free[0]) if len(free) else 0
    return k, np.array([x0[k], y0[k], x1[k], y1[k]])


def place_labels(fig, ax, points: list[tuple[float, float, str]], lines: list[tuple[list, list]] = ()) -> None:
    """Label points so that no two labels overlap and no label covers a marker or one of ``lines`` (the frontier,
    ``(xs, ys)`` in data coordinates, drawn as a post step): the nearest free offset around each point
    (:func:`label_offsets`, measured before drawing); a label away from its point gets a leader line. Without a
    free spot inside the axes a label goes to the nearest free spot in the figure, still apart."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    scale = fig.dpi / 72
    markers = [ax.transData.transform((x, y)) for x, y, _ in points]
    obs = _obstacles(ax, markers, list(lines), scale)
    offsets = label_offsets()
    for (x, y, text), (px, py) in sorted(zip(points, markers), key=lambda p: (p[0][0], -p[0][1])):
        probe = ax.text(0, 0, text, fontsize=7)
        ext = probe.get_window_extent(renderer)
        w, h = ext.width, ext.height
        probe.remove()
        cand = np.array([(px + dx * scale - {"left": 0, "right": w, "center": w / 2}[ha], py + dy * scale)
                         for dx, dy, ha in offsets])
        k, box = _free_spot(cand, w, h, obs, frame)
        dx, dy, ha = offsets[k]
        far = abs(dx) > 10 or dy > 8 or dy < -16
        t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7, color="0.2", ha=ha,
                        va="bottom", annotation_clip=False,
                        arrowprops={"arrowstyle": "-", "color": "0.45", "lw": 0.6, "shrinkA": 0, "shrinkB": 3} if far else None)
        t.update_positions(renderer)
        obs = np.vstack([obs, box])
