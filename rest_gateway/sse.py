"""Streamed completions as Server-Sent Events, for `/complete` and `/v1/chat/completions`.

The response starts with the stream's first chunk, whose head says which model answers: until
then a failure is an ordinary error answer with its status (the exception handlers render it);
after it, a failure is the stream's last event, and the stream ends without its usual ending.
A client that goes away cancels the stream, and with it the call upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable
from typing import Any, Protocol

import orjson
from fastapi import Request, Response
from starlette.types import Receive, Scope, Send

from rest_gateway.deps import decision_headers
from rest_gateway.errors import error_body
from service.errors import RouterError
from service.pb.router.v1 import router_pb2 as pb

MEDIA_TYPE = "text/event-stream"


def event(data: object) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class Events(Protocol):
    """How one endpoint writes a stream: each chunk as JSON events, and the ending of a stream
    that succeeded."""

    end: bytes

    def render(self, chunk: pb.CompleteChunk) -> Iterable[object]: ...


class EventStream(Response):
    """The chunks of a completion as Server-Sent Events written by `events`."""

    def __init__(
        self, request: Request, chunks: AsyncGenerator[pb.CompleteChunk], events: Events
    ) -> None:
        self.status_code = 200
        self.background = None
        self._request = request
        self._chunks = chunks
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        play = asyncio.ensure_future(self._play(send))
        watch = asyncio.ensure_future(_disconnect(receive))
        try:
            await asyncio.wait({play, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            play.cancel()
            watch.cancel()
            await asyncio.gather(play, watch, return_exceptions=True)
            await self._chunks.aclose()
        if not play.cancelled() and (failure := play.exception()) is not None:
            raise failure

    async def _play(self, send: Send) -> None:
        first = await anext(self._chunks)
        headers = {"content-type": MEDIA_TYPE, "cache-control": "no-cache"}
        if first.HasField("head"):
            head = first.head
            headers |= decision_headers(
                head.model, head.decision_id, head.attempts, cached=head.cached
            )
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        async with contextlib.aclosing(self._body(first)) as bodies:
            async for body in bodies:
                await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _body(self, first: pb.CompleteChunk) -> AsyncGenerator[bytes]:
        try:
            yield self._render(first)
            async for chunk in self._chunks:
                yield self._render(chunk)
        except RouterError as error:
            yield event(error_body(self._request, error.kind, error.message))
            return
        yield self._events.end

    def _render(self, chunk: pb.CompleteChunk) -> bytes:
        return b"".join(event(data) for data in self._events.render(chunk))


async def _disconnect(receive: Receive) -> None:
    message: Any = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()
