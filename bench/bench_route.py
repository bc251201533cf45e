"""Routing latency through the service layers on the embedded catalogue: the in-process router
(proto in, proto out) and a gRPC round trip over loopback; then the decision cache: a decision
from the scorer, from L1 and from L2 (embedded catalogue and a synthetic one of 50k models, where
scoring costs more than a Redis round trip), and Route through the core with no Redis, Redis up
and Redis down, side by side in one run."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial

import grpc

from bench.processes import redis_process
from bench.rows import Results, Row
from bench.timing import METHOD, gc_paused, measure, sample_async
from service import catalogue, grpc_server
from service.catalogue import Catalogue
from service.config import Settings
from service.core import RouterCore
from service.decision_cache import DecisionCache
from service.decision_metrics import CACHE
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.redis_link import connect
from service.router import ModelRouter
from service.runtime import Runtime
from service.spend import SpendLedger
from testkit.servers import refused_port
from testkit.synthetic import synthetic

LARGE = 50_000
SESSION_RUN_S = 4.0
SPEED = pb.RouteRequest(mode=pb.MODE_SPEED, top_k=5)
# Two requests with a one-entry L1: every lookup misses L1 (then L2 or the scorer).
ALTERNATING = (SPEED, pb.RouteRequest(mode=pb.MODE_SPEED, top_k=6))
# More distinct requests than a small L1 holds: every Route is a miss.
DISTINCT = [pb.RouteRequest(mode=pb.MODE_SPEED, top_k=k) for k in range(1, 41)]


async def grpc_round_trips(
    settings: Settings, request: pb.RouteRequest, iterations: int
) -> list[int]:
    """Client and server share one event loop, so this is the whole round trip on one core."""
    core = RouterCore(Runtime.build(settings))
    running = await grpc_server.start(settings, core)
    samples = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = RouterStub(channel)
        for _ in range(200):
            await stub.Route(request)
        with gc_paused():
            for _ in range(iterations):
                start = time.perf_counter_ns()
                await stub.Route(request)
                samples.append(time.perf_counter_ns() - start)
    await running.stop(0)
    await core.aclose()
    return samples


@contextlib.contextmanager
def sources() -> Iterator[dict[str, int]]:
    """Lookups that hit each level inside the block (filled in on exit)."""
    before = dict(CACHE.hits)
    seen: dict[str, int] = {}
    yield seen
    seen.update({level: CACHE.hits[level] - before[level] for level in before})


async def cached(
    results: Results,
    name: str,
    call: Callable[[], Awaitable[object]],
    iterations: int,
    warmup: int = 200,
) -> Row:
    with sources() as hits:
        samples = await sample_async(call, iterations, warmup)
    return results.samples(f"{name} (hits l1 {hits['l1']}, l2 {hits['l2']})", samples)


def alternating(cache: DecisionCache) -> Callable[[], Awaitable[object]]:
    turn = iter(range(10**9))
    return lambda: cache.route(ALTERNATING[next(turn) % 2])


async def warmed(cache: DecisionCache) -> DecisionCache:
    """The cache with both alternating decisions in L2 and its round trips measured."""
    for _ in range(20):
        for request in ALTERNATING:
            await cache.route(request)
            await cache.flush()
    return cache


async def decision_rows(
    results: Results, label: str, router: ModelRouter, settings: Settings, redis_url: str | None
) -> None:
    n = 1_000 if len(router.catalogue.models) > 1000 else 5_000
    scorer = measure(
        results, f"{label}: scorer (ModelRouter.route)", lambda: router.route(SPEED), n, 20
    )
    l1 = DecisionCache(router, settings)
    l1_hit = await cached(results, f"{label}: L1 hit", lambda: l1.route(SPEED), n * 4)
    one_entry = settings.model_copy(update={"decision_cache_size": 1})
    if redis_url is not None:
        redis = connect(redis_url, timeout_s=settings.redis_timeout_s)
        await redis.ping()
        trips = await sample_async(lambda: redis.get("router:bench"), n, 50)
        results.samples(f"{label}: Redis GET round trip", trips)
        await redis.aclose()
        up = await warmed(
            DecisionCache(router, one_entry.model_copy(update={"redis_url": redis_url}))
        )
        await cached(
            results, f"{label}: L1 miss, Redis up: L2 or scorer, by the rule", alternating(up), n, 0
        )
        results.note(
            f"{label}: the rule's figures: L2 round trip {up.l2_round_trip_ns / 1e3:.1f} µs "
            f"against scorer {up.scorer_ns / 1e3:.1f} µs"
        )
        await up.aclose()
    with refused_port() as port:
        nowhere = one_entry.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
        down = await warmed(DecisionCache(router, nowhere))
        await cached(results, f"{label}: L1 miss, Redis down: scorer", alternating(down), n, 0)
        await down.aclose()
    results.note(f"{label}: L1 hit / scorer p50: {l1_hit.p50 / scorer.p50:.2f}")


async def side_by_side(
    results: Results,
    calls: dict[str, Callable[[], Awaitable[object]]],
    rounds: int = 5,
    iterations: int = 2_000,
) -> None:
    """The cases in alternating rounds, so that none of them has the machine to itself."""
    samples: dict[str, list[int]] = {name: [] for name in calls}
    hits = {name: {"l1": 0, "l2": 0} for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            with sources() as seen:
                samples[name] += await sample_async(call, iterations, 200)
            hits[name] = {level: hits[name][level] + seen[level] for level in seen}
    for name, taken in samples.items():
        results.samples(f"{name} (hits l1 {hits[name]['l1']}, l2 {hits[name]['l2']})", taken)


def cycling(core: RouterCore) -> Callable[[], Awaitable[object]]:
    turn = iter(range(10**9))
    return lambda: core.route(DISTINCT[next(turn) % len(DISTINCT)])


async def core_rows(results: Results, settings: Settings, redis_url: str | None) -> None:
    """Route through the core (as the gRPC and REST adapters call it)."""
    small = settings.model_copy(update={"decision_cache_size": 8})
    with refused_port() as port:
        setups = {"no Redis": None, "Redis down": f"redis://127.0.0.1:{port}/0"}
        if redis_url is not None:
            setups["Redis up"] = redis_url
        cores = {
            label: RouterCore(Runtime.build(small.model_copy(update={"redis_url": url})))
            for label, url in setups.items()
        }
        await side_by_side(
            results,
            {f"Route, one request, {label}": partial(c.route, SPEED) for label, c in cores.items()},
        )
        await side_by_side(
            results,
            {f"Route, 40 requests, L1 of 8, {label}": cycling(c) for label, c in cores.items()},
        )
        for core in cores.values():
            await core.aclose()


def sessions(core: RouterCore) -> Callable[[], Awaitable[object]]:
    """Turns of 50 sticky sessions in turn: each reads its session in Redis when there is one."""
    turn = iter(range(10**9))
    return lambda: core.route(
        pb.RouteRequest(mode=pb.MODE_SPEED, top_k=5, session=f"session-{next(turn) % 50}")
    )


async def session_rows(
    results: Results, settings: Settings, redis_url: str, paused_url: str
) -> None:
    """Route with a session key, which asks Redis on every turn: Redis up, refusing
    connections (killed) and taking them without answering (paused), against no Redis."""
    with refused_port() as port:
        setups = {
            "no Redis": None,
            "Redis up": redis_url,
            "Redis killed": f"redis://127.0.0.1:{port}/0",
            "Redis paused": paused_url,
        }
        cores = {
            label: RouterCore(Runtime.build(settings.model_copy(update={"redis_url": url})))
            for label, url in setups.items()
        }
        for core in cores.values():
            core.start()
        timeout_ns = settings.redis_timeout_s * 1e9
        for label, core in cores.items():
            started, taken = time.monotonic(), []
            while time.monotonic() - started < SESSION_RUN_S:  # from the first turn on
                taken += await sample_async(sessions(core), 1_000, 0)
            waited = sum(t >= timeout_ns / 2 for t in taken)
            longest = max(taken) / 1e6
            results.samples(
                f"Route with a session, {label} ({waited} waited, max {longest:.0f} ms)", taken
            )
        results.note(
            f"waited: turns of {timeout_ns / 2e6:.0f} ms or more (the Redis timeout is "
            f"{timeout_ns / 1e6:.0f} ms; then its breaker lets one probe a second through), in "
            f"{SESSION_RUN_S:.0f} s of turns from the first on"
        )
        for core in cores.values():
            await core.aclose()


async def cache_rows(results: Results, redis_url: str | None) -> None:
    settings = Settings(grpc_host="127.0.0.1", grpc_port=0)
    embedded = catalogue.load()
    models = sorted(synthetic(list(embedded.models), LARGE), key=lambda m: m.id)
    large = Catalogue(version="synthetic", snapshot_date="2026-08-01", models=tuple(models))
    results.section(
        "Decision cache",
        "A decision from the scorer, from L1 and from L2 (Redis), on the embedded catalogue and "
        f"on a synthetic one of {LARGE:,} models, speed mode, top 5; the hits column counts "
        f"the lookups each level answered. {METHOD}",
    )
    for label, cat in (("embedded", embedded), (f"synthetic {LARGE:,}", large)):
        await decision_rows(results, label, ModelRouter(cat, settings), settings, redis_url)
    results.section(
        "Route through the core: Redis up, down, none",
        "RouterCore.route as the gRPC and REST adapters call it, embedded catalogue; the "
        "setups side by side in 5 alternating rounds of 2,000 calls each, pooled. " + METHOD,
    )
    await core_rows(results, settings, redis_url)


async def outage_rows(results: Results, redis_url: str) -> None:
    results.section(
        "Route with sticky sessions while Redis is away",
        f"Turns of 50 sticky sessions, which read Redis on every turn, for {SESSION_RUN_S:.0f} s "
        "per setup from the first turn on: no Redis, Redis up, killed (refusing connections) "
        "and paused (SIGSTOP: taking connections, never answering); then 50 calls of the spend "
        "ledger against the paused Redis, each probing it. " + METHOD,
    )
    with redis_process(paused=True) as paused_url:
        settings = Settings(grpc_host="127.0.0.1", grpc_port=0)
        await session_rows(results, settings, redis_url, paused_url)
        await ledger_rows(results, settings, paused_url)


async def ledger_rows(results: Results, settings: Settings, paused_url: str) -> None:
    """The spend ledger's calls against a Redis that never answers, each call probing it (no
    interval between probes): how long each waits, against the Redis timeout."""
    timeout_s = settings.redis_timeout_s
    redis = connect(paused_url, timeout_s=timeout_s)
    ledger = SpendLedger(None, redis, timeout_s=timeout_s, retry_after_s=0)
    taken = await sample_async(ledger.status, 50, 0)
    await redis.aclose()
    results.samples(
        f"Spend ledger status, Redis paused, every call probing it (max {max(taken) / 1e6:.0f} "
        f"ms, timeout {timeout_s * 1e3:.0f} ms)",
        taken,
    )


def run(results: Results) -> None:
    snapshot = catalogue.load()
    settings = Settings(grpc_host="127.0.0.1", grpc_port=0, decision_cache=False)
    router = ModelRouter(snapshot, settings)
    results.section(
        "Route through the service layers",
        f"Catalogue {snapshot.version}: {len(snapshot.models)} models; Route, speed, top 5, no "
        "decision cache: in process (proto in, proto out), and a gRPC round trip over loopback "
        f"with client and server on one event loop. {METHOD}",
    )
    measure(results, "in-process Route (proto in, proto out)", lambda: router.route(SPEED), 20_000)
    samples = asyncio.run(grpc_round_trips(settings, SPEED, 3_000))
    results.samples("gRPC Route over loopback (aio client and server), no cache", samples)
    try:
        with redis_process() as url:
            asyncio.run(cache_rows(results, url))
            asyncio.run(outage_rows(results, url))
    except FileNotFoundError:
        results.note("redis-server is not installed (make system-deps): rows without Redis only")
        asyncio.run(cache_rows(results, None))


def main() -> None:
    run(Results())


if __name__ == "__main__":
    main()
