"""OpenRouter's allowance for `:free` variants (reference §6): 20 calls a minute, and 50 a UTC
day for accounts that bought less than 10 USD of credits, else 1,000, all free variants together.

The fake has one account, so all its keys share one count ("making additional accounts or API
keys will not affect your rate limits"). The windows are fixed: a minute and a UTC day, each
starting afresh at its end, which is the reset time the 429 reports. A refused call does not
count. The day's check comes first: once both are spent, the per-day 429 is the one sent.
"""

from __future__ import annotations

import threading

from .behaviours import RateLimitHeaders

SECONDS_PER_DAY = 86_400


class FreeAllowance:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minute = (-1, 0)  # (minutes since the epoch, calls in it)
        self._day = (-1, 0)  # (UTC days since the epoch, calls in it)

    def take(self, now: float, per_minute: int, per_day: int) -> RateLimitHeaders | None:
        """Count one call at `now` (Unix seconds); the limit it would pass, if any, instead."""
        minute, day = int(now // 60), int(now // SECONDS_PER_DAY)
        with self._lock:
            in_minute = self._minute[1] if self._minute[0] == minute else 0
            in_day = self._day[1] if self._day[0] == day else 0
            if in_day >= per_day:
                return RateLimitHeaders(per_day, "day")
            if in_minute >= per_minute:
                return RateLimitHeaders(per_minute, "minute")
            self._minute, self._day = (minute, in_minute + 1), (day, in_day + 1)
        return None
