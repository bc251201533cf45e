"""Sticky sessions: the turns of one session stay on the model its first turn was routed to, so
that follow-up turns hit the same model and its provider's prompt cache.

A session is the caller (`current_caller`), the request's policy (its mode, custom mode or
weights: a turn under another policy starts another session) and the caller's session key.
Redis holds the session's model under `<key prefix>sticky:<caller>:<sha256 of policy and key>`
for `ttl_s`, renewed by each turn, for every replica; the key as given is never stored, logged
or counted. Each replica also remembers the sessions it served (at most `MAX_LOCAL`, the least
recently used forgotten first): they serve while Redis is absent or down (see `RedisBreaker`),
so a session never fails and never waits on Redis longer than its timeout.

The session's model is kept while it is eligible for the turn (its constraints, its circuit,
the catalogue); otherwise the turn gets a new decision, which the session keeps from then on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final

from redis.asyncio import Redis

from service import metrics
from service.callers import current_caller
from service.errors import ErrorKind, RouterError
from service.pb.router.v1 import router_pb2 as pb
from service.redis_link import DEFAULT_KEY_PREFIX, RedisBreaker
from service.router import ModelRouter
from service.scorer import InvalidRequest, NoEligibleModel

log = logging.getLogger(__name__)

MAX_LOCAL: Final = 10_000
MAX_SESSION_CHARS: Final = 256
ANONYMOUS: Final = "-"


def _policy(request: pb.RouteRequest) -> str:
    which = request.WhichOneof("policy")
    return "default" if which is None else f"{which}={getattr(request, which)}"


class StickySessions:
    """See the module docstring. For one event loop; not thread-safe."""

    def __init__(
        self,
        router: ModelRouter,
        redis: Redis | None,
        *,
        enabled: bool,
        ttl_s: float,
        timeout_s: float,
        max_local: int = MAX_LOCAL,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        retry_after_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._router = router
        self._redis = redis
        self._enabled = enabled
        self._ttl_s = ttl_s
        self._ttl_ms = max(round(ttl_s * 1000), 1)
        self._timeout_s = timeout_s
        self._max_local = max_local
        self._prefix = key_prefix + "sticky"
        self._clock = clock
        self._local: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._breaker = RedisBreaker(
            log,
            "sticky sessions",
            meanwhile="keeping sessions in this replica's memory",
            on_return="sessions are shared again",
            retry_after_s=retry_after_s,
        )

    def key(self, request: pb.RouteRequest) -> str | None:
        """Where the request's session is kept; None without a session (or when sticky
        sessions are off)."""
        if not request.session or not self._enabled:
            return None
        if len(request.session) > MAX_SESSION_CHARS:
            raise RouterError(
                ErrorKind.INVALID_REQUEST, f"session: at most {MAX_SESSION_CHARS} characters"
            )
        given = f"{_policy(request)}\n{request.session}".encode("utf-8", "surrogatepass")
        caller = current_caller.get() or ANONYMOUS
        return f"{self._prefix}:{caller}:{hashlib.sha256(given).hexdigest()}"

    async def route(
        self, request: pb.RouteRequest, key: str | None, decision: pb.RouteResponse
    ) -> pb.RouteResponse:
        """`decision`, led by the session's model while that is eligible."""
        if key is None:
            return decision
        kept = await self._model(key)
        if kept is not None and self._lead(request, decision, kept):
            metrics.STICKY_SESSIONS["hit"].inc()
            return decision
        metrics.STICKY_SESSIONS["miss" if kept is None else "move"].inc()
        await self._keep(key, decision.model)
        return decision

    async def answered(self, key: str | None, decided: str, answered: str) -> None:
        """A completion's answer came from `answered` rather than the decision's model (which
        failed): the session moves there."""
        if key is not None and answered != decided:
            metrics.STICKY_SESSIONS["move"].inc()
            await self._keep(key, answered)

    def _lead(self, request: pb.RouteRequest, decision: pb.RouteResponse, model: str) -> bool:
        """Put `model` first in `decision` if the request may have it; whether it may."""
        if decision.model != model:
            first = next((c for c in decision.candidates if c.model == model), None)
            if first is None:
                first = self._candidate(request, model)
                if first is None:
                    return False
            others = [c for c in decision.candidates if c.model != model]
            size = len(decision.candidates)
            del decision.candidates[:]
            decision.candidates.append(first)
            decision.candidates.extend(others[: size - 1])
            decision.model = model
        decision.sticky = True
        return True

    def _candidate(self, request: pb.RouteRequest, model: str) -> pb.Candidate | None:
        """`model` as a candidate for `request`; None when it is not eligible."""
        if self._router.model(model) is None:
            return None
        try:
            explanation, _ = self._router.explain_ranking(request, model)
        except (InvalidRequest, NoEligibleModel):
            return None
        if explanation.subject is None or explanation.excluded_by is not None:
            return None
        return pb.Candidate(**self._router.candidate(explanation.subject))

    async def _model(self, key: str) -> str | None:
        """The session's model, its time to live renewed; None for a new or expired one."""
        now = self._clock()
        shared = await self._shared_model(key)
        if shared is not None:
            self._remember(key, shared, now)
            return shared
        local = self._local.get(key)
        if local is None or local[1] <= now:
            self._local.pop(key, None)
            return None
        # Redis lost it (restarted, or was away when the session began): share it again.
        await self._keep(key, local[0])
        return local[0]

    async def _keep(self, key: str, model: str) -> None:
        self._remember(key, model, self._clock())
        await self._shared_call(lambda redis: redis.set(key, model, px=self._ttl_ms))

    def _remember(self, key: str, model: str, now: float) -> None:
        self._local[key] = (model, now + self._ttl_s)
        self._local.move_to_end(key)
        while len(self._local) > self._max_local:
            self._local.popitem(last=False)

    async def _shared_model(self, key: str) -> str | None:
        raw = await self._shared_call(lambda redis: redis.getex(key, px=self._ttl_ms))
        return raw.decode("utf-8") if isinstance(raw, bytes) else None

    async def _shared_call(self, call: Callable[[Redis], Awaitable[Any]]) -> Any:
        """`call`'s reply from Redis; None when Redis is absent, down or too slow."""
        if self._redis is None or not self._breaker.due():
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await call(self._redis)
        except Exception as exc:  # whatever goes wrong with Redis, sessions go on in memory
            self._breaker.failed(exc)
            return None
        self._breaker.answered()
        return reply
