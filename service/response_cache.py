"""Exact-match cache of completions: an answer given once is given again, to the same caller, for
the same request, without calling a model or spending anything.

A request is cached when it asks (`CompleteRequest.cache.enabled`) or, when it says nothing,
when `response_cache` is on; and only when its answer may be reused: `temperature` 0 and no
tools, unless `cache.force` says otherwise. The key is a SHA-256 of the request as sent
(messages, parameters, routing policy and constraints, the models listed), deterministically
serialized without its `cache` field, under the caller's name (`anonymous` without keys).

Answers live in a bounded in-memory LRU and, when Redis is configured, in Redis (shared by
every replica). A lookup reads memory, then Redis; every Redis call is bounded by the Redis
timeout and skipped while its breaker says Redis is down, so a missing Redis only costs hits.
Only complete answers are stored: every choice has a finish reason; errors and streams cut
short never reach the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from redis.asyncio import Redis

from service import metrics
from service.pb.router.v1 import router_pb2 as pb
from service.redis_link import DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT_S, RedisBreaker

log = logging.getLogger(__name__)

KEY_NAME = "response:"  # after the key prefix
REDIS_RETRY_AFTER_S = 1.0


@dataclass(frozen=True)
class Lookup:
    """Where one request's answer is kept, and for how long."""

    key: str
    ttl_s: int


def reusable(params: pb.GenerationParams) -> bool:
    """Whether an answer to these parameters may serve again without being asked to: a
    temperature of 0 given, and no tools."""
    return params.HasField("temperature") and params.temperature == 0 and not params.tools_json


def complete_answer(response: pb.CompleteResponse) -> bool:
    return bool(response.choices) and all(c.finish_reason for c in response.choices)


def as_cached(stored: pb.CompleteResponse) -> pb.CompleteResponse:
    """The stored answer as a hit: no attempts, nothing spent, the first answer's tokens."""
    stored.ClearField("attempts")
    stored.usage.cost_usd = 0.0
    stored.cached = True
    return stored


def replay(answer: pb.CompleteResponse) -> Iterator[pb.CompleteChunk]:
    """A cached answer as a live stream gives it: the text (one piece), then the summary."""
    head = pb.StreamHead(
        id=answer.id,
        model=answer.model,
        provider=answer.provider,
        decision_id=answer.decision_id,
        catalogue_version=answer.catalogue_version,
        cached=True,
    )
    summary = pb.CompleteResponse()
    summary.CopyFrom(answer)
    for choice in summary.choices:
        choice.message.content = ""
    text = answer.choices[0].message.content if answer.choices else ""
    if text:
        yield pb.CompleteChunk(delta=text, head=head)
        yield pb.CompleteChunk(summary=summary)
    else:
        yield pb.CompleteChunk(summary=summary, head=head)


def streamed_answer(deltas: list[str], summary: pb.CompleteResponse) -> pb.CompleteResponse:
    """A stream's answer whole: its summary with the text its pieces made."""
    answer = pb.CompleteResponse()
    answer.CopyFrom(summary)
    if answer.choices:
        message = answer.choices[0].message
        message.role = message.role or "assistant"
        message.content = "".join(deltas)
    return answer


class ResponseCache:
    """Answers by request, in memory (`memory_entries` at most, least recently used first out)
    and in `redis` when there is one."""

    def __init__(
        self,
        redis: Redis | None,
        *,
        by_default: bool,
        ttl_s: int,
        max_entry_bytes: int,
        memory_entries: int,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix + KEY_NAME
        self._by_default = by_default
        self._ttl_s = ttl_s
        self._max_entry_bytes = max_entry_bytes
        self._memory_entries = memory_entries
        self._timeout_s = timeout_s
        self._clock = clock
        self._memory: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._breaker = RedisBreaker(
            log,
            "response cache",
            meanwhile="caching answers in memory only",
            on_return="caching answers in Redis again",
            retry_after_s=REDIS_RETRY_AFTER_S,
        )

    def lookup(self, request: pb.CompleteRequest, caller: str) -> Lookup | None:
        """Where `request`'s answer is kept, or None when it is not to be cached."""
        if request.HasField("cache"):
            if not request.cache.enabled:
                return None
        elif not self._by_default:
            return None
        options = request.cache
        if not options.force and not reusable(request.params):
            return None
        normal = pb.CompleteRequest()
        normal.CopyFrom(request)
        normal.ClearField("cache")
        digest = hashlib.sha256(normal.SerializeToString(deterministic=True)).hexdigest()
        return Lookup(f"{self._prefix}{caller}:{digest}", options.ttl_seconds or self._ttl_s)

    async def get(self, lookup: Lookup) -> pb.CompleteResponse | None:
        """The stored answer as a hit (see `as_cached`), or None."""
        data = self._from_memory(lookup.key)
        metrics.response_cache_lookup("memory", hit=data is not None)
        if data is None and self._redis_due():
            data = await self._from_redis(lookup.key)
            metrics.response_cache_lookup("redis", hit=data is not None)
        if data is None:
            return None
        try:
            answer = pb.CompleteResponse.FromString(data)
        except DecodeError:  # not written by this router's version of the message
            return None
        metrics.RESPONSE_CACHE_SAVED.labels(caller=metrics.caller_label()).inc(
            answer.usage.cost_usd
        )
        return as_cached(answer)

    async def put(self, lookup: Lookup, answer: pb.CompleteResponse) -> None:
        """Keep a complete answer for `lookup.ttl_s`; anything else, or anything larger than
        `max_entry_bytes`, is not kept."""
        if not complete_answer(answer):
            return
        data = answer.SerializeToString()
        if len(data) > self._max_entry_bytes:
            return
        self._to_memory(lookup.key, data, self._clock() + lookup.ttl_s)
        if self._redis_due():
            await self._to_redis(lookup.key, data, lookup.ttl_s * 1000)

    def _from_memory(self, key: str) -> bytes | None:
        entry = self._memory.get(key)
        if entry is None:
            return None
        expires, data = entry
        if expires <= self._clock():
            del self._memory[key]
            return None
        self._memory.move_to_end(key)
        return data

    def _to_memory(self, key: str, data: bytes, expires: float) -> None:
        self._memory[key] = (expires, data)
        self._memory.move_to_end(key)
        while len(self._memory) > self._memory_entries:
            self._memory.popitem(last=False)

    def _redis_due(self) -> bool:
        return self._redis is not None and self._breaker.due()

    async def _from_redis(self, key: str) -> bytes | None:
        """The answer in Redis, also kept in memory for what is left of its time there."""
        assert self._redis is not None
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.get(key)
                    pipe.pttl(key)
                    data, left_ms = await pipe.execute()
        except Exception as exc:  # whatever goes wrong with Redis, the answer comes upstream
            self._breaker.failed(exc)
            return None
        self._breaker.answered()
        if not isinstance(data, bytes) or left_ms <= 0:
            return None
        self._to_memory(key, data, self._clock() + left_ms / 1000)
        return data

    async def _to_redis(self, key: str, data: bytes, ttl_ms: int) -> None:
        assert self._redis is not None
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.set(key, data, px=ttl_ms)
        except Exception as exc:  # the answer stays in memory
            self._breaker.failed(exc)
            return
        self._breaker.answered()
