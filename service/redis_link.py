"""The router's way with Redis: bounded calls, and a breaker that stops paying even that bound
while Redis is away.

Each user (the spend ledger, the free-call counter) keeps its own `RedisBreaker`: after a
failure it says Redis is down (one warning per outage), lets one call probe it every
`retry_after_s`, and says so once Redis answers again; meanwhile the user carries on in memory.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

# Measured in the event loop, so it also covers a reply's wait behind other requests' work:
# under 50 concurrent clients, 5 ms tripped the breakers of a healthy loopback Redis, and 50 ms
# did once the CPU was shared with other busy processes. A Redis that hangs costs it once a
# second per user of Redis (the breaker's probe).
DEFAULT_TIMEOUT_S: Final = 0.1


def connect(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Redis:
    """A Redis client with no retries and socket timeouts of `timeout_s`.
    The caller closes it (`await client.aclose()`)."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class RedisBreaker:
    """Whether to ask Redis now. It writes to the user's `log`, naming the user (`user`), what
    it does while Redis is away (`meanwhile`) and once Redis answers again (`on_return`)."""

    def __init__(
        self,
        log: logging.Logger,
        user: str,
        *,
        meanwhile: str,
        on_return: str,
        retry_after_s: float,
    ) -> None:
        self._log = log
        self._user = user
        self._meanwhile = meanwhile
        self._on_return = on_return
        self._retry_after_s = retry_after_s
        self.up = True
        self._probe_at = 0.0

    def due(self) -> bool:
        """True while Redis is up; while it is down, once per `retry_after_s` (a probe)."""
        if self.up:
            return True
        if time.monotonic() < self._probe_at:
            return False
        self._probe_at = time.monotonic() + self._retry_after_s
        return True

    def failed(self, exc: BaseException) -> None:
        if self.up:
            self._log.warning(
                "%s: Redis unavailable (%s: %s), %s",
                self._user,
                type(exc).__name__,
                exc,
                self._meanwhile,
            )
        self.up = False
        self._probe_at = time.monotonic() + self._retry_after_s

    def answered(self) -> None:
        if not self.up:
            self._log.info("%s: Redis answers again; %s", self._user, self._on_return)
            self.up = True
