"""Raw HTTP: a response that can stall, reset or drop its connection, and the request recorder.

Dropping a connection needs the socket, which ASGI hides: the recorder takes it from uvicorn's
`send` (a bound method of the request cycle, which holds the transport) and puts it in the scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import struct
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .behaviours import Fault, Reset, Stall
from .state import FakeState, RecordedRequest, ShuttingDown

TRANSPORT = "fake_openrouter.transport"
PROCESSING = b": OPENROUTER PROCESSING\n\n"
DONE = b"data: [DONE]\n\n"


def sse(event: object) -> bytes:
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


@dataclass(frozen=True)
class Abort:
    """End the connection here, without completing the response: TCP RST or a plain close."""

    reset: bool


Frame = bytes | Abort


class ScriptedResponse(Response):
    """Sends `frames` as the body, the status line and headers just before the first bytes (at once
    when `eager`). An `Abort` frame, or `ShuttingDown` raised by the frames, ends the connection;
    a client that disconnects cancels the frames."""

    def __init__(
        self,
        frames: AsyncGenerator[Frame, None],
        *,
        headers: Mapping[str, str],
        status_code: int = 200,
        eager: bool = False,
    ) -> None:
        self.status_code = status_code
        self.background = None
        self.raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
        self._frames = frames
        self._eager = eager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = asyncio.Event()
        play = asyncio.ensure_future(self._play(scope, send, disconnected))
        watch = asyncio.ensure_future(_watch_disconnect(receive, disconnected))
        try:
            await asyncio.wait({play, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            play.cancel()
            watch.cancel()
            await asyncio.gather(play, watch, return_exceptions=True)
        if not play.cancelled() and (failure := play.exception()) is not None:
            raise failure

    async def _play(self, scope: Scope, send: Send, disconnected: asyncio.Event) -> None:
        started = sent = False

        async def start() -> None:
            nonlocal started
            if not started:
                started = True
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )

        abort: Abort | None = None
        try:
            if self._eager:
                await start()
            async for frame in self._frames:
                if isinstance(frame, Abort):
                    abort = frame
                    break
                await start()
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                sent = True
        except ShuttingDown:
            abort = Abort(reset=False)
        finally:
            await self._frames.aclose()
        if abort is None:
            await start()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if abort.reset and sent:
            await asyncio.sleep(0.05)  # let the chunks already sent reach the client before the RST
        _close(scope, reset=abort.reset)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(disconnected.wait(), 1.0)


async def _watch_disconnect(receive: Receive, disconnected: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    disconnected.set()


def _close(scope: Scope, *, reset: bool) -> None:
    transport: asyncio.Transport | None = scope.get("extensions", {}).get(TRANSPORT)
    if transport is None:
        raise RuntimeError(
            "the server does not expose its transport; serve the fake with uvicorn's h11"
        )
    if reset:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


class Recorder:
    """Outermost ASGI layer: records every HTTP request (reading its body first) and each whose
    connection closed before its response was complete, and exposes the connection's transport
    to `ScriptedResponse`."""

    def __init__(self, app: ASGIApp, state: FakeState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        recorded = _recorded(scope, bytes(body))
        self.state.record(recorded)
        cycle = getattr(send, "__self__", None)
        scope.setdefault("extensions", {})[TRANSPORT] = getattr(cycle, "transport", None)
        replayed = complete = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                message = await receive()
                if message["type"] == "http.disconnect" and not complete:
                    self.state.cut_short(recorded)
                return message
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        async def sending(message: Any) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        await self.app(scope, replay, sending)


def _recorded(scope: Scope, body: bytes) -> RecordedRequest:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return RecordedRequest(
        method=scope["method"],
        path=scope["path"],
        query=dict(parse_qsl(scope["query_string"].decode("latin-1"))),
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
        json=parsed,
        body=body,
    )


async def fault_frames(
    state: FakeState, fault: Fault, chunks: list[bytes]
) -> AsyncGenerator[Frame, None]:
    """`chunks`, then nothing until the fake stops (Stall), or the connection cut (Reset, Drop)."""
    for chunk in chunks:
        yield chunk
    if isinstance(fault, Stall):
        await state.pause(math.inf)
    yield Abort(reset=isinstance(fault, Reset))


def partial_body(
    state: FakeState, fault: Fault, body: bytes, headers: Mapping[str, str]
) -> ScriptedResponse:
    """A JSON response cut by `fault`: before its headers, or (`after_chunks > 0`) halfway
    through a body whose Content-Length promises it all."""
    if fault.after_chunks <= 0:
        return ScriptedResponse(fault_frames(state, fault, []), headers=headers)
    full = {**headers, "Content-Type": "application/json", "Content-Length": str(len(body))}
    return ScriptedResponse(fault_frames(state, fault, [body[: len(body) // 2]]), headers=full)
