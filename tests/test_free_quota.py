"""The free-variant allowance kept by the router (`FreeQuota`, `FreeCounter`): its counts in
memory and on a real redis-server shared by two routers, OpenRouter's 429s read, and what
routing then leaves out."""

from __future__ import annotations

import calendar
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from redis.asyncio import Redis

from service import catalogue
from service.config import Settings
from service.free_counter import FreeCounter
from service.free_quota import FreeQuota
from service.openrouter import OpenRouterClient
from service.openrouter.free_allowance import FreeLimitHit, Per, free_limit_hit
from service.pb.router.v1 import router_pb2 as pb
from service.redis_link import connect
from service.router import ModelRouter
from tests.redis_server import RedisServer

NOON = calendar.timegm((2026, 8, 14, 12, 0, 0))
NEXT_MINUTE = NOON + 60
MIDNIGHT = calendar.timegm((2026, 8, 15, 0, 0, 0))
TIMEOUT_S = 1.0  # generous, for loaded machines
CATALOGUE = catalogue.load()
FREE = {m.id for m in CATALOGUE.models if m.free_variant}


class Clock:
    def __init__(self) -> None:
        self.now = float(NOON)

    def __call__(self) -> float:
        return self.now


def free_routed(router: ModelRouter) -> set[str]:
    """The free models a plain route may pick."""
    ranked = router.route(pb.RouteRequest(mode=pb.MODE_COST, top_k=1000))
    return {c.model for c in ranked.candidates} & FREE


FREE_IDS = free_routed(
    ModelRouter(CATALOGUE, Settings(free_models=True))
)  # when the allowance has room


