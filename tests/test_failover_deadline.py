"""Failover inside one deadline: hanging candidates leave time for a healthy one, a timeout
counts against the model whoever's clock ran out, and models resting after failures read as an
outage (UNAVAILABLE / 503 with the time to retry), not as the caller's mistake."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from service.config import ModelOverride
from service.grpc_server import RETRY_AFTER_KEY
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import ANY_MODEL, FakeOpenRouter, HttpError, Reply, Stall
from testkit.servers import GatewayThread, ServerThread, settings_for
from tests.test_complete import HELLO

WAIT_S = 30  # bounds every wait for an event; never reached when the router works


def chat_calls(fake: FakeOpenRouter) -> list[str]:
    return [str(r.json["model"]) for r in fake.requests if r.path.endswith("/chat/completions")]


@pytest.fixture
def models(fake: FakeOpenRouter) -> list[str]:
    """Three text models of the fake's catalogue, best first once `overrides` apply."""
    fake.reset()
    chosen = [
        m["id"]
        for m in fake.models
        if m["architecture"]["output_modalities"] == ["text"] and ":" not in m["id"]
    ]
    return sorted(chosen)[:3]


def overrides(models: list[str]) -> dict[str, ModelOverride]:
    """Known figures: each expected in about 0.4 s (0.3 s to the first token, then 500 tokens
    at 5,000 a second), ranked in the order given for quality."""
    return {
        m: ModelOverride(quality=0.99 - i / 100, ttft_s=0.3, tokens_per_s=5_000)
        for i, m in enumerate(models)
    }


def routing(models: list[str]) -> pb.RouteRequest:
    return pb.RouteRequest(
        weights=pb.Weights(quality=1), constraints=pb.Constraints(allow_models=models)
    )


@pytest.fixture
def server(
    fake: FakeOpenRouter, models: list[str], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServerThread]:
    extra: dict[str, Any] = getattr(request, "param", {})
    settings = settings_for(
        fake,
        tmp_path / "state",
        endpoint_stats_models=0,
        model_overrides=overrides(models),
        **extra,
    )
    server = ServerThread(settings)
    with server:
        yield server


def grpc_address(server: ServerThread) -> str:
    return f"127.0.0.1:{server.running.port}"


@pytest.fixture
def stub(server: ServerThread) -> Iterator[RouterStub]:
    with grpc.insecure_channel(grpc_address(server)) as channel:
        stub = RouterStub(channel)
        assert stub.RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        yield stub


def metric(server: ServerThread, name: str) -> float:
    text = httpx.get(server.http_url + "/metrics", timeout=WAIT_S).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


