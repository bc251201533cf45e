"""Router replicas on one real redis-server agree on open circuits, learned latency and the
catalogue (service/shared_state.py); without Redis each works alone. The replicas here are
whole runtimes on the fake OpenRouter, exchanging when the test says so; the last test lets two
gRPC servers exchange in the background as deployed."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from service.config import ModelOverride
from service.core import RouterCore
from service.live_figures import LEARNED
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.runtime import Runtime
from testkit.fake_openrouter import FakeOpenRouter, HttpError, load_models
from testkit.servers import ServerThread, refused_port, settings_for
from tests.redis_server import RedisServer

QUALITY_ONLY = pb.RouteRequest(weights=pb.Weights(quality=1), top_k=50)
SPEED = pb.RouteRequest(mode=pb.MODE_SPEED, top_k=50)
HELLO = [pb.ChatMessage(role="user", content="Say hello.")]
COOLDOWN_S = 30.0  # the circuit policy's default


class Clocks:
    """A monotonic clock per replica (each with its own origin, as in two processes) over one
    Unix clock, all moved together by `advance`."""

    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self._origins: list[float] = []

    def monotonic(self) -> Callable[[], float]:
        origin = 1_000.0 * (len(self._origins) + 1)
        self._origins.append(origin)
        start = self.wall
        return lambda: origin + self.wall - start

    def unix(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.wall += seconds


Replica = Callable[..., AbstractAsyncContextManager[Runtime]]


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def replica(
    fake: FakeOpenRouter, tmp_path: Path, redis_server: RedisServer, clocks: Clocks
) -> Replica:
    """`replica(**settings)`: a runtime on the fake and `redis_server`, exchanging only when
    the test calls `runtime.shared.sync()`."""
    fake.reset()
    names = iter(range(100))

    @contextlib.asynccontextmanager
    async def make(**extra: Any) -> AsyncIterator[Runtime]:
        extra.setdefault("redis_url", redis_server.url)
        settings = settings_for(
            fake,
            tmp_path / f"state-{next(names)}",
            endpoint_stats_models=0,
            shared_state_interval_s=0,
            **extra,
        )
        runtime = Runtime.build(settings, clock=clocks.monotonic(), wall_clock=clocks.unix)
        try:
            yield runtime
        finally:
            await runtime.aclose()

    return make


def ranked(runtime: Runtime, request: pb.RouteRequest = QUALITY_ONLY) -> list[str]:
    return [c.model for c in runtime.router.route(request).candidates]


async def exchange(*replicas: Runtime) -> None:
    """Each replica's exchange with Redis, in this order."""
    for runtime in replicas:
        assert await runtime.shared.sync()


def trip(runtime: Runtime, model_id: str) -> None:
    """Five failures in a row, as five failed attempts on the model would record."""
    for _ in range(runtime.breakers.policy.consecutive_failures):
        assert runtime.breakers.acquire(model_id)
        runtime.breakers.record(model_id, False)


async def test_a_circuit_opened_on_one_replica_excludes_the_model_on_the_other(
    replica: Replica, clocks: Clocks
) -> None:
    async with replica() as one, replica() as other:
        await one.keeper.refresh()
        await other.keeper.refresh()
        broken = ranked(other)[0]
        trip(one, broken)
        await exchange(one, other)

        assert broken in other.breakers.open_models()
        assert broken not in ranked(other), "the other replica no longer routes to it"
        decision = other.router.route(QUALITY_ONLY)
        assert decision.removed_by_constraint["circuit_open"] == 1
        # Both cooldowns end at the same moment, whatever each process's monotonic origin.
        (ends_one,) = one.breakers.open_until().values()
        (ends_other,) = other.breakers.open_until().values()
        assert ends_one - one.breakers._clock() == pytest.approx(COOLDOWN_S)
        assert ends_other - other.breakers._clock() == pytest.approx(COOLDOWN_S)

        clocks.advance(COOLDOWN_S + 1)
        await exchange(one, other)
        assert other.breakers.state(broken) == "half_open", "each replica probes for itself"
        assert broken in ranked(other)
        assert one.breakers.state(broken) == "half_open"


