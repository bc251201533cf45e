"""The router's Prometheus metrics, read from `/metrics` while real traffic flows: routes over
gRPC and REST, completions against the fake OpenRouter, circuits opening. The registry is the
process's, shared with every other test, so each check is on the change a test's own traffic
makes (the value after minus the value before)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families

from service import catalogue as catalogue_files
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.resilience import CircuitPolicy
from service.runtime import Runtime
from testkit.fake_openrouter import ANY_MODEL, FakeOpenRouter, HttpError, Reply
from testkit.servers import GatewayThread, ServerThread, settings_for
from tests.conftest import CUSTOM_MODES

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
MODES = {"speed", "cost", "quality", "balanced", "custom", "weights", "default"}
HELLO = [pb.ChatMessage(role="user", content="Say hello to the metrics.")]
QUALITY = pb.RouteRequest(mode=pb.MODE_QUALITY)


def scrape(http: httpx.Client) -> Samples:
    reply = http.get("/metrics")
    assert reply.status_code == 200, reply.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def total_delta(before: Samples, after: Samples, name: str) -> float:
    """The change of `name` summed over all its label values."""
    return sum(v for (n, _), v in after.items() if n == name) - sum(
        v for (n, _), v in before.items() if n == name
    )


def label_values(samples: Samples, label: str) -> set[str]:
    return {
        v
        for (name, labels) in samples
        if name.startswith("router_")
        for k, v in labels
        if k == label
    }


@dataclass
class Router:
    server: ServerThread
    stub: RouterStub
    http: httpx.Client
    """The REST gateway beside the router, as `router serve` runs it."""
    remote: httpx.Client
    """A REST gateway in front of the router's gRPC port (`router gateway --target`)."""


@pytest.fixture
def router(fake: FakeOpenRouter, tmp_path: Path) -> Iterator[Router]:
    """A fresh router on the fake's catalogue: circuits and figures start clean."""
    fake.reset()
    settings = settings_for(
        fake, tmp_path / "state", custom_modes=CUSTOM_MODES, endpoint_stats_models=0
    )
    server = ServerThread(settings)
    with (
        server as address,
        grpc.insecure_channel(address) as channel,
        GatewayThread(address, settings) as remote_url,
        httpx.Client(base_url=server.http_url, timeout=30) as http,
        httpx.Client(base_url=remote_url, timeout=30) as remote,
    ):
        stub = RouterStub(channel)
        assert stub.RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        yield Router(server, stub, http, remote)


def catalogue_ids(stub: RouterStub) -> set[str]:
    return {m.id for m in stub.ListModels(pb.ListModelsRequest()).models}


def test_routes_over_grpc_and_rest_are_each_counted_once(router: Router) -> None:
    before = scrape(router.http)
    expected: Counter[tuple[str, str]] = Counter()
    over_grpc = [
        (pb.RouteRequest(mode=pb.MODE_SPEED), "speed"),
        (pb.RouteRequest(mode=pb.MODE_COST), "cost"),
        (pb.RouteRequest(custom_mode="frugal-genius"), "custom"),
        (pb.RouteRequest(weights=pb.Weights(latency=0.2, cost=0.3, quality=0.5)), "weights"),
        (pb.RouteRequest(), "default"),
    ]
    for request, mode in over_grpc:
        expected[mode, router.stub.Route(request).model] += 1
    over_rest: list[tuple[dict[str, Any], str]] = [
        ({"mode": "quality"}, "quality"),
        ({"mode": "balanced"}, "balanced"),
        ({"custom_mode": "frugal-genius"}, "custom"),
        ({"weights": {"latency": 1, "cost": 0, "quality": 1}}, "weights"),
        ({}, "default"),
    ]
    for http in (router.http, router.remote):
        for body, mode in over_rest:
            reply = http.post("/route", json=body)
            assert reply.status_code == 200, reply.text
            expected[mode, reply.json()["model"]] += 1
    after = scrape(router.http)

    decisions = sum(expected.values())
    for (mode, model), count in expected.items():
        assert delta(before, after, "router_decisions_total", mode=mode, model=model) == count
    assert total_delta(before, after, "router_decisions_total") == decisions
    # Decisions the cache answers are not ranked again; each is ranked or found once.
    ranked = delta(before, after, "router_decision_latency_seconds_count", source="scorer")
    cached = sum(
        delta(before, after, "router_decision_latency_seconds_count", source=source)
        for source in ("l1", "l2")
    )
    assert ranked + cached == decisions
    assert cached > 0  # the same requests came over gRPC and two REST gateways
    assert delta(before, after, "router_decision_duration_seconds_count") == ranked
    assert delta(before, after, "router_decision_duration_seconds_bucket", le="+Inf") == ranked
    assert delta(before, after, "router_decision_duration_seconds_sum") > 0