def until(condition: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "the router did not get there"
        time.sleep(0.02)


def hung(fake: FakeOpenRouter, model: str) -> pb.CompleteRequest:
    """A completion only `model` may answer, which never does."""
    fake.set_behaviour(model, Stall())
    return pb.CompleteRequest(routing=routing([model]), messages=HELLO)


def time_out(stub: RouterStub, request: pb.CompleteRequest, times: int = 5) -> list[Any]:
    """`request` sent `times` times with a 1 s deadline (5: the failures that open a circuit);
    the errors."""
    errors = []
    for _ in range(times):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Complete(request, timeout=1.0)
        errors.append(caught.value)
    return errors


@pytest.mark.parametrize("server", [{"completion_timeout_s": 4.0}], indirect=True)
@pytest.mark.parametrize("streamed", [False, True], ids=["unary", "stream"])
def test_hanging_candidates_leave_a_healthy_one_its_turn(
    stub: RouterStub, fake: FakeOpenRouter, models: list[str], streamed: bool
) -> None:
    first, second, healthy = models
    fake.set_behaviour(first, Stall())
    fake.set_behaviour(second, Stall())
    request = pb.CompleteRequest(routing=routing(models), messages=HELLO)
    answer = list(stub.StreamComplete(request))[-1].summary if streamed else stub.Complete(request)
    assert answer.model == healthy
    assert [(a.model, a.outcome) for a in answer.attempts] == [
        (first, "timeout"),
        (second, "timeout"),
        (healthy, "ok"),
    ]


def test_short_deadlines_still_open_a_hung_models_circuit(
    stub: RouterStub, server: ServerThread, fake: FakeOpenRouter, models: list[str]
) -> None:
    model = models[0]
    request = hung(fake, model)
    for error in time_out(stub, request):
        # The router's own deadline ends first: it says which attempt ran out of time.
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert f"{model}: timeout" in error.details()
    assert chat_calls(fake) == [model] * 5
    with pytest.raises(grpc.RpcError) as caught:
        stub.Complete(request, timeout=1.0)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "circuit open" in error.details()
    trailers = dict(error.trailing_metadata())
    assert 0 < float(trailers[RETRY_AFTER_KEY]) <= 30
    assert chat_calls(fake) == [model] * 5  # resting: not called again


def test_a_caller_that_hangs_up_on_a_late_model_counts_against_it(
    stub: RouterStub, server: ServerThread, fake: FakeOpenRouter, models: list[str]
) -> None:
    request = hung(fake, models[0])
    for sent in range(1, 6):
        call = stub.Complete.future(request)
        until(lambda sent=sent: len(chat_calls(fake)) == sent)
        time.sleep(0.5)  # past the 0.4 s the model is expected to take
        call.cancel()
    until(lambda: metric(server, "router_circuits_open") == 1)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Complete(request, timeout=WAIT_S)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_hanging_up_before_a_model_is_late_is_no_verdict_on_it(
    stub: RouterStub, server: ServerThread, fake: FakeOpenRouter, models: list[str]
) -> None:
    model = models[0]
    fake.set_behaviour(model, Reply("slow", first_token_delay_s=WAIT_S))
    request = pb.CompleteRequest(routing=routing([model]), messages=HELLO)
    for sent in range(1, 7):
        call = stub.Complete.future(request)
        until(lambda sent=sent: len(chat_calls(fake)) == sent)
        call.cancel()
    fake.set_behaviour(model, None)
    answer = stub.Complete(request, timeout=WAIT_S)
    assert answer.model == model
    assert metric(server, "router_circuits_open") == 0


@pytest.mark.parametrize("through", ["in-process", "remote"])
def test_rest_says_503_and_when_to_retry_while_every_fitting_model_rests(
    stub: RouterStub,
    server: ServerThread,
    fake: FakeOpenRouter,
    models: list[str],
    through: str,
) -> None:
    model = models[0]
    time_out(stub, hung(fake, model))
    body: dict[str, Any] = {"weights": {"quality": 1}, "constraints": {"allow_models": [model]}}
    asked = {"/route": body, "/complete": body | {"messages": [{"role": "user", "content": "hi"}]}}
    with GatewayThread(grpc_address(server), server.settings) as remote_url:
        url = server.http_url if through == "in-process" else remote_url
        for path, sent in asked.items():
            reply = httpx.post(url + path, json=sent, timeout=WAIT_S)
            assert reply.status_code == 503, reply.text
            assert reply.json()["error"]["code"] == "unavailable"
            assert "circuit open" in reply.json()["error"]["message"]
            assert 1 <= int(reply.headers["retry-after"]) <= 30
    # A request no model could ever take stays the caller's to fix.
    impossible = body | {"constraints": {"allow_models": [model], "min_context_tokens": 10**9}}
    reply = httpx.post(server.http_url + "/route", json=impossible, timeout=WAIT_S)
    assert reply.status_code == 422, reply.text


def test_fitting_models_all_resting_is_told_apart_from_unsatisfiable_constraints(
    stub: RouterStub, fake: FakeOpenRouter, models: list[str]
) -> None:
    time_out(stub, hung(fake, models[0]))
    route = routing(models[:1])
    with pytest.raises(grpc.RpcError) as caught:
        stub.Route(route)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    # The other two still serve: an outage of one model is no outage of the request.
    assert stub.Route(routing(models)).model == models[1]


def test_failures_everywhere_open_no_more_than_a_fifth_of_the_catalogue(
    stub: RouterStub, server: ServerThread, fake: FakeOpenRouter
) -> None:
    fake.set_behaviour(ANY_MODEL, HttpError(500, "provider down"))
    catalogue = server.runtime.router.eligibility()[0]
    cap = catalogue // 5
    texts = [
        m["id"]
        for m in fake.models
        if m["architecture"]["output_modalities"] == ["text"] and ":" not in m["id"]
    ]
    assert len(texts) > cap
    for model in texts[: cap + 2]:
        request = pb.CompleteRequest(routing=routing([model]), messages=HELLO)
        for _ in range(5):
            with pytest.raises(grpc.RpcError):
                stub.Complete(request, timeout=WAIT_S)
    assert metric(server, "router_circuits_open") == cap
    assert metric(server, "router_circuit_openings_capped_total") >= 1


def test_calls_the_router_cuts_as_it_stops_are_no_verdict_on_their_model(
    stub: RouterStub, server: ServerThread, fake: FakeOpenRouter, models: list[str]
) -> None:
    request = hung(fake, models[0])
    # The registry is the process's: earlier tests timed this model out too.
    timeouts = (
        f'router_completions_total{{caller="anonymous",model="{models[0]}",outcome="timeout"}}'
    )
    before = metric(server, timeouts)

    async def cut() -> int:
        return server.core.cut_calls()

    with ThreadPoolExecutor(max_workers=1) as pool:
        call = pool.submit(stub.Complete, request, timeout=WAIT_S)
        until(lambda: len(chat_calls(fake)) == 1)
        time.sleep(0.5)  # later than the model is expected to be
        assert server.loops.run(cut()) == 1
        with pytest.raises(grpc.RpcError) as caught:
            call.result()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert metric(server, timeouts) == before
