"""What the router adds to a completion over calling the fake OpenRouter directly.

Three processes share this machine's cores: the fake OpenRouter, the router (`router serve`,
pointed at the fake) and this load generator. Each case sends the same request both ways, in
alternating rounds of a third of its requests: straight to the fake with aiohttp (the HTTP
client the router itself uses), and through the router's gRPC port. "added" is the router's
latency minus the direct latency at the same percentile. Streaming cases time the first
content token. The router's CPU time per request is read from /proc: it does not depend on how
busy the machine is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import statistics
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.processes import bare_forwarder_process, cpu_seconds
from bench.rows import Extra, Results, Row
from bench.timing import gc_paused
from cli.processes import FakeProcess, RouterProcess, fake_process, router_process
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub

TEXT = "Say hello to the router benchmark."
ROUTING = pb.RouteRequest(
    mode=pb.MODE_QUALITY, constraints=pb.Constraints(free=pb.FREE_FILTER_EXCLUDE)
)
REQUEST = pb.CompleteRequest(routing=ROUTING, messages=[pb.ChatMessage(role="user", content=TEXT)])
REST_BODY = {
    "mode": "quality",
    "constraints": {"free": "exclude"},
    "messages": [{"role": "user", "content": TEXT}],
}
OPENAI_BODY = {
    "model": "router/quality",
    "router": {"constraints": {"free": "exclude"}},
    "messages": [{"role": "user", "content": TEXT}],
}
START_TIMEOUT_S = 30.0
# Added latency at 50 in flight, judged on open-loop arrivals: in a closed loop, 50 identical
# requests move in lockstep bursts, and the two ways' tails are those of the bursts.
TARGET_MS = {0.5: 1.0, 0.99: 3.0}
# What the router may add beyond a gRPC round trip (health check) at that load.
BEYOND_ROUND_TRIP_MS = {0.5: 0.3, 0.99: 1.0}
SEQUENTIAL_ADDED_MS = 1.0
CPU_PER_COMPLETION_US = 500.0
# Under the fake's (uvicorn's) 5 s: else it closes connections left idle while the router is
# measured just as they are reused.
KEEPALIVE_S = 2.0


@dataclass(frozen=True)
class Case:
    """`in_flight` requests at a time (closed loop), or arrivals at random at the rate that
    keeps `in_flight` requests in flight on average (open loop, Poisson)."""

    delay_s: float  # the fake's wait before its first token
    in_flight: int
    total: int  # requests each way
    open_loop: bool = False

    def label(self) -> str:
        delay = f"fake in {self.delay_s * 1000:g} ms" if self.delay_s else "instant fake"
        if self.open_loop:
            return f"{delay}, {self.in_flight} in flight (arrivals {self.rate():g}/s)"
        return f"{delay}, {self.in_flight} in flight"

    def rate(self) -> float:
        return self.in_flight / self.delay_s

    def warmup(self) -> int:
        return self.in_flight * 2


# Sized for `make bench` to finish within ten minutes on the 2-core machine.
CASES = [
    Case(0.0, 1, 300),
    Case(0.0, 50, 1_000),
    Case(0.05, 1, 150),
    Case(0.05, 50, 1_000),
    Case(0.5, 50, 1_000, open_loop=True),
]
SEQUENTIAL, LOADED = CASES[0], CASES[-1]
ROUNDS = 3  # the ways of a case alternate, a third of its requests at a time
ARRIVALS_SEED = 7
OVERHEAD_PLOT = "completion-overhead"

Call = Callable[[], Coroutine[Any, Any, float]]


async def sample(call: Call, case: Case) -> tuple[list[float], float]:
    """Seconds per request after a warm-up, and requests per second; open-loop arrivals follow
    one seeded sequence, so both ways see the same one."""
    seconds: list[float] = []
    await asyncio.gather(*(call() for _ in range(case.warmup())))
    started = time.perf_counter()
    with gc_paused():
        if case.open_loop:
            loop = asyncio.get_running_loop()
            arrivals = random.Random(ARRIVALS_SEED)
            at = loop.time()
            tasks: list[asyncio.Task[float]] = []
            for _ in range(case.total):
                at += arrivals.expovariate(case.rate())
                await asyncio.sleep(max(0.0, at - loop.time()))
                tasks.append(asyncio.create_task(call()))
            seconds = list(await asyncio.gather(*tasks))
        else:
            gate = asyncio.Semaphore(case.in_flight)

            async def one() -> None:
                async with gate:
                    seconds.append(await call())

            await asyncio.gather(*(one() for _ in range(case.total)))
    return seconds, case.total / (time.perf_counter() - started)


class Ways:
    """The same completion sent straight to the fake and through the router."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        fake: FakeProcess,
        router: RouterProcess,
        channel: grpc.aio.Channel,
        forwarder: grpc.aio.Channel,
        model: str,
    ):
        self.http, self.url = http, fake.base_url + "/chat/completions"
        self.rest_url = router.http_url + "/complete"
        self.openai_url = router.http_url + "/v1/chat/completions"
        self.stub, self.health = RouterStub(channel), health_pb2_grpc.HealthStub(channel)
        self.forwarder = RouterStub(forwarder)
        self.body = {"model": model, "messages": [{"role": "user", "content": TEXT}]}
        self.headers = {"Authorization": f"Bearer {fake.api_key}"}

    async def direct(self) -> float:
        start = time.perf_counter()
        async with self.http.post(self.url, json=self.body, headers=self.headers) as reply:
            reply.raise_for_status()
            await reply.read()
        return time.perf_counter() - start

    async def direct_first_token(self) -> float:
        start = time.perf_counter()
        first = 0.0
        body = self.body | {"stream": True}
        async with self.http.post(self.url, json=body, headers=self.headers) as reply:
            reply.raise_for_status()
            async for line in reply.content:
                if not first and line.startswith(b"data: {"):
                    choices = json.loads(line[6:])["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        first = time.perf_counter() - start
        return first

    async def grpc_round_trip(self) -> float:
        """A health check: the gRPC round trip with none of the router's own code."""
        start = time.perf_counter()
        await self.health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        return time.perf_counter() - start

    async def routed(self) -> float:
        return await self._completed(self.stub)

    async def forwarded(self) -> float:
        """Through the bare forwarder: gRPC in, aiohttp out, no routing."""
        return await self._completed(self.forwarder)

    @staticmethod
    async def _completed(stub: RouterStub) -> float:
        start = time.perf_counter()
        await stub.Complete(REQUEST, timeout=30)  # type: ignore[misc]  # the stubs' async side
        return time.perf_counter() - start

    async def _posted(self, url: str, body: dict[str, Any]) -> float:
        start = time.perf_counter()
        async with self.http.post(url, json=body) as reply:
            reply.raise_for_status()
            await reply.read()
        return time.perf_counter() - start

    async def routed_over_rest(self) -> float:
        return await self._posted(self.rest_url, REST_BODY)

    async def routed_over_openai_api(self) -> float:
        return await self._posted(self.openai_url, OPENAI_BODY)

    async def routed_first_token(self) -> float:
        start = time.perf_counter()
        first = 0.0
        async for event in self.stub.StreamComplete(REQUEST, timeout=30):
            if not first and event.WhichOneof("event") == "delta":
                first = time.perf_counter() - start
        return first


@dataclass(frozen=True)
class Pair:
    """One path measured both ways: straight to the fake, and through the router."""

    what: str
    direct: Call
    routed: Call


async def timed(call: Call, case: Case, pid: int) -> tuple[list[int], Extra]:
    """Nanoseconds per request, with the rate and the CPU µs per request of process `pid`
    (warm-up included)."""
    cpu_before = cpu_seconds(pid)
    seconds, rate = await sample(call, case)
    cpu_us = (cpu_seconds(pid) - cpu_before) * 1e6 / (case.total + case.warmup())
    return [int(s * 1e9) for s in seconds], Extra("ms", rate, cpu_us)


async def alternating(ways: list[tuple[Call, int]], case: Case) -> list[tuple[list[int], Extra]]:
    """`timed` for each (call, pid) of `ways`, in ROUNDS alternating rounds of a share of the
    case each, so that every way sees the machine as the others do; the latencies pooled, the
    median round's rate, the mean CPU per request."""
    part = dataclasses.replace(case, total=math.ceil(case.total / ROUNDS))
    rounds: list[list[tuple[list[int], Extra]]] = [[] for _ in ways]
    for _ in range(ROUNDS):
        for taken, (call, pid) in zip(rounds, ways, strict=True):
            taken.append(await timed(call, part, pid))
    return [
        (
            [ns for samples, _ in taken for ns in samples],
            Extra(
                "ms",
                statistics.median(extra.rate or 0.0 for _, extra in taken),
                statistics.fmean(extra.cpu_us_per_request or 0.0 for _, extra in taken),
            ),
        )
        for taken in rounds
    ]


def added(section: str, case: str, routed: Row, direct: Row) -> Row:
    """What the router adds at each percentile: its latency minus the direct one."""
    return Row(
        section,
        case,
        "ms",
        routed.p50 - direct.p50,
        routed.p99 - direct.p99,
        routed.p999 - direct.p999,
        routed.mean - direct.mean,
        routed.n,
    )


async def run_case(
    results: Results, fake: FakeProcess, router: RouterProcess, delay_s: float
) -> dict[tuple[Case, str], Row]:
    """Every row of one fake delay; returns Complete's "added", "router", "floor" (a gRPC
    round trip) and "forwarder" rows."""
    measured: dict[tuple[Case, str], Row] = {}
    async with (
        grpc.aio.insecure_channel(router.grpc_address) as channel,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=KEEPALIVE_S)
        ) as http,
    ):
        await asyncio.wait_for(channel.channel_ready(), START_TIMEOUT_S)
        stub = RouterStub(channel)
        await stub.RefreshCatalogue(pb.RefreshCatalogueRequest())
        model = (await stub.Route(ROUTING)).model
        with bare_forwarder_process(fake, model) as bare:
            async with grpc.aio.insecure_channel(bare.grpc_address) as forwarder:
                await asyncio.wait_for(forwarder.channel_ready(), START_TIMEOUT_S)
                ways = Ways(http, fake, router, channel, forwarder, model)
                await measure(results, fake, router, bare.pid, ways, delay_s, measured)
    return measured