async def test_a_later_opening_extends_and_an_echo_changes_nothing(
    replica: Replica, clocks: Clocks
) -> None:
    async with replica() as one, replica() as other:
        model = ranked(one)[0]
        trip(one, model)
        await exchange(one, other)
        version = other.breakers.version
        await exchange(one, other)
        assert other.breakers.version == version, "the same opening read again is no change"

        clocks.advance(COOLDOWN_S + 1)
        assert other.breakers.acquire(model)  # other's probe fails: open again, from now
        other.breakers.record(model, False)
        await exchange(other, one)
        assert model in one.breakers.open_models(), "one keeps it open as long as other does"
        (ends,) = one.breakers.open_until().values()
        # A failed probe doubles the cooldown.
        assert ends - one.breakers._clock() == pytest.approx(2 * COOLDOWN_S)


async def test_what_one_replica_learns_the_other_routes_with(
    replica: Replica, clocks: Clocks, redis_server: RedisServer
) -> None:
    async with replica() as one, replica() as other:
        fastest = ranked(other, SPEED)[0]
        one.completer._figures.observe(fastest, ttft_s=20.0, tokens_per_s=5.0)
        await exchange(one, other)

        shown = other.router.route(SPEED)
        assert fastest != shown.model, "what one learned moved the other's ranking"
        figures = figures_of(other, fastest)
        assert figures.latency_source == LEARNED
        assert figures.ttft_seconds == pytest.approx(20.0)

        other.completer._figures.observe(fastest, ttft_s=2.0, tokens_per_s=5.0)
        await exchange(other, one)
        for runtime in (one, other):
            figures = figures_of(runtime, fastest)
            assert figures.ttft_seconds == pytest.approx(11.0), "the mean of both replicas'"

        clocks.advance(61)  # past the observation TTL: forgotten everywhere, and in Redis
        await exchange(one, other)
        assert await one.shared.sync()
        figures = figures_of(other, fastest)
        assert figures.latency_source != LEARNED
        client = Redis.from_url(redis_server.url)
        try:
            assert await client.hlen("router:learned") == 0
        finally:
            await client.aclose()


def figures_of(runtime: Runtime, model_id: str) -> pb.Candidate:
    only = pb.RouteRequest(mode=pb.MODE_SPEED, constraints=pb.Constraints(allow_models=[model_id]))
    (candidate,) = runtime.router.route(only).candidates
    return candidate


async def test_a_refresh_on_one_replica_reaches_the_other(
    replica: Replica, fake: FakeOpenRouter, clocks: Clocks
) -> None:
    listed = load_models()
    first = str(listed[0]["id"])
    override = {first: ModelOverride(quality=0.01)}
    async with replica() as one, replica(model_overrides=override) as other:
        assert await other.keeper.refresh()
        embedded = one.router.catalogue.version
        clocks.advance(10)
        changed = [dict(row) for row in listed]
        changed[1]["pricing"] = {**changed[1]["pricing"], "completion": "0.000123"}
        fake.set_models(changed)
        assert await one.keeper.refresh()
        assert one.router.catalogue.version != embedded
        await exchange(one, other)

        status = other.keeper.status()
        assert status.source == "shared"
        assert status.last_refresh_success == clocks.unix()
        model = other.router.model(str(changed[1]["id"]))
        assert model is not None
        assert model.completion_price == pytest.approx(0.000123)
        first_model = other.router.model(first)
        assert first_model is not None
        assert first_model.quality == 0.01, "its own overrides"
        assert one.router.model(first) != first_model, "and not the other replica's"

        clocks.advance(10)  # other refreshes later, to the listing as it was: the newest wins
        fake.set_models(listed)
        assert await other.keeper.refresh()
        await exchange(one, other, one)
        assert one.keeper.status().source == "shared"
        price = one.router.model(str(changed[1]["id"]))
        assert price is not None
        assert price.completion_price != pytest.approx(0.000123)


