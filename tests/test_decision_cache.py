"""The decision cache: L1 in process, L2 in a real redis-server; the same decision from every
level, every invalidation, the profile's buckets, the rule for reading L2, and Redis away."""

from __future__ import annotations

import asyncio
import gc
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from service import catalogue
from service.catalogue import Catalogue
from service.config import Settings
from service.decision_cache import SAMPLES, DecisionCache, rounded
from service.live_figures import LiveFigures
from service.pb.router.v1 import router_pb2 as pb
from service.redis_link import connect
from service.resilience import CircuitBreakers, CircuitPolicy
from service.router import ModelRouter
from testkit.synthetic import synthetic
from tests.redis_server import RedisServer

SPEED = pb.RouteRequest(mode=pb.MODE_SPEED, top_k=5)
LARGE_CATALOGUE = 50_000


def lookups(level: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "router_decision_cache_lookups_total", {"level": level, "outcome": outcome}
    )
    assert value is not None
    return value


def sources() -> dict[str, float]:
    """Decisions so far by source (l1, l2, scorer)."""
    counts = {}
    for source in ("l1", "l2", "scorer"):
        value = REGISTRY.get_sample_value(
            "router_decision_latency_seconds_count", {"source": source}
        )
        counts[source] = value or 0.0
    return counts


class Sources:
    """Where the decisions made inside the `with` block came from."""

    def __enter__(self) -> Sources:
        self._before = sources()
        return self

    def __exit__(self, *exc: object) -> None:
        after = sources()
        self.counts = {k: after[k] - self._before[k] for k in after}


def bare(decision: pb.RouteResponse) -> pb.RouteResponse:
    """The decision without its id, which every answer has afresh."""
    copy = pb.RouteResponse()
    copy.CopyFrom(decision)
    copy.decision_id = ""
    return copy


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, refresh_interval_s=0, free_models=True)


@pytest.fixture
def router(settings: Settings) -> ModelRouter:
    return ModelRouter(catalogue.load(), settings)


@pytest.fixture
def cache(router: ModelRouter, settings: Settings) -> DecisionCache:
    return DecisionCache(router, settings)


Replicas = Callable[[ModelRouter], Awaitable[DecisionCache]]


@pytest.fixture
async def on_redis(settings: Settings, redis_server: RedisServer) -> AsyncIterator[Replicas]:
    """Decision caches on `redis_server`, each as a replica of its own would have."""
    made: list[DecisionCache] = []

    async def replica(router: ModelRouter) -> DecisionCache:
        made.append(
            DecisionCache(router, settings.model_copy(update={"redis_url": redis_server.url}))
        )
        return made[-1]

    yield replica
    for cache in made:
        await cache.aclose()


@pytest.fixture(scope="module")
def large_catalogue() -> Iterator[Catalogue]:
    models = sorted(synthetic(list(catalogue.load().models), LARGE_CATALOGUE), key=lambda m: m.id)
    # Out of the garbage collector's sight, as a server's catalogue is once it has started:
    # collections walking 50k records would add milliseconds to the round trips measured.
    gc.collect()
    gc.freeze()
    yield Catalogue(version="synthetic-50k", snapshot_date="2026-08-01", models=tuple(models))
    gc.unfreeze()


@pytest.fixture
async def redis(redis_server: RedisServer, settings: Settings) -> AsyncIterator[Redis]:
    client = connect(redis_server.url, timeout_s=settings.redis_timeout_s)
    yield client
    await client.aclose()


def profiled(prompt_tokens: int, output_tokens: int = 500, **fields: Any) -> pb.RouteRequest:
    return pb.RouteRequest(
        profile=pb.RequestProfile(prompt_tokens=prompt_tokens, output_tokens=output_tokens),
        **fields,
    )


def test_token_counts_round_to_two_significant_digits() -> None:
    assert [rounded(n, 2) for n in (0, 7, 99, 1234, 1250, 1180, 98_765)] == [
        0, 7, 99, 1200, 1300, 1200, 99_000,
    ]  # fmt: skip
    assert rounded(4_294_967_295, 2) == 4_200_000_000  # up would leave the uint32 range
    assert rounded(1234, 3) == 1230


