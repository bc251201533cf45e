"""Free variants through the running router (gRPC and REST) against the fake OpenRouter's own
free allowance, with one calendar for both that the tests move forward."""

from __future__ import annotations

import calendar
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import FakeOpenRouter, HttpError
from testkit.servers import ServerThread
from tests.redis_server import RedisServer
from tests.test_complete import HELLO, chat_calls, router_settings

FREE = "z-ai/glm-5.2:free"
PAID = "z-ai/glm-5.2"  # its paid sibling
CHEAPER = "openai/gpt-4o-mini"  # far cheaper than PAID, far worse: ranked between the two
NOON = calendar.timegm((2026, 8, 14, 12, 0, 0))
MIDNIGHT = calendar.timegm((2026, 8, 15, 0, 0, 0))
# Cost and quality alone, so the order does not hang on latency figures: FREE first (it costs
# as little as the cheapest paid model and is as good as PAID), then CHEAPER, then PAID.
ROUTING = pb.RouteRequest(
    weights=pb.Weights(latency=0, cost=1, quality=1),
    constraints=pb.Constraints(allow_models=[FREE, CHEAPER, PAID]),
)


class Calendar:
    """Unix time for the router and the fake alike: the real time, moved by the tests."""

    def __init__(self, fake: FakeOpenRouter) -> None:
        self.fake = fake
        self.move_to(NOON)

    def __call__(self) -> float:
        return time.time() + self.fake.config.clock_offset_s

    def move_to(self, when: float) -> None:
        self.fake.config.clock_offset_s = when - time.time()

    def advance(self, seconds: float) -> None:
        self.fake.config.clock_offset_s += seconds


@pytest.fixture
def clock(fake: FakeOpenRouter) -> Calendar:
    fake.reset()
    return Calendar(fake)


@contextlib.contextmanager
def serving(
    fake: FakeOpenRouter, clock: Calendar, state: Path, **extra: Any
) -> Iterator[RouterStub]:
    # Free variants are off by default; these tests are about using them.
    settings = router_settings(fake, state, **{"free_models": True, **extra})
    with (
        ServerThread(settings, wall_clock=clock) as address,
        grpc.insecure_channel(address) as channel,
    ):
        stub = RouterStub(channel)
        assert stub.RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        yield stub


def free_quota(stub: RouterStub) -> pb.FreeQuotaStatus:
    return stub.GetStatus(pb.GetStatusRequest()).free_quota


def tier_learned(stub: RouterStub) -> pb.FreeQuotaStatus:
    """The status once the router has read the key's tier, which it does at start."""
    for _ in range(500):
        status = free_quota(stub)
        if status.tier != "unknown":
            return status
        time.sleep(0.01)
    raise AssertionError("the router did not learn the key's tier")


def routed(stub: RouterStub, routing: pb.RouteRequest = ROUTING) -> list[str]:
    return [c.model for c in stub.Route(routing).candidates]


def complete(stub: RouterStub, routing: pb.RouteRequest = ROUTING) -> pb.CompleteResponse:
    return stub.Complete(pb.CompleteRequest(routing=routing, messages=HELLO), timeout=10)


def outcomes(answer: pb.CompleteResponse) -> list[tuple[str, str, int]]:
    return [(a.model, a.outcome, a.http_status) for a in answer.attempts]


def test_a_day_spent_as_the_router_counts_it_keeps_free_variants_out_until_midnight(
    fake: FakeOpenRouter, clock: Calendar, tmp_path: Path
) -> None:
    fake.config.is_free_tier = True
    with serving(fake, clock, tmp_path / "state") as stub:
        assert (tier_learned(stub).tier, free_quota(stub).per_day_limit) == ("free", 50)
        for i in range(50):
            if i and i % 20 == 0:
                clock.advance(60)  # past the 20 calls a minute
            assert complete(stub).model == FREE, f"call {i + 1}"

        ranked = stub.Route(ROUTING)
        assert [c.model for c in ranked.candidates] == [CHEAPER, PAID]
        assert ranked.removed_by_constraint["free_quota"] >= 1
        assert outcomes(complete(stub)) == [(CHEAPER, "ok", 200)]
        assert chat_calls(fake).count(FREE) == 50, "OpenRouter never had to refuse a free call"
        status = free_quota(stub)
        assert (status.used_today, status.blocked_until) == (50, MIDNIGHT)
        assert "the 50 free calls of the day are used" in status.blocked_reason

        clock.move_to(MIDNIGHT)
        assert routed(stub) == [FREE, CHEAPER, PAID]
        assert complete(stub).model == FREE


def test_a_day_spent_as_openrouter_says_moves_to_the_paid_sibling_until_the_reset(
    fake: FakeOpenRouter, clock: Calendar, tmp_path: Path
) -> None:
    fake.config.free_models_per_day = 2  # fewer than the key's tier lets the router expect
    with serving(fake, clock, tmp_path / "state") as stub:
        assert (tier_learned(stub).tier, free_quota(stub).per_day_limit) == ("paid", 1000)
        for _ in range(2):
            assert complete(stub).model == FREE
        answer = complete(stub)
        assert outcomes(answer) == [(FREE, "free_quota", 429), (PAID, "ok", 200)]
        assert "free-models-per-day" in answer.attempts[0].error

        assert routed(stub) == [CHEAPER, PAID]
        assert outcomes(complete(stub)) == [(CHEAPER, "ok", 200)]
        status = free_quota(stub)
        assert (status.per_day_limit, status.blocked_until) == (2, MIDNIGHT)
        assert "free-models-per-day" in status.blocked_reason

        clock.move_to(MIDNIGHT)
        assert routed(stub) == [FREE, CHEAPER, PAID]
        assert complete(stub).model == FREE
        assert chat_calls(fake).count(FREE) == 4


