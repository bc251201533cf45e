"""Circuits, learned latency and the daily spend limit, driven with a controllable clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.config import ModelOverride
from service.errors import ErrorKind, RouterError
from service.pb.router.v1 import router_pb2 as pb
from service.runtime import Runtime
from testkit.fake_openrouter import FakeOpenRouter, HttpError, Reply
from tests.redis_server import RedisServer
from tests.test_complete import HELLO, router_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@contextlib.asynccontextmanager
async def started(
    fake: FakeOpenRouter, path: Path, clock: Clock, **extra: Any
) -> AsyncIterator[Runtime]:
    """A runtime on the freshly reset fake's catalogue, closed on leaving."""
    fake.reset()
    runtime = Runtime.build(router_settings(fake, path, **extra), clock=clock)
    try:
        assert await runtime.keeper.refresh()
        yield runtime
    finally:
        await runtime.aclose()


@pytest.fixture
async def runtime(fake: FakeOpenRouter, tmp_path: Path, clock: Clock) -> AsyncIterator[Runtime]:
    async with started(fake, tmp_path / "state", clock) as built:
        yield built


# Circuits, not learning, under test: the fake answers in milliseconds, and on the log latency
# scale one learned answer would put its model ahead of every catalogue figure.
QUALITY_ONLY = pb.Weights(quality=1)


def ask(routing: pb.RouteRequest, **params: Any) -> pb.CompleteRequest:
    return pb.CompleteRequest(routing=routing, messages=HELLO, params=pb.GenerationParams(**params))


def chat_calls(fake: FakeOpenRouter) -> list[str]:
    return [str(r.json["model"]) for r in fake.requests if r.path.endswith("/chat/completions")]


async def test_a_circuit_opens_excludes_half_opens_and_closes(
    runtime: Runtime, fake: FakeOpenRouter, clock: Clock
) -> None:
    request = ask(pb.RouteRequest(weights=QUALITY_ONLY))
    top = [c.model for c in runtime.router.route(pb.RouteRequest(weights=QUALITY_ONLY)).candidates]
    broken = top[0]
    fake.set_behaviour(broken, HttpError.unavailable())
    for _ in range(5):  # the policy's consecutive failures
        answer = await runtime.completer.complete(request, None)
        assert answer.model != broken
        assert answer.attempts[0].model == broken
    seen_before = len(chat_calls(fake))
    answer = await runtime.completer.complete(request, None)
    assert answer.attempts[0].model != broken, "the open circuit left the candidate set"
    assert broken not in chat_calls(fake)[seen_before:]
    decision = runtime.router.route(pb.RouteRequest(weights=QUALITY_ONLY, top_k=50))
    assert broken not in [c.model for c in decision.candidates]
    assert decision.removed_by_constraint["circuit_open"] == 1

    clock.now += 31  # past the cooldown: half-open, one probe may go through
    fake.set_behaviour(broken, None)
    answer = await runtime.completer.complete(request, None)
    assert answer.model == broken, "the probe reached the model and succeeded"
    answer = await runtime.completer.complete(request, None)
    assert answer.model == broken, "closed again: the model is back at the top"


async def test_a_failed_probe_opens_the_circuit_again(
    runtime: Runtime, fake: FakeOpenRouter, clock: Clock
) -> None:
    request = ask(pb.RouteRequest(weights=QUALITY_ONLY))
    broken = runtime.router.route(pb.RouteRequest(weights=QUALITY_ONLY)).model
    fake.set_behaviour(broken, HttpError.overloaded())
    for _ in range(5):
        await runtime.completer.complete(request, None)
    clock.now += 31
    answer = await runtime.completer.complete(request, None)
    assert answer.attempts[0].model == broken
    assert answer.attempts[0].outcome == "http_529"
    answer = await runtime.completer.complete(request, None)
    assert answer.attempts[0].model != broken, "open again for a new cooldown"


async def test_a_slowed_model_loses_speed_traffic_and_wins_it_back(
    fake: FakeOpenRouter, tmp_path: Path, clock: Clock
) -> None:
    fast, rival = "openai/gpt-4o-mini", "x-ai/grok-4.6"
    overrides = {
        fast: ModelOverride(ttft_s=0.05, tokens_per_s=2_000),
        rival: ModelOverride(ttft_s=0.1, tokens_per_s=2_000),
    }
    async with started(fake, tmp_path / "state", clock, model_overrides=overrides) as runtime:
        both = pb.Constraints(allow_models=[fast, rival])
        request = ask(pb.RouteRequest(mode=pb.MODE_SPEED, constraints=both), max_tokens=100)

        async def served() -> str:
            chunks = [c async for c in runtime.completer.stream(request, None)]
            return chunks[-1].summary.model

        assert await served() == fast
        fake.set_behaviour(fast, Reply(first_token_delay_s=0.3))
        winners = [await served() for _ in range(3)]
        assert winners[-1] == rival, f"the slowed model kept the traffic: {winners}"
        assert winners.index(rival) <= 1, "lost within a bounded number of requests"

        fake.set_behaviour(fast, None)  # recovered, but it gets no traffic to show it
        clock.now += 61  # its slow observations are forgotten
        assert await served() == fast
        assert await served() == fast, "its fresh, fast observations keep it on top"