async def test_a_repeated_request_is_answered_from_l1_with_a_fresh_id(
    cache: DecisionCache, router: ModelRouter
) -> None:
    with Sources() as seen:
        first = await cache.route(SPEED)
        second = await cache.route(SPEED)
    assert seen.counts == {"l1": 1, "l2": 0, "scorer": 1}
    assert bare(first) == bare(second)
    assert first.decision_id != second.decision_id
    assert bare(first) == bare(router.route(SPEED))


async def test_a_changed_answer_does_not_change_the_cache(cache: DecisionCache) -> None:
    first = await cache.route(SPEED)
    expected = bare(first)
    first.model = "someone/else"
    first.candidates.pop()
    assert bare(await cache.route(SPEED)) == expected


async def test_profiles_in_one_bucket_share_a_decision_ranked_for_the_bucket(
    cache: DecisionCache, router: ModelRouter
) -> None:
    with Sources() as seen:
        a = await cache.route(profiled(1234, 496))
        b = await cache.route(profiled(1180, 504))
    assert seen.counts == {"l1": 1, "l2": 0, "scorer": 1}
    assert bare(a) == bare(b)
    assert (a.profile.prompt_tokens, a.profile.output_tokens) == (1200, 500)
    assert bare(a) == bare(router.route(profiled(1200, 500)))
    with Sources() as seen:
        c = await cache.route(profiled(1260, 496))
    assert seen.counts["scorer"] == 1
    assert c.profile.prompt_tokens == 1300


async def test_every_part_of_the_request_is_in_the_key(cache: DecisionCache) -> None:
    requests = [
        SPEED,
        pb.RouteRequest(mode=pb.MODE_COST, top_k=5),
        pb.RouteRequest(weights=pb.Weights(latency=1, cost=0, quality=1), top_k=5),
        pb.RouteRequest(mode=pb.MODE_SPEED, top_k=6),
        pb.RouteRequest(mode=pb.MODE_SPEED, top_k=5, constraints=pb.Constraints()),
        pb.RouteRequest(
            mode=pb.MODE_SPEED, top_k=5, constraints=pb.Constraints(min_context_tokens=200_000)
        ),
        pb.RouteRequest(
            mode=pb.MODE_SPEED, top_k=5, constraints=pb.Constraints(required_parameters=["tools"])
        ),
    ]
    with Sources() as seen:
        for request in requests:
            await cache.route(request)
    assert seen.counts == {"l1": 0, "l2": 0, "scorer": len(requests)}


async def test_a_disabled_cache_ranks_every_request_for_its_own_profile(
    router: ModelRouter, settings: Settings
) -> None:
    off = DecisionCache(router, settings.model_copy(update={"decision_cache": False}))
    with Sources() as seen:
        first = await off.route(profiled(1234))
        await off.route(profiled(1234))
    assert seen.counts == {"l1": 0, "l2": 0, "scorer": 0}  # the scorer's own histogram counts
    assert first.profile.prompt_tokens == 1234


async def test_a_replaced_catalogue_is_never_served_a_stale_decision(
    cache: DecisionCache, router: ModelRouter
) -> None:
    best = (await cache.route(SPEED)).model
    current = router.catalogue
    router.replace_catalogue(
        Catalogue.of(current.snapshot_date, [m for m in current.models if m.id != best])
    )
    with Sources() as seen:
        after = await cache.route(SPEED)
    assert seen.counts["scorer"] == 1
    assert after.model != best
    assert after.catalogue_version == router.catalogue.version != current.version


async def test_a_circuit_opening_or_closing_is_never_served_a_stale_decision(
    cache: DecisionCache, router: ModelRouter
) -> None:
    now = [0.0]
    breakers = CircuitBreakers(CircuitPolicy(consecutive_failures=1), clock=lambda: now[0])
    figures = LiveFigures(router, breakers)
    best = (await cache.route(SPEED)).model
    assert breakers.acquire(best)
    breakers.record(best, ok=False)
    figures.before_routing()
    opened = await cache.route(SPEED)
    assert best not in [c.model for c in opened.candidates]
    assert bare(opened) == bare(router.route(SPEED))
    now[0] += breakers.policy.cooldown_s  # half-open: routable again
    figures.before_routing()
    # The figures are those of the first decision again, and so is the answer.
    closed = await cache.route(SPEED)
    assert closed.model == best
    assert bare(closed) == bare(router.route(SPEED))


