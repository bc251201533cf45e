"""`router serve` stopped by SIGTERM in the middle of traffic: gRPC health turns NOT_SERVING,
new calls are refused, the calls in flight finish within the grace period
(ROUTER_SHUTDOWN_GRACE_S), those still running when it ends fail with UNAVAILABLE (a stream
with an error, never a clean but short ending), and the process exits 0.

One router process is stopped once, by the module's fixture; each test checks one promise of
that shutdown. The fake OpenRouter runs in this process: one model answers slowly but well
within the grace period, another sends a first chunk and then nothing."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.core import CUT_MESSAGE
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import DEFAULT_KEY, FakeOpenRouter, Reply, Stall
from tests.served_router import environment, served_router

GRACE_S = 10.0
# The slow model's answer: 20 words, a quarter of a second apart, so about 5 s.
WORDS = " ".join(f"word{n}" for n in range(20))
CHUNK_DELAY_S = 0.25
EACH = 2  # calls of every kind to every model
WAIT_S = 60.0  # bounded waits: a test that hangs fails
SERVICE = pb.DESCRIPTOR.services_by_name["Router"].full_name
HELLO = [{"role": "user", "content": "Say hello to the router."}]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Outcome:
    """How one call ended: with the whole answer, or with an error the caller saw."""

    call: str
    model: str
    answered: bool
    status: str  # the gRPC status, the HTTP status, or the transport error when none came
    error: Any = None  # the error's details or body
    chunks: int = 0  # events received (streams)
    ended_at: float = field(default_factory=time.monotonic)


@dataclass
class Shutdown:
    drains: str  # the model that answers within the grace period
    stalls: str  # the model that never finishes
    in_flight: list[Outcome]
    new_calls: list[Outcome]
    sent: int
    health: list[int]
    signalled_at: float
    not_serving_at: float
    exit_code: int
    log: str


def _grpc_error(call: str, model: str, error: grpc.RpcError, chunks: int = 0) -> Outcome:
    assert isinstance(error, grpc.Call)
    return Outcome(call, model, False, error.code().name, error.details(), chunks)


def _grpc_unary(stub: RouterStub, model: str) -> Outcome:
    request = pb.CompleteRequest(messages=[pb.ChatMessage(**m) for m in HELLO], models=[model])
    try:
        answer = stub.Complete(request, timeout=WAIT_S)
    except grpc.RpcError as error:
        return _grpc_error("grpc Complete", model, error)
    return Outcome("grpc Complete", model, answer.choices[0].message.content == WORDS, "OK")


def _grpc_stream(stub: RouterStub, model: str, first: threading.Event) -> Outcome:
    request = pb.CompleteRequest(messages=[pb.ChatMessage(**m) for m in HELLO], models=[model])
    chunks: list[pb.CompleteChunk] = []
    try:
        for chunk in stub.StreamComplete(request, timeout=WAIT_S):
            chunks.append(chunk)
            if chunk.WhichOneof("event") == "delta":
                first.set()
    except grpc.RpcError as error:
        return _grpc_error("grpc StreamComplete", model, error, len(chunks))
    text = "".join(c.delta for c in chunks)
    whole = chunks[-1].HasField("summary") and text == WORDS
    return Outcome("grpc StreamComplete", model, whole, "OK", chunks=len(chunks))


def _rest_unary(http: httpx.Client, model: str) -> Outcome:
    reply = http.post("/complete", json={"messages": HELLO, "models": [model]})
    if reply.status_code != 200:
        return Outcome("REST /complete", model, False, str(reply.status_code), reply.json())
    return Outcome(
        "REST /complete", model, reply.json()["choices"][0]["message"]["content"] == WORDS, "200"
    )


def _rest_stream(http: httpx.Client, path: str, model: str, first: threading.Event) -> Outcome:
    """A stream of Server-Sent Events: whole when it ends as a successful one ends."""
    body: dict[str, Any] = {"messages": HELLO, "stream": True}
    body |= {"models": [model]} if path == "/complete" else {"model": model}
    events: list[Any] = []
    call = f"REST {path} stream"
    with http.stream("POST", path, json=body) as reply:
        if reply.status_code != 200:
            return Outcome(call, model, False, str(reply.status_code), reply.read())
        for line in reply.iter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else orjson.loads(data))
                first.set()
    last = events[-1]
    if isinstance(last, dict) and "error" in last:
        return Outcome(call, model, False, "200", last["error"], len(events))
    whole = last == "[DONE]" if path.startswith("/v1/") else "summary" in last
    return Outcome(call, model, whole, "200", chunks=len(events))


def _watch_health(channel: grpc.Channel, seen: list[int], serving: threading.Event) -> float:
    """Follow the Router service's health until it turns NOT_SERVING; when it did."""
    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=SERVICE), timeout=WAIT_S
    )
    for answer in watch:
        seen.append(answer.status)
        serving.set()
        if answer.status == NOT_SERVING:
            watch.cancel()
            return time.monotonic()
    raise AssertionError(f"the health watch ended after {seen}")


