"""Routing decisions cached in process (L1) and in Redis (L2, shared by every replica).

A key holds everything a decision depends on: the request's weights as the router resolves
them (mode, custom mode or explicit), its constraints (their deterministic serialisation, so a
new constraint field is covered by itself), its token counts rounded to `digits` significant
digits, its top_k, and the router's `decision_state` (catalogue version, free variants, live
figures' fingerprint). A cached decision was ranked for the rounded token counts, which the
answer's profile shows, so cached and fresh answers for one key are the same; each answer gets a
fresh decision_id.

L2 is read only while the measured round trip to Redis (a moving median over its reads and
writes) is shorter than the measured scorer time; a read waits at most `redis_timeout_s`. A
decision is written to L2 while a reader could gain by it (round trip under `WRITE_MARGIN` times
the scorer's time: replicas' scorers differ by their load) and, to keep the round trip measured,
on every `SAMPLE_EVERY`th miss otherwise; so a small catalogue's misses seldom pay for Redis at
all. Writes run in the background, a bounded number at a time, each within
`L2_WRITE_TIMEOUT_S`: they are off the request path, and a busy event loop must not pass for a
Redis outage. Without Redis, or while its breaker says it is away, only L1 serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import statistics
import time
from collections import OrderedDict, deque
from typing import Any

from redis.asyncio import Redis

from service.config import Settings
from service.decision_metrics import CACHE, DECISIONS
from service.pb.router.v1 import router_pb2 as pb
from service.redis_link import RedisBreaker, connect
from service.router import ModelRouter, mode_label

log = logging.getLogger(__name__)

L2_NAME = "decision-cache:"  # after the key prefix
L2_RETRY_AFTER_S = 1.0
L2_WRITES_IN_FLIGHT = 64
L2_WRITE_TIMEOUT_S = 0.25
WRITE_MARGIN = 2.0
SAMPLE_EVERY = 64
UINT32_MAX = 2**32 - 1  # the profile's token counts are uint32
# Scorer and round-trip times are moving medians of this many samples: one slow call (a cold
# start, a new connection, a busy loop) does not flip the rule.
SAMPLES = 15

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

    def __init__(self, router: ModelRouter, settings: Settings) -> None:
        self._router = router
        self._enabled = settings.decision_cache
        self._size = settings.decision_cache_size
        self._ttl_s = settings.decision_cache_ttl_s
        self._digits = settings.decision_cache_digits
        self._default_prompt = settings.default_prompt_tokens
        self._default_output = settings.default_output_tokens
        self._default_top_k = settings.default_top_k
        self._timeout_s = settings.redis_timeout_s
        self._l2_prefix = settings.redis_key_prefix + L2_NAME
        self._redis: Redis | None = None
        if self._enabled and settings.redis_url:
            self._redis = connect(settings.redis_url, timeout_s=L2_WRITE_TIMEOUT_S)
        self._l1: OrderedDict[Key, tuple[float, pb.RouteResponse]] = OrderedDict()
        self._breaker = RedisBreaker(
            log,
            "decision cache",
            meanwhile="deciding without L2",
            on_return="L2 in use again",
            retry_after_s=L2_RETRY_AFTER_S,
        )
        self._scorer = MovingMedian(0.0)
        self._round_trip = MovingMedian(math.inf)  # unknown until a write or read measures it
        self._connected = False  # the first call after a failure also connects: not measured
        self._writes: set[asyncio.Task[None]] = set()
        self._scored = 0

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
            if key[-1] != self._router.decision_state:  # it changed while Redis was asked
                key, profile = self.key(request)
        scoring = time.perf_counter_ns()
        decision = self._router.route(request, mode, profile)
        elapsed = time.perf_counter_ns() - scoring
        self._scorer.add(elapsed)
        self._scored += 1
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

    @property
    def scorer_ns(self) -> float:
        return self._scorer.value

    @property
    def l2_round_trip_ns(self) -> float:
        return self._round_trip.value

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
                raw = await self._redis.get(self._l2_key(key))
        except Exception as exc:  # whatever goes wrong with Redis, the decision goes on
            self._failed(exc)
            return None
        self._measured(time.perf_counter_ns() - started)
        if not isinstance(raw, bytes):  # None: not there
            CACHE.misses["l2"] += 1
            return None
        CACHE.hits["l2"] += 1
        return pb.RouteResponse.FromString(raw)

    def _l2_put(self, key: Key, decision: pb.RouteResponse) -> None:
        if self._redis is None or len(self._writes) >= L2_WRITES_IN_FLIGHT:
            return
        if (
            self.l2_round_trip_ns >= WRITE_MARGIN * self.scorer_ns
            and not math.isinf(self.l2_round_trip_ns)
            and self._scored % SAMPLE_EVERY
        ):
            return
        if not self._breaker.due():
            return
        task = asyncio.create_task(self._l2_set(self._redis, self._l2_key(key), decision))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _l2_key(self, key: Key) -> str:
        return self._l2_prefix + hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()

    async def _l2_set(self, redis: Redis, name: str, decision: pb.RouteResponse) -> None:
        started = time.perf_counter_ns()
        try:
            async with asyncio.timeout(L2_WRITE_TIMEOUT_S):
                await redis.set(name, decision.SerializeToString(), px=round(self._ttl_s * 1000))
        except Exception as exc:  # a lost write costs a later miss, nothing more
            self._failed(exc)
            return
        self._measured(time.perf_counter_ns() - started)

    def _failed(self, exc: BaseException) -> None:
        self._breaker.failed(exc)
        self._connected = False

    def _measured(self, round_trip_ns: int) -> None:
        self._breaker.answered()
        if not self._connected:
            self._connected = True
            return
        self._round_trip.add(round_trip_ns)

    async def flush(self) -> None:
        """Let the writes to L2 in flight end."""
        await asyncio.gather(*self._writes, return_exceptions=True)

    async def aclose(self) -> None:
        await self.flush()
        if self._redis is not None:
            await self._redis.aclose()


class MovingMedian:
    """The median of the last `SAMPLES` samples; `value` before the first."""

    def __init__(self, initial: float) -> None:
        self.value = initial
        self._samples: deque[int] = deque(maxlen=SAMPLES)

    def add(self, sample: int) -> None:
        self._samples.append(sample)
        self.value = statistics.median(self._samples)
