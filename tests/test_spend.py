"""The daily spend limit against a real redis-server on loopback (and without one)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis

from service.redis_link import connect
from service.spend import SpendLedger, SpendStatus
from tests.redis_server import LossyProxy, RedisServer, SilentRedis

TIMEOUT_S = 1.0  # generous, for loaded machines; the tests about time bounds set their own
NOON = dt.datetime(2025, 3, 14, 12, 0, tzinfo=dt.UTC).timestamp()
DAY = dt.date(2025, 3, 14)

T = TypeVar("T")


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Ledgers:
    """Makes ledgers (router replicas) sharing one Redis, or in memory when `url` is None."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.clock = Clock()
        self.clients: list[Redis] = []

    def client(self, timeout_s: float = TIMEOUT_S) -> Redis:
        assert self.url is not None
        client = connect(self.url, timeout_s=timeout_s)
        self.clients.append(client)
        return client

    def new(self, limit_usd: float | None = 1.0, **options: Any) -> SpendLedger:
        options.setdefault("timeout_s", TIMEOUT_S)
        client = None if self.url is None else self.client(timeout_s=options["timeout_s"])
        return SpendLedger(limit_usd, client, clock=self.clock, **options)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


@pytest.fixture
async def on_redis(redis_server: RedisServer) -> AsyncIterator[Ledgers]:
    made = Ledgers(redis_server.url)
    yield made
    await made.aclose()


@pytest.fixture(params=["redis", "memory"])
async def ledgers(request: pytest.FixtureRequest) -> AsyncIterator[Ledgers]:
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    made = Ledgers(url)
    yield made
    await made.aclose()


def warnings_logged(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        1 for r in caplog.records if r.name == "service.spend" and r.levelno == logging.WARNING
    )


# Arithmetic and the limit, on Redis and in memory


async def test_reserve_settle_release(ledgers: Ledgers) -> None:
    ledger = ledgers.new(1.0)
    first = await ledger.reserve(0.3)
    second = await ledger.reserve(0.5)
    assert first is not None
    assert second is not None
    assert await ledger.status() == SpendStatus(DAY, 0.0, 0.8, 1.0)
    assert await ledger.reserve(0.3) is None  # 0.8 + 0.3 > 1.0

    await ledger.settle(first, 0.1)  # cheaper than reserved
    assert await ledger.status() == SpendStatus(DAY, 0.1, 0.5, 1.0)
    await ledger.settle(second, 0.7)  # dearer than reserved: recorded as it is
    assert await ledger.status() == SpendStatus(DAY, 0.8, 0.0, 1.0)

    third = await ledger.reserve(0.2)  # exactly up to the limit
    assert third is not None
    assert await ledger.reserve(0.000001) is None
    await ledger.release(third)
    assert await ledger.status() == SpendStatus(DAY, 0.8, 0.0, 1.0)
    assert await ledger.reserve(0.21) is None
    assert await ledger.reserve(0.2) is not None


async def test_many_small_amounts_do_not_drift(ledgers: Ledgers) -> None:
    ledger = ledgers.new(None)
    for _ in range(100):
        reservation = await ledger.reserve(0.1)
        assert reservation is not None
        await ledger.settle(reservation, 0.1)
    assert sum([0.1] * 100) != 10.0
    assert (await ledger.status()).spent_usd == 10.0


async def test_unlimited_always_reserves_and_still_records(ledgers: Ledgers) -> None:
    ledger = ledgers.new(None)
    reservation = await ledger.reserve(50_000.0)
    assert reservation is not None
    await ledger.settle(reservation, 12_345.678901234)
    assert await ledger.status() == SpendStatus(DAY, 12_345.678901234, 0.0, None)


async def test_the_limit_can_change_while_running(ledgers: Ledgers) -> None:
    ledger = ledgers.new(0.5)
    assert await ledger.reserve(0.4) is not None
    assert await ledger.reserve(0.4) is None
    ledger.limit_usd = 1.0
    assert await ledger.reserve(0.4) is not None
    assert (await ledger.status()).limit_usd == 1.0