def _new_grpc_call(address: str) -> Outcome:
    with grpc.insecure_channel(address) as channel:
        try:
            RouterStub(channel).Route(pb.RouteRequest(), timeout=WAIT_S)
        except grpc.RpcError as error:
            return _grpc_error("new grpc Route", "", error)
    return Outcome("new grpc Route", "", True, "OK")


def _new_rest_call(url: str) -> Outcome:
    try:
        reply = httpx.post(f"{url}/route", json={}, timeout=WAIT_S)
    except httpx.TransportError as error:
        # Refused, or reset when it reached the closing listener's queue: no answer begun.
        return Outcome("new REST /route", "", False, type(error).__name__, str(error))
    return Outcome("new REST /route", "", reply.status_code == 200, str(reply.status_code))


def _until_refused(new_call: Callable[[], Outcome]) -> list[Outcome]:
    """New calls until one is refused, then one more: every one sent."""
    deadline = time.monotonic() + WAIT_S
    outcomes = [new_call()]
    while outcomes[-1].answered:
        assert time.monotonic() < deadline, "new calls were still served"
        outcomes.append(new_call())
    return [*outcomes, new_call()]


def _in_flight(fake: FakeOpenRouter, expected: int) -> bool:
    return sum(r.path.endswith("/chat/completions") for r in fake.requests) == expected


@pytest.fixture(scope="module")
def shutdown(fake: FakeOpenRouter, tmp_path_factory: pytest.TempPathFactory) -> Shutdown:
    fake.reset()
    state = tmp_path_factory.mktemp("shutdown")
    env = environment(fake, DEFAULT_KEY, state / "state", shutdown_grace_s=str(GRACE_S))
    with (
        served_router(env, state / "router.log") as router,
        grpc.insecure_channel(router.grpc_address) as channel,
        grpc.insecure_channel(router.grpc_address) as health_channel,
        httpx.Client(base_url=router.http_url, timeout=WAIT_S) as http,
        ThreadPoolExecutor(max_workers=32) as pool,
    ):
        stub = RouterStub(channel)
        assert stub.RefreshCatalogue(pb.RefreshCatalogueRequest(), timeout=WAIT_S).replaced
        ranking = stub.Route(pb.RouteRequest(mode=pb.MODE_QUALITY, top_k=2), timeout=WAIT_S)
        drains, stalls = (c.model for c in ranking.candidates)
        fake.set_behaviour(drains, Reply(WORDS, chunk_delay_s=CHUNK_DELAY_S))
        fake.set_behaviour(stalls, Stall(after_chunks=1))

        health: list[int] = []
        watching = threading.Event()
        watched = pool.submit(_watch_health, health_channel, health, watching)
        assert watching.wait(WAIT_S)

        calls: list[Future[Outcome]] = []
        streaming: list[threading.Event] = []

        def stream(call: Callable[[threading.Event], Outcome]) -> None:
            streaming.append(threading.Event())
            calls.append(pool.submit(call, streaming[-1]))

        for model in (drains, stalls) * EACH:
            calls.append(pool.submit(_grpc_unary, stub, model))
            calls.append(pool.submit(_rest_unary, http, model))
            stream(lambda first, m=model: _grpc_stream(stub, m, first))
            stream(lambda first, m=model: _rest_stream(http, "/complete", m, first))
            stream(lambda first, m=model: _rest_stream(http, "/v1/chat/completions", m, first))
        for started in streaming:
            assert started.wait(WAIT_S), "every stream has begun"
        deadline = time.monotonic() + WAIT_S
        while not _in_flight(fake, len(calls)):
            assert time.monotonic() < deadline, "every call reached OpenRouter"
            time.sleep(0.01)

        signalled_at = time.monotonic()
        router.process.send_signal(signal.SIGTERM)
        not_serving_at = watched.result(WAIT_S)
        new_calls = [
            *_until_refused(lambda: _new_grpc_call(router.grpc_address)),
            *_until_refused(lambda: _new_rest_call(router.http_url)),
        ]
        in_flight = [call.result(WAIT_S) for call in calls]
        exit_code = router.process.wait(WAIT_S)
        return Shutdown(
            drains=drains,
            stalls=stalls,
            in_flight=in_flight,
            new_calls=new_calls,
            sent=len(calls) + len(new_calls),
            health=health,
            signalled_at=signalled_at,
            not_serving_at=not_serving_at,
            exit_code=exit_code,
            log=router.log(),
        )