async def test_an_older_shared_catalogue_does_not_replace_a_newer_one(
    replica: Replica, fake: FakeOpenRouter, clocks: Clocks
) -> None:
    async with replica() as one:
        assert await one.keeper.refresh()
        assert await one.shared.sync()
    clocks.advance(10)
    changed = [dict(row) for row in load_models()]
    changed[2]["pricing"] = {**changed[2]["pricing"], "completion": "0.000321"}
    fake.set_models(changed)
    async with replica() as late:
        assert await late.keeper.refresh()
        version = late.router.catalogue.version
        assert await late.shared.sync()
        assert late.router.catalogue.version == version
        assert late.keeper.status().source == "refreshed"


async def test_a_new_replica_starts_on_the_shared_catalogue(replica: Replica) -> None:
    async with replica() as one:
        assert await one.keeper.refresh()
        assert await one.shared.sync()
        async with replica() as newcomer:
            assert newcomer.keeper.status().source == "embedded"
            assert await newcomer.shared.sync()
            assert newcomer.router.catalogue.version == one.router.catalogue.version
            assert newcomer.keeper.status().source == "shared"


async def test_unreadable_shared_state_is_ignored_and_cleared(
    replica: Replica, redis_server: RedisServer
) -> None:
    client = Redis.from_url(redis_server.url)
    try:
        await client.hset("router:learned", mapping={"some/model\nelsewhere": "not json"})
        await client.set("router:{catalogue}:version", "v1 12.5")
        await client.set("router:{catalogue}", "{broken")
        async with replica() as alone:
            before = alone.router.catalogue.version
            assert await alone.shared.sync()
            assert alone.router.catalogue.version == before
            assert await alone.shared.sync()
            assert await client.hlen("router:learned") == 0
    finally:
        await client.aclose()


async def test_without_redis_each_replica_works_alone(replica: Replica) -> None:
    with refused_port() as port:
        async with replica(redis_url=f"redis://127.0.0.1:{port}/0") as alone:
            model = ranked(alone)[0]
            trip(alone, model)
            assert not await alone.shared.sync()
            assert not await alone.shared.sync(), "the breaker waits before asking again"
            assert REGISTRY.get_sample_value(
                "router_shared_state_exchanges_total", {"outcome": "failed"}
            )
            core = RouterCore(alone)
            answer = await core.route(QUALITY_ONLY)
            assert model not in [c.model for c in answer.candidates]


def test_replicas_serving_grpc_share_an_opened_circuit_in_the_background(
    fake: FakeOpenRouter, tmp_path: Path, redis_server: RedisServer
) -> None:
    fake.reset()
    with contextlib.ExitStack() as stack:
        stubs = []
        for name in ("one", "other"):
            settings = settings_for(
                fake,
                tmp_path / name,
                endpoint_stats_models=0,
                redis_url=redis_server.url,
                shared_state_interval_s=0.02,
                attempt_timeout_s=2,
            )
            address = stack.enter_context(ServerThread(settings))
            stub = RouterStub(stack.enter_context(grpc.insecure_channel(address)))
            stub.RefreshCatalogue(pb.RefreshCatalogueRequest())
            stubs.append(stub)
        one, other = stubs
        versions = {s.GetStatus(pb.GetStatusRequest()).catalogue.version for s in stubs}
        assert len(versions) == 1, "the second refreshed or took the first's catalogue"
        broken, spare = (c.model for c in other.Route(QUALITY_ONLY).candidates[:2])
        fake.set_behaviour(broken, HttpError.unavailable())
        ask = pb.CompleteRequest(messages=HELLO, models=[broken, spare])
        for _ in range(5):
            assert one.Complete(ask, timeout=10).model == spare
        for _ in range(500):  # the other replica's next exchange, a few tens of ms away
            if broken not in [c.model for c in other.Route(QUALITY_ONLY).candidates]:
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"{broken} still routed to on the other replica")