async def measure(
    results: Results,
    fake: FakeProcess,
    router: RouterProcess,
    forwarder_pid: int,
    ways: Ways,
    delay_s: float,
    measured: dict[tuple[Case, str], Row],
) -> None:
    pairs = [
        Pair("Complete", ways.direct, ways.routed),
        Pair("REST /complete", ways.direct, ways.routed_over_rest),
        Pair("/v1/chat/completions", ways.direct, ways.routed_over_openai_api),
        Pair("first token", ways.direct_first_token, ways.routed_first_token),
    ]
    for case in CASES:
        if case.delay_s != delay_s:
            continue
        for pair in pairs:
            name = f"{pair.what}, {case.label()}"
            both = [(pair.direct, fake.pid), (pair.routed, router.pid)]
            if pair.what == "Complete":
                both.append((ways.grpc_round_trip, router.pid))
                if case in (SEQUENTIAL, LOADED):  # the floor the targets are judged against
                    both.append((ways.forwarded, forwarder_pid))
            taken = await alternating(both, case)
            direct = results.samples(f"{name}: direct", *taken[0])
            routed = results.samples(f"{name}: router", *taken[1])
            extra = results.add(added(direct.section, f"{name}: added", routed, direct))
            results.point(OVERHEAD_PLOT, f"{pair.what} | {case.label()}", extra.p50, extra.p99)
            if pair.what == "Complete":
                floor = results.samples(
                    f"gRPC round trip alone (health check), {case.label()}", *taken[2]
                )
                measured[(case, "direct")] = direct
                measured[(case, "added")] = extra
                measured[(case, "router")] = routed
                measured[(case, "floor")] = floor
                if len(taken) > 3:
                    measured[(case, "forwarder")] = results.samples(
                        f"forwarder that routes nothing (bench.bare_grpc --forward), "
                        f"{case.label()}",
                        *taken[3],
                    )


