"""Complete and StreamComplete against the fake OpenRouter, through a real gRPC server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

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
LOOK = {"type": "function", "function": {"name": "look", "parameters": {}}}


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
    """Events that arrive together (one write of the fake) go out as fewer messages than
    events, however the reads fall; lines split across reads rejoin."""
    words = [f"word{i:05d}-" + "x" * (i % 97) for i in range(3_000)]
    words[1_500] = "y" * 300_000  # an event far larger than one read
    text = " ".join(words)
    fake.script(candidates(stub)[0], Reply(text, burst=True))
    deltas = stream_deltas(stub)
    assert "".join(deltas) == text
    assert len(deltas) < 3_000 / 10


def test_text_is_passed_on_as_it_arrives(stub: RouterStub, fake: FakeOpenRouter) -> None:
    """The first piece reaches the caller while OpenRouter sends nothing after it."""
    fake.script(candidates(stub)[0], Stall(after_chunks=1, content="one two three four"))
    chunks = stub.StreamComplete(pb.CompleteRequest(routing=ROUTING, messages=HELLO), timeout=10)
    first = next(c for c in chunks if c.WhichOneof("event") == "delta")
    chunks.cancel()
    assert first.delta == "one "


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
    params = pb.GenerationParams(tools_json=json.dumps([LOOK]))
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
    assert json.loads(choice.message.tool_calls_json) == [
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
    ("401", HttpError.unauthorized(), grpc.StatusCode.UNAVAILABLE),
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
    tools = pb.GenerationParams(tools_json=json.dumps([LOOK]))
    response = complete(stub, messages=[message], params=tools)
    listed = {m.id: m for m in stub.ListModels(pb.ListModelsRequest()).models}
    chosen = listed[response.model]
    assert "image" in chosen.input_modalities
    assert "tools" in chosen.supported_parameters
    assert fake.requests[-1].json["tools"][0]["function"]["name"] == "look"
    assert fake.requests[-1].json["messages"][0]["content"][1]["type"] == "image_url"


# Integers in a tool schema, a response format and a pass-through parameter: a
# google.protobuf.Struct would have turned each into a double (`"maxItems": 40` into 40.0).
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "parameters": {
            "type": "object",
            "properties": {"queries": {"type": "array", "maxItems": 40, "items": {}}},
        },
    },
}
SEARCH_CHOICE = {"type": "function", "function": {"name": "search"}}
HITS = {
    "type": "json_schema",
    "json_schema": {"name": "hits", "schema": {"type": "array", "maxItems": 3}},
}
PASSED_THROUGH = {"logprobs": True, "top_logprobs": 5, "penalty": 0.5}
SEARCH_CALL = ToolCall("search", {"queries": ["router", 2]}, id="call_1")
# The call as the fake answers it: `arguments` is a string of JSON, and stays one.
SEARCH_CALL_JSON = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "search", "arguments": '{"queries": ["router", 2]}'},
}


def typed(value: Any) -> Any:
    """`value` with each scalar paired with its type: 40 and 40.0 no longer compare equal."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value), value)


def assert_sent_with_their_types(sent: dict[str, Any]) -> None:
    max_items = sent["tools"][0]["function"]["parameters"]["properties"]["queries"]["maxItems"]
    assert type(max_items) is int
    assert type(sent["response_format"]["json_schema"]["schema"]["maxItems"]) is int
    assert type(sent["top_logprobs"]) is int
    assert typed(sent["tools"]) == typed([SEARCH])
    assert typed(sent["tool_choice"]) == typed(SEARCH_CHOICE)
    assert typed(sent["response_format"]) == typed(HITS)
    assert typed({k: sent[k] for k in PASSED_THROUGH}) == typed(PASSED_THROUGH)


def test_json_parameters_and_tool_calls_keep_their_types_over_grpc(
    stub: RouterStub, fake: FakeOpenRouter
) -> None:
    fake.script(ANY_MODEL, Reply("", tool_calls=(SEARCH_CALL,)), Reply("Found it."))
    params = pb.GenerationParams(
        tools_json=json.dumps([SEARCH]),
        tool_choice_json=json.dumps(SEARCH_CHOICE),
        response_format_json=json.dumps(HITS),
        extra_json=json.dumps(PASSED_THROUGH),
    )
    response = complete(stub, params=params)
    assert_sent_with_their_types(fake.requests[-1].json)
    calls = response.choices[0].message.tool_calls_json
    assert typed(json.loads(calls)) == typed([SEARCH_CALL_JSON])

    # The answer's tool calls go back as they came, in the next turn's history.
    history = [
        *HELLO,
        pb.ChatMessage(role="assistant", tool_calls_json=calls),
        pb.ChatMessage(role="tool", tool_call_id="call_1", content="2 hits"),
    ]
    assert complete(stub, messages=history, params=params).choices[0].message.content
    sent = fake.requests[-1].json
    assert typed(sent["messages"][1]["tool_calls"]) == typed([SEARCH_CALL_JSON])
    assert_sent_with_their_types(sent)


