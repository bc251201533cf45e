"""Complete and StreamComplete against the fake OpenRouter, through a real gRPC server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from google.protobuf.json_format import MessageToDict

from rest_gateway.app import create_app
from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import (
    ANY_MODEL,
    DEFAULT_KEY,
    ContextLengthExceeded,
    ErrorIn200,
    FakeOpenRouter,
    HttpError,
    InsufficientCredits,
    MidStreamError,
    Reply,
    Reset,
    Stall,
    ToolCall,
)
from testkit.servers import ServerThread, settings_for

ROUTING = pb.RouteRequest(mode=pb.MODE_QUALITY)
HELLO = [pb.ChatMessage(role="user", content="Say hello to the router.")]


def router_settings(fake: FakeOpenRouter, state: Path, **extra: Any) -> Settings:
    return settings_for(
        fake,
        state,
        attempt_timeout_s=0.5,
        first_token_timeout_s=0.5,
        stream_idle_timeout_s=0.5,
        endpoint_stats_models=0,
        **extra,
    )


@pytest.fixture
def stub(fake: FakeOpenRouter, tmp_path: Path) -> Iterator[RouterStub]:
    """A fresh router per test, on a freshly reset fake: circuits and figures start clean."""
    fake.reset()
    settings = router_settings(fake, tmp_path / "state")
    with ServerThread(settings) as address, grpc.insecure_channel(address) as channel:
        stub = RouterStub(channel)
        assert stub.RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        yield stub


def candidates(stub: RouterStub, routing: pb.RouteRequest = ROUTING) -> list[str]:
    request = pb.RouteRequest()
    request.CopyFrom(routing)
    request.top_k = 4
    return [c.model for c in stub.Route(request).candidates]


def complete(stub: RouterStub, **fields: Any) -> pb.CompleteResponse:
    fields.setdefault("routing", ROUTING)
    fields.setdefault("messages", HELLO)
    return stub.Complete(pb.CompleteRequest(**fields), timeout=10)


def chat_calls(fake: FakeOpenRouter) -> list[str]:
    return [str(r.json["model"]) for r in fake.requests if r.path.endswith("/chat/completions")]


def test_a_healthy_call_answers_from_the_best_candidate(
    stub: RouterStub, fake: FakeOpenRouter
) -> None:
    best = candidates(stub)[0]
    fake.script(best, Reply("Hello, router!"))
    response = complete(stub)
    assert response.model == best
    assert response.choices[0].message.content == "Hello, router!"
    assert response.choices[0].finish_reason == "stop"
    (attempt,) = response.attempts
    assert (attempt.model, attempt.outcome, attempt.http_status) == (best, "ok", 200)
    assert attempt.completion_tokens == response.usage.completion_tokens > 0
    assert response.usage.cost_usd == pytest.approx(attempt.cost_usd)
    assert response.decision_id
    sent = fake.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {DEFAULT_KEY}"
    assert sent.json["messages"] == [{"role": "user", "content": "Say hello to the router."}]


FAILOVERS = [
    ("503", HttpError.unavailable(), "http_503"),
    ("429", HttpError.upstream_rate_limited(retry_after_s=30), "http_429"),
    ("524", HttpError.edge_timeout(), "http_524"),
    ("529", HttpError.overloaded(), "http_529"),
    ("404 no endpoints", HttpError.no_endpoints(), "http_404"),
    ("error in a 200", ErrorIn200(), "error_in_200"),
    ("empty answer", Reply(content=""), "empty_answer"),
    ("timeout", Reply("late", first_token_delay_s=3), "timeout"),
    ("reset", Reset(), "connection"),
]


@pytest.mark.parametrize(("name", "failure", "outcome"), FAILOVERS, ids=[f[0] for f in FAILOVERS])
def test_a_failing_top_candidate_fails_over_to_the_next(
    stub: RouterStub, fake: FakeOpenRouter, name: str, failure: Any, outcome: str
) -> None:
    first, second = candidates(stub)[:2]
    fake.script(first, failure)
    fake.script(second, Reply("from the runner-up"))
    response = complete(stub)
    assert response.model == second
    assert response.choices[0].message.content == "from the runner-up"
    assert [a.model for a in response.attempts] == [first, second]
    assert response.attempts[0].outcome == outcome
    assert response.attempts[1].outcome == "ok"
    assert chat_calls(fake) == [first, second]


STREAM_FAILOVERS = [
    ("503", HttpError.unavailable(), "http_503"),
    ("error before the first token", MidStreamError(after_chunks=0), "stream_error"),
    ("stall before the first token", Stall(after_chunks=0), "timeout"),
    ("slow first token", Reply("late", first_token_delay_s=3), "timeout"),
    ("reset", Reset(), "connection"),
]


@pytest.mark.parametrize(
    ("name", "failure", "outcome"), STREAM_FAILOVERS, ids=[f[0] for f in STREAM_FAILOVERS]
)
def test_a_stream_fails_over_invisibly_before_its_first_token(
    stub: RouterStub, fake: FakeOpenRouter, name: str, failure: Any, outcome: str
) -> None:
    first, second = candidates(stub)[:2]
    fake.script(first, failure)
    fake.script(second, Reply("streamed from the runner-up"))
    chunks = list(
        stub.StreamComplete(pb.CompleteRequest(routing=ROUTING, messages=HELLO), timeout=10)
    )
    text = "".join(c.delta for c in chunks if c.WhichOneof("event") == "delta")
    assert text == "streamed from the runner-up"
    summary = chunks[-1].summary
    assert summary.model == second
    assert [a.outcome for a in summary.attempts] == [outcome, "ok"]
    assert summary.attempts[1].ttft_seconds > 0
    assert summary.usage.completion_tokens > 0


def stream_deltas(stub: RouterStub) -> list[str]:
    chunks = stub.StreamComplete(pb.CompleteRequest(routing=ROUTING, messages=HELLO), timeout=10)
    return [c.delta for c in chunks if c.WhichOneof("event") == "delta"]


def test_a_long_stream_arrives_whole_in_fewer_messages(
    stub: RouterStub, fake: FakeOpenRouter
) -> None:
    """Events that arrive together go out as one message; lines split across reads rejoin."""
    words = [f"word{i:05d}-" + "x" * (i % 97) for i in range(3_000)]
    words[1_500] = "y" * 300_000  # an event far larger than one read
    text = " ".join(words)
    fake.script(candidates(stub)[0], Reply(text))
    deltas = stream_deltas(stub)
    assert "".join(deltas) == text
    assert len(deltas) < 3_000 / 10


def test_text_arriving_over_time_is_passed_on_as_it_arrives(
    stub: RouterStub, fake: FakeOpenRouter
) -> None:
    fake.script(candidates(stub)[0], Reply("one two three four", chunk_delay_s=0.05))
    assert stream_deltas(stub) == ["one ", "two ", "three ", "four"]


@pytest.mark.parametrize("streamed", [False, True], ids=["Complete", "StreamComplete"])
def test_tool_calls_reach_the_caller_whole(
    stub: RouterStub, fake: FakeOpenRouter, streamed: bool
) -> None:
    """Streamed, they arrive in pieces; the summary carries them joined."""
    fake.script(
        ANY_MODEL,
        Reply(
            "",
            tool_calls=(
                ToolCall("look", {"city": "Paris"}, id="call_1"),
                ToolCall("book", '{"seats": 2}', id="call_2"),
            ),
        ),
    )
    params = pb.GenerationParams()
    params.tools.append({"type": "function", "function": {"name": "look", "parameters": {}}})
    request = pb.CompleteRequest(routing=ROUTING, messages=HELLO, params=params)
    if streamed:
        chunks = list(stub.StreamComplete(request, timeout=10))
        assert [c.WhichOneof("event") for c in chunks] == ["summary"], "no text came first"
        response = chunks[0].summary
    else:
        response = stub.Complete(request, timeout=10)
    assert [a.outcome for a in response.attempts] == ["ok"], "tool calls are an answer"
    (choice,) = response.choices
    assert choice.finish_reason == "tool_calls"
    assert MessageToDict(choice.message)["toolCalls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "look", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "book", "arguments": '{"seats": 2}'},
        },
    ]


def test_a_stream_answers_its_headers_before_the_model_does(
    stub: RouterStub, fake: FakeOpenRouter
) -> None:
    """Headers go out at once, so they are not on the first token's path."""
    fake.set_behaviour(ANY_MODEL, Stall(after_chunks=0))
    call = stub.StreamComplete(pb.CompleteRequest(routing=ROUTING, messages=HELLO), timeout=10)
    try:
        call.initial_metadata()  # type: ignore[attr-defined]
        assert call.running(), "the headers came while every candidate was still stalled"  # type: ignore[attr-defined]
    finally:
        call.cancel()  # type: ignore[attr-defined]