async def test_a_learned_shift_that_can_change_the_ranking_is_never_served_stale(
    cache: DecisionCache, router: ModelRouter
) -> None:
    figures = LiveFigures(router)
    decision = await cache.route(SPEED)
    runner_up = decision.candidates[1]
    figures.observe(
        runner_up.model,
        ttft_s=runner_up.ttft_seconds / 4,
        tokens_per_s=runner_up.tokens_per_second * 4,
    )
    figures.before_routing()
    with Sources() as seen:
        shifted = await cache.route(SPEED)
    assert seen.counts["scorer"] == 1
    assert shifted.model == runner_up.model
    assert bare(shifted) == bare(router.route(SPEED))


async def test_a_learned_shift_within_the_threshold_keeps_the_cached_decision(
    cache: DecisionCache, router: ModelRouter, settings: Settings
) -> None:
    figures = LiveFigures(router, alpha=1.0)
    best = (await cache.route(SPEED)).candidates[0]
    figures.observe(best.model, ttft_s=best.ttft_seconds, tokens_per_s=best.tokens_per_second)
    figures.before_routing()
    learned = await cache.route(SPEED)  # the source is now "learned": a new decision
    assert learned.candidates[0].latency_source == "learned"
    nudge = 1 + settings.decision_cache_live_shift / 2
    figures.observe(best.model, ttft_s=best.ttft_seconds * nudge)
    figures.before_routing()
    with Sources() as seen:
        await cache.route(SPEED)
    assert seen.counts == {"l1": 1, "l2": 0, "scorer": 0}


async def test_free_variants_turning_unavailable_are_never_served_a_stale_decision(
    cache: DecisionCache, router: ModelRouter
) -> None:
    cheapest = pb.RouteRequest(weights=pb.Weights(cost=1))
    free = (await cache.route(cheapest)).model
    assert free.endswith(":free")
    router.set_free_available(False)
    assert not (await cache.route(cheapest)).model.endswith(":free")
    router.set_free_available(True)
    assert (await cache.route(cheapest)).model == free


def costing(replica: DecisionCache, *, scorer_ns: int, round_trip_ns: int) -> None:
    """What scoring and a Redis round trip have cost the replica lately, as it measured them:
    set here, so that the test does not depend on how busy the machine is."""
    for _ in range(SAMPLES):
        replica._scorer.add(scorer_ns)
        replica._round_trip.add(round_trip_ns)


async def test_with_a_fast_scorer_l2_is_neither_read_nor_written_but_to_measure_it(
    router: ModelRouter, on_redis: Replicas, redis: Redis
) -> None:
    cache = await on_redis(router)
    await cache.route(profiled(10, mode=pb.MODE_SPEED))
    await cache.flush()
    # Written while the round trip is unknown (the first write only connects).
    assert len(await redis.keys("router:decision-cache:*")) == 1
    assert cache.l2_round_trip_ns == math.inf
    for prompt_tokens in range(11, 50):
        # Again before each miss: the misses add what they measure on this (busy) machine.
        costing(cache, scorer_ns=30_000, round_trip_ns=200_000)
        await cache.route(profiled(prompt_tokens, mode=pb.MODE_SPEED))
        await cache.flush()
    # Then only one miss in SAMPLE_EVERY is written, to keep the round trip measured.
    assert len(await redis.keys("router:decision-cache:*")) <= 2
    reads = lookups("l2", "hit") + lookups("l2", "miss")
    for prompt_tokens in range(10, 50):
        costing(cache, scorer_ns=30_000, round_trip_ns=200_000)
        await cache.route(profiled(prompt_tokens, mode=pb.MODE_COST))
        await cache.flush()
    assert lookups("l2", "hit") + lookups("l2", "miss") == reads


