"""The report's plots, as PNG files drawn with matplotlib (Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from bench.rows import Series


def scale_curve(series: Series, path: Path) -> None:
    """Models in the catalogue against p50 µs, both axes logarithmic."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, points in series.items():
        xs, ys = zip(*sorted(points), strict=True)
        axes.plot(xs, ys, marker="o", label=name)
    axes.set(xscale="log", yscale="log", xlabel="models in the catalogue", ylabel="p50 µs")
    axes.set_title("Choosing the best model")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    _save(figure, path)


def cdfs(plots: dict[str, Series], path: Path) -> None:
    """One panel per load: the share of requests answered within x µs, per transport."""
    figure, panels = plt.subplots(1, len(plots), figsize=(6 * len(plots), 4), squeeze=False)
    for axes, (load, series) in zip(panels[0], plots.items(), strict=True):
        for name, points in series.items():
            xs, ys = zip(*points, strict=True)
            axes.step(xs, ys, where="post", label=name)
        axes.set(xscale="log", xlabel="µs per Route", ylabel="share of requests")
        axes.set_title(f"Route latency, {load}")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    _save(figure, path)


def overhead_bars(series: Series, path: Path) -> None:
    """One panel per case, each with a bar pair (p50, p99) per path of what the router adds;
    series are named "path | case" and hold one point (p50, p99)."""
    cases: dict[str, dict[str, tuple[float, float]]] = {}
    for name, points in series.items():
        what, case = name.split(" | ", 1)
        cases.setdefault(case, {})[what] = points[0]
    figure, panels = plt.subplots(len(cases), 1, figsize=(7, 1.6 * len(cases) + 0.5), squeeze=False)
    for axes, (case, paths) in zip(panels[:, 0], cases.items(), strict=True):
        positions = range(len(paths))
        axes.barh([p - 0.2 for p in positions], [v[0] for v in paths.values()], 0.4, label="p50")
        axes.barh([p + 0.2 for p in positions], [v[1] for v in paths.values()], 0.4, label="p99")
        axes.set_yticks(list(positions), list(paths), fontsize=8)
        axes.invert_yaxis()
        axes.axvline(0, color="black", linewidth=0.5)
        axes.set_title(case, fontsize=9)
        axes.grid(True, axis="x", alpha=0.3)
    panels[0, 0].legend(fontsize=8)
    panels[-1, 0].set_xlabel("ms the router adds over calling the fake directly")
    _save(figure, path)


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
