"""The OpenAI-compatible API (`/v1/chat/completions`, `/v1/models`) and streaming on `/complete`,
through the official `openai` client and raw HTTP, against a router on the fake OpenRouter; the
gateway beside the router and the one in front of it over gRPC answer alike."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from rest_gateway.app import DEFAULT_MAX_BODY_BYTES
from testkit.fake_openrouter import (
    ANY_MODEL,
    ChatBehaviour,
    FakeOpenRouter,
    HttpError,
    MidStreamError,
    Reply,
    Stall,
    ToolCall,
)
from testkit.servers import GatewayThread, ServerThread, settings_for
from tests.conftest import CUSTOM_MODES

HELLO = {"role": "user", "content": "Say hello to the router."}
PROFILE = {"prompt_tokens": 1000, "output_tokens": 200}
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
HEX_ID = 32
# Long enough that only the client's going away ends it within the test.
SLOW = Reply(" ".join(f"word{i}" for i in range(400)), chunk_delay_s=0.1)


@pytest.fixture(params=["in-process", "remote"])
def api_url(request: pytest.FixtureRequest, fake: FakeOpenRouter, tmp_path: Path) -> Iterator[str]:
    """A fresh router on the freshly reset fake, with the fake's catalogue; the base URL of its
    gateway in process, or of one in front of it over gRPC."""
    fake.reset()
    settings = settings_for(
        fake,
        tmp_path / "state",
        custom_modes=CUSTOM_MODES,
        attempt_timeout_s=2,
        first_token_timeout_s=30,
        stream_idle_timeout_s=30,
        endpoint_stats_models=0,
    )
    server = ServerThread(settings)
    with server as address:
        with httpx.Client(base_url=server.http_url, timeout=30) as http:
            assert http.post("/admin/catalogue/refresh").json()["replaced"]
        if request.param == "remote":
            with GatewayThread(address, settings) as url:
                yield url
        else:
            yield server.http_url


@pytest.fixture
def http(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture
def client(api_url: str) -> Iterator[openai.OpenAI]:
    """The official client, pointed at the router by its base URL; the router needs no key."""
    with openai.OpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def chat_calls(fake: FakeOpenRouter) -> list[str]:
    return [str(r.json["model"]) for r in fake.requests if r.path.endswith("/chat/completions")]


def ranked(http: httpx.Client, **routing: Any) -> list[str]:
    reply = http.post("/route", json={"top_k": 10, "profile": PROFILE, **routing})
    assert reply.status_code == 200, reply.text
    return [c["model"] for c in reply.json()["candidates"]]


def sse_events(text: str) -> list[str]:
    """The data of each event, checking the framing: `data: ...` lines, a blank line after each."""
    assert text.endswith("\n\n")
    events = text.removesuffix("\n\n").split("\n\n")
    assert all(e.startswith("data: ") and "\n" not in e for e in events), events
    return [e.removeprefix("data: ") for e in events]


def test_a_chat_answers_as_openai_does(
    client: openai.OpenAI, http: httpx.Client, fake: FakeOpenRouter
) -> None:
    best = ranked(http, mode="quality")[0]
    fake.script(best, Reply("Hello from the router."))
    raw = client.chat.completions.with_raw_response.create(
        model="router/quality", messages=[HELLO], extra_body={"router": {"profile": PROFILE}}
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == best
    (choice,) = completion.choices
    assert (choice.message.role, choice.message.content) == ("assistant", "Hello from the router.")
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens > 0
    assert raw.headers["x-router-model"] == best
    assert raw.headers["x-router-attempts"] == "1"
    assert len(raw.headers["x-router-decision-id"]) == HEX_ID
    assert chat_calls(fake) == [best]


def test_openai_parameters_reach_the_model(client: openai.OpenAI, fake: FakeOpenRouter) -> None:
    client.chat.completions.create(
        model="router/balanced",
        messages=[{"role": "system", "content": "Be brief."}, HELLO],
        temperature=0.2,
        top_p=0.9,
        max_completion_tokens=40,
        stop=["\n\n"],
        seed=7,
        user="user-42",
        response_format={"type": "json_object"},
        extra_body={"top_logprobs": 2, "logprobs": True},
    )
    sent = fake.requests[-1].json
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, HELLO]
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.2, 0.9, 40)
    assert (sent["stop"], sent["seed"], sent["user"]) == (["\n\n"], 7, "user-42")
    assert sent["response_format"] == {"type": "json_object"}
    assert (sent["top_logprobs"], sent["logprobs"]) == (2, True)
    assert type(sent["top_logprobs"]) is int


def test_a_streamed_chat(client: openai.OpenAI, http: httpx.Client, fake: FakeOpenRouter) -> None:
    best = ranked(http, mode="speed")[0]
    fake.script(best, Reply("one two three four"))
    stream = client.chat.completions.create(
        model="router/speed",
        messages=[HELLO],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"router": {"profile": PROFILE}},
    )
    chunks = list(stream)
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {best}
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert set(finishes[:-1]) == {None}
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
def test_a_tool_call_round_trip(
    client: openai.OpenAI, fake: FakeOpenRouter, streamed: bool
) -> None:
    fake.script(
        ANY_MODEL,
        Reply(tool_calls=(ToolCall("weather", {"city": "Paris"}, id="call_1"),)),
        Reply("Sunny in Paris."),
    )
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    if streamed:
        with client.chat.completions.stream(
            model="router/quality", messages=messages, tools=[WEATHER]
        ) as stream:
            first = stream.get_final_completion()
    else:
        first = client.chat.completions.create(
            model="router/quality", messages=messages, tools=[WEATHER]
        )
    (choice,) = first.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert (call.id, call.function.name) == ("call_1", "weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = client.chat.completions.create(
        model="router/quality", messages=messages, tools=[WEATHER]
    )
    assert second.choices[0].message.content == "Sunny in Paris."
    sent = fake.requests[-1].json
    assert sent["tools"] == [WEATHER]
    assert sent["messages"][1]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert sent["messages"][2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}


MODES = [
    ("router/speed", {"mode": "speed"}, {}),
    ("router/cost", {"mode": "cost"}, {}),
    ("router/quality", {"mode": "quality"}, {}),
    ("router/balanced", {"mode": "balanced"}, {}),
    ("router/frugal-genius", {"custom_mode": "frugal-genius"}, {}),
    ("router", {"weights": {"latency": 0.5, "cost": 0, "quality": 0.5}}, None),
]


@pytest.mark.parametrize(("model", "policy", "extra"), MODES, ids=[m[0] for m in MODES])
def test_the_routing_choice_picks_the_scorers_first(
    client: openai.OpenAI,
    http: httpx.Client,
    fake: FakeOpenRouter,
    model: str,
    policy: dict[str, Any],
    extra: dict[str, Any] | None,
) -> None:
    """`router/<mode>` names the mode; bare `router` takes the policy from `router`."""
    best = ranked(http, **policy)[0]
    routing = {"profile": PROFILE, **(policy if extra is None else extra)}
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[HELLO], extra_body={"router": routing}
    )
    assert raw.parse().model == best
    assert raw.headers["x-router-model"] == best
    assert chat_calls(fake) == [best]


def test_the_modes_pick_different_models(http: httpx.Client) -> None:
    """Else the test above would not tell the modes apart."""
    firsts = {ranked(http, **policy)[0] for _, policy, _ in MODES}
    assert len(firsts) >= 3


def test_a_model_id_bypasses_ranking_and_fails_over_only_to_models(
    client: openai.OpenAI, http: httpx.Client, fake: FakeOpenRouter
) -> None:
    ranking = ranked(http, mode="balanced")
    named, fallback, unlisted = ranking[5], ranking[3], ranking[0]
    fake.script(named, HttpError.unavailable())
    raw = client.chat.completions.with_raw_response.create(
        model=named, messages=[HELLO], extra_body={"models": [fallback]}
    )
    assert raw.parse().model == fallback
    assert raw.headers["x-router-attempts"] == "2"
    assert chat_calls(fake) == [named, fallback]

    fake.set_behaviour(ANY_MODEL, HttpError.unavailable())
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model=named, messages=[HELLO], extra_body={"models": [fallback]}
        )
    assert caught.value.status_code == 503
    assert f"{named}: http_503" in caught.value.message
    assert f"{fallback}: http_503" in caught.value.message
    assert chat_calls(fake)[2:] == [named, fallback]
    assert unlisted not in chat_calls(fake)


def test_a_model_id_alone_is_the_only_model_tried(
    client: openai.OpenAI, http: httpx.Client, fake: FakeOpenRouter
) -> None:
    named = ranked(http, mode="cost")[4]
    fake.set_behaviour(ANY_MODEL, HttpError.unavailable())
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=named, messages=[HELLO])
    assert chat_calls(fake) == [named]


def test_an_unknown_model_is_not_found(client: openai.OpenAI, fake: FakeOpenRouter) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="acme/no-such-model", messages=[HELLO])
    assert "not in the catalogue: 'acme/no-such-model'" in caught.value.message
    assert caught.value.body == {
        "message": "not in the catalogue: 'acme/no-such-model'",
        "type": "not_found_error",
        "param": None,
        "code": "not_found",
    }
    assert chat_calls(fake) == []


BAD_REQUESTS = [
    ("unknown mode", {"model": "router/warp"}, "unknown custom mode 'warp'"),
    ("no messages", {"model": "router/speed", "messages": []}, "messages must not be empty"),
    ("bad role", {"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ("models with a mode", {"models": ["openai/gpt-4o-mini"]}, "models lists the fallbacks"),
    ("two policies", {"router": {"mode": "cost"}}, "router/speed names the mode"),
    (
        "routing for a model id",
        {"model": "openai/gpt-4o-mini", "router": {"top_k": 3}},
        "openai/gpt-4o-mini is called as named",
    ),
    ("unknown router field", {"router": {"speed": 1}}, "router.speed"),
    ("two limits", {"max_tokens": 5, "max_completion_tokens": 6}, "not both"),
    ("reserved pass-through", {"provider": {"order": ["x"]}}, "may not set provider"),
    ("no model", {"model": None}, "model"),
]


@pytest.mark.parametrize(
    ("name", "change", "fragment"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_requests_are_400_in_openais_shape(
    http: httpx.Client, fake: FakeOpenRouter, name: str, change: dict[str, Any], fragment: str
) -> None:
    body = {"model": "router/speed", "messages": [HELLO], **change}
    reply = http.post("/v1/chat/completions", json={k: v for k, v in body.items() if v is not None})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]
    assert chat_calls(fake) == []


UPSTREAM_FAILURES = [
    ("every candidate failed", HttpError.unavailable(), 503, "unavailable", "api_error"),
    ("router's key refused", HttpError.unauthorized(), 502, "upstream_auth", "api_error"),
    ("model refused", HttpError(400, "bad tool schema"), 400, "refused_by_model", None),
    ("moderation", HttpError.moderation(), 403, "moderation", "permission_error"),
]


@pytest.mark.parametrize(
    ("name", "failure", "status", "code", "kind"),
    UPSTREAM_FAILURES,
    ids=[f[0] for f in UPSTREAM_FAILURES],
)
def test_upstream_failures_have_their_status_in_openais_shape(
    http: httpx.Client,
    fake: FakeOpenRouter,
    name: str,
    failure: HttpError,
    status: int,
    code: str,
    kind: str | None,
) -> None:
    fake.set_behaviour(ANY_MODEL, failure)
    for stream in (False, True):
        body = {"model": "router/speed", "messages": [HELLO], "stream": stream}
        reply = http.post("/v1/chat/completions", json=body)
        assert reply.status_code == status, reply.text
        assert reply.headers["content-type"] == "application/json"
        error = reply.json()["error"]
        assert error["code"] == code
        assert error["type"] == (kind or "invalid_request_error")


def test_v1_models_lists_the_routing_choices_and_the_catalogue(
    client: openai.OpenAI, http: httpx.Client, fake: FakeOpenRouter
) -> None:
    raw = http.get("/v1/models").json()
    assert raw["object"] == "list"
    assert all(set(m) == {"id", "object", "created", "owned_by"} for m in raw["data"])
    listed = list(client.models.list())
    ids = [m.id for m in listed]
    choices = [f"router/{m}" for m in ("speed", "cost", "quality", "balanced", "frugal-genius")]
    assert ids[: len(choices)] == choices
    authors = {m["id"]: m["author"] for m in http.get("/models").json()["models"]}
    assert ids[len(choices) :] == list(authors)
    assert {m.object for m in listed} == {"model"}
    created = {row["id"]: row["created"] for row in fake.models}
    for model in listed[len(choices) :]:
        assert model.owned_by == authors[model.id]
        assert model.created == created[model.id] > 0


def test_v1_sse_framing_and_headers(http: httpx.Client, fake: FakeOpenRouter) -> None:
    best = ranked(http, mode="cost")[0]
    fake.script(best, Reply("Streaming, framed."))
    body = {
        "model": "router/cost",
        "messages": [HELLO],
        "stream": True,
        "router": {"profile": PROFILE},
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/event-stream"
        assert reply.headers["x-router-model"] == best
        assert reply.headers["x-router-attempts"] == "1"
        decision = reply.headers["x-router-decision-id"]
        text = reply.read().decode()
    *events, done = sse_events(text)
    assert done == "[DONE]"
    chunks = [json.loads(e) for e in events]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {best}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == (
        "Streaming, framed."
    )
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert len(decision) == HEX_ID


def test_complete_streams_its_chunks(http: httpx.Client, fake: FakeOpenRouter) -> None:
    """One event per chunk in its JSON form: the first carries the head, the last the summary."""
    first, second = ranked(http, mode="quality")[:2]
    fake.script(first, HttpError.unavailable())
    fake.script(second, Reply("Streamed over REST."))
    body = {"mode": "quality", "profile": PROFILE, "messages": [HELLO], "stream": True}
    with http.stream("POST", "/complete", json=body) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/event-stream"
        headers = reply.headers
        text = reply.read().decode()
    chunks = [json.loads(e) for e in sse_events(text)]
    head = chunks[0]["head"]
    assert (head["model"], head["attempts"]) == (second, 2)
    assert head["decision_id"] == headers["x-router-decision-id"]
    assert headers["x-router-model"] == second
    assert headers["x-router-attempts"] == "2"
    assert all(c["head"] is None for c in chunks[1:])
    *deltas, last = chunks
    assert "".join(c["delta"] for c in deltas) == "Streamed over REST."
    assert all(c["summary"] is None for c in deltas)
    summary = last["summary"]
    assert last["delta"] is None
    assert [a["outcome"] for a in summary["attempts"]] == ["http_503", "ok"]
    assert (summary["model"], summary["decision_id"]) == (second, head["decision_id"])


def test_complete_without_stream_carries_the_headers(
    http: httpx.Client, fake: FakeOpenRouter
) -> None:
    reply = http.post("/complete", json={"messages": [HELLO]})
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert reply.headers["x-router-model"] == answer["model"]
    assert reply.headers["x-router-decision-id"] == answer["decision_id"]
    assert reply.headers["x-router-attempts"] == str(len(answer["attempts"]))


def test_complete_calls_the_models_it_names(http: httpx.Client, fake: FakeOpenRouter) -> None:
    named = ranked(http, mode="speed")[6]
    reply = http.post("/complete", json={"messages": [HELLO], "models": [named]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == named
    assert chat_calls(fake) == [named]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/complete"])
def test_a_failure_after_the_stream_began_is_its_last_event(
    http: httpx.Client, fake: FakeOpenRouter, path: str
) -> None:
    fake.set_behaviour(ANY_MODEL, MidStreamError(after_chunks=2))
    body: dict[str, Any] = {"messages": [HELLO], "stream": True}
    if path.startswith("/v1"):
        body["model"] = "router/speed"
    with http.stream("POST", path, json=body) as reply:
        assert reply.status_code == 200
        text = reply.read().decode()
    *chunks, failure = [json.loads(e) for e in sse_events(text)]
    assert chunks, "the first tokens reached the client"
    assert "[DONE]" not in text
    error = failure["error"]
    assert error["code"] == "unavailable"
    assert "the stream failed after it began" in error["message"]
    if path.startswith("/v1"):
        assert error["type"] == "api_error"
    assert len(chat_calls(fake)) == 1


def test_the_openai_client_raises_a_failure_after_the_stream_began(
    client: openai.OpenAI, fake: FakeOpenRouter
) -> None:
    fake.set_behaviour(ANY_MODEL, MidStreamError(after_chunks=2))
    received: list[str] = []
    stream = client.chat.completions.create(model="router/speed", messages=[HELLO], stream=True)
    with pytest.raises(openai.APIError, match="the stream failed after it began"):
        received.extend(c.choices[0].delta.content or "" for c in stream)
    assert "".join(received), "the first tokens reached the client"


GOING_AWAY = [("mid-stream", SLOW), ("before the first token", Stall())]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/complete"])
@pytest.mark.parametrize(("when", "behaviour"), GOING_AWAY, ids=[g[0] for g in GOING_AWAY])
def test_a_client_that_goes_away_cancels_the_upstream_call(
    http: httpx.Client, fake: FakeOpenRouter, path: str, when: str, behaviour: ChatBehaviour
) -> None:
    """Left alone, the stream would go on for 40 s, or wait 30 s for its first token."""
    fake.set_behaviour(ANY_MODEL, behaviour)
    body: dict[str, Any] = {"messages": [HELLO], "stream": True}
    if path.startswith("/v1"):
        body["model"] = "router/speed"
    waiting = httpx.Timeout(30, read=1)
    with (
        contextlib.suppress(httpx.ReadTimeout),
        http.stream("POST", path, json=body, timeout=waiting) as reply,
    ):
        assert next(reply.iter_lines()).startswith("data: ")
    (call,) = [r for r in fake.requests if r.path.endswith("/chat/completions")]
    for _ in range(200):
        if fake.cut_short:
            break
        time.sleep(0.05)
    assert fake.cut_short == [call]
    assert fake.spent_usd == 0


def test_the_openapi_document_lists_the_openai_endpoints(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/chat/completions", "/v1/models"} <= set(paths)


def test_a_router_without_an_openrouter_key_is_misconfigured(gateway: httpx.Client) -> None:
    """The session's router has no key: 503 in OpenAI's shape; its models are still listed."""
    reply = gateway.post("/v1/chat/completions", json={"model": "router/cost", "messages": [HELLO]})
    assert reply.status_code == 503
    error = reply.json()["error"]
    assert (error["code"], error["type"]) == ("misconfigured", "api_error")
    assert "OPENROUTER_API_KEY" in error["message"]
    ids = [m["id"] for m in gateway.get("/v1/models").json()["data"]]
    assert "router/frugal-genius" in ids
    assert len(ids) > 100


def test_an_oversized_body_is_413_in_openais_shape(gateway: httpx.Client) -> None:
    text = "x" * DEFAULT_MAX_BODY_BYTES
    body = {"model": "router/cost", "messages": [{"role": "user", "content": text}]}
    reply = gateway.post("/v1/chat/completions", json=body)
    assert reply.status_code == 413
    error = reply.json()["error"]
    assert (error["code"], error["type"]) == ("request_too_large", "invalid_request_error")