def test_a_per_minute_refusal_is_answered_by_the_paid_sibling_and_spares_the_circuit(
    fake: FakeOpenRouter, clock: Calendar, tmp_path: Path
) -> None:
    with serving(fake, clock, tmp_path / "state") as stub:
        assert routed(stub) == [FREE, CHEAPER, PAID]
        for minute in range(6):  # one more than the failures in a row that open a circuit
            fake.script(FREE, HttpError.rate_limited())
            answer = complete(stub)
            assert outcomes(answer) == [(FREE, "free_quota", 429), (PAID, "ok", 200)], minute
            assert routed(stub) == [CHEAPER, PAID]
            assert "free-models-per-min" in free_quota(stub).blocked_reason
            clock.advance(60)

        ranked = stub.Route(ROUTING)
        assert ranked.candidates[0].model == FREE
        assert "circuit_open" not in ranked.removed_by_constraint
        assert complete(stub).model == FREE
        assert CHEAPER not in chat_calls(fake)


def test_named_models_are_the_only_ones_tried_even_after_a_free_refusal(
    fake: FakeOpenRouter, clock: Calendar, tmp_path: Path
) -> None:
    """The paid sibling comes in only when the router chose the candidates."""
    with serving(fake, clock, tmp_path / "state") as stub:
        fake.script(FREE, HttpError.rate_limited())
        request = pb.CompleteRequest(models=[FREE, CHEAPER], messages=HELLO)
        answer = stub.Complete(request, timeout=10)
        assert outcomes(answer) == [(FREE, "free_quota", 429), (CHEAPER, "ok", 200)]
        assert PAID not in chat_calls(fake)


def test_the_paid_sibling_is_found_through_author_patterns_too(
    fake: FakeOpenRouter, clock: Calendar, tmp_path: Path
) -> None:
    """The request's constraints decide whether the sibling may answer, patterns included."""
    by_author = pb.RouteRequest()
    by_author.CopyFrom(ROUTING)
    del by_author.constraints.allow_models[:]
    by_author.constraints.allow_models.extend(["z-ai/*", CHEAPER])
    with serving(fake, clock, tmp_path / "state") as stub:
        assert [c.model for c in stub.Route(by_author).candidates[:2]] == [FREE, CHEAPER]
        fake.script(FREE, HttpError.rate_limited())
        answer = complete(stub, by_author)
        assert outcomes(answer) == [(FREE, "free_quota", 429), (PAID, "ok", 200)]


def test_a_streamed_completion_fails_over_to_the_paid_sibling_too(
    fake: FakeOpenRouter, clock: Calendar, tmp_path: Path
) -> None:
    with serving(fake, clock, tmp_path / "state") as stub:
        fake.script(FREE, HttpError.rate_limited())
        request = pb.CompleteRequest(routing=ROUTING, messages=HELLO)
        chunks = list(stub.StreamComplete(request, timeout=10))
        summary = chunks[-1].summary
        assert summary.model == PAID
        assert outcomes(summary) == [(FREE, "free_quota", 429), (PAID, "ok", 200)]


def test_with_free_models_off_no_free_variant_is_ever_routed_to(
    fake: FakeOpenRouter, clock: Calendar, tmp_path: Path
) -> None:
    free = {
        m["id"] for m in fake.models if m["pricing"]["prompt"] == m["pricing"]["completion"] == "0"
    }
    with serving(fake, clock, tmp_path / "state", free_models=False) as stub:
        for mode in (pb.MODE_SPEED, pb.MODE_COST, pb.MODE_QUALITY, pb.MODE_BALANCED):
            ranked = stub.Route(pb.RouteRequest(mode=mode, top_k=100))
            assert not {c.model for c in ranked.candidates} & free, mode
            assert ranked.removed_by_constraint["free_quota"] >= 1
        with pytest.raises(grpc.RpcError) as refused:
            stub.Route(pb.RouteRequest(constraints=pb.Constraints(free=pb.FREE_FILTER_ONLY)))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert complete(stub, pb.RouteRequest(mode=pb.MODE_COST)).model not in free
        assert not set(chat_calls(fake)) & free
        status = free_quota(stub)
        assert (status.enabled, status.tier) == (False, "unknown")
        assert "turned off" in status.blocked_reason
    assert not [r for r in fake.requests if r.path.endswith("/key")], "no tier to learn"


def test_with_redis_down_free_calls_are_counted_in_memory_without_errors(
    fake: FakeOpenRouter, clock: Calendar, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis")
    with redis, serving(fake, clock, tmp_path / "state", redis_url=redis.url) as stub:
        for _ in range(2):
            assert complete(stub).model == FREE
        redis.kill()
        for _ in range(2):
            assert complete(stub).model == FREE
        assert free_quota(stub).used_today == 4


def test_get_status_and_health_report_the_free_allowance(
    grpc_address: str, gateway: httpx.Client
) -> None:
    expected = {  # the shared servers run with the defaults: free variants off
        "enabled": False,
        "per_minute_limit": 20,
        "per_day_limit": 50,
        "used_this_minute": 0,
        "used_today": 0,
        "blocked_until": 0.0,
        "blocked_reason": "free variants are turned off (free_models = false)",
        "tier": "unknown",  # no key to ask OpenRouter with
    }
    with grpc.insecure_channel(grpc_address) as channel:
        status = free_quota(RouterStub(channel))
    assert {name: getattr(status, name) for name in expected} == expected
    reply = gateway.get("/health")
    assert reply.status_code == 200
    assert reply.json()["free_quota"] == expected