async def test_the_daily_limit_holds_under_50_concurrent_requests(
    fake: FakeOpenRouter, tmp_path: Path, clock: Clock
) -> None:
    routing = pb.RouteRequest(mode=pb.MODE_QUALITY, constraints=pb.Constraints(free=2))
    async with started(fake, tmp_path / "probe", clock) as probe:
        one = await probe.completer.complete(ask(routing, max_tokens=50), None)
    limit = 10 * one.usage.cost_usd
    async with started(fake, tmp_path / "state", clock, daily_spend_limit_usd=limit) as runtime:
        outcomes = await asyncio.gather(
            *(runtime.completer.complete(ask(routing, max_tokens=50), None) for _ in range(50)),
            return_exceptions=True,
        )
        done = [o for o in outcomes if isinstance(o, pb.CompleteResponse)]
        refused = [o for o in outcomes if isinstance(o, RouterError)]
        assert len(done) + len(refused) == 50
        assert done
        assert refused
        assert all(r.kind is ErrorKind.SPEND_LIMIT for r in refused)
        assert "daily spend limit reached" in str(refused[0])
        assert f"of {limit} USD; this call could cost up to" in str(refused[0])
        assert "up to 50 output tokens" in str(refused[0])
        spent = sum(o.usage.cost_usd for o in done)
        biggest = max(o.usage.cost_usd for o in done)
        assert spent <= limit + biggest
        status = await runtime.completer._ledger.status()
        assert status.spent_usd == pytest.approx(spent)


async def test_a_small_daily_limit_serves_a_request_without_max_tokens(
    fake: FakeOpenRouter, tmp_path: Path, clock: Clock
) -> None:
    """Held at its maximum output, this model's call would pass the whole limit on its own."""
    pricey = next(
        m["id"]
        for m in fake.models
        if float(m["pricing"]["completion"]) * (m["top_provider"]["max_completion_tokens"] or 0)
        > 1.0
    )
    async with started(fake, tmp_path / "state", clock, daily_spend_limit_usd=1.0) as runtime:
        asked = pb.CompleteRequest(models=[pricey], messages=HELLO)
        answer = await runtime.completer.complete(asked, None)
        assert answer.model == pricey
        assert 0 < answer.usage.cost_usd < 1.0
        # What the refusal says once the day's spend leaves too little for this call.
        await runtime.completer._ledger.reserve(1.0 - answer.usage.cost_usd - 1e-6)
        with pytest.raises(RouterError) as refused:
            await runtime.completer.complete(asked, None)
        assert refused.value.kind is ErrorKind.SPEND_LIMIT
        assert "this call could cost up to" in refused.value.message
        assert f"on {pricey}" in refused.value.message
        assert "set max_tokens to hold less" in refused.value.message


async def test_near_the_limit_the_cheaper_policy_leans_toward_cost(
    fake: FakeOpenRouter, tmp_path: Path, clock: Clock
) -> None:
    routing = pb.RouteRequest(mode=pb.MODE_QUALITY, constraints=pb.Constraints(free=2))
    async with (
        started(fake, tmp_path / "plain", clock, daily_spend_limit_usd=1.0) as plain,
        started(
            fake,
            tmp_path / "frugal",
            clock,
            daily_spend_limit_usd=1.0,
            spend_policy="cheaper",
            cheaper_from_share=1e-9,
        ) as frugal,
    ):
        usual = await plain.completer.complete(ask(routing), None)
        first = await frugal.completer.complete(ask(routing), None)
        assert first.model == usual.model, "far from the limit nothing changes"
        leaning = await frugal.completer.complete(ask(routing), None)
        assert leaning.usage.cost_usd < usual.usage.cost_usd


async def test_spend_survives_a_restart_through_redis(
    fake: FakeOpenRouter, tmp_path: Path, clock: Clock, redis_server: RedisServer
) -> None:
    routing = pb.RouteRequest(mode=pb.MODE_QUALITY, constraints=pb.Constraints(free=2))
    # Persistence under test, not speed: a busy machine must not send the spend to memory.
    budget = {
        "daily_spend_limit_usd": 5.0,
        "redis_url": redis_server.url,
        "redis_timeout_s": 1.0,
    }
    async with started(fake, tmp_path / "one", clock, **budget) as first:
        answer = await first.completer.complete(ask(routing), None)
    async with started(fake, tmp_path / "two", clock, **budget) as second:
        status = await second.completer._ledger.status()
        assert status.spent_usd == pytest.approx(answer.usage.cost_usd)


async def test_retry_after_is_honoured_only_when_it_fits_the_deadline(
    runtime: Runtime, fake: FakeOpenRouter
) -> None:
    only = "x-ai/grok-4.6"
    routing = pb.RouteRequest(constraints=pb.Constraints(allow_models=[only]))
    fake.script(only, HttpError.rate_limited(retry_after_s=0.2), Reply("after the pause"))
    answer = await runtime.completer.complete(ask(routing), 5.0)
    assert [a.outcome for a in answer.attempts] == ["http_429", "ok"]
    assert answer.choices[0].message.content == "after the pause"

    fake.script(only, HttpError.rate_limited(retry_after_s=30), Reply("never asked"))
    with pytest.raises(RouterError) as caught:
        await runtime.completer.complete(ask(routing), 2.0)
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert [a.outcome for a in caught.value.attempts] == ["http_429"]
