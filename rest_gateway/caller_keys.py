"""Callers' API keys on the REST gateway: `Authorization: Bearer <key>` (as OpenAI's clients
send it) or `x-api-key: <key>`, checked as the gRPC server checks them."""

from __future__ import annotations

from contextvars import ContextVar

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from rest_gateway.errors import error_response
from service.callers import Callers, current_caller, presented_key
from service.errors import RouterError

# The key the caller sent, for a gateway in front of a remote router to pass on to it.
caller_key: ContextVar[str | None] = ContextVar("caller_key", default=None)


class CallerKeys:
    """ASGI middleware: a request outside `open_paths` without a configured key gets 401."""

    def __init__(self, app: ASGIApp, callers: Callers, open_paths: frozenset[str]) -> None:
        self.app = app
        self.callers = callers
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The gateway has no websocket routes: only HTTP requests reach an endpoint.
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = presented_key(headers.get("authorization"), headers.get("x-api-key"))
        if scope["path"] not in self.open_paths:
            try:
                current_caller.set(self.callers.authenticate(key))
            except RouterError as error:
                await error_response(Request(scope), error.kind, error.message)(
                    scope, receive, send
                )
                return
        caller_key.set(key)
        await self.app(scope, receive, send)
