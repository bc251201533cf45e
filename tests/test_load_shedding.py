"""Load shedding against real servers: with the caps filled by calls the fake OpenRouter holds
open, the next call is refused at once (RESOURCE_EXHAUSTED, 429 with Retry-After), probes and
scrapes still answer, the held calls finish, and their places free up."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from service.grpc_server import ERROR_KIND_KEY, RETRY_AFTER_KEY
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import FakeOpenRouter, ModelsReply, Reply
from testkit.servers import GatewayThread, ServerThread, settings_for

# How long the fake holds a call open: the refusals are checked to come back before any held
# call does, so this only has to outlast a refusal's round trip by far.
HOLD_S = 3.0
# The longest the test waits for an event (a held call reaching the fake) before it fails.
WAIT_S = 20.0
HELLO = {"role": "user", "content": "Say hello to the bouncer."}
SHED = "router_shed_requests_total"


@dataclass
class Running:
    server: ServerThread
    channel: grpc.Channel
    stub: RouterStub


@contextmanager
def router(fake: FakeOpenRouter, state: Path, **caps: int) -> Iterator[Running]:
    """A fresh router on the reset fake, serving its catalogue, with `caps`."""
    fake.reset()
    server = ServerThread(settings_for(fake, state, endpoint_stats_models=0, **caps))
    with server as address, grpc.insecure_channel(address) as channel:
        stub = RouterStub(channel)
        assert stub.RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        yield Running(server, channel, stub)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "the event did not happen"
        time.sleep(0.01)


def chat_calls(fake: FakeOpenRouter) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("/chat/completions"))


@contextmanager
def holding(
    fake: FakeOpenRouter, state: Path, most: int
) -> Iterator[tuple[Running, pb.CompleteRequest]]:
    """A fresh router with `max_concurrent_completions=most`, and a request it will hold."""
    with router(fake, state, max_concurrent_completions=most) as running:
        model = held_model(running.stub, fake)
        yield running, pb.CompleteRequest(messages=[pb.ChatMessage(**HELLO)], models=[model])


def held_model(stub: RouterStub, fake: FakeOpenRouter) -> str:
    """A model of the catalogue that the fake answers only after HOLD_S."""
    model = stub.Route(pb.RouteRequest(mode=pb.MODE_SPEED)).model
    fake.set_behaviour(model, Reply("Held, then answered.", first_token_delay_s=HOLD_S))
    return model


def shed(http_url: str, transport: str, load: str) -> float:
    """The shed counter as /metrics shows it (the registry is the process's: compare deltas)."""
    reply = httpx.get(f"{http_url}/metrics")
    assert reply.status_code == 200
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            if sample.name == SHED and sample.labels == {"transport": transport, "load": load}:
                return float(sample.value)
    return 0.0


def refusal(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value


def assert_at_capacity(error: grpc.RpcError, setting: str, most: int) -> None:
    assert isinstance(error, grpc.Call)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == (
        f"the router is at capacity: {most} {setting.rpartition('_')[2]} in flight, the most its "
        f"{setting} setting allows; retry in 1 s or on another replica"
    )
    trailers = tuple(error.trailing_metadata() or ())
    assert (ERROR_KIND_KEY, "overloaded") in trailers
    assert (RETRY_AFTER_KEY, "1.000") in trailers


def assert_429(reply: httpx.Response, setting: str, most: int) -> dict[str, Any]:
    assert reply.status_code == 429, reply.text
    assert reply.headers["retry-after"] == "1"
    error: dict[str, Any] = reply.json()["error"]
    assert error["code"] == "overloaded"
    assert error["message"].startswith(f"the router is at capacity: {most} ")
    assert f"its {setting} setting" in error["message"]
    return error


def serving(stub: health_pb2_grpc.HealthStub) -> bool:
    reply = stub.Check(health_pb2.HealthCheckRequest())
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def streamed(call: Iterator[pb.CompleteChunk]) -> str:
    chunks = list(call)
    assert chunks[-1].WhichOneof("event") == "summary"
    return "".join(c.delta for c in chunks if c.WhichOneof("event") == "delta")


def test_grpc_completions_past_the_cap_are_refused_at_once_and_the_held_ones_finish(
    fake: FakeOpenRouter, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    with holding(fake, tmp_path / "state", 2) as (running, request):
        server, channel, stub = running.server, running.channel, running.stub
        before = shed(server.http_url, "grpc", "completions")
        held: list[Future[str]] = [
            pool.submit(lambda: stub.Complete(request).choices[0].message.content),
            pool.submit(lambda: streamed(stub.StreamComplete(request))),
        ]
        wait_for(lambda: chat_calls(fake) == 2)

        refusals = [
            refusal(lambda: stub.Complete(request)),
            refusal(lambda: list(stub.StreamComplete(request))),
        ]
        for error in refusals:
            assert_at_capacity(error, "max_concurrent_completions", 2)
        # Cheap calls have a cap of their own, probes and scrapes none.
        assert stub.Route(pb.RouteRequest(mode=pb.MODE_COST)).model
        assert serving(health_pb2_grpc.HealthStub(channel))
        assert httpx.get(f"{server.http_url}/health").status_code == 200
        assert shed(server.http_url, "grpc", "completions") == before + 2
        assert not any(f.done() for f in held)

        answers = [f.result() for f in held]
        assert answers == ["Held, then answered."] * 2
        assert len(answers) + len(refusals) == 4
        assert chat_calls(fake) == 2

        # Both places are free again: two calls are held at once, and answered.
        again = [pool.submit(lambda: stub.Complete(request)) for _ in range(2)]
        wait_for(lambda: chat_calls(fake) == 4)
        assert [f.result().choices[0].message.content for f in again] == answers


def test_a_cancelled_stream_frees_its_place(fake: FakeOpenRouter, tmp_path: Path) -> None:
    with holding(fake, tmp_path / "state", 1) as (running, request):
        stub = running.stub
        stream = stub.StreamComplete(request)
        wait_for(lambda: chat_calls(fake) == 1)
        assert_at_capacity(refusal(lambda: stub.Complete(request)), "max_concurrent_completions", 1)
        fake.set_behaviour(request.models[0], Reply("Right away."))
        stream.cancel()

        def admitted() -> bool:
            try:
                return stub.Complete(request).choices[0].message.content == "Right away."
            except grpc.RpcError as error:
                assert_at_capacity(error, "max_concurrent_completions", 1)
                return False

        wait_for(admitted)
        assert len(fake.cut_short) == 1


def test_grpc_calls_have_a_cap_of_their_own(
    fake: FakeOpenRouter, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    with router(fake, tmp_path / "state", max_concurrent_calls=1) as running:
        server, channel, stub = running.server, running.channel, running.stub
        model = stub.Route(pb.RouteRequest(mode=pb.MODE_SPEED)).model
        fake.script_models(ModelsReply(delay_s=HOLD_S))
        fetches = sum(1 for r in fake.requests if r.path.endswith("/models"))
        before = shed(server.http_url, "grpc", "calls")
        refresh = pool.submit(lambda: stub.RefreshCatalogue(pb.RefreshCatalogueRequest()))
        wait_for(lambda: sum(1 for r in fake.requests if r.path.endswith("/models")) > fetches)

        refused = refusal(lambda: stub.Route(pb.RouteRequest(mode=pb.MODE_SPEED)))
        assert_at_capacity(refused, "max_concurrent_calls", 1)
        completion = stub.Complete(
            pb.CompleteRequest(messages=[pb.ChatMessage(**HELLO)], models=[model])
        )
        assert completion.model == model
        assert serving(health_pb2_grpc.HealthStub(channel))
        assert shed(server.http_url, "grpc", "calls") == before + 1
        assert not refresh.done()

        assert refresh.result().catalogue.models > 0
        assert stub.Route(pb.RouteRequest(mode=pb.MODE_SPEED)).model == model


def test_rest_past_the_cap_answers_429_with_retry_after(
    fake: FakeOpenRouter, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    with (
        holding(fake, tmp_path / "state", 1) as (running, request),
        httpx.Client(base_url=running.server.http_url, timeout=WAIT_S) as http,
    ):
        server, stub, model = running.server, running.stub, request.models[0]
        before = shed(server.http_url, "http", "completions")

        def held_stream() -> str:
            body = {"model": model, "messages": [HELLO], "stream": True}
            with http.stream("POST", "/v1/chat/completions", json=body) as reply:
                assert reply.status_code == 200
                return reply.read().decode()

        held = pool.submit(held_stream)
        wait_for(lambda: chat_calls(fake) == 1)

        plain = http.post("/complete", json={"messages": [HELLO], "models": [model]})
        error = assert_429(plain, "max_concurrent_completions", 1)
        assert set(error) == {"code", "message"}
        openai = http.post("/v1/chat/completions", json={"model": model, "messages": [HELLO]})
        error = assert_429(openai, "max_concurrent_completions", 1)
        assert (error["type"], error["param"]) == ("rate_limit_error", None)
        assert set(error) == {"message", "type", "param", "code"}
        # One process, one cap: gRPC's completions share it with REST's.
        assert_at_capacity(refusal(lambda: stub.Complete(request)), "max_concurrent_completions", 1)
        assert http.post("/route", json={"mode": "cost"}).status_code == 200
        assert http.get("/health").status_code == 200
        assert shed(server.http_url, "http", "completions") == before + 2
        assert not held.done()

        events = held.result()
        assert events.endswith("data: [DONE]\n\n")
        assert "Held, then answered." in "".join(
            json.loads(line.removeprefix("data: "))["choices"][0]["delta"].get("content") or ""
            for line in events.split("\n\n")
            if line.startswith("data: {")
        )
        assert chat_calls(fake) == 1
        fake.set_behaviour(model, Reply("Right away."))
        again = http.post("/complete", json={"messages": [HELLO], "models": [model]})
        assert again.status_code == 200, again.text


def test_a_remote_router_at_capacity_makes_the_gateway_answer_429(
    fake: FakeOpenRouter, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    with (
        holding(fake, tmp_path / "state", 1) as (running, request),
        GatewayThread(
            f"127.0.0.1:{running.server.running.port}", running.server.settings
        ) as gateway_url,
        httpx.Client(base_url=gateway_url, timeout=WAIT_S) as http,
    ):
        server, stub, model = running.server, running.stub, request.models[0]
        before = {
            transport: shed(server.http_url, transport, "completions")
            for transport in ("grpc", "http")
        }
        held = pool.submit(lambda: stub.Complete(request))
        wait_for(lambda: chat_calls(fake) == 1)

        reply = http.post("/complete", json={"messages": [HELLO], "models": [model]})
        assert_429(reply, "max_concurrent_completions", 1)
        openai = http.post("/v1/chat/completions", json={"model": model, "messages": [HELLO]})
        assert assert_429(openai, "max_concurrent_completions", 1)["type"] == "rate_limit_error"
        assert http.get("/health").status_code == 200
        # The router refused both; the gateway's own cap was not reached.
        assert shed(server.http_url, "grpc", "completions") == before["grpc"] + 2
        assert shed(server.http_url, "http", "completions") == before["http"]
        assert not held.done()

        assert held.result().choices[0].message.content == "Held, then answered."
        fake.set_behaviour(model, Reply("Right away."))
        again = http.post("/complete", json={"messages": [HELLO], "models": [model]})
        assert again.status_code == 200, again.text
