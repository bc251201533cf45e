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
    """`app` on `host:port` (port 0 picks a free one) until `stop`; once asked to stop, the
    requests in flight have `graceful_s` (None: as long as they take) before they are cancelled."""

    def __init__(
        self,
        app: FastAPI,
        host: str,
        port: int,
        *,
        log_level: str = "INFO",
        graceful_s: int | None = None,
    ) -> None:
        # No access log: a line per request would cost more than routing the request. Its log
        # records go to the process's handlers (log_config=None), at `log_level`.
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level.lower(),
            log_config=None,
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=graceful_s,
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

    async def wait(self, until: asyncio.Event | None = None) -> None:
        """Until the server stops (after `request_stop`, or on failure), or `until` is set."""
        if self._task is None:
            return
        if until is None:
            await self._task
            return
        told = asyncio.ensure_future(until.wait())
        try:
            await asyncio.wait({self._task, told}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            told.cancel()
        if self._task.done():
            self._task.result()

    async def stop(self) -> None:
        self.request_stop()
        await self.wait()
