"""The fake OpenRouter, over real loopback HTTP: wire shapes, SSE framing, money, failures."""

from __future__ import annotations

import asyncio
import json
import lzma
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.fake_openrouter import (
    ANY_MODEL,
    DEFAULT_KEY,
    ContextLengthExceeded,
    Drop,
    ErrorIn200,
    FakeOpenRouter,
    HttpError,
    InsufficientCredits,
    InvalidJson,
    MidStreamError,
    ModelsReply,
    Reply,
    Reset,
    Stall,
    ToolCall,
    count_tokens,
    load_models,
    make_model,
)

ROOT = Path(__file__).resolve().parent.parent
FULL_CATALOGUE = ROOT / "scripts" / "sources" / "openrouter-models.json.xz"
MINI = "openai/gpt-4o-mini"  # $0.15 / $0.60 per M; endpoints OpenAI, Azure (x1.25), Groq (x1.5)
GEN_ID = re.compile(r"gen-\d{10}-[A-Za-z0-9]{20}")
HELLO = [{"role": "user", "content": "Hello there, how are you?"}]
CUT = (httpx.ReadError, httpx.RemoteProtocolError)


@pytest.fixture(autouse=True)
def _fresh(fake: FakeOpenRouter) -> None:
    fake.reset()


@pytest.fixture
def client(fake: FakeOpenRouter) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    with httpx.Client(base_url=fake.base_url, headers=auth, timeout=5) as c:
        yield c


@pytest.fixture
def anonymous(fake: FakeOpenRouter) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, timeout=5) as c:
        yield c


def chat(client: httpx.Client, model: str = MINI, **body: Any) -> httpx.Response:
    return client.post("/chat/completions", json={"model": model, "messages": HELLO, **body})


@dataclass
class Sse:
    """A stream as a strict client reads it: comments skipped, events parsed, stop at [DONE]."""

    comments: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False

    @classmethod
    def parse(cls, lines: Iterable[str]) -> Sse:
        parsed, data = cls(), []
        for line in lines:
            if line.startswith(":"):
                parsed.comments.append(line)
            elif line.startswith("data: "):
                data.append(line.removeprefix("data: "))
            elif line == "" and data:
                payload, data = "\n".join(data), []
                if payload == "[DONE]":
                    parsed.done = True
                    return parsed
                parsed.events.append(json.loads(payload))
            else:
                assert line == "", f"unexpected SSE line {line!r}"
        assert not data, "an event was not terminated by a blank line"
        return parsed

    @property
    def text(self) -> str:
        return "".join(
            choice["delta"].get("content") or ""
            for event in self.events
            for choice in event["choices"]
        )


def stream(client: httpx.Client, model: str = MINI, **body: Any) -> Sse:
    with client.stream(
        "POST",
        "/chat/completions",
        json={"model": model, "messages": HELLO, "stream": True, **body},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return Sse.parse(response.iter_lines())


def expected_cost(usage: dict[str, Any], prompt: str, completion: str) -> float:
    return float(
        usage["prompt_tokens"] * Decimal(prompt) + usage["completion_tokens"] * Decimal(completion)
    )


# --- GET /models -------------------------------------------------------------------------------


def test_models_listing_is_public_cached_and_2026_shaped(anonymous: httpx.Client) -> None:
    response = anonymous.get("/models")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=120"
    listing = response.json()
    assert set(listing) == {"data", "total_count", "links"}
    assert listing["links"] == {"next": None}
    assert listing["total_count"] == len(listing["data"]) == 42
    assert listing["data"] == load_models()
    by_id = {row["id"]: row for row in listing["data"]}
    assert all(isinstance(row["pricing"]["prompt"], str) for row in listing["data"])
    assert sum(model_id.endswith(":free") for model_id in by_id) >= 3
    assert by_id["openrouter/auto"]["pricing"] == {"prompt": "-1", "completion": "-1"}
    alias = by_id["~anthropic/claude-sonnet-latest"]
    assert alias["alias_target"]["slug"] in by_id


def test_models_output_modalities_default_to_text(
    fake: FakeOpenRouter, anonymous: httpx.Client
) -> None:
    painter = make_model("acme/painter")
    painter["architecture"]["output_modalities"] = ["image"]
    fake.set_models([make_model("acme/writer"), painter])
    assert [m["id"] for m in anonymous.get("/models").json()["data"]] == ["acme/writer"]
    everything = anonymous.get("/models", params={"output_modalities": "all"}).json()
    assert everything["total_count"] == 2
    images = anonymous.get("/models", params={"output_modalities": "image"}).json()["data"]
    assert [m["id"] for m in images] == ["acme/painter"]


def test_models_supported_parameters_combine_with_and(anonymous: httpx.Client) -> None:
    tools = anonymous.get("/models", params={"supported_parameters": "tools"}).json()
    both = anonymous.get(
        "/models", params={"supported_parameters": "tools,response_format", "category": "science"}
    ).json()
    assert 0 < both["total_count"] < tools["total_count"] < 42
    assert all({"tools", "response_format"} <= set(m["supported_parameters"]) for m in both["data"])


def test_models_paging_follows_links_next(anonymous: httpx.Client) -> None:
    everything = [m["id"] for m in anonymous.get("/models").json()["data"]]
    seen: list[str] = []
    url: str | None = "/models?supported_parameters=&limit=10"
    for _ in range(10):
        if url is None:
            break
        page = anonymous.get(url.removeprefix("/api/v1")).json()
        assert page["total_count"] == 42
        seen += [m["id"] for m in page["data"]]
        url = page["links"]["next"]
    assert url is None
    assert seen == everything
    first = anonymous.get("/models", params={"offset": 0, "limit": 10}).json()
    assert first["links"]["next"] == "/api/v1/models?offset=10&limit=10"


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"offset": "-1"},
        {"limit": "ten"},
        {"category": "cooking"},
        {"output_modalities": "smell"},
    ],
)
def test_models_rejects_invalid_parameters(anonymous: httpx.Client, params: dict[str, str]) -> None:
    response = anonymous.get("/models", params=params)
    assert response.status_code == 400
    assert response.json() == {"error": {"code": 400, "message": "Invalid request parameters"}}


