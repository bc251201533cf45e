"""Free calls counted per minute and per UTC day, shared by the router's replicas through Redis.

With Redis, each window is one key (with the default key prefix,
`router:free:{2026-08-14}:minute:12:34` and `router:free:{2026-08-14}:day`; one hash tag, so one
cluster slot) that expires after its window, changed only by `free_counter.lua`, which checks
the limits and counts in one step. Each
Redis call gets `timeout_s`; on any failure the counter counts in memory on top of the counts
Redis last reported (one warning per outage), lets one call probe Redis every
`retry_after_s`, and adds what it counted meanwhile once Redis answers (a Redis that restarted
empty is raised to what this replica knows of). A reply lost on its way back may count a call
twice, never not at all. Without Redis, the counts are this process's own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from importlib import resources
from typing import Final

from redis.asyncio import Redis

from service.openrouter.free_allowance import Per
from service.redis_link import DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT_S, RedisBreaker

log = logging.getLogger(__name__)

WINDOW_S: Final[dict[Per, int]] = {"minute": 60, "day": 86_400}
KEY_TTL_S: Final[dict[Per, int]] = {"minute": 120, "day": 2 * 86_400}
SCRIPT: Final = resources.files("service").joinpath("free_counter.lua").read_text("utf-8")


def window_end(per: Per, now: float) -> float:
    """When the minute or UTC day around `now` (Unix seconds) ends."""
    return float((math.floor(now / WINDOW_S[per]) + 1) * WINDOW_S[per])


@dataclass(slots=True)
class _Count:
    """The calls of one window: as Redis last reported them, plus those counted here that
    Redis has not been told of yet."""

    window: int  # windows since the epoch
    shared: int = 0
    unsynced: int = 0

    @property
    def used(self) -> int:
        return self.shared + self.unsynced


class FreeCounter:
    """See the module docstring. For one event loop; not thread-safe."""

    def __init__(
        self,
        redis: Redis | None = None,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry_after_s: float = 1.0,
    ) -> None:
        self._script = redis.register_script(SCRIPT) if redis is not None else None
        self._prefix = key_prefix + "free"
        self._timeout_s = timeout_s
        self._breaker = RedisBreaker(
            log,
            "free quota",
            meanwhile="counting free calls in memory",
            on_return="the free calls counted meanwhile are added",
            retry_after_s=retry_after_s,
        )
        self._counts: dict[Per, _Count] = {"minute": _Count(-1), "day": _Count(-1)}

    def used(self, per: Per, now: float) -> int:
        """The calls of the window around `now`, as far as this replica knows."""
        return self._count(per, now).used

    async def take(self, now: float, limits: dict[Per, int]) -> bool:
        """Count one call at `now` if both windows are under their limits."""
        granted = await self._shared("take", now, limits)
        if granted is not None:
            return granted
        if any(self.used(per, now) >= limits[per] for per in WINDOW_S):
            return False
        for per in WINDOW_S:
            self._count(per, now).unsynced += 1
        return True

    async def spend(self, per: Per, now: float, limits: dict[Per, int]) -> None:
        """Raise the window's count to its limit: OpenRouter says it is spent."""
        if await self._shared(f"spent_{per}", now, limits) is None:
            count = self._count(per, now)
            count.unsynced = max(count.unsynced, limits[per] - count.shared)

    async def refresh(self, now: float, limits: dict[Per, int]) -> None:
        """Read the shared counts (those of the other replicas too)."""
        await self._shared("peek", now, limits)

    def _count(self, per: Per, now: float) -> _Count:
        window = math.floor(now / WINDOW_S[per])
        if self._counts[per].window != window:
            self._counts[per] = _Count(window)
        return self._counts[per]

    def _keys(self, minute: _Count, day: _Count) -> tuple[str, str]:
        date = time.strftime("%Y-%m-%d", time.gmtime(day.window * WINDOW_S["day"]))
        clock = time.strftime("%H:%M", time.gmtime(minute.window * WINDOW_S["minute"]))
        base = f"{self._prefix}:{{{date}}}"
        return f"{base}:minute:{clock}", f"{base}:day"

    async def _shared(self, action: str, now: float, limits: dict[Per, int]) -> bool | None:
        """Run the script on this minute's and today's counts in Redis, which first adds the
        calls counted here meanwhile: whether it counted a call. None when Redis is not
        configured or did not answer in time."""
        if self._script is None or not self._breaker.due():
            return None
        minute, day = self._count("minute", now), self._count("day", now)
        carried = (minute.unsynced, day.unsynced)
        args = (
            limits["minute"],
            limits["day"],
            KEY_TTL_S["minute"],
            KEY_TTL_S["day"],
            action,
            minute.unsynced,
            minute.used,
            day.unsynced,
            day.used,
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await self._script(keys=self._keys(minute, day), args=args)
        except Exception as exc:  # whatever goes wrong with Redis, free calls are counted here
            self._breaker.failed(exc)
            return None
        self._breaker.answered()
        granted, in_minute, in_day = (int(value) for value in reply)
        minute.unsynced -= carried[0]
        day.unsynced -= carried[1]
        minute.shared = max(minute.shared, in_minute)
        day.shared = max(day.shared, in_day)
        return bool(granted)
