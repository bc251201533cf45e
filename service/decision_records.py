"""Every decision kept for a while by its `decision_id`, for `GetDecision` and `router explain`.

The request path only appends what it decided to a bounded queue (about a µs); a background
task turns the queue into `DecisionRecord`s, keeps them in a bounded in-process store and, with
Redis, writes them under `<key prefix>decision:{id}` with the record's TTL, so that every
replica sharing the Redis finds them. A completion's record is written again when the
completion ends, with its attempts and the model that answered. While Redis is away
(`RedisBreaker`), records stay in this process alone; lookups ask this process first, then
Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Final, Literal, cast

from redis.asyncio import Redis

from service.pb.router.v1 import router_pb2 as pb
from service.redis_link import DEFAULT_KEY_PREFIX, RedisBreaker, connect

log = logging.getLogger(__name__)

DECISION_ID: Final = re.compile(r"[0-9a-f]{32}")
# Writes happen off the request path: a busy Redis (or a busy process) gets far longer than a
# request would wait.
WRITE_TIMEOUT_S: Final = 1.0
# The writer gathers what arrives meanwhile into one batch (one Redis round trip).
BATCH_PAUSE_S: Final = 0.002
RedisState = Literal["connected", "degraded", "off"]


class _Finished:
    """A completion's end, for the record of its decision."""

    __slots__ = ("answered_by", "attempts", "decision_id")

    def __init__(self, decision_id: str, attempts: Sequence[pb.Attempt], answered_by: str) -> None:
        self.decision_id = decision_id
        self.attempts = list(attempts)
        self.answered_by = answered_by


_Decided = tuple[pb.RouteRequest, pb.RouteResponse, float, bool]


class DecisionRecords:
    """See the module docstring. `clock` gives Unix seconds. For one event loop."""

    def __init__(
        self,
        redis_url: str | None,
        *,
        ttl_s: float,
        local_max: int,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        retry_after_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis: Redis | None = (
            connect(redis_url, timeout_s=WRITE_TIMEOUT_S) if redis_url else None
        )
        self._ttl_s = ttl_s
        self._local_max = local_max
        self._prefix = key_prefix + "decision:"
        self._clock = clock
        self._breaker = RedisBreaker(
            log,
            "decision records",
            meanwhile="keeping them in this process only",
            on_return="writing them to Redis again",
            retry_after_s=retry_after_s,
        )
        self._pending: deque[_Decided | _Finished] = deque(maxlen=local_max)
        # id -> (expires at, serialised record), oldest first.
        self._local: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._unsent: list[tuple[str, bytes, float]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def redis_state(self) -> RedisState:
        if self._redis is None:
            return "off"
        return "connected" if self._breaker.up else "degraded"

    def decided(
        self, request: pb.RouteRequest, response: pb.RouteResponse, *, completion: bool = False
    ) -> None:
        """Record a decision; neither message may change afterwards."""
        self._pending.append((request, response, self._clock(), completion))
        self._wake.set()

    def finished(self, decision_id: str, attempts: Sequence[pb.Attempt], answered_by: str) -> None:
        """Add a completion's attempts and the model that answered (empty: none did)."""
        self._pending.append(_Finished(decision_id, attempts, answered_by))
        self._wake.set()

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_forever(), name="decision-records")

    async def aclose(self) -> None:
        if self._writer is not None:
            # Also stops a writer in whose Redis call the cancellation got lost.
            self._closing = True
            self._wake.set()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._redis is not None:
            await self._redis.aclose()

    async def get(self, decision_id: str) -> pb.DecisionRecord | None:
        """The record of `decision_id`, or None when unknown or expired."""
        self._drain()
        stored = self._local.get(decision_id)
        if stored is not None and stored[0] > self._clock():
            return pb.DecisionRecord.FromString(stored[1])
        if self._redis is None or not self._breaker.due():
            return None
        try:
            # bytes: the client is made without decode_responses.
            data = cast(bytes | None, await self._redis.get(self._prefix + decision_id))
        except Exception as exc:
            self._breaker.failed(exc)
            return None
        self._breaker.answered()
        return None if data is None else pb.DecisionRecord.FromString(data)

    def _drain(self) -> None:
        """Turn what is pending into records in the local store, and queue them for Redis."""
        now = self._clock()
        while self._pending:
            item = self._pending.popleft()
            if isinstance(item, _Finished):
                stored = self._local.get(item.decision_id)
                if stored is None:
                    continue
                expires_at = stored[0]
                record = pb.DecisionRecord.FromString(stored[1])
                del record.attempts[:]
                record.attempts.extend(item.attempts)
                record.answered_by = item.answered_by
                decision_id = item.decision_id
            else:
                request, response, at, completion = item
                expires_at = at + self._ttl_s
                record = pb.DecisionRecord(
                    request=request,
                    response=response,
                    decided_at=at,
                    catalogue_version=response.catalogue_version,
                    completion=completion,
                )
                decision_id = response.decision_id
            data = record.SerializeToString()
            self._local[decision_id] = (expires_at, data)
            self._local.move_to_end(decision_id)
            if len(self._local) > self._local_max:
                self._local.popitem(last=False)
            if self._redis is not None and expires_at > now:
                self._unsent.append((decision_id, data, expires_at - now))

    async def _write_forever(self) -> None:
        while not self._closing:
            await self._wake.wait()
            await asyncio.sleep(BATCH_PAUSE_S)
            self._wake.clear()
            self._drain()
            batch, self._unsent = self._unsent, []
            if batch and self._breaker.due():
                await self._write(batch)

    async def _write(self, batch: list[tuple[str, bytes, float]]) -> None:
        assert self._redis is not None
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for decision_id, data, ttl_s in batch:
                    pipe.set(self._prefix + decision_id, data, px=max(int(ttl_s * 1000), 1))
                await pipe.execute()
        except Exception as exc:
            self._breaker.failed(exc)
            return
        self._breaker.answered()
