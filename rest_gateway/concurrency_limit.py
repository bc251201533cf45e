"""Refuse requests past the router's capacity with 429 at once, before anything reads them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from rest_gateway.errors import error_response
from service.errors import RouterError
from service.shedding import Capacity, Load

# Under the cap on completions; every other path but the unlimited ones, under the cap on calls.
COMPLETION_PATHS = frozenset({"/complete", "/v1/chat/completions"})
# Probes and scrapes answer under overload.
UNLIMITED_PATHS = frozenset({"/health", "/metrics"})
TRANSPORT = "http"


class ConcurrencyLimit:
    """ASGI middleware: each request counts in `capacity` until its answer (a stream's last
    chunk) is sent; one past the cap of its load gets 429 with Retry-After."""

    def __init__(self, app: ASGIApp, capacity: Capacity) -> None:
        self.app = app
        self.capacity = capacity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        load = Load.COMPLETION if path in COMPLETION_PATHS else Load.CALL
        try:
            self.capacity.acquire(load, TRANSPORT)
        except RouterError as error:
            response = error_response(
                Request(scope), error.kind, error.message, error.retry_after_s
            )
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.capacity.release(load)