def test_a_failure_after_the_first_token_is_an_error_not_a_truncation(
    stub: RouterStub, fake: FakeOpenRouter
) -> None:
    first = candidates(stub)[0]
    fake.script(first, MidStreamError(after_chunks=2))
    stream = stub.StreamComplete(pb.CompleteRequest(routing=ROUTING, messages=HELLO), timeout=10)
    received: list[pb.CompleteChunk] = []

    def drain() -> None:
        received.extend(stream)

    with pytest.raises(grpc.RpcError) as caught:
        drain()
    assert received, "the first tokens reached the caller"
    assert all(c.WhichOneof("event") == "delta" for c in received), "no success summary"
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert "after it began" in caught.value.details()  # type: ignore[attr-defined]
    assert chat_calls(fake) == [first]


def test_every_candidate_failing_is_unavailable_with_each_cause(
    stub: RouterStub, fake: FakeOpenRouter
) -> None:
    fake.set_behaviour(ANY_MODEL, HttpError.unavailable())
    with pytest.raises(grpc.RpcError) as caught:
        complete(stub)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    details = caught.value.details()  # type: ignore[attr-defined]
    tried = chat_calls(fake)
    assert len(tried) == 4
    for model in tried:
        assert f"{model}: http_503" in details


FAIL_FAST = [
    ("400", HttpError(400, "messages: invalid role"), grpc.StatusCode.INVALID_ARGUMENT),
    ("401", HttpError.unauthorized(), grpc.StatusCode.UNAUTHENTICATED),
    ("402", InsufficientCredits(can_afford=10), grpc.StatusCode.RESOURCE_EXHAUSTED),
    ("403", HttpError.moderation(), grpc.StatusCode.PERMISSION_DENIED),
]