class Replicas:
    """Routers, each with its free quota, sharing one clock and (when given) one Redis."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.clock = Clock()
        self.clients: list[Redis] = []
        self.routers: list[ModelRouter] = []

    def quota(self, *, enabled: bool = True, retry_after_s: float = 1.0) -> FreeQuota:
        redis = None
        if self.url is not None:
            redis = connect(self.url, timeout_s=TIMEOUT_S)
            self.clients.append(redis)
        router = ModelRouter(CATALOGUE, Settings(free_models=True))
        self.routers.append(router)
        return FreeQuota(
            router,
            OpenRouterClient("http://127.0.0.1:1/api/v1", None),  # no key: the tier stays unknown
            FreeCounter(redis, timeout_s=TIMEOUT_S, retry_after_s=retry_after_s),
            enabled=enabled,
            clock=self.clock,
        )

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


@pytest.fixture
async def on_redis(redis_server: RedisServer) -> AsyncIterator[Replicas]:
    made = Replicas(redis_server.url)
    yield made
    await made.aclose()


@pytest.fixture(params=["redis", "memory"])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[Replicas]:
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    made = Replicas(url)
    yield made
    await made.aclose()


async def take_many(quota: FreeQuota, clock: Clock, count: int) -> None:
    """`count` granted free calls, a minute apart every 20 (the per-minute limit)."""
    for i in range(count):
        if i and i % 20 == 0:
            clock.now += 60
        assert await quota.take(), f"call {i + 1}"


async def test_the_day_is_fifty_calls_until_midnight(replicas: Replicas) -> None:
    quota = replicas.quota()
    router = replicas.routers[0]
    assert len(FREE_IDS) > 3
    assert free_routed(router) == FREE_IDS
    await take_many(quota, replicas.clock, 50)
    replicas.clock.now += 60
    assert not await quota.take(), "the 51st call of the day"
    assert free_routed(router) == set(), "every free variant is out of routing"
    status = await quota.status()
    assert (status.tier, status.per_day_limit, status.used_today) == ("unknown", 50, 50)
    assert status.blocked_until == MIDNIGHT
    assert "the 50 free calls of the day are used" in status.blocked_reason

    replicas.clock.now = MIDNIGHT
    quota.before_routing()
    assert free_routed(router) == FREE_IDS, "back by themselves at the reset"
    assert await quota.take()


async def test_twenty_a_minute(replicas: Replicas) -> None:
    quota = replicas.quota()
    await take_many(quota, replicas.clock, 20)
    assert not await quota.take()
    status = await quota.status()
    assert (status.used_this_minute, status.blocked_until) == (20, NEXT_MINUTE)
    replicas.clock.now = NEXT_MINUTE
    quota.before_routing()
    assert free_routed(replicas.routers[0]) == FREE_IDS
    assert await quota.take()


async def test_two_routers_on_one_redis_share_the_allowance(on_redis: Replicas) -> None:
    first, second = on_redis.quota(), on_redis.quota()
    for i in range(50):
        if i and i % 20 == 0:
            on_redis.clock.now += 60
        assert await (first, second)[i % 2].take(), f"call {i + 1}"
    assert not await first.take()
    assert not await second.take()
    for quota, router in zip((first, second), on_redis.routers, strict=True):
        assert (await quota.status()).used_today == 50
        assert free_routed(router) == set()


async def test_a_refusal_from_openrouter_blocks_until_its_reset_and_corrects_the_limit(
    replicas: Replicas,
) -> None:
    quota = replicas.quota()
    reset = NOON + 30 * 60
    await quota.refused(FreeLimitHit("day", limit=1000, reset_at=reset))
    assert free_routed(replicas.routers[0]) == set()
    assert not await quota.take()
    status = await quota.status()
    assert (status.per_day_limit, status.blocked_until) == (1000, reset)
    assert status.blocked_reason == "OpenRouter refused a free call (free-models-per-day)"

    replicas.clock.now = reset
    quota.before_routing()
    assert free_routed(replicas.routers[0]) == FREE_IDS
    assert await quota.take()


@pytest.mark.parametrize(("per", "until"), [("minute", NEXT_MINUTE), ("day", MIDNIGHT)])
async def test_a_refusal_without_a_reset_lasts_to_the_end_of_its_window(
    replicas: Replicas, per: Per, until: int
) -> None:
    quota = replicas.quota()
    await quota.refused(FreeLimitHit(per, limit=None, reset_at=None))
    status = await quota.status()
    assert status.blocked_until == until
    assert (status.per_minute_limit, status.per_day_limit) == (20, 50)
    replicas.clock.now = until - 1
    quota.before_routing()
    assert free_routed(replicas.routers[0]) == set()
    replicas.clock.now = until
    quota.before_routing()
    assert free_routed(replicas.routers[0]) == FREE_IDS


async def test_a_refusal_seen_by_one_router_holds_for_the_other(on_redis: Replicas) -> None:
    first, second = on_redis.quota(), on_redis.quota()
    assert await second.take()
    await first.refused(FreeLimitHit("day", limit=50, reset_at=MIDNIGHT))
    assert not await second.take(), "the day's count in Redis is at its limit"
    assert free_routed(on_redis.routers[1]) == set()


async def test_turned_off_free_variants_are_never_routed_to(replicas: Replicas) -> None:
    quota = replicas.quota(enabled=False)
    assert free_routed(replicas.routers[0]) == set()
    assert not await quota.take()
    replicas.clock.now = MIDNIGHT
    quota.before_routing()
    assert free_routed(replicas.routers[0]) == set()
    status = await quota.status()
    assert (status.enabled, status.used_today) == (False, 0)
    assert "turned off" in status.blocked_reason


async def test_counts_go_on_in_memory_while_redis_is_down(
    on_redis: Replicas, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    quota = on_redis.quota(retry_after_s=0.0)
    await take_many(quota, on_redis.clock, 5)
    redis_server.kill()
    with caplog.at_level(logging.WARNING, logger="service.free_quota"):
        await take_many(quota, on_redis.clock, 3)
    assert (await quota.status()).used_today == 8, "counted from what Redis last said"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one warning per outage"

    redis_server.start()  # empty: no persistence
    assert await quota.take()
    assert (await on_redis.quota().status()).used_today == 9, (
        "Redis is told of the calls counted in memory and of those it forgot"
    )


async def test_a_hung_redis_costs_a_bounded_wait_then_memory(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        made = Replicas(server.url)
        try:
            quota = made.quota(retry_after_s=60.0)
            server.pause()
            assert await quota.take(), "the timeout passes and the call is counted here"
            assert await quota.take(), "no further wait while Redis is away"
            assert (await quota.status()).used_today == 2
            server.resume()
        finally:
            await made.aclose()


def error_of(message: str, headers: dict[str, str] | None = None) -> dict[str, object]:
    metadata: dict[str, object] = {"provider_name": None}
    if headers is not None:
        metadata["headers"] = headers
    return {"code": 429, "message": message, "metadata": metadata}


NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


def test_free_limit_hits_are_read_from_the_body_or_the_headers() -> None:
    echoed = {
        "X-RateLimit-Limit": "20",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1765680060000",
    }
    per_minute = error_of("Rate limit exceeded: free-models-per-min. ", echoed)
    assert free_limit_hit(429, per_minute, NO_HEADERS) == FreeLimitHit(
        "minute", 20, 1_765_680_060.0
    )
    real_headers = CIMultiDictProxy(
        CIMultiDict({"X-RateLimit-Limit": "1000", "X-RateLimit-Reset": "1765756800000"})
    )
    per_day = error_of("Rate limit exceeded: free-models-per-day. ")
    assert free_limit_hit(429, per_day, real_headers) == FreeLimitHit("day", 1000, 1_765_756_800.0)
    stealth = error_of("Rate limit exceeded: free-models-per-day-stealth")
    assert free_limit_hit(429, stealth, NO_HEADERS) == FreeLimitHit("day", None, None)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, error_of("Provider returned error")),  # the upstream provider's, not the account's
        (429, None),
        (503, error_of("Rate limit exceeded: free-models-per-min. ")),
    ],
)
def test_other_errors_are_no_free_limit_hit(status: int, error: dict[str, object] | None) -> None:
    assert free_limit_hit(status, error, NO_HEADERS) is None
