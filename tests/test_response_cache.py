"""The response cache against the fake OpenRouter and a real redis-server: over gRPC, REST
/complete and /v1/chat/completions, streamed and not."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.redis_link import connect
from service.response_cache import Lookup, ResponseCache
from testkit.fake_openrouter import FakeOpenRouter, HttpError, MidStreamError, Reply
from testkit.servers import GatewayThread, ServerThread, settings_for
from tests.redis_server import RedisServer, SilentRedis

HELLO = [pb.ChatMessage(role="user", content="Say hello to the cache.")]
ZERO = pb.GenerationParams(temperature=0)
ON = pb.CacheOptions(enabled=True)
ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef00"
REDIS_TIMEOUT_S = 1.0  # generous, for loaded machines


class Router:
    """A router on the fake and on Redis (or none), with its gRPC stub and REST client."""

    def __init__(self, fake: FakeOpenRouter, state: Path, **extra: Any) -> None:
        extra.setdefault("redis_timeout_s", REDIS_TIMEOUT_S)
        self.settings = settings_for(fake, state, endpoint_stats_models=0, **extra)
        self.server = ServerThread(self.settings)

    def __enter__(self) -> Router:
        address = self.server.__enter__()
        self.channel = grpc.insecure_channel(address)
        self.stub = RouterStub(self.channel)
        self.http = httpx.Client(base_url=self.server.http_url, timeout=30)
        keys = [key.get_secret_value() for key in self.settings.api_keys.values()]
        metadata = [("authorization", f"Bearer {key}") for key in keys[:1]]
        refreshed = self.stub.RefreshCatalogue(pb.RefreshCatalogueRequest(), metadata=metadata)
        # A router sharing Redis with another may have taken that one's refresh already.
        assert refreshed.replaced or refreshed.catalogue.source == "shared"
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.channel.close()
        self.server.__exit__(*exc)

    def model(self) -> str:
        return self.stub.Route(pb.RouteRequest(top_k=1)).candidates[0].model

    def complete(self, **fields: Any) -> pb.CompleteResponse:
        return self.stub.Complete(request(**fields), timeout=10)

    def stream(self, **fields: Any) -> list[pb.CompleteChunk]:
        return list(self.stub.StreamComplete(request(**fields), timeout=10))


def request(**fields: Any) -> pb.CompleteRequest:
    fields.setdefault("messages", HELLO)
    fields.setdefault("params", ZERO)
    fields.setdefault("cache", ON)
    return pb.CompleteRequest(**fields)


def chat_calls(fake: FakeOpenRouter) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("/chat/completions"))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def lookups(level: str, result: str) -> float:
    return metric("router_response_cache_lookups_total", level=level, result=result)


def text_of(chunks: list[pb.CompleteChunk]) -> str:
    return "".join(c.delta for c in chunks if c.WhichOneof("event") == "delta")


def sse_events(reply: httpx.Response) -> list[Any]:
    return [
        json.loads(line.removeprefix("data: "))
        for line in reply.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


@pytest.fixture
def router(fake: FakeOpenRouter, tmp_path: Path, redis_server: RedisServer) -> Iterator[Router]:
    fake.reset()
    with Router(fake, tmp_path / "state", redis_url=redis_server.url) as made:
        yield made


def test_a_hit_gives_the_same_answer_without_calling_a_model_or_spending(
    router: Router, fake: FakeOpenRouter
) -> None:
    fake.script(router.model(), Reply("Hello from the cache's first answer."))
    spent = metric("router_spend_usd_total", model=router.model(), caller="anonymous")
    saved = metric("router_response_cache_saved_usd_total", caller="anonymous")
    first = router.complete()
    billed = fake.spent_usd
    second = router.complete()
    assert chat_calls(fake) == 1
    assert fake.spent_usd == billed
    assert (first.cached, second.cached) == (False, True)
    assert second.choices == first.choices
    assert (second.id, second.model, second.provider) == (first.id, first.model, first.provider)
    assert second.decision_id == first.decision_id
    assert first.usage.cost_usd > 0
    assert second.usage.cost_usd == 0
    assert second.usage.total_tokens == first.usage.total_tokens > 0
    assert not second.attempts
    spent_after = metric("router_spend_usd_total", model=router.model(), caller="anonymous")
    assert spent_after - spent == pytest.approx(first.usage.cost_usd)
    saved_after = metric("router_response_cache_saved_usd_total", caller="anonymous")
    assert saved_after - saved == pytest.approx(first.usage.cost_usd)


def test_a_streamed_hit_is_a_stream_of_the_same_answer(
    router: Router, fake: FakeOpenRouter
) -> None:
    live = router.stream()
    replayed = router.stream()
    assert chat_calls(fake) == 1
    assert text_of(replayed) == text_of(live) != ""
    assert replayed[0].head.cached
    assert not live[0].head.cached
    assert replayed[0].head.model == live[0].head.model
    summary = replayed[-1].summary
    assert summary.cached
    assert summary.usage.cost_usd == 0
    assert summary.choices[0].finish_reason == live[-1].summary.choices[0].finish_reason
    assert summary.usage.completion_tokens == live[-1].summary.usage.completion_tokens
    whole = router.complete()
    assert whole.cached
    assert whole.choices[0].message.content == text_of(live)
    assert chat_calls(fake) == 1


def test_an_answer_is_replayed_as_a_stream(router: Router, fake: FakeOpenRouter) -> None:
    whole = router.complete()
    replayed = router.stream()
    assert chat_calls(fake) == 1
    assert text_of(replayed) == whole.choices[0].message.content
    assert [c.WhichOneof("event") for c in replayed] == ["delta", "summary"]


def test_rest_complete_says_hit_or_miss(router: Router, fake: FakeOpenRouter) -> None:
    body = {
        "messages": [{"role": "user", "content": "Say hello to REST."}],
        "params": {"temperature": 0},
        "cache": {"enabled": True},
    }
    first = router.http.post("/complete", json=body)
    second = router.http.post("/complete", json=body)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers["x-router-cache"], second.headers["x-router-cache"]) == ("miss", "hit")
    assert second.json()["cached"] is True
    assert second.json()["choices"] == first.json()["choices"]
    streamed = router.http.post("/complete", json={**body, "stream": True})
    assert streamed.headers["x-router-cache"] == "hit"
    events = sse_events(streamed)
    text = "".join(e.get("delta") or "" for e in events)
    assert text == first.json()["choices"][0]["message"]["content"]
    assert events[-1]["summary"]["cached"] is True
    assert chat_calls(fake) == 1


def test_v1_caches_on_its_header_streamed_and_not(router: Router, fake: FakeOpenRouter) -> None:
    body = {
        "model": "router/quality",
        "messages": [{"role": "user", "content": "Say hello to OpenAI's API."}],
        "temperature": 0,
    }
    on = {"x-router-cache": "true"}
    first = router.http.post("/v1/chat/completions", json=body, headers=on)
    second = router.http.post("/v1/chat/completions", json=body, headers=on)
    assert (first.headers["x-router-cache"], second.headers["x-router-cache"]) == ("miss", "hit")
    assert second.json()["choices"] == first.json()["choices"]
    assert second.json()["usage"]["completion_tokens"] == first.json()["usage"]["completion_tokens"]
    streamed = router.http.post("/v1/chat/completions", json={**body, "stream": True}, headers=on)
    assert streamed.headers["x-router-cache"] == "hit"
    text = "".join(
        e["choices"][0]["delta"].get("content") or "" for e in sse_events(streamed) if e["choices"]
    )
    assert text == first.json()["choices"][0]["message"]["content"]
    assert streamed.text.endswith("data: [DONE]\n\n")
    assert chat_calls(fake) == 1
    in_body = router.http.post("/v1/chat/completions", json={**body, "cache": {"enabled": True}})
    assert in_body.headers["x-router-cache"] == "hit"
    off = router.http.post("/v1/chat/completions", json=body)
    assert off.headers["x-router-cache"] == "miss"
    assert chat_calls(fake) == 2


def test_v1_refuses_an_unknown_cache_header(router: Router) -> None:
    body = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}
    reply = router.http.post("/v1/chat/completions", json=body, headers={"x-router-cache": "yes"})
    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == "x-router-cache: give true, false or force"


def test_a_remote_gateway_passes_hits_on(
    router: Router, fake: FakeOpenRouter, tmp_path: Path
) -> None:
    body = {
        "messages": [{"role": "user", "content": "Say hello through two hops."}],
        "params": {"temperature": 0},
        "cache": {"enabled": True},
        "stream": True,
    }
    address = f"127.0.0.1:{router.server.running.port}"
    with (
        GatewayThread(address, router.settings) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        first = client.post("/complete", json=body)
        second = client.post("/complete", json=body)
    assert (first.headers["x-router-cache"], second.headers["x-router-cache"]) == ("miss", "hit")
    assert sse_events(second)[-1]["summary"]["cached"] is True
    assert chat_calls(fake) == 1


def test_failures_are_never_cached(router: Router, fake: FakeOpenRouter) -> None:
    model = router.model()
    fake.script(model, HttpError(500, "Internal Server Error"))
    with pytest.raises(grpc.RpcError):
        router.complete(models=[model])
    assert router.complete(models=[model]).cached is False
    assert router.complete(models=[model]).cached is True
    assert chat_calls(fake) == 2


def test_streams_cut_short_are_never_cached(router: Router, fake: FakeOpenRouter) -> None:
    model = router.model()
    fake.script(model, MidStreamError(after_chunks=2))
    with pytest.raises(grpc.RpcError) as cut:
        router.stream(models=[model])
    assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
    live = router.stream(models=[model])
    assert not live[0].head.cached
    assert router.stream(models=[model])[0].head.cached
    assert chat_calls(fake) == 2


def test_answers_that_may_vary_are_cached_only_when_forced(
    router: Router, fake: FakeOpenRouter
) -> None:
    warm = pb.GenerationParams(temperature=0.7)
    tools = pb.GenerationParams(
        temperature=0, tools_json='[{"type": "function", "function": {"name": "f"}}]'
    )
    for params in (warm, tools, pb.GenerationParams()):
        assert not router.complete(params=params).cached
        assert not router.complete(params=params).cached
    assert chat_calls(fake) == 6
    forced = pb.CacheOptions(enabled=True, force=True)
    assert not router.complete(params=warm, cache=forced).cached
    assert router.complete(params=warm, cache=forced).cached
    assert chat_calls(fake) == 7


def test_callers_do_not_share_answers(
    fake: FakeOpenRouter, tmp_path: Path, redis_server: RedisServer
) -> None:
    fake.reset()
    keys = {"alice": SecretStr(ALICE), "bob": SecretStr(BOB)}
    with Router(fake, tmp_path / "state", redis_url=redis_server.url, api_keys=keys) as router:

        def cached_for(key: str) -> bool:
            metadata = (("authorization", f"Bearer {key}"),)
            return router.stub.Complete(request(), metadata=metadata, timeout=10).cached

        assert [cached_for(ALICE), cached_for(BOB), cached_for(ALICE), cached_for(BOB)] == [
            False,
            False,
            True,
            True,
        ]
    assert chat_calls(fake) == 2


def test_the_configured_default_applies_to_requests_that_do_not_say(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.reset()
    with Router(fake, tmp_path / "state", response_cache=True) as router:
        assert not router.complete(cache=None).cached
        assert router.complete(cache=None).cached
        assert not router.complete(cache=pb.CacheOptions(enabled=False)).cached
    assert chat_calls(fake) == 2


def test_an_answer_expires_after_its_ttl(router: Router, fake: FakeOpenRouter) -> None:
    brief = pb.CacheOptions(enabled=True, ttl_seconds=1)
    assert not router.complete(cache=brief).cached
    assert router.complete(cache=brief).cached
    time.sleep(1.2)
    assert not router.complete(cache=brief).cached
    assert chat_calls(fake) == 2


def test_replicas_share_answers_through_redis(
    router: Router, fake: FakeOpenRouter, tmp_path: Path, redis_server: RedisServer
) -> None:
    hits = lookups("redis", "hit")
    assert not router.complete().cached
    with Router(fake, tmp_path / "other", redis_url=redis_server.url) as other:
        assert other.complete().cached
        assert lookups("redis", "hit") == hits + 1
        memory_hits = lookups("memory", "hit")
        assert other.complete().cached
        assert lookups("memory", "hit") == memory_hits + 1
    assert chat_calls(fake) == 1


def test_without_redis_the_memory_cache_serves(
    router: Router, fake: FakeOpenRouter, redis_server: RedisServer
) -> None:
    assert not router.complete().cached
    redis_server.kill()
    assert router.complete().cached
    other = [pb.ChatMessage(role="user", content="Asked while Redis is away.")]
    assert not router.complete(messages=other).cached
    assert router.complete(messages=other).cached
    assert chat_calls(fake) == 2


async def test_redis_keeps_an_answer_for_its_ttl_and_memory_as_long(
    redis_server: RedisServer,
) -> None:
    now = [100.0]
    client = connect(redis_server.url, timeout_s=REDIS_TIMEOUT_S)
    cache = ResponseCache(
        client,
        by_default=False,
        ttl_s=60,
        max_entry_bytes=10_000,
        memory_entries=1,
        timeout_s=REDIS_TIMEOUT_S,
        clock=lambda: now[0],
    )
    answer = pb.CompleteResponse(id="gen-1", choices=[pb.Choice(finish_reason="stop")])
    lookup = cache.lookup(request(cache=pb.CacheOptions(enabled=True, ttl_seconds=30)), "carol")
    assert lookup is not None
    assert lookup.key.startswith("router:response:carol:")
    await cache.put(lookup, answer)
    assert 29_000 < await client.pttl(lookup.key) <= 30_000
    now[0] += 31
    await client.delete(lookup.key)
    assert await cache.get(lookup) is None
    await client.aclose()


async def test_incomplete_and_oversized_answers_are_not_kept() -> None:
    cache = ResponseCache(None, by_default=True, ttl_s=60, max_entry_bytes=64, memory_entries=8)
    lookup = Lookup("k", 60)
    await cache.put(lookup, pb.CompleteResponse(choices=[pb.Choice()]))
    await cache.put(lookup, pb.CompleteResponse())
    long = pb.Choice(finish_reason="stop", message=pb.ChatMessage(content="x" * 100))
    await cache.put(lookup, pb.CompleteResponse(choices=[long]))
    assert await cache.get(lookup) is None
    await cache.put(lookup, pb.CompleteResponse(choices=[pb.Choice(finish_reason="stop")]))
    assert await cache.get(lookup) is not None


async def test_memory_keeps_the_most_recently_used() -> None:
    cache = ResponseCache(None, by_default=True, ttl_s=60, max_entry_bytes=1000, memory_entries=2)
    answer = pb.CompleteResponse(choices=[pb.Choice(finish_reason="stop")])
    for key in ("a", "b"):
        await cache.put(Lookup(key, 60), answer)
    assert await cache.get(Lookup("a", 60)) is not None
    await cache.put(Lookup("c", 60), answer)
    assert await cache.get(Lookup("b", 60)) is None
    assert await cache.get(Lookup("a", 60)) is not None
    assert await cache.get(Lookup("c", 60)) is not None


async def test_an_entry_that_is_no_answer_is_a_miss(redis_server: RedisServer) -> None:
    client = connect(redis_server.url, timeout_s=REDIS_TIMEOUT_S)
    cache = ResponseCache(client, by_default=True, ttl_s=60, max_entry_bytes=1000, memory_entries=0)
    await client.set("k", b"\xff not a message")
    assert await cache.get(Lookup("k", 60)) is None
    await client.aclose()


def test_a_hit_needs_no_room_under_the_spend_limit(
    router: Router, fake: FakeOpenRouter, tmp_path: Path, redis_server: RedisServer
) -> None:
    assert not router.complete().cached
    with Router(
        fake, tmp_path / "broke", redis_url=redis_server.url, daily_spend_limit_usd=1e-9
    ) as broke:
        with pytest.raises(grpc.RpcError) as refused:
            broke.complete(messages=[pb.ChatMessage(role="user", content="Not cached yet.")])
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert broke.complete().cached
    assert chat_calls(fake) == 1


def test_a_redis_that_never_answers_leaves_the_memory_cache_serving(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.reset()
    with (
        SilentRedis() as silent,
        Router(fake, tmp_path / "state", redis_url=silent.url, redis_timeout_s=0.05) as router,
    ):
        assert not router.complete().cached
        assert router.complete().cached
        assert router.stream()[0].head.cached
    assert chat_calls(fake) == 1