def test_what_a_caller_sends_never_becomes_a_label_value(router: Router) -> None:
    before = scrape(router.http)
    made_up = f"mode-{uuid.uuid4().hex}"
    with pytest.raises(grpc.RpcError) as caught:
        router.stub.Route(pb.RouteRequest(custom_mode=made_up))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert router.http.post("/route", json={"custom_mode": made_up}).status_code == 400
    odd = {"latency": 0.123456789, "cost": 0.987654321, "quality": 0.5}
    assert router.http.post("/route", json={"weights": odd}).status_code == 200
    assert router.http.post("/route", json={"custom_mode": "frugal-genius"}).status_code == 200
    router.stub.Complete(
        pb.CompleteRequest(routing=pb.RouteRequest(custom_mode="frugal-genius"), messages=HELLO),
        timeout=10,
    )

    text = router.http.get("/metrics").text
    for typed in (made_up, "frugal-genius", "0.123456789", "0.987654321"):
        assert typed not in text
    after = scrape(router.http)
    assert label_values(after, "mode") - label_values(before, "mode") <= MODES
    new_models = label_values(after, "model") - label_values(before, "model")
    assert new_models <= catalogue_ids(router.stub)


def complete(stub: RouterStub) -> pb.CompleteResponse:
    return stub.Complete(pb.CompleteRequest(routing=QUALITY, messages=HELLO), timeout=10)


def chat_calls(fake: FakeOpenRouter, since: int = 0) -> list[str]:
    return [
        str(r.json["model"]) for r in fake.requests[since:] if r.path.endswith("/chat/completions")
    ]


@dataclass
class Answered:
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


def answered(response: pb.CompleteResponse) -> Answered:
    """The attempt that answered (its model is the catalogue's id) and the usage."""
    assert response.attempts[-1].outcome == "ok"
    usage = response.usage
    return Answered(
        response.attempts[-1].model, usage.prompt_tokens, usage.completion_tokens, usage.cost_usd
    )


