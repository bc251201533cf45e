"""Load shedding: past a cap on requests in flight, a request is refused at once (gRPC
RESOURCE_EXHAUSTED, HTTP 429) rather than queued behind the others.

One `Capacity` per process serves both transports: the gRPC server and the REST gateway share
its caps, since they share the core, the event loop and the connections to OpenRouter.
Completions have a cap of their own: they last seconds, the other calls microseconds.
"""

from __future__ import annotations

import enum

from service.config import Settings
from service.errors import ErrorKind, RouterError
from service.metrics import SHED

# What a refused caller is told to wait before retrying, in seconds (HTTP Retry-After).
RETRY_AFTER_S = 1


class Load(enum.Enum):
    """The two kinds of request, each under its own cap; the value names the setting."""

    CALL = "max_concurrent_calls"
    COMPLETION = "max_concurrent_completions"


_NOUNS = {Load.CALL: "calls", Load.COMPLETION: "completions"}


class Capacity:
    """Requests in flight, by load, under the caps of `settings`; a stream counts while open.
    Used from the event loop of the servers only."""

    def __init__(self, settings: Settings) -> None:
        self._most = {
            Load.CALL: settings.max_concurrent_calls,
            Load.COMPLETION: settings.max_concurrent_completions,
        }
        self._in_flight = dict.fromkeys(Load, 0)

    def acquire(self, load: Load, transport: str) -> None:
        """Count a request in, or refuse it (RouterError OVERLOADED) when its cap is reached;
        each request counted in is `release`d once."""
        most = self._most[load]
        if self._in_flight[load] >= most:
            SHED[transport, _NOUNS[load]].inc()
            raise RouterError(
                ErrorKind.OVERLOADED,
                f"the router is at capacity: {most} {_NOUNS[load]} in flight, the most its "
                f"{load.value} setting allows; retry in {RETRY_AFTER_S} s or on another replica",
                retry_after_s=RETRY_AFTER_S,
            )
        self._in_flight[load] += 1

    def release(self, load: Load) -> None:
        self._in_flight[load] -= 1