@pytest.mark.parametrize("amount", [-0.01, float("nan"), float("inf"), 2e6])
async def test_nonsense_amounts_are_refused(amount: float) -> None:
    ledger = SpendLedger(1.0)
    with pytest.raises(ValueError, match="amount must be"):
        await ledger.reserve(amount)
    with pytest.raises(ValueError, match="amount must be"):
        SpendLedger(amount)


async def test_50_concurrent_reservations_never_pass_the_limit(ledgers: Ledgers) -> None:
    ledger = ledgers.new(1.0)
    granted = [r for r in await asyncio.gather(*(ledger.reserve(0.03) for _ in range(50))) if r]
    assert len(granted) == 33  # 33 * 0.03 = 0.99; one more would pass 1.0
    await asyncio.gather(*(ledger.settle(r, 0.03) for r in granted))
    status = await ledger.status()
    assert status.spent_usd == 0.99
    assert status.spent_usd <= 1.0
    assert status.reserved_usd == 0.0


async def test_an_unsettled_reservation_lapses_but_a_late_settle_counts(ledgers: Ledgers) -> None:
    ledger = ledgers.new(1.0, hold_ttl_s=60)
    crashed = await ledger.reserve(1.0)
    assert crashed is not None
    assert await ledger.reserve(0.1) is None
    ledgers.clock.now += 61
    assert await ledger.reserve(0.1) is not None
    assert await ledger.status() == SpendStatus(DAY, 0.0, 0.1, 1.0)
    await ledger.settle(crashed, 0.5)
    assert await ledger.status() == SpendStatus(DAY, 0.5, 0.1, 1.0)