def targets(results: Results, measured: dict[tuple[Case, str], Row]) -> None:
    sequential = measured.get((SEQUENTIAL, "added"))
    direct = measured.get((SEQUENTIAL, "direct"))
    forwarded = measured.get((SEQUENTIAL, "forwarder"))
    forwarding = (
        ""
        if direct is None or forwarded is None
        else f" (a forwarder that routes nothing adds {forwarded.p50 - direct.p50:.2f} ms)"
    )
    results.target(
        f"Complete adds over calling the upstream directly, {SEQUENTIAL.label()}",
        f"<= {SEQUENTIAL_ADDED_MS:g} ms p50",
        None if sequential is None else f"{sequential.p50:.2f} ms{forwarding}",
        None if sequential is None else sequential.p50 <= SEQUENTIAL_ADDED_MS,
    )
    added, floor = measured.get((LOADED, "added")), measured.get((LOADED, "floor"))
    routed = measured.get((LOADED, "router"))
    if added is None or floor is None or routed is None:
        results.target(f"Complete at {LOADED.label()}", "", None, None)
        return
    beyond = [added.p50 - floor.p50, added.p99 - floor.p99]
    results.target(
        f"Complete adds beyond a gRPC round trip (health check) at the same load, {LOADED.label()}",
        " and ".join(f"<= {ms:g} ms p{q * 100:g}" for q, ms in BEYOND_ROUND_TRIP_MS.items()),
        f"p50 {beyond[0]:.2f} ms, p99 {beyond[1]:.2f} ms",
        all(b <= ms for b, ms in zip(beyond, BEYOND_ROUND_TRIP_MS.values(), strict=True)),
    )
    results.target(
        f"Complete adds over calling the upstream directly, {LOADED.label()}",
        " and ".join(f"<= {ms:g} ms p{q * 100:g}" for q, ms in TARGET_MS.items()),
        f"p50 {added.p50:.2f} ms, p99 {added.p99:.2f} ms",
        added.p50 <= TARGET_MS[0.5] and added.p99 <= TARGET_MS[0.99],
    )
    cpu_us = routed.cpu_us_per_request or 0.0
    forwarder = measured.get((LOADED, "forwarder"))
    floor_us = 0.0 if forwarder is None else forwarder.cpu_us_per_request or 0.0
    results.target(
        f"router CPU per completion (Complete), {LOADED.label()}",
        f"<= {CPU_PER_COMPLETION_US / 1000:g} ms",
        f"{cpu_us / 1000:.2f} ms, of which a forwarder that routes nothing (gRPC, aiohttp, "
        f"JSON) spends {floor_us / 1000:.2f} ms and the router's own work "
        f"{(cpu_us - floor_us) / 1000:.2f} ms",
        cpu_us <= CPU_PER_COMPLETION_US,
    )


def run(results: Results) -> None:
    results.section(
        "Completion overhead",
        "The same completion sent straight to the fake OpenRouter (aiohttp, the router's own "
        "HTTP client) and through `router serve`, each in a process of its own, in "
        f"{ROUNDS} alternating rounds of a third of the requests (a warm-up before each); "
        "`added` is the router's latency minus the direct one at "
        "each percentile (its mean: the difference of the means). Closed loop at 1 or 50 in "
        "flight, or open loop: Poisson arrivals from one seeded sequence, the same both ways. "
        "Streaming rows time the first content token. Caller-side time.perf_counter per "
        "request after a warm-up of twice the requests in flight, garbage collector paused, "
        "nearest-rank percentiles, in milliseconds; req/s and the serving process's CPU per "
        "request (the fake's for `direct`, the router's otherwise; warm-up included) from "
        "/proc/<pid>/stat.",
    )
    measured: dict[tuple[Case, str], Row] = {}
    for delay_s in sorted({case.delay_s for case in CASES}):
        with fake_process(delay_s) as fake, router_process(fake) as router:
            measured |= asyncio.run(run_case(results, fake, router, delay_s))
    targets(results, measured)


def main() -> None:
    run(Results())


if __name__ == "__main__":
    main()