@pytest.fixture(scope="module")
def large_router(
    large_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> ModelRouter:
    return ModelRouter(large_catalogue, Settings(state_dir=tmp_path_factory.mktemp("state")))


async def test_with_an_expensive_scorer_l2_is_read_and_gives_the_scorers_decision(
    large_router: ModelRouter, on_redis: Replicas, redis_server: RedisServer
) -> None:
    replica_a = await on_redis(large_router)
    replica_b = await on_redis(large_router)
    scored = await replica_a.route(SPEED)
    await replica_a.flush()
    costing(replica_b, scorer_ns=2_000_000, round_trip_ns=100_000)
    with Sources() as seen:
        shared = await replica_b.route(SPEED)
        again = await replica_b.route(SPEED)
    assert seen.counts == {"l1": 1, "l2": 1, "scorer": 0}
    assert bare(scored) == bare(shared) == bare(again) == bare(large_router.route(SPEED))

    redis_server.kill()
    quality = pb.RouteRequest(mode=pb.MODE_QUALITY)
    with Sources() as seen:
        alone = await replica_b.route(quality)
        await replica_b.flush()
        await replica_b.route(pb.RouteRequest(mode=pb.MODE_SPEED, top_k=7))
    assert seen.counts == {"l1": 0, "l2": 0, "scorer": 2}
    assert bare(alone) == bare(large_router.route(quality))


async def test_redis_stopped_leaves_l1_answering(
    router: ModelRouter, on_redis: Replicas, redis_server: RedisServer
) -> None:
    cache = await on_redis(router)
    first = await cache.route(SPEED)
    redis_server.kill()
    await cache.flush()
    with Sources() as seen:
        for top_k in (5, 6, 5, 6):
            await cache.route(pb.RouteRequest(mode=pb.MODE_SPEED, top_k=top_k))
            await cache.flush()
    assert seen.counts == {"l1": 3, "l2": 0, "scorer": 1}
    assert bare(await cache.route(SPEED)) == bare(first)


async def test_a_change_while_l2_is_asked_files_the_decision_under_the_new_state(
    large_router: ModelRouter, on_redis: Replicas
) -> None:
    replica = await on_redis(large_router)
    costing(replica, scorer_ns=2_000_000, round_trip_ns=100_000)
    now = [0.0]
    breakers = CircuitBreakers(CircuitPolicy(consecutive_failures=1), clock=lambda: now[0])
    figures = LiveFigures(large_router, breakers)
    best = large_router.route(SPEED).model

    async def open_circuit() -> None:  # runs while the route waits for Redis
        assert breakers.acquire(best)
        breakers.record(best, ok=False)
        figures.before_routing()

    with Sources() as seen:
        while_open, _ = await asyncio.gather(replica.route(SPEED), open_circuit())
    assert seen.counts == {"l1": 0, "l2": 0, "scorer": 1}  # L2 was asked, and missed
    assert while_open.model != best
    now[0] += breakers.policy.cooldown_s
    figures.before_routing()
    closed = await replica.route(SPEED)
    assert closed.model == best
    assert bare(closed) == bare(large_router.route(SPEED))


async def test_l1_keeps_the_most_recent_decisions_for_their_ttl(
    router: ModelRouter, settings: Settings
) -> None:
    small = DecisionCache(router, settings.model_copy(update={"decision_cache_size": 2}))
    first, second, third = (pb.RouteRequest(mode=pb.MODE_SPEED, top_k=k) for k in (1, 2, 3))
    for request in (first, second, first, third):  # `second` is the least recently used
        await small.route(request)
    with Sources() as seen:
        await small.route(first)
        await small.route(third)
        await small.route(second)
    assert seen.counts == {"l1": 2, "l2": 0, "scorer": 1}

    brief = DecisionCache(router, settings.model_copy(update={"decision_cache_ttl_s": 1e-9}))
    with Sources() as seen:
        await brief.route(first)
        await brief.route(first)
    assert seen.counts == {"l1": 0, "l2": 0, "scorer": 2}
