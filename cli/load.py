"""Load for `router benchmark`: one call repeated in a closed loop (a fixed number in flight) or
an open loop (Poisson arrivals), each call timed, failures counted by gRPC status."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

Call = Callable[[], Awaitable[object]]


class CallFailed(Exception):
    """A call that is not a gRPC call failed; `status` names how (e.g. "HTTP 503")."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Load:
    concurrency: int  # calls in flight at most
    requests: int | None  # calls (open loop: arrivals) to make; None: until the duration ends
    duration_s: float | None  # None: until the requests are made
    rate: float | None  # arrivals per second (open loop); None: closed loop


@dataclass
class Tally:
    latencies_ns: list[int] = field(default_factory=list)  # of the calls that succeeded
    errors: Counter[str] = field(default_factory=Counter)  # failed calls by status code name
    dropped: int = 0  # open loop: arrivals that found `concurrency` calls in flight
    elapsed_s: float = 0.0

    @property
    def calls(self) -> int:
        return len(self.latencies_ns) + self.errors.total()

    def add(self, other: Tally) -> None:
        """Take in another round's figures."""
        self.latencies_ns += other.latencies_ns
        self.errors.update(other.errors)
        self.dropped += other.dropped
        self.elapsed_s += other.elapsed_s


async def warm_up(call: Call, calls: int, concurrency: int) -> None:
    """`calls` calls, `concurrency` at a time, whatever they answer."""
    await _closed(call, Load(concurrency, calls, None, None), Tally(), lambda: None)


async def measure(call: Call, load: Load, done: Callable[[], None]) -> Tally:
    """The calls of `load`, timed; `done` is called after each."""
    tally = Tally()
    started = time.perf_counter()
    if load.rate is None:
        await _closed(call, load, tally, done)
    else:
        await _open(call, load, load.rate, tally, done)
    tally.elapsed_s = time.perf_counter() - started
    return tally


async def _timed(call: Call, tally: Tally, done: Callable[[], None]) -> None:
    started = time.perf_counter_ns()
    try:
        await call()
    except grpc.aio.AioRpcError as exc:
        tally.errors[exc.code().name] += 1
    except CallFailed as exc:
        tally.errors[exc.status] += 1
    else:
        tally.latencies_ns.append(time.perf_counter_ns() - started)
    done()


def _limits(load: Load) -> tuple[float, float]:
    """How many calls or arrivals, and until when on the loop's clock."""
    loop = asyncio.get_running_loop()
    requests = math.inf if load.requests is None else load.requests
    deadline = math.inf if load.duration_s is None else loop.time() + load.duration_s
    return requests, deadline


async def _closed(call: Call, load: Load, tally: Tally, done: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    requests, deadline = _limits(load)
    started = 0

    async def worker() -> None:
        nonlocal started
        while started < requests and loop.time() < deadline:
            started += 1
            await _timed(call, tally, done)

    await asyncio.gather(*(worker() for _ in range(load.concurrency)))


async def _open(
    call: Call, load: Load, rate: float, tally: Tally, done: Callable[[], None]
) -> None:
    """Each arrival starts its call on time, whatever the calls before it are doing, unless
    `load.concurrency` calls are in flight: then it is dropped."""
    loop = asyncio.get_running_loop()
    requests, deadline = _limits(load)
    in_flight: set[asyncio.Task[None]] = set()
    arrivals = 0
    at = loop.time()
    while arrivals < requests:
        at += random.expovariate(rate)
        if at >= deadline:
            break
        await asyncio.sleep(max(0.0, at - loop.time()))
        arrivals += 1
        if len(in_flight) >= load.concurrency:
            tally.dropped += 1
            continue
        task = asyncio.create_task(_timed(call, tally, done))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