@pytest.mark.parametrize(("name", "failure", "code"), FAIL_FAST, ids=[f[0] for f in FAIL_FAST])
def test_client_errors_fail_fast_without_trying_other_models(
    stub: RouterStub, fake: FakeOpenRouter, name: str, failure: Any, code: grpc.StatusCode
) -> None:
    first = candidates(stub)[0]
    fake.script(first, failure)
    with pytest.raises(grpc.RpcError) as caught:
        complete(stub)
    assert caught.value.code() == code  # type: ignore[attr-defined]
    assert chat_calls(fake) == [first]


def test_a_context_length_error_moves_to_a_larger_window(
    stub: RouterStub, fake: FakeOpenRouter, tmp_path: Path
) -> None:
    ranked = candidates(stub)
    first = ranked[0]
    fake.script(first, ContextLengthExceeded())
    response = complete(stub)
    assert response.attempts[0].outcome == "context_length"
    windows = {m.id: m.context_length for m in stub.ListModels(pb.ListModelsRequest()).models}
    assert windows[response.model] > windows[first]


def test_bad_requests_are_invalid_argument(stub: RouterStub) -> None:
    for request in (
        pb.CompleteRequest(routing=ROUTING),
        pb.CompleteRequest(routing=ROUTING, messages=[pb.ChatMessage(role="robot", content="x")]),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Complete(request, timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_tools_and_images_constrain_the_candidates(stub: RouterStub, fake: FakeOpenRouter) -> None:
    image = pb.ContentPart(image_url=pb.ImageUrl(url="data:image/png;base64,AAAA"))
    message = pb.ChatMessage(role="user", parts=[pb.ContentPart(text="What is this?"), image])
    tools = pb.GenerationParams()
    tools.tools.append({"type": "function", "function": {"name": "look", "parameters": {}}})
    response = complete(stub, messages=[message], params=tools)
    listed = {m.id: m for m in stub.ListModels(pb.ListModelsRequest()).models}
    chosen = listed[response.model]
    assert "image" in chosen.input_modalities
    assert "tools" in chosen.supported_parameters
    assert fake.requests[-1].json["tools"][0]["function"]["name"] == "look"
    assert fake.requests[-1].json["messages"][0]["content"][1]["type"] == "image_url"


def test_the_deadline_bounds_the_whole_call(stub: RouterStub, fake: FakeOpenRouter) -> None:
    fake.set_behaviour(ANY_MODEL, Reply("too late", first_token_delay_s=3))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Complete(pb.CompleteRequest(routing=ROUTING, messages=HELLO), timeout=1.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    assert len(chat_calls(fake)) <= 3


@pytest.fixture
def rest(fake: FakeOpenRouter, tmp_path: Path) -> Iterator[TestClient]:
    fake.reset()
    with ServerThread(router_settings(fake, tmp_path / "state")) as address:
        with grpc.insecure_channel(address) as channel:
            assert RouterStub(channel).RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        with TestClient(create_app(address)) as client:
            yield client


def test_complete_over_rest(rest: TestClient, fake: FakeOpenRouter) -> None:
    body = {
        "mode": "quality",
        "constraints": {"free": "exclude"},
        "messages": [{"role": "user", "content": "Hello"}],
        "params": {"max_tokens": 20, "temperature": 0.2, "logprobs": True},
    }
    reply = rest.post("/complete", json=body)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["choices"][0]["message"]["content"]
    assert answer["attempts"][-1]["outcome"] == "ok"
    assert answer["usage"]["cost_usd"] > 0
    sent = fake.requests[-1].json
    assert (sent["max_tokens"], sent["temperature"], sent["logprobs"]) == (20, 0.2, True)
    assert sent["model"] == answer["model"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"messages": []}, 400, "messages must not be empty"),
        ({"mode": "speed"}, 422, "messages"),
        (
            {"messages": [{"role": "user", "content": "x"}], "params": {"model": "a/b"}},
            400,
            "model",
        ),
        ({"messages": [{"role": "user", "content": 5}]}, 422, "content"),
    ],
)
def test_bad_completions_over_rest(
    rest: TestClient, body: dict[str, object], status: int, fragment: str
) -> None:
    reply = rest.post("/complete", json=body)
    assert reply.status_code == status, reply.text
    assert fragment in reply.json()["error"]["message"]


def test_every_candidate_failing_over_rest_is_503(rest: TestClient, fake: FakeOpenRouter) -> None:
    fake.set_behaviour(ANY_MODEL, HttpError.bad_gateway())
    reply = rest.post("/complete", json={"messages": [{"role": "user", "content": "x"}]})
    assert reply.status_code == 503
    assert "every candidate failed" in reply.json()["error"]["message"]