def test_every_call_sent_is_answered_or_fails(shutdown: Shutdown) -> None:
    outcomes = shutdown.in_flight + shutdown.new_calls
    answered = [o for o in outcomes if o.answered]
    failed = [o for o in outcomes if not o.answered]
    assert len(answered) + len(failed) == shutdown.sent
    assert len(shutdown.in_flight) == 2 * EACH * 5


def test_the_calls_in_flight_finish_within_the_grace_period(shutdown: Shutdown) -> None:
    drained = [o for o in shutdown.in_flight if o.model == shutdown.drains]
    assert len(drained) == EACH * 5
    assert all(o.answered for o in drained), drained
    assert all(o.ended_at > shutdown.signalled_at for o in drained), "in flight at SIGTERM"


def test_the_calls_still_running_after_it_fail_with_unavailable(shutdown: Shutdown) -> None:
    cut = [o for o in shutdown.in_flight if o.model == shutdown.stalls]
    assert len(cut) == EACH * 5
    for outcome in cut:
        assert not outcome.answered
        if outcome.call.startswith("grpc"):
            assert (outcome.status, outcome.error) == ("UNAVAILABLE", CUT_MESSAGE), outcome
        elif outcome.call == "REST /complete":
            assert outcome.status == "503"
            assert outcome.error == {"error": {"code": "unavailable", "message": CUT_MESSAGE}}
        else:
            # The stream had begun: it ends with an error event, not as a whole answer ends.
            assert outcome.status == "200"
            assert outcome.chunks >= 2, "its first chunk, then the error"
            assert (outcome.error["code"], outcome.error["message"]) == (
                "unavailable",
                CUT_MESSAGE,
            )
    streams = [o for o in cut if "Stream" in o.call or "stream" in o.call]
    assert all(o.chunks >= 1 for o in streams)
    assert f"grace period over: {len(cut)} completions still running fail" in shutdown.log


def test_health_turns_not_serving_before_new_calls_are_refused(shutdown: Shutdown) -> None:
    assert shutdown.health == [SERVING, NOT_SERVING]
    assert shutdown.not_serving_at > shutdown.signalled_at
    # At once: while every call in flight was still running.
    assert all(shutdown.not_serving_at < o.ended_at for o in shutdown.in_flight)


def test_new_calls_after_sigterm_are_refused(shutdown: Shutdown) -> None:
    refused = [o for o in shutdown.new_calls if not o.answered]
    assert len(refused) >= 4, "each of the two servers refused two in a row"
    for outcome in refused:
        if outcome.call.startswith("new grpc"):
            assert outcome.status == "UNAVAILABLE", outcome
        else:
            assert outcome.status in {"ConnectError", "ReadError"}, outcome
    assert all(o.status in {"OK", "200"} for o in shutdown.new_calls if o.answered)


def test_the_router_exits_0_once_drained(shutdown: Shutdown) -> None:
    assert shutdown.exit_code == 0, shutdown.log
    assert "Traceback" not in shutdown.log
    assert re.search(r"stopping: draining .* for up to 10\.0s", shutdown.log)