def test_unknown_paths_and_routes_the_router_never_calls(anonymous: httpx.Client) -> None:
    for path in (f"/models/{MINI}", "/nowhere", "/models/count", "/generation", "/credits"):
        response = anonymous.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": {"code": 404, "message": "Resource not found"}}


def test_serves_the_full_real_catalogue(fake: FakeOpenRouter, anonymous: httpx.Client) -> None:
    fake.set_models(json.loads(lzma.decompress(FULL_CATALOGUE.read_bytes()))["data"])
    assert anonymous.get("/models").json()["total_count"] == 414
    page = anonymous.get("/models", params={"offset": 400, "limit": 10}).json()
    assert (len(page["data"]), page["links"]["next"]) == (10, "/api/v1/models?offset=410&limit=10")


def test_load_models_reads_lists_and_rejects_other_json(tmp_path: Path) -> None:
    saved = tmp_path / "models.json"
    saved.write_text(json.dumps([make_model("acme/one")]))
    assert [m["id"] for m in load_models(saved)] == ["acme/one"]
    saved.write_text(json.dumps({"data": {"id": "acme/one"}}))
    with pytest.raises(ValueError, match="expected a /models response"):
        load_models(saved)


def test_scripted_models_failures_then_recovery(
    fake: FakeOpenRouter, anonymous: httpx.Client
) -> None:
    fake.script_models(
        HttpError.internal(),
        InvalidJson(),
        ModelsReply(models=[]),
        ModelsReply(models=[make_model("acme/only")], delay_s=0.3),
    )
    failed = anonymous.get("/models")
    assert failed.status_code == 500
    assert failed.json() == {"error": {"code": 500, "message": "Internal Server Error"}}
    with pytest.raises(json.JSONDecodeError):
        anonymous.get("/models").json()
    assert anonymous.get("/models").json() == {
        "data": [],
        "total_count": 0,
        "links": {"next": None},
    }
    started = time.monotonic()
    assert [m["id"] for m in anonymous.get("/models").json()["data"]] == ["acme/only"]
    assert time.monotonic() - started >= 0.3
    assert anonymous.get("/models").json()["total_count"] == 42


def test_scripted_models_connection_failures(fake: FakeOpenRouter, anonymous: httpx.Client) -> None:
    fake.script_models(Stall(), Reset(), Drop(after_chunks=1))
    with pytest.raises(httpx.ReadTimeout):
        anonymous.get("/models", timeout=httpx.Timeout(5, read=0.3))
    with pytest.raises(CUT):
        anonymous.get("/models")
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        anonymous.get("/models")
    assert anonymous.get("/models").status_code == 200


# --- GET /models/{author}/{slug}/endpoints -------------------------------------------------------


def test_endpoints_differ_by_provider_with_stats_in_ms_and_tps(client: httpx.Client) -> None:
    data = client.get(f"/models/{MINI}/endpoints").json()["data"]
    assert {"id", "name", "created", "description", "architecture", "endpoints"} <= set(data)
    endpoints = data["endpoints"]
    assert 2 <= len(endpoints) <= 3
    for key in ("tag", "provider_name", "pricing"):
        assert len({json.dumps(e[key]) for e in endpoints}) == len(endpoints)
    assert len({e["quantization"] for e in endpoints}) > 1
    assert endpoints[0]["pricing"]["prompt"] == "0.00000015"
    for endpoint in endpoints:
        assert set(endpoint["latency_last_30m"]) == {"p50", "p75", "p90", "p99"}
        assert 100 <= endpoint["latency_last_30m"]["p50"] <= 5000
        assert 1 <= endpoint["throughput_last_30m"]["p50"] <= 1000
        assert 0 <= endpoint["uptime_last_30m"] <= 100


