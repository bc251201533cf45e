"""The gateway served by uvicorn inside the running event loop (beside the gRPC server)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

STARTUP_TIMEOUT_S = 30.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The caller owns SIGINT/SIGTERM, so that it can stop the servers in order.
        yield


class HttpServer:
    """`app` on `host:port` (port 0 picks a free one) until `stop`."""

    def __init__(self, app: FastAPI, host: str, port: int, *, log_level: str = "info") -> None:
        # No access log: a line per request would cost more than routing the request.
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, lifespan="on", access_log=False
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket | None = None) -> int:
        """Serve in the background (on `sock`, already bound, when given); the port it listens
        on once it does."""
        sockets = None if sock is None else [sock]
        self._task = asyncio.create_task(self._server.serve(sockets), name="rest-gateway")
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError("the REST gateway stopped while starting")
                await asyncio.sleep(0.005)
        port: int = self._server.servers[0].sockets[0].getsockname()[1]
        return port

    def request_stop(self) -> None:
        self._server.should_exit = True

    async def wait(self) -> None:
        """Until the server stops (after `request_stop`, or on failure)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        self.request_stop()
        await self.wait()
