"""Latency measurement shared by the benchmarks: warm up, time each call, report percentiles."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from cli.stats import percentile

HEADER = f"{'case (microseconds)':<52} {'p50':>9} {'p99':>9} {'p99.9':>9} {'mean':>9}"

METHOD = (
    "method: each case is warmed up, then timed call by call with time.perf_counter_ns on one "
    "thread, the garbage collector paused; p50/p99/p99.9 are nearest-rank percentiles of the "
    "per-call times; the machine is shared, so compare ratios taken in the same run."
)


@contextmanager
def gc_paused() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def sample(call: Callable[[], object], iterations: int, warmup: int) -> list[int]:
    for _ in range(warmup):
        call()
    samples = []
    with gc_paused():
        for _ in range(iterations):
            start = time.perf_counter_ns()
            call()
            samples.append(time.perf_counter_ns() - start)
    return samples


def report(name: str, samples: list[int]) -> float:
    """Print one row; returns the median in microseconds."""
    ordered = sorted(samples)
    p50 = percentile(ordered, 0.50)
    mean = statistics.fmean(ordered) / 1_000
    print(
        f"{name:<52} {p50:>9.2f} {percentile(ordered, 0.99):>9.2f} "
        f"{percentile(ordered, 0.999):>9.2f} {mean:>9.2f}  n={len(ordered)}"
    )
    return p50


def measure(name: str, call: Callable[[], object], iterations: int, warmup: int = 1_000) -> float:
    return report(name, sample(call, iterations, warmup))


async def sample_async(
    call: Callable[[], Awaitable[object]], iterations: int, warmup: int
) -> list[int]:
    """`sample` for a coroutine, on the running loop; between two calls the loop runs what else
    is ready (background writes), outside the timed part."""
    for _ in range(warmup):
        await call()
        await asyncio.sleep(0)
    samples = []
    with gc_paused():
        for _ in range(iterations):
            start = time.perf_counter_ns()
            await call()
            samples.append(time.perf_counter_ns() - start)
            await asyncio.sleep(0)
    return samples