async def test_days_roll_over_at_utc_midnight(ledgers: Ledgers) -> None:
    ledger = ledgers.new(1.0)
    ledgers.clock.now = dt.datetime(2025, 3, 14, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    spent = await ledger.reserve(0.6)
    late = await ledger.reserve(0.3)
    assert spent is not None
    assert late is not None
    await ledger.settle(spent, 0.6)
    assert await ledger.reserve(0.2) is None

    ledgers.clock.now += 2  # 00:00:01 the next day
    assert await ledger.status() == SpendStatus(DAY + dt.timedelta(days=1), 0.0, 0.0, 1.0)
    assert await ledger.reserve(0.9) is not None
    await ledger.settle(late, 0.3)  # counted on the day it was reserved
    assert (await ledger.status()).spent_usd == 0.0

    ledgers.clock.now -= 2
    assert await ledger.status() == SpendStatus(DAY, 0.9, 0.0, 1.0)


# Shared and durable through Redis


async def test_replicas_share_one_limit(on_redis: Ledgers) -> None:
    replicas = [on_redis.new(1.0), on_redis.new(1.0)]
    results = await asyncio.gather(*(replicas[i % 2].reserve(0.1) for i in range(50)))
    granted = [r for r in results if r is not None]
    assert len(granted) == 10
    for i, reservation in enumerate(granted):
        await replicas[i % 2].settle(reservation, 0.1)
    assert await replicas[0].status() == await replicas[1].status()
    assert (await replicas[0].status()).spent_usd == 1.0
    assert await replicas[1].reserve(0.01) is None


async def test_a_new_ledger_sees_todays_spend(on_redis: Ledgers) -> None:
    before = on_redis.new(1.0)
    reservation = await before.reserve(0.5)
    assert reservation is not None
    await before.settle(reservation, 0.42)
    await on_redis.aclose()  # the router stops

    after = on_redis.new(1.0)  # and starts again, with a new connection
    assert await after.status() == SpendStatus(DAY, 0.42, 0.0, 1.0)
    assert await after.reserve(0.6) is None
    assert await after.reserve(0.58) is not None


async def test_storage_layout(on_redis: Ledgers) -> None:
    ledger = on_redis.new(1.0, key_ttl_s=3 * 86_400, hold_ttl_s=600)
    settled = await ledger.reserve(0.25)
    held = await ledger.reserve(0.5)
    assert settled is not None
    assert held is not None
    await ledger.settle(settled, 0.123456789)

    raw = on_redis.client()
    key = "router:spend:{2025-03-14}"
    assert await raw.hgetall(key) == {b"spent": b"123456789", b"reserved": b"500000000"}
    assert await raw.zrange(f"{key}:holds", 0, -1) == [held.member.encode()]
    assert await raw.zrange(f"{key}:settled", 0, -1) == [settled.member.encode()]
    for suffix in ("", ":holds", ":settled"):
        assert 0 < await raw.ttl(key + suffix) <= 3 * 86_400

    on_redis.clock.now += 600  # hold_ttl_s: the hold lapses, the settle is forgotten
    assert await ledger.status() == SpendStatus(DAY, 0.123456789, 0.0, 1.0)
    assert await raw.zcard(f"{key}:holds") == 0
    assert await raw.zcard(f"{key}:settled") == 0


# Redis failures


async def test_redis_killed_midway(
    on_redis: Ledgers, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The ledger goes on in memory from the totals it last saw; when Redis comes back (empty:
    no persistence) it restores at least that spend and adds what it recorded meanwhile."""
    ledger = on_redis.new(1.0, retry_after_s=0)  # every call probes Redis
    done = await ledger.reserve(0.2)
    in_flight = await ledger.reserve(0.3)
    assert done is not None
    assert in_flight is not None
    await ledger.settle(done, 0.2)

    redis_server.kill()
    assert await ledger.status() == SpendStatus(DAY, 0.2, 0.3, 1.0)
    assert not ledger.using_redis
    results = await asyncio.gather(*(ledger.reserve(0.1) for _ in range(50)))
    granted = [r for r in results if r is not None]
    assert len(granted) == 5  # 0.2 spent + 0.3 reserved + 5 * 0.1
    await ledger.settle(in_flight, 0.25)
    for reservation in granted:
        await ledger.settle(reservation, 0.07)
    assert await ledger.status() == SpendStatus(DAY, 0.8, 0.0, 1.0)
    assert warnings_logged(caplog) == 1

    redis_server.start()
    assert await ledger.status() == SpendStatus(DAY, 0.8, 0.0, 1.0)
    assert ledger.using_redis
    assert (await on_redis.new(1.0).status()).spent_usd == 0.8
    assert warnings_logged(caplog) == 1


async def test_lost_replies_are_not_counted_twice(
    on_redis: Ledgers, redis_server: RedisServer
) -> None:
    """A frozen Redis times calls out, then runs them once it thaws: replaying them from the
    journal must neither count a settle again nor keep a hold the ledger made elsewhere."""
    ledger = on_redis.new(1.0, timeout_s=0.05, retry_after_s=0)
    holds = on_redis.client().zcard
    done = await ledger.reserve(0.4)
    assert done is not None
    warm = await ledger.reserve(0.0)
    assert warm is not None
    await ledger.release(warm)  # Redis has the settle script: a late settle would run

    redis_server.pause()
    try:
        await ledger.settle(done, 0.4)  # sent, then timed out
        assert not ledger.using_redis
    finally:
        redis_server.resume()
    assert await ledger.status() == SpendStatus(DAY, 0.4, 0.0, 1.0)
    assert ledger.using_redis

    redis_server.pause()
    try:
        local = await ledger.reserve(0.1)  # sent, timed out, then held in memory instead
        assert local is not None
        await ledger.settle(local, 0.1)
    finally:
        redis_server.resume()
    assert await holds("router:spend:{2025-03-14}:holds") == 1  # the hold Redis made late
    assert await ledger.status() == SpendStatus(DAY, 0.5, 0.0, 1.0)
    assert await holds("router:spend:{2025-03-14}:holds") == 0
    assert (await on_redis.new(1.0).status()).spent_usd == 0.5


async def test_a_replay_whose_reply_was_lost_is_not_applied_twice(
    redis_server: RedisServer,
) -> None:
    """Redis runs the replay of the journal but its reply is lost: replaying it again when
    Redis answers must change nothing."""
    retry_after_s = 0.2
    async with LossyProxy(redis_server.port) as proxy:
        ledgers = Ledgers(proxy.url)
        try:
            ledger = ledgers.new(1.0, timeout_s=0.1, retry_after_s=retry_after_s)
            done = await ledger.reserve(0.2)
            assert done is not None
            await ledger.settle(done, 0.2)

            proxy.lose_replies_to = b"EVALSHA"  # scripts run, their replies get lost
            held = await ledger.reserve(0.3)  # times out: held in memory instead
            local = await ledger.reserve(0.1)  # in memory only, until Redis is probed again
            kept = await ledger.reserve(0.05)
            assert held is not None
            assert local is not None
            assert kept is not None
            await ledger.settle(local, 0.1)
            await asyncio.sleep(retry_after_s * 1.5)
            assert await ledger.status() == SpendStatus(DAY, 0.3, 0.35, 1.0)  # replay lost
            assert not ledger.using_redis
            await ledger.settle(held, 0.25)  # in memory, though Redis may hold it now

            proxy.lose_replies_to = None
            await asyncio.sleep(retry_after_s * 1.5)
            assert await ledger.status() == SpendStatus(DAY, 0.55, 0.05, 1.0)  # replayed again
            assert ledger.using_redis
            await ledger.settle(kept, 0.05)
            assert await ledger.status() == SpendStatus(DAY, 0.6, 0.0, 1.0)
            assert await ledgers.new(1.0).status() == SpendStatus(DAY, 0.6, 0.0, 1.0)
        finally:
            await ledgers.aclose()


async def test_redis_unreachable_from_the_start_then_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    socket = tmp_path / "redis.sock"
    ledgers = Ledgers(f"unix://{socket}")
    try:
        ledger = ledgers.new(1.0, retry_after_s=0)
        first = await ledger.reserve(0.6)
        assert first is not None
        assert await ledger.reserve(0.6) is None
        await ledger.settle(first, 0.5)
        assert await ledger.status() == SpendStatus(DAY, 0.5, 0.0, 1.0)
        assert not ledger.using_redis
        assert warnings_logged(caplog) == 1

        options = ["--port", "0", "--unixsocket", str(socket)]
        with RedisServer(tmp_path / "redis", options=options, url=f"unix://{socket}"):
            assert await ledger.status() == SpendStatus(DAY, 0.5, 0.0, 1.0)
            assert ledger.using_redis
            assert (await ledgers.new(1.0).status()).spent_usd == 0.5
    finally:
        await ledgers.aclose()


async def test_a_redis_that_never_answers_is_waited_for_once_per_call() -> None:
    """With no interval between probes every call tries Redis: each waits for it (its timeout),
    gives up and carries on in memory, without trying again."""
    budget = 0.02
    waits: list[float] = []

    async def timed(call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await call
        finally:
            waits.append(time.perf_counter() - started)

    with SilentRedis() as silent:
        ledgers = Ledgers(silent.url)
        try:
            ledger = ledgers.new(1.0, timeout_s=budget, retry_after_s=0)  # every call waits
            for _ in range(5):
                reservation = await timed(ledger.reserve(0.1))
                assert reservation is not None
                await timed(ledger.settle(reservation, 0.1))
            assert (await timed(ledger.status())).spent_usd == 0.5
            assert not ledger.using_redis
            assert silent.connections() == 11  # one attempt per call, none retried
        finally:
            await ledgers.aclose()
    assert len(waits) == 11
    assert min(waits) >= budget * 0.9  # each call did wait for Redis


async def test_while_down_only_one_call_per_interval_waits_for_redis() -> None:
    with SilentRedis() as silent:
        ledgers = Ledgers(silent.url)
        try:
            ledger = ledgers.new(1.0, timeout_s=0.05, retry_after_s=60)
            await ledger.status()  # waits out the timeout once
            assert not ledger.using_redis
            assert silent.connections() == 1
            for _ in range(20):
                reservation = await ledger.reserve(0.01)
                assert reservation is not None
                await ledger.settle(reservation, 0.01)
            assert silent.connections() == 1  # no other call went to Redis
            assert (await ledger.status()).spent_usd == 0.2
        finally:
            await ledgers.aclose()