def test_completions_count_outcomes_failovers_tokens_spend_and_latency(
    router: Router, fake: FakeOpenRouter
) -> None:
    first, second = [c.model for c in router.stub.Route(QUALITY).candidates[:2]]
    before, spent_before = scrape(router.http), fake.spent_usd

    fake.script(first, Reply("Hello over gRPC."))
    plain = answered(complete(router.stub))
    fake.script(first, HttpError.unavailable())
    fake.script(second, Reply("Streamed from the runner-up."))
    chunks = list(
        router.stub.StreamComplete(pb.CompleteRequest(routing=QUALITY, messages=HELLO), timeout=10)
    )
    streamed = answered(chunks[-1].summary)
    assert streamed.model == second
    reply = router.http.post(
        "/complete", json={"mode": "quality", "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert reply.status_code == 200, reply.text
    over_rest = answered(
        json_format.ParseDict(reply.json(), pb.CompleteResponse(), ignore_unknown_fields=True)
    )

    fake.set_behaviour(ANY_MODEL, HttpError.unavailable())
    mark = len(fake.requests)
    with pytest.raises(grpc.RpcError) as caught:
        complete(router.stub)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    tried = chat_calls(fake, mark)
    after = scrape(router.http)

    oks = [plain, streamed, over_rest]
    for model, count in Counter(a.model for a in oks).items():
        assert (
            delta(
                before,
                after,
                "router_completions_total",
                model=model,
                outcome="ok",
                caller="anonymous",
            )
            == count
        )
        assert delta(before, after, "router_completion_duration_seconds_count", model=model) == (
            count
        )
    last = tried[-1]
    assert (
        delta(
            before,
            after,
            "router_completions_total",
            model=last,
            outcome="unavailable",
            caller="anonymous",
        )
        == 1
    )
    assert total_delta(before, after, "router_completions_total") == len(oks) + 1
    # One in the stream, and one after each failed attempt of the failed call but its last.
    assert delta(before, after, "router_failovers_total", cause="http_503") == len(tried)
    assert total_delta(before, after, "router_failovers_total") == len(tried)

    # Time to first token is seen in streams only.
    assert delta(before, after, "router_time_to_first_token_seconds_count", model=second) == 1
    assert total_delta(before, after, "router_time_to_first_token_seconds_count") == 1
    assert delta(before, after, "router_time_to_first_token_seconds_sum", model=second) > 0

    for model in {a.model for a in oks}:
        mine = [a for a in oks if a.model == model]
        for kind in ("prompt", "completion"):
            tokens = sum(getattr(a, f"{kind}_tokens") for a in mine)
            assert tokens > 0
            assert (
                delta(
                    before, after, "router_tokens_total", model=model, type=kind, caller="anonymous"
                )
                == tokens
            )
        spend = delta(before, after, "router_spend_usd_total", model=model, caller="anonymous")
        assert spend == pytest.approx(sum(a.cost_usd for a in mine))
    spent = total_delta(before, after, "router_spend_usd_total")
    assert spent > 0
    assert spent == pytest.approx(fake.spent_usd - spent_before)


def test_open_circuits_show_in_a_gauge(router: Router, fake: FakeOpenRouter) -> None:
    before = value(scrape(router.http), "router_circuits_open")
    fake.set_behaviour(ANY_MODEL, HttpError.unavailable())
    opens_after = CircuitPolicy().consecutive_failures
    opened: set[str] = set()
    for _ in range(2 * opens_after):
        with pytest.raises(grpc.RpcError):
            complete(router.stub)
        calls = Counter(chat_calls(fake))
        # Every call failed, so a model called `opens_after` times has its circuit open.
        opened = {model for model, n in calls.items() if n >= opens_after}
        if opened:
            break
    assert opened
    assert value(scrape(router.http), "router_circuits_open") - before == len(opened)


def _day_start(date: str) -> float:
    return dt.datetime.combine(dt.date.fromisoformat(date), dt.time(), dt.UTC).timestamp()


def test_the_catalogue_age_is_read_at_scrape_time(router: Router) -> None:
    mine = router.server.runtime.catalogue_age_s()
    gauge = value(scrape(router.http), "router_catalogue_age_seconds")
    # With several routers in the process the gauge shows the oldest catalogue; none is older
    # than the embedded snapshot.
    oldest = time.time() - _day_start(catalogue_files.load().snapshot_date)
    assert 0 < mine <= gauge <= oldest
    assert mine < 3600, "refreshed when the router started"


async def test_the_catalogue_age_runs_from_the_snapshot_date_until_a_refresh(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.reset()
    runtime = Runtime.build(settings_for(fake, tmp_path / "state", endpoint_stats_models=0))
    try:
        snapshot = _day_start(runtime.router.catalogue.snapshot_date)
        start = time.time()
        age = runtime.catalogue_age_s()
        assert start - snapshot <= age <= time.time() - snapshot
        start = time.time()
        assert await runtime.keeper.refresh()
        age = runtime.catalogue_age_s()
        assert 0 <= age <= time.time() - start
    finally:
        await runtime.aclose()
