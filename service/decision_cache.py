"""Routing decisions cached in process (L1) and in Redis (L2, shared by every replica).

A key holds everything a decision depends on: the request's weights as the router resolves
them (mode, custom mode or explicit), its constraints (their deterministic serialisation, so a
new constraint field is covered by itself), its token counts rounded to `digits` significant
digits, its top_k, and the router's `decision_state` (catalogue version, free variants, live
figures' fingerprint). A cached decision was ranked for the rounded token counts, which the
answer's profile shows, so cached and fresh answers for one key are the same; each answer gets a
fresh decision_id.

L2 is read only while the measured round trip to Redis (a moving average over its reads and
writes) is shorter than the measured scorer time; writes to it run in the background, a bounded
number at a time. Without Redis, or while its breaker says it is away, only L1 serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import time
from collections import OrderedDict
from typing import Any

from redis.asyncio import Redis

from service.config import Settings
from service.decision_metrics import CACHE, DECISIONS
from service.pb.router.v1 import router_pb2 as pb
from service.redis_link import RedisBreaker
from service.router import ModelRouter, mode_label

log = logging.getLogger(__name__)

L2_PREFIX = "router:decision:"
L2_RETRY_AFTER_S = 1.0
L2_WRITES_IN_FLIGHT = 64
UINT32_MAX = 2**32 - 1  # the profile's token counts are uint32
# Weight of the newest sample in the moving averages of scorer and round-trip times.
ALPHA = 0.1

Key = tuple[Any, ...]


def rounded(tokens: int, digits: int) -> int:
    """`tokens` to `digits` significant digits, half up (down where up leaves the uint32 range):
    1234 -> 1200, 1250 -> 1300."""
    if tokens < 10**digits:
        return tokens
    step = int(10 ** (len(str(tokens)) - digits))
    up = (tokens + step // 2) // step * step
    return up if up <= UINT32_MAX else tokens // step * step


class DecisionCache:
    """`route` answers like `ModelRouter.route`, from the cache where it can. Runs on the
    router's event loop: not thread-safe."""

    def __init__(self, router: ModelRouter, settings: Settings, redis: Redis | None) -> None:
        self._router = router
        self._enabled = settings.decision_cache
        self._size = settings.decision_cache_size
        self._ttl_s = settings.decision_cache_ttl_s
        self._digits = settings.decision_cache_digits
        self._default_prompt = settings.default_prompt_tokens
        self._default_output = settings.default_output_tokens
        self._default_top_k = settings.default_top_k
        self._timeout_s = settings.redis_timeout_s
        self._redis = redis if self._enabled else None
        self._l1: OrderedDict[Key, tuple[float, pb.RouteResponse]] = OrderedDict()
        self._breaker = RedisBreaker(
            log,
            "decision cache",
            meanwhile="deciding without L2",
            on_return="L2 in use again",
            retry_after_s=L2_RETRY_AFTER_S,
        )
        self.scorer_ns = 0.0
        self.l2_round_trip_ns = math.inf  # unknown until a write or read has measured it
        self._writes: set[asyncio.Task[None]] = set()

    def key(self, request: pb.RouteRequest) -> tuple[Key, pb.RequestProfile]:
        """The request's key, and the rounded profile its decision is ranked for."""
        given = request.profile
        profile = pb.RequestProfile(
            prompt_tokens=rounded(given.prompt_tokens or self._default_prompt, self._digits),
            output_tokens=rounded(given.output_tokens or self._default_output, self._digits),
        )
        constraints = (
            request.constraints.SerializeToString(deterministic=True)
            if request.HasField("constraints")
            else None
        )
        key = (
            self._router.weights(request),
            constraints,
            profile.prompt_tokens,
            profile.output_tokens,
            request.top_k or self._default_top_k,
            self._router.decision_state,
        )
        return key, profile

    async def route(self, request: pb.RouteRequest, mode: str | None = None) -> pb.RouteResponse:
        if not self._enabled:
            return self._router.route(request, mode)
        started = time.perf_counter_ns()
        key, profile = self.key(request)
        now = time.monotonic()
        entry = self._l1.get(key)
        if entry is not None:
            if entry[0] > now:
                self._l1.move_to_end(key)
                CACHE.hits["l1"] += 1
                return self._answer(entry[1], request, mode, "l1", started)
            del self._l1[key]
        CACHE.misses["l1"] += 1
        if self._l2_pays():
            cached = await self._l2_get(key)
            if cached is not None:
                self._keep(key, cached, now)
                return self._answer(cached, request, mode, "l2", started)
        scoring = time.perf_counter_ns()
        decision = self._router.route(request, mode, profile)
        elapsed = time.perf_counter_ns() - scoring
        self.scorer_ns = elapsed if not self.scorer_ns else _averaged(self.scorer_ns, elapsed)
        kept = pb.RouteResponse()
        kept.CopyFrom(decision)  # the caller may change its answer
        self._keep(key, kept, now)
        self._l2_put(key, kept)
        CACHE.latency["scorer"].observe(time.perf_counter_ns() - started)
        return decision

    def _answer(
        self,
        cached: pb.RouteResponse,
        request: pb.RouteRequest,
        mode: str | None,
        source: str,
        started: int,
    ) -> pb.RouteResponse:
        answer = pb.RouteResponse()
        answer.CopyFrom(cached)
        answer.decision_id = secrets.token_hex(16)
        DECISIONS.count(mode or mode_label(request), answer.model)
        CACHE.latency[source].observe(time.perf_counter_ns() - started)
        return answer

    def _keep(self, key: Key, decision: pb.RouteResponse, now: float) -> None:
        self._l1[key] = (now + self._ttl_s, decision)
        self._l1.move_to_end(key)
        if len(self._l1) > self._size:
            self._l1.popitem(last=False)

    def _l2_pays(self) -> bool:
        return (
            self._redis is not None
            and self.l2_round_trip_ns < self.scorer_ns
            and self._breaker.due()
        )

    async def _l2_get(self, key: Key) -> pb.RouteResponse | None:
        assert self._redis is not None
        started = time.perf_counter_ns()
        try:
            async with asyncio.timeout(self._timeout_s):
                raw = await self._redis.get(_l2_key(key))
        except Exception as exc:  # whatever goes wrong with Redis, the decision goes on
            self._breaker.failed(exc)
            return None
        self._breaker.answered()
        self._measured(time.perf_counter_ns() - started)
        if not isinstance(raw, bytes):  # None: not there
            CACHE.misses["l2"] += 1
            return None
        CACHE.hits["l2"] += 1
        return pb.RouteResponse.FromString(raw)

    def _l2_put(self, key: Key, decision: pb.RouteResponse) -> None:
        if self._redis is None or len(self._writes) >= L2_WRITES_IN_FLIGHT:
            return
        if not self._breaker.due():
            return
        task = asyncio.create_task(self._l2_set(self._redis, _l2_key(key), decision))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _l2_set(self, redis: Redis, name: str, decision: pb.RouteResponse) -> None:
        started = time.perf_counter_ns()
        try:
            async with asyncio.timeout(self._timeout_s):
                await redis.set(name, decision.SerializeToString(), px=round(self._ttl_s * 1000))
        except Exception as exc:  # a lost write costs a later miss, nothing more
            self._breaker.failed(exc)
            return
        self._breaker.answered()
        self._measured(time.perf_counter_ns() - started)

    def _measured(self, round_trip_ns: int) -> None:
        previous = self.l2_round_trip_ns
        self.l2_round_trip_ns = (
            round_trip_ns if math.isinf(previous) else _averaged(previous, round_trip_ns)
        )

    async def aclose(self) -> None:
        """Let the writes in flight end."""
        await asyncio.gather(*self._writes, return_exceptions=True)


def _averaged(average: float, sample: int) -> float:
    return average + ALPHA * (sample - average)


def _l2_key(key: Key) -> str:
    return L2_PREFIX + hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()
