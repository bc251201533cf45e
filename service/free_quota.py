"""The allowance OpenRouter gives the account's free variants, and routing that keeps to it.

OpenRouter lets an account call its free variants, all together, 20 times a minute and 50
times a UTC day (1,000 once the account has bought 10 USD of credits), and answers 429 past
that (`openrouter-api.md` §6). The router counts its own free calls against that allowance
(`FreeCounter`: shared by the replicas through Redis when it is configured). The day's limit
comes from the key's tier (`GET /key`: `is_free_tier` gives 50, else 1,000; 50 until the tier
is known), asked for in the background at start and hourly; the `X-RateLimit-Limit` of a
free-models 429 corrects either limit. The latest word wins.

While the allowance is spent, or since OpenRouter refused a free call and until the reset it
gave, routing leaves every free model out (`ModelRouter.set_free_available(False)`) and
requests go to paid models. They come back by themselves at the reset: `before_routing`
checks the calendar on the request path, so no timer can drift from it. With `free_models`
off, free models are never routed to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from service.free_counter import WINDOW_S, FreeCounter, window_end
from service.openrouter import OpenRouterClient, OpenRouterError
from service.openrouter.free_allowance import FreeLimitHit, Per
from service.router import ModelRouter

log = logging.getLogger(__name__)

PER_MINUTE: Final = 20
PER_DAY_FREE_TIER: Final = 50
PER_DAY_PAID: Final = 1000
TIER_TTL_S: Final = 3600.0  # how long the key's tier is trusted
TIER_RETRY_S: Final = 60.0  # how soon to ask again when OpenRouter did not say
TURNED_OFF: Final = "free variants are turned off (free_models = false)"


@dataclass(frozen=True, slots=True)
class FreeQuotaStatus:
    enabled: bool
    tier: str  # "free" or "paid" from the key's tier; "unknown" until OpenRouter says
    per_minute_limit: int
    per_day_limit: int
    used_this_minute: int
    used_today: int
    blocked_until: float  # Unix seconds; 0 when free variants may be called now
    blocked_reason: str


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))


class FreeQuota:
    """Admits, counts and reports the router's free calls; see the module docstring.

    `clock` gives Unix seconds. For one event loop; not thread-safe."""

    def __init__(
        self,
        router: ModelRouter,
        client: OpenRouterClient,
        counter: FreeCounter,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._router = router
        self._client = client
        self._counter = counter
        self._enabled = enabled
        self._clock = clock
        self._tier = "unknown"
        self._limits: dict[Per, int] = {"minute": PER_MINUTE, "day": PER_DAY_FREE_TIER}
        self._refused_until = 0.0  # OpenRouter's reset after it refused a free call
        self._refused_by = ""
        self._tier_due = 0.0
        self._tier_task: asyncio.Task[None] | None = None
        self._available: bool | None = None
        self._recheck_at = 0.0
        self._publish(clock())

    def before_routing(self) -> None:
        """On the request path, before each route: free variants come back once the reset has
        passed, and the key's tier is asked for when due."""
        if not self._enabled:
            return
        self.keep_tier_fresh()
        now = self._clock()
        if now >= self._recheck_at:
            self._publish(now)

    def keep_tier_fresh(self) -> None:
        """Ask OpenRouter for the key's tier in the background, when it is due."""
        if not self._enabled or not self._client.has_key or self._clock() < self._tier_due:
            return
        if self._tier_task is None or self._tier_task.done():
            self._tier_due = self._clock() + TIER_RETRY_S
            self._tier_task = asyncio.get_running_loop().create_task(self.learn_tier())

    async def learn_tier(self) -> None:
        """Take the day's limit from the key's tier; keep the current one when OpenRouter
        does not say."""
        self._tier_due = self._clock() + TIER_RETRY_S
        try:
            key = await self._client.key()
        except OpenRouterError as exc:
            log.warning(
                "free quota: the key's tier is unknown (%s); allowing %d free calls a day",
                exc,
                self._limits["day"],
            )
            return
        self._tier = "free" if key.is_free_tier else "paid"
        self._limits["day"] = PER_DAY_FREE_TIER if key.is_free_tier else PER_DAY_PAID
        now = self._clock()
        self._tier_due = now + TIER_TTL_S
        self._publish(now)

    async def take(self) -> bool:
        """Count one free call if the allowance has room for it; False: do not make it."""
        now = self._clock()
        if not self._enabled or now < self._refused_until:
            return False
        granted = await self._counter.take(now, self._limits)
        self._publish(now)
        return granted

    async def refused(self, hit: FreeLimitHit) -> None:
        """OpenRouter refused a free call: none until the reset it gave (default: the end of
        that minute or UTC day), and its limit is the limit from now on. A reset at the end of
        the window spends the window's count, so the other replicas stop too."""
        now = self._clock()
        if hit.limit is not None:
            self._limits[hit.per] = hit.limit
        end = window_end(hit.per, now)
        until = hit.reset_at if hit.reset_at is not None else end
        if until > self._refused_until:
            self._refused_until = until
            scope = "min" if hit.per == "minute" else "day"
            self._refused_by = f"OpenRouter refused a free call (free-models-per-{scope})"
        if until >= end:
            await self._counter.spend(hit.per, now, self._limits)
        self._publish(now)

    def why_not(self) -> str:
        """Why free variants may not be called now, in plain words."""
        if not self._enabled:
            return TURNED_OFF
        until, reason = self._blocked(self._clock())
        return f"{reason}; free variants wait until {_utc(until)}" if until else ""

    async def status(self) -> FreeQuotaStatus:
        now = self._clock()
        if self._enabled:
            await self._counter.refresh(now, self._limits)
            self._publish(now)
            until, reason = self._blocked(now)
        else:
            until, reason = 0.0, TURNED_OFF
        return FreeQuotaStatus(
            enabled=self._enabled,
            tier=self._tier,
            per_minute_limit=self._limits["minute"],
            per_day_limit=self._limits["day"],
            used_this_minute=self._counter.used("minute", now),
            used_today=self._counter.used("day", now),
            blocked_until=until,
            blocked_reason=reason,
        )

    async def aclose(self) -> None:
        if self._tier_task is not None:
            self._tier_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tier_task

    def _blocked(self, now: float) -> tuple[float, str]:
        """Until when free variants may not be called (0: they may now), and why."""
        until, reasons = 0.0, []
        if now < self._refused_until:
            until = self._refused_until
            reasons.append(self._refused_by)
        for per in WINDOW_S:
            if self._counter.used(per, now) >= self._limits[per]:
                until = max(until, window_end(per, now))
                reasons.append(f"the {self._limits[per]} free calls of the {per} are used")
        return until, "; ".join(reasons)

    def _publish(self, now: float) -> None:
        """Tell routing whether free variants may be called, when that changes."""
        until, reason = self._blocked(now) if self._enabled else (math.inf, TURNED_OFF)
        available = not until
        self._recheck_at = until or math.inf
        if available == self._available:
            return
        self._available = available
        self._router.set_free_available(available)
        if not self._enabled:
            log.info("free quota: %s", TURNED_OFF)
        elif available:
            log.info("free quota: free variants are routed to again")
        else:
            log.info("free quota: %s; free variants wait until %s", reason, _utc(until))