def test_json_parameters_and_tool_calls_keep_their_types_over_rest(
    rest: httpx.Client, fake: FakeOpenRouter
) -> None:
    fake.script(ANY_MODEL, Reply("", tool_calls=(SEARCH_CALL,)), Reply("Found it."))
    params = {
        "tools": [SEARCH],
        "tool_choice": SEARCH_CHOICE,
        "response_format": HITS,
        **PASSED_THROUGH,
    }
    hello: dict[str, Any] = {"role": "user", "content": "Search, please."}
    reply = rest.post("/complete", json={"messages": [hello], "params": params})
    assert reply.status_code == 200, reply.text
    assert_sent_with_their_types(fake.requests[-1].json)
    message = reply.json()["choices"][0]["message"]
    assert typed(message["tool_calls"]) == typed([SEARCH_CALL_JSON])

    answer = {"role": "assistant", "content": "", "tool_calls": message["tool_calls"]}
    result = {"role": "tool", "tool_call_id": "call_1", "content": "2 hits"}
    body = {"messages": [hello, answer, result], "params": params}
    reply = rest.post("/complete", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["tool_calls"] is None
    sent = fake.requests[-1].json
    assert typed(sent["messages"][1]["tool_calls"]) == typed([SEARCH_CALL_JSON])
    assert_sent_with_their_types(sent)


JSON_FIELDS = [
    "messages[0].tool_calls_json",
    "params.tools_json",
    "params.tool_choice_json",
    "params.response_format_json",
    "params.extra_json",
]
BAD_JSON = [
    ("NaN", '{"a": NaN}', "not valid JSON: NaN is not a JSON value"),
    ("not JSON", "{'a': 1}", "not valid JSON: Expecting property name"),
    ("too deep", "[" * 65 + "]" * 65, "nested deeper than 64 levels"),
    ("wrong top type", "42", "must be a JSON"),
]


@pytest.mark.parametrize("field", JSON_FIELDS)
@pytest.mark.parametrize(("name", "text", "fragment"), BAD_JSON, ids=[b[0] for b in BAD_JSON])
def test_bad_json_text_is_invalid_argument_naming_the_field(
    grpc_address: str, field: str, name: str, text: str, fragment: str
) -> None:
    """Refused before routing, so the session's server (without an API key) will do."""
    request = pb.CompleteRequest(routing=ROUTING)
    message = request.messages.add(role="assistant")
    if field.startswith("messages[0]."):
        message.tool_calls_json = text
    else:
        setattr(request.params, field.removeprefix("params."), text)
    with grpc.insecure_channel(grpc_address) as channel, pytest.raises(grpc.RpcError) as caught:
        RouterStub(channel).Complete(request, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    details = caught.value.details()  # type: ignore[attr-defined]
    assert details.startswith(f"{field}: {fragment}"), details


def test_a_non_finite_number_over_rest_is_refused_naming_the_field(rest: httpx.Client) -> None:
    """A REST body may say NaN (Python's reader lets it in); the router refuses it."""
    tool = {"type": "function", "function": {"name": "f", "parameters": {"x": float("nan")}}}
    body = {"messages": [{"role": "user", "content": "x"}], "params": {"tools": [tool]}}
    headers = {"content-type": "application/json"}
    reply = rest.post("/complete", content=json.dumps(body), headers=headers)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["message"].startswith("params.tools_json: not valid JSON: NaN")


def test_the_deadline_bounds_the_whole_call(stub: RouterStub, fake: FakeOpenRouter) -> None:
    fake.set_behaviour(ANY_MODEL, Reply("too late", first_token_delay_s=3))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Complete(pb.CompleteRequest(routing=ROUTING, messages=HELLO), timeout=1.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    assert len(chat_calls(fake)) <= 3


@pytest.fixture
def rest(fake: FakeOpenRouter, tmp_path: Path) -> Iterator[httpx.Client]:
    fake.reset()
    server = ServerThread(router_settings(fake, tmp_path / "state"))
    with server as address:
        with grpc.insecure_channel(address) as channel:
            assert RouterStub(channel).RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        with httpx.Client(base_url=server.http_url, timeout=30) as client:
            yield client


def test_complete_over_rest(rest: httpx.Client, fake: FakeOpenRouter) -> None:
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
        ({"mode": "speed"}, 400, "messages"),
        (
            {"messages": [{"role": "user", "content": "x"}], "params": {"model": "a/b"}},
            400,
            "model",
        ),
        ({"messages": [{"role": "user", "content": 5}]}, 400, "content"),
    ],
)
def test_bad_completions_over_rest(
    rest: httpx.Client, body: dict[str, object], status: int, fragment: str
) -> None:
    reply = rest.post("/complete", json=body)
    assert reply.status_code == status, reply.text
    assert fragment in reply.json()["error"]["message"]


def test_every_candidate_failing_over_rest_is_503(rest: httpx.Client, fake: FakeOpenRouter) -> None:
    fake.set_behaviour(ANY_MODEL, HttpError.bad_gateway())
    reply = rest.post("/complete", json={"messages": [{"role": "user", "content": "x"}]})
    assert reply.status_code == 503
    assert "every candidate failed" in reply.json()["error"]["message"]