def test_endpoints_hide_latency_without_authorization(anonymous: httpx.Client) -> None:
    endpoints = anonymous.get(f"/models/{MINI}/endpoints").json()["data"]["endpoints"]
    assert all(e["latency_last_30m"] is None for e in endpoints)
    assert all(e["throughput_last_30m"] is None for e in endpoints)


def test_endpoints_unknown_and_encoded_slash_are_404(client: httpx.Client) -> None:
    for path in ("/models/acme/fake-1.0/endpoints", "/models/openai%2Fgpt-4o-mini/endpoints"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": {"code": 404, "message": "Resource not found"}}


def test_free_endpoints_are_listed_under_the_base_model_and_by_permanent_slug(
    fake: FakeOpenRouter, client: httpx.Client
) -> None:
    response = client.get("/models/z-ai/glm-5.2:free/endpoints")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": 404, "message": "Resource not found"}}
    fake.set_endpoint_stats("z-ai/glm-5.2:free", latency_ms=4321)
    base = client.get("/models/z-ai/glm-5.2/endpoints").json()["data"]
    assert base["id"] == "z-ai/glm-5.2"
    free = [e for e in base["endpoints"] if e["pricing"]["prompt"] == "0"]
    paid = [e for e in base["endpoints"] if e["pricing"]["prompt"] != "0"]
    assert free
    assert paid
    assert {e["pricing"]["completion"] for e in free} == {"0"}
    assert {e["latency_last_30m"]["p50"] for e in free} == {4321}
    assert 4321 not in {e["latency_last_30m"]["p50"] for e in paid}
    mini = client.get(f"/models/{MINI}/endpoints").json()["data"]["endpoints"]
    assert all(e["pricing"]["prompt"] != "0" for e in mini), "no free variant, no free endpoint"
    details = next(m for m in fake.models if m["id"] == "z-ai/glm-5.2:free")["links"]["details"]
    by_permaslug = client.get(details.removeprefix("/api/v1")).json()["data"]
    assert by_permaslug["id"] == "z-ai/glm-5.2"


def test_set_endpoint_stats(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.set_endpoint_stats(MINI, latency_ms=1234, throughput=88.5, uptime=42.0)
    fake.set_endpoint_stats(MINI, provider="Azure", latency_ms=None)
    endpoints = client.get(f"/models/{MINI}/endpoints").json()["data"]["endpoints"]
    by_provider = {e["provider_name"]: e for e in endpoints}
    assert by_provider["OpenAI"]["latency_last_30m"]["p50"] == 1234
    assert by_provider["OpenAI"]["throughput_last_30m"]["p50"] == 88.5
    assert by_provider["Azure"]["latency_last_30m"] is None
    assert {e["uptime_last_30m"] for e in endpoints} == {42.0}
    with pytest.raises(KeyError):
        fake.set_endpoint_stats("acme/none", uptime=1)


# --- POST /chat/completions --------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", "/chat/completions"), ("GET", "/key")])
def test_auth_errors(anonymous: httpx.Client, method: str, path: str) -> None:
    body = {"model": MINI, "messages": HELLO} if method == "POST" else None
    missing = anonymous.request(method, path, json=body)
    assert (missing.status_code, missing.json()) == (
        401,
        {"error": {"code": 401, "message": "No auth credentials found"}},
    )
    unknown = anonymous.request(
        method, path, json=body, headers={"Authorization": "Bearer sk-or-v1-nope"}
    )
    assert (unknown.status_code, unknown.json()) == (
        401,
        {"error": {"code": 401, "message": "User not found."}},
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "acme/fake-1.0", "messages": HELLO}, "acme/fake-1.0 is not a valid model ID"),
        (
            {"model": MINI, "models": ["a/b", "c/d", "e/f", "g/h"], "messages": HELLO},
            "models array must have 3 items or fewer",
        ),
        (
            {"model": MINI, "models": ["acme/fake-2"], "messages": HELLO},
            "acme/fake-2 is not a valid model ID",
        ),
        ({"model": MINI, "messages": []}, 'Input required: specify "prompt" or "messages"'),
    ],
)
def test_chat_request_validation(client: httpx.Client, body: dict[str, Any], message: str) -> None:
    response = client.post("/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["error"] == {"code": 400, "message": message}
    assert error["user_id"].startswith("user_")


def test_chat_completion_shape_usage_and_cost(client: httpx.Client) -> None:
    response = chat(client)
    assert response.status_code == 200
    body = response.json()
    assert GEN_ID.fullmatch(body["id"])
    assert response.headers["x-generation-id"] == body["id"]
    assert (body["object"], body["model"], body["provider"]) == ("chat.completion", MINI, "OpenAI")
    assert {"id", "choices", "created", "model", "object", "system_fingerprint"} <= set(body)
    choice = body["choices"][0]
    assert (choice["finish_reason"], choice["native_finish_reason"]) == ("stop", "stop")
    message = choice["message"]
    assert message["role"] == "assistant"
    assert MINI in message["content"]
    usage = body["usage"]
    assert usage["prompt_tokens"] == count_tokens(HELLO[0]["content"])
    assert usage["completion_tokens"] == count_tokens(message["content"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["cost"] == pytest.approx(expected_cost(usage, "0.00000015", "0.0000006"))
    assert usage["cost_details"]["upstream_inference_prompt_cost"] == pytest.approx(
        usage["prompt_tokens"] * 0.00000015
    )
    assert usage["is_byok"] is False


def test_chat_accepts_and_ignores_legacy_fields(fake: FakeOpenRouter, client: httpx.Client) -> None:
    extras: dict[str, Any] = {
        "usage": {"include": True},
        "transforms": ["middle-out"],
        "route": "fallback",
        "stream_options": {"include_usage": True},
        "plugins": [{"id": "web"}],
        "session_id": "s-1",
        "user": "u-1",
    }
    response = chat(client, **extras)
    assert response.status_code == 200
    recorded = fake.requests[-1]
    assert (recorded.method, recorded.path) == ("POST", "/api/v1/chat/completions")
    assert recorded.headers["authorization"] == f"Bearer {DEFAULT_KEY}"
    assert recorded.json == {"model": MINI, "messages": HELLO, **extras}


def test_model_fallback_reports_the_served_model(
    fake: FakeOpenRouter, client: httpx.Client
) -> None:
    fake.script(MINI, HttpError.unavailable())
    response = chat(client, models=["meta-llama/llama-3.3-70b-instruct"])
    body = response.json()
    assert (response.status_code, body["model"]) == (200, "meta-llama/llama-3.3-70b-instruct")


def test_model_fallback_returns_the_last_error(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.script(MINI, HttpError.internal())
    fake.script("openai/gpt-4o", HttpError.overloaded())
    response = chat(client, models=["openai/gpt-4o"])
    assert response.status_code == 529


@pytest.mark.parametrize("refusal", [HttpError.unauthorized(), InsufficientCredits(3)])
def test_account_errors_do_not_fall_back(
    fake: FakeOpenRouter, client: httpx.Client, refusal: HttpError | InsufficientCredits
) -> None:
    fake.script(MINI, refusal)
    assert chat(client, models=["openai/gpt-4o"]).status_code in {401, 402}


@pytest.mark.parametrize(
    ("provider", "served", "price_factor"),
    [
        ({"order": ["azure"]}, "Azure", 1.25),
        ({"only": ["Groq"]}, "Groq", 1.5),
        ({"ignore": ["openai", "azure"]}, "Groq", 1.5),
        ({"sort": "price"}, "OpenAI", 1.0),
        ({"sort": {"by": "throughput", "partition": "none"}}, "Groq", 1.5),
        ({"max_price": {"prompt": 0.16, "completion": "0.7"}}, "OpenAI", 1.0),
    ],
)
def test_provider_preferences(
    client: httpx.Client, provider: dict[str, Any], served: str, price_factor: float
) -> None:
    body = chat(client, provider=provider).json()
    assert body["provider"] == served
    assert body["usage"]["cost"] == pytest.approx(
        price_factor * expected_cost(body["usage"], "0.00000015", "0.0000006")
    )


def test_provider_preferences_that_exclude_everything(client: httpx.Client) -> None:
    for provider in (
        {"order": ["fireworks"], "allow_fallbacks": False},
        {"max_price": {"prompt": 0.1}},
    ):
        response = chat(client, provider=provider)
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": 404,
            "message": f"No endpoints found for {MINI}.",
        }


def test_latency_sort_and_nitro_use_endpoint_stats(
    fake: FakeOpenRouter, client: httpx.Client
) -> None:
    fake.set_endpoint_stats(MINI, provider="azure", latency_ms=50, throughput=900)
    assert chat(client, provider={"sort": "latency"}).json()["provider"] == "Azure"
    nitro = chat(client, model=f"{MINI}:nitro").json()
    assert (nitro["provider"], nitro["model"]) == ("Azure", MINI)


def test_aliases_routers_and_free_variants(client: httpx.Client) -> None:
    assert (
        chat(client, "~anthropic/claude-sonnet-latest").json()["model"]
        == "anthropic/claude-sonnet-5"
    )
    auto = chat(client, "openrouter/auto").json()
    assert auto["model"] not in {"openrouter/auto", "~anthropic/claude-sonnet-latest"}
    free = chat(client, "z-ai/glm-5.2:free").json()
    assert (free["model"], free["usage"]["cost"]) == ("z-ai/glm-5.2:free", 0)


def test_max_tokens_truncates_with_finish_reason_length(client: httpx.Client) -> None:
    body = chat(client, max_tokens=3).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


def test_tool_calls_only_when_tools_are_sent(fake: FakeOpenRouter, client: httpx.Client) -> None:
    call = ToolCall("get_weather", {"city": "Paris"})
    fake.set_behaviour(MINI, Reply(tool_calls=(call,)))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    choice = chat(client, tools=tools).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (sent,) = choice["message"]["tool_calls"]
    assert (sent["type"], sent["function"]["name"]) == ("function", "get_weather")
    assert json.loads(sent["function"]["arguments"]) == {"city": "Paris"}
    assert sent["id"].startswith("call_")
    plain = chat(client).json()["choices"][0]
    assert (plain["finish_reason"], "tool_calls" in plain["message"]) == ("stop", False)


def test_reasoning_and_scripted_token_counts(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.script(
        MINI,
        Reply("42", reasoning="six times seven", prompt_tokens=1_000_000, completion_tokens=10),
    )
    body = chat(client).json()
    assert body["choices"][0]["message"]["reasoning"] == "six times seven"
    assert body["usage"]["prompt_tokens"] == 1_000_000
    assert body["usage"]["cost"] == pytest.approx(0.15 + 10 * 0.0000006)


# --- Streaming ---------------------------------------------------------------------------------


def test_stream_framing(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.script(MINI, Reply("Hello from the other side"))
    response = client.post(
        "/chat/completions", json={"model": MINI, "messages": HELLO, "stream": True}
    )
    raw = response.content
    assert raw.startswith(b": OPENROUTER PROCESSING\n\n")
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    parsed = Sse.parse(response.text.split("\n"))
    assert parsed.done
    assert parsed.text == "Hello from the other side"
    *content, finish, usage = parsed.events
    assert len(content) == 5
    assert all(GEN_ID.fullmatch(event["id"]) for event in parsed.events)
    assert {event["object"] for event in parsed.events} == {"chat.completion.chunk"}
    assert {(e["model"], e["provider"]) for e in parsed.events} == {(MINI, "OpenAI")}
    assert all(event["choices"][0]["finish_reason"] is None for event in content)
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in finish
    assert usage["choices"] == []
    assert usage["usage"]["cost"] == pytest.approx(
        expected_cost(usage["usage"], "0.00000015", "0.0000006")
    )


def test_stream_usage_chunk_with_an_empty_delta(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.config.usage_chunk = "empty_delta"
    usage = stream(client).events[-1]
    (choice,) = usage["choices"]
    assert choice["delta"] == {"role": "assistant", "content": ""}
    assert choice["finish_reason"] is None
    assert usage["usage"]["total_tokens"] > 0


def test_slow_first_token_sends_processing_comments(
    fake: FakeOpenRouter, client: httpx.Client
) -> None:
    """One at once, then one per keep-alive interval while the first token is awaited."""
    fake.config.keepalive_interval_s = 0.15
    fake.script(MINI, Reply(first_token_delay_s=30), Reply(first_token_delay_s=0.3))
    body = {"model": MINI, "messages": HELLO, "stream": True}
    started = time.monotonic()
    with client.stream("POST", "/chat/completions", json=body) as response:
        lines = (line for line in response.iter_lines() if line)
        comments = [next(lines) for _ in range(3)]
    assert time.monotonic() - started >= 2 * 0.15
    assert comments == [": OPENROUTER PROCESSING"] * 3
    started = time.monotonic()
    assert chat(client).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_stream_tool_call_deltas(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.script(MINI, Reply(tool_calls=(ToolCall("lookup", '{"q": "x"}', id="call_1"),)))
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    parsed = stream(client, tools=tools)
    calls = [
        c for e in parsed.events for ch in e["choices"] for c in ch["delta"].get("tool_calls", [])
    ]
    assert calls[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": ""},
    }
    assert "".join(c["function"]["arguments"] for c in calls) == '{"q": "x"}'
    assert parsed.events[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_async_clients_stream_and_fan_out(fake: FakeOpenRouter) -> None:
    auth = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    async with httpx.AsyncClient(base_url=fake.base_url, headers=auth, timeout=5) as client:
        body = {"model": MINI, "messages": HELLO, "stream": True}
        async with client.stream("POST", "/chat/completions", json=body) as response:
            parsed = Sse.parse([line async for line in response.aiter_lines()])
        assert parsed.done
        assert MINI in parsed.text
        models = ["openai/gpt-4o", "z-ai/glm-5.2", "deepseek/deepseek-v4-flash"]
        answers = await asyncio.gather(
            *(
                client.post("/chat/completions", json={"model": m, "messages": HELLO})
                for m in models
            )
        )
        assert [a.json()["model"] for a in answers] == models


# --- Scripted failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "status", "message", "metadata"),
    [
        (HttpError.timeout(), 408, "Operation timed out. Please try again later.", None),
        (HttpError.internal(), 500, "Internal Server Error", None),
        (
            HttpError.bad_gateway("boom"),
            502,
            "Provider returned error",
            {"raw": "boom", "provider_name": "OpenAI"},
        ),
        (HttpError.unavailable(), 503, "Service temporarily unavailable", None),
        (HttpError.edge_timeout(), 524, "Request timed out. Please try again later.", None),
        (
            HttpError.overloaded(),
            529,
            "Provider returned error",
            {"raw": "Overloaded", "provider_name": "OpenAI"},
        ),
        (HttpError.no_endpoints(), 404, f"No endpoints found for {MINI}.", None),
        (HttpError.unauthorized(), 401, "User not found.", None),
    ],
)
def test_scripted_http_errors(
    fake: FakeOpenRouter,
    client: httpx.Client,
    behaviour: HttpError,
    status: int,
    message: str,
    metadata: dict[str, Any] | None,
) -> None:
    fake.script(MINI, behaviour)
    response = chat(client, stream=True)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert GEN_ID.fullmatch(response.headers["x-generation-id"])
    error = response.json()["error"]
    assert (error["code"], error["message"], error.get("metadata")) == (status, message, metadata)
    assert chat(client).status_code == 200


def test_free_tier_rate_limit(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.script(
        "z-ai/glm-5.2:free",
        HttpError.rate_limited(retry_after_s=2.5),
        HttpError.rate_limited(per="day"),
    )
    response = chat(client, "z-ai/glm-5.2:free")
    error = response.json()["error"]
    assert (response.status_code, error["message"]) == (
        429,
        "Rate limit exceeded: free-models-per-min. ",
    )
    headers = error["metadata"]["headers"]
    assert headers["X-RateLimit-Limit"] == response.headers["x-ratelimit-limit"] == "20"
    assert response.headers["x-ratelimit-remaining"] == "0"
    reset_ms = int(response.headers["x-ratelimit-reset"])
    assert headers["X-RateLimit-Reset"] == str(reset_ms)
    assert time.time() * 1000 < reset_ms <= (time.time() + 61) * 1000
    assert response.headers["retry-after"] == "3"
    daily = chat(client, "z-ai/glm-5.2:free")
    assert daily.json()["error"]["metadata"]["headers"]["X-RateLimit-Limit"] == "50"
    assert "free-models-per-day" in daily.json()["error"]["message"]
    assert "retry-after" not in daily.headers


def test_upstream_rate_limit(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.script(MINI, HttpError.upstream_rate_limited(retry_after_s=25))
    response = chat(client, provider={"order": ["azure"]})
    error = response.json()["error"]
    assert (response.status_code, error["message"]) == (429, "Provider returned error")
    assert error["metadata"]["provider_name"] == "Azure"
    assert error["metadata"]["raw"].startswith(f"{MINI} is temporarily rate-limited upstream.")
    assert response.headers["retry-after"] == "25"
    assert "x-ratelimit-limit" not in response.headers


def test_unavailable_with_an_availability_object(
    fake: FakeOpenRouter, client: httpx.Client
) -> None:
    fake.script(MINI, HttpError.unavailable(retry_after_s=4, availability=True))
    availability = chat(client).json()["error"]["availability"]
    assert availability["code"] == "temporarily_unavailable"
    assert (availability["retryable"], availability["retry_after"]) == (True, 4)
    assert availability["requested_models"] == [MINI]


def test_moderation(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.script(MINI, HttpError.moderation(["violence"], "x" * 300))
    response = chat(client)
    metadata = response.json()["error"]["metadata"]
    assert response.status_code == 403
    assert metadata == {
        "reasons": ["violence"],
        "flagged_input": "x" * 100,
        "provider_name": "OpenAI",
        "model_slug": MINI,
    }


def test_402_from_the_balance(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.set_balance(0.01)
    response = chat(client, "openai/o1-pro", max_tokens=4096)
    prompt_cost = count_tokens(HELLO[0]["content"]) * Decimal("0.00015")
    affordable = int((Decimal("0.01") - prompt_cost) / Decimal("0.0006"))
    assert response.status_code == 402
    assert response.json()["error"] == {
        "code": 402,
        "message": "This request requires more credits, or fewer max_tokens. You requested up to "
        f"4096 tokens, but can only afford {affordable}. To increase, visit "
        "https://openrouter.ai/settings/credits and upgrade to a paid account",
        "metadata": {"provider_name": None},
    }
    assert chat(client, "openai/o1-pro", max_tokens=affordable).status_code == 200
    assert "up to 100000 tokens, but can only afford 0." in chat(client, "openai/o1-pro").text


def test_402_from_the_key_limit_and_scripted(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.config.key_limit_usd = 0.0001
    message = chat(client, max_tokens=1000).json()["error"]["message"]
    assert message.endswith("settings/keys and create a key with a higher monthly limit")
    fake.config.key_limit_usd = None
    fake.script(MINI, InsufficientCredits(can_afford=7))
    assert "up to 100 tokens, but can only afford 7." in chat(client, max_tokens=100).text


def test_402_even_for_free_models_once_the_balance_is_gone(
    fake: FakeOpenRouter, client: httpx.Client
) -> None:
    fake.set_balance(0)
    response = chat(client, "z-ai/glm-5.2:free")
    assert response.status_code == 402
    assert response.json()["error"]["message"].startswith("Insufficient credits.")


def test_context_length_error_and_fallback(fake: FakeOpenRouter, client: httpx.Client) -> None:
    small = "openai/gpt-3.5-turbo-0613"
    long_prompt = [{"role": "user", "content": "x" * 20_000}]
    body = {"model": small, "messages": long_prompt, "max_tokens": 100}
    response = client.post("/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "This endpoint's maximum context length is 4095 tokens. However, you requested about "
        "5100 tokens (5000 of text input, 100 in the output). Please reduce the length of either "
        'one, or use the "middle-out" transform to compress your prompt automatically.'
    )
    assert client.post("/chat/completions", json={**body, "models": [MINI]}).json()["model"] == MINI
    fake.script(MINI, ContextLengthExceeded())
    assert chat(client).status_code == 400


def test_error_in_a_200(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.script(MINI, ErrorIn200(), ErrorIn200(code=500, message="Internal Server Error"))
    response = chat(client)
    assert response.status_code == 200
    assert "choices" not in response.json()
    assert response.json()["error"] == {"code": 502, "message": "Provider returned error"}
    parsed = stream(client)
    (event,) = parsed.events
    assert event["error"]["code"] == 500
    assert event["choices"][0]["finish_reason"] == "error"
    assert not parsed.done


@pytest.mark.parametrize("done", [False, True])
def test_mid_stream_error(fake: FakeOpenRouter, client: httpx.Client, done: bool) -> None:
    fake.script(MINI, MidStreamError(after_chunks=2, content="one two three four", done=done))
    parsed = stream(client)
    *content, failure = parsed.events
    assert [e["choices"][0]["delta"]["content"] for e in content] == ["one ", "two "]
    assert failure["error"] == {
        "code": 429,
        "message": "Rate limit exceeded",
        "metadata": {"error_type": "rate_limit_exceeded"},
    }
    assert failure["choices"] == [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]
    assert parsed.done is done


def test_mid_stream_error_without_streaming(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.script(MINI, MidStreamError(after_chunks=1, code=502, message="Provider returned error"))
    choice = chat(client).json()["choices"][0]
    assert choice["finish_reason"] == "error"
    assert choice["message"]["content"] == "This "
    assert choice["error"]["code"] == 502


def test_empty_content(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.set_behaviour(MINI, Reply(content=""))
    body = chat(client).json()
    assert body["choices"][0]["message"]["content"] == ""
    assert body["usage"]["completion_tokens"] == 0
    parsed = stream(client)
    assert parsed.done
    assert parsed.text == ""
    assert len(parsed.events) == 2


def test_stalled_stream_until_the_client_gives_up(
    fake: FakeOpenRouter, client: httpx.Client
) -> None:
    fake.script(MINI, Stall(after_chunks=2), Stall())
    lines: list[str] = []
    body = {"model": MINI, "messages": HELLO, "stream": True}
    with (
        pytest.raises(httpx.ReadTimeout),
        client.stream(
            "POST", "/chat/completions", json=body, timeout=httpx.Timeout(5, read=0.3)
        ) as response,
    ):
        lines.extend(response.iter_lines())
    assert len(Sse.parse([*lines, ""]).events) == 2
    with pytest.raises(httpx.ReadTimeout):
        client.post(
            "/chat/completions", json=body | {"stream": False}, timeout=httpx.Timeout(5, read=0.3)
        )
    assert chat(client).status_code == 200


def test_reset_and_dropped_connections(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fake.script(MINI, Reset(after_chunks=2), Reset(), Drop(after_chunks=1), Drop(after_chunks=1))
    lines: list[str] = []
    body = {"model": MINI, "messages": HELLO, "stream": True}
    with pytest.raises(CUT), client.stream("POST", "/chat/completions", json=body) as response:
        lines.extend(response.iter_lines())
    assert len([line for line in lines if line.startswith("data: ")]) <= 2
    with pytest.raises(CUT):
        chat(client)
    with pytest.raises(httpx.RemoteProtocolError):
        stream(client)
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client)
    assert chat(client).status_code == 200


def test_requests_cut_short(fake: FakeOpenRouter, client: httpx.Client) -> None:
    """A client that stops reading a stream cuts its request short; a whole answer does not."""
    fake.script(MINI, Reply("one two three", chunk_delay_s=30))
    body = {"model": MINI, "messages": HELLO, "stream": True}
    with client.stream("POST", "/chat/completions", json=body) as response:
        next(response.iter_lines())
    assert chat(client).status_code == 200
    for _ in range(200):
        if fake.cut_short:
            break
        time.sleep(0.01)
    (cut,) = fake.cut_short
    assert cut.json == body


def test_script_queue_standing_behaviour_and_any_model(
    fake: FakeOpenRouter, client: httpx.Client
) -> None:
    fake.set_behaviour(MINI, HttpError.internal())
    fake.script(MINI, Reply("first"))
    fake.script(ANY_MODEL, HttpError.timeout())
    assert chat(client).json()["choices"][0]["message"]["content"] == "first"
    assert chat(client).status_code == 408
    assert chat(client).status_code == 500
    assert chat(client, "openai/gpt-4o").status_code == 200
    fake.set_behaviour(MINI, None)
    assert chat(client).status_code == 200
    fake.script(f"{MINI}:nitro", HttpError.edge_timeout())
    assert chat(client).status_code == 524
    with pytest.raises(KeyError):
        fake.script("acme/none", Reply())


# --- GET /key ----------------------------------------------------------------------------------


def test_key_reflects_spend_and_masks_the_key(fake: FakeOpenRouter, client: httpx.Client) -> None:
    fresh = client.get("/key").json()["data"]
    assert fresh["usage"] == 0
    assert fresh["label"] == f"{DEFAULT_KEY[:12]}...{DEFAULT_KEY[-3:]}"
    assert DEFAULT_KEY not in json.dumps(fresh)
    cost = chat(client).json()["usage"]["cost"]
    data = client.get("/key").json()["data"]
    assert data["usage"] == data["usage_daily"] == data["usage_monthly"] == pytest.approx(cost)
    assert (data["limit"], data["limit_remaining"], data["limit_reset"]) == (None, None, None)
    assert data["is_free_tier"] is False
    assert "rate_limit" in data
    fake.config.key_limit_usd = 5.0
    limited = client.get("/key").json()["data"]
    assert (limited["limit"], limited["limit_reset"]) == (5.0, "monthly")
    assert limited["limit_remaining"] == pytest.approx(5.0 - cost)
    assert fake.spent_usd == pytest.approx(cost)


# --- Lifecycle ---------------------------------------------------------------------------------


def shutdown_complaints(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What uvicorn logged as it stopped: it complains when it has to cancel a response that
    did not end by itself within its graceful-shutdown timeout."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")]


def test_stops_promptly_with_a_stalled_stream_open(caplog: pytest.LogCaptureFixture) -> None:
    with FakeOpenRouter() as fake, httpx.Client(timeout=10) as client:
        assert fake.base_url == f"http://127.0.0.1:{fake.port}/api/v1"
        fake.set_behaviour(MINI, Stall(after_chunks=1))
        body = {"model": MINI, "messages": HELLO, "stream": True}
        auth = {"Authorization": f"Bearer {DEFAULT_KEY}"}
        with client.stream(
            "POST", f"{fake.base_url}/chat/completions", json=body, headers=auth
        ) as response:
            lines = response.iter_lines()
            assert next(lines) == ": OPENROUTER PROCESSING"
            fake.stop()
            with pytest.raises(httpx.RemoteProtocolError):
                list(lines)
    assert shutdown_complaints(caplog) == []


async def test_stops_promptly_from_an_async_test_with_a_slow_reply_pending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    with FakeOpenRouter() as fake:
        fake.script(MINI, Reply(first_token_delay_s=30))
        async with httpx.AsyncClient(base_url=fake.base_url, headers=auth, timeout=10) as client:
            pending = asyncio.ensure_future(
                client.post("/chat/completions", json={"model": MINI, "messages": HELLO})
            )
            for _ in range(1000):  # until the request has reached the fake
                if fake.requests:
                    break
                await asyncio.sleep(0.01)
            await asyncio.to_thread(fake.stop)
            with pytest.raises(CUT):
                await pending
    assert shutdown_complaints(caplog) == []


def test_command_line_server() -> None:
    with FakeOpenRouter() as probe:
        port = probe.port  # a port that was free a moment ago
    process = subprocess.Popen(
        [sys.executable, "-m", "testkit.fake_openrouter", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/api/v1" in banner
        listing = httpx.get(f"http://127.0.0.1:{port}/api/v1/models", timeout=5).json()
        assert listing["total_count"] == 42
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == 0


def test_two_fakes_run_side_by_side() -> None:
    with FakeOpenRouter() as one, FakeOpenRouter(models=[make_model("acme/solo")]) as two:
        assert one.port != two.port
        assert httpx.get(f"{two.base_url}/models", timeout=5).json()["total_count"] == 1
