"""Latency measurement shared by the benchmarks: warm up, then time each call."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from bench.rows import Results, Row

METHOD = (
    "Each case is warmed up, then timed call by call with time.perf_counter_ns on one thread, "
    "the garbage collector paused; p50/p99/p99.9 are nearest-rank percentiles of the per-call "
    "times, in microseconds."
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


def measure(
    results: Results, name: str, call: Callable[[], object], iterations: int, warmup: int = 1_000
) -> Row:
    return results.samples(name, sample(call, iterations, warmup))


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
