"""Latency statistics shared by `router benchmark` and the benchmarks of `bench/`: nearest-rank
percentiles and a histogram on log-spaced buckets."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import pairwise

# The buckets' bounds run 1, 2, 5, 10, 20, 50, ... nanoseconds: about three to a decade.
SERIES = (1, 2, 5)


def percentile(ordered: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanoseconds, in microseconds."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1_000


def bounds(low: int, high: int) -> list[int]:
    """The bounds of the series from the last at or below `low` to the first above `high`."""
    series: list[int] = []
    scale = 1
    while not series or series[-1] <= high:
        series += [m * scale for m in SERIES]
        scale *= 10
    return series[max(0, bisect_right(series, low) - 1) : bisect_right(series, high) + 1]


def histogram(ordered: list[int]) -> list[tuple[int, int, int]]:
    """(from, to, count) of sorted nanoseconds in the buckets [from, to) that span them."""
    if not ordered:
        return []
    edges = bounds(ordered[0], ordered[-1])
    return [
        (low, high, bisect_left(ordered, high) - bisect_left(ordered, low))
        for low, high in pairwise(edges)
    ]
