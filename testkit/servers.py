"""The router on 127.0.0.1:0 in a thread of its own (gRPC and its REST gateway over one core),
and a REST gateway alone in front of it, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

from cli.processes import free_port as free_port
from rest_gateway.app import create_app
from rest_gateway.backend import Backend, LocalBackend, RemoteBackend
from rest_gateway.serving import HttpServer
from service import grpc_server
from service.callers import Callers
from service.config import Settings
from service.core import RouterCore
from service.runtime import Runtime
from service.shedding import Capacity
from testkit.fake_openrouter import DEFAULT_KEY, FakeOpenRouter

T = TypeVar("T")
TIMEOUT_S = 10


@contextmanager
def refused_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections while the context lasts: bound and never
    listening, so no other process can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def settings_for(fake: FakeOpenRouter, state_dir: Path, **extra: Any) -> Settings:
    """A router on 127.0.0.1:0 talking to `fake` with its key: no periodic refresh, and the
    fake's small catalogue accepted as a plausible refresh."""
    return Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        state_dir=state_dir,
        refresh_interval_s=0,
        refresh_min_share=0.05,
        openrouter_base_url=fake.base_url,
        openrouter_api_key=SecretStr(DEFAULT_KEY),
        **extra,
    )


class _LoopThread:
    """One event loop in a daemon thread for every server of the process: grpc.aio serves and
    calls from one loop at a time."""

    _shared: _LoopThread | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    @classmethod
    def shared(cls) -> _LoopThread:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=TIMEOUT_S)


async def _serve_gateway(
    backend: Callable[[], Backend], settings: Settings, capacity: Capacity
) -> tuple[HttpServer, int]:
    """Built in the loop it serves from: a gRPC channel belongs to the loop it was made in."""
    app = create_app(
        backend(),
        max_body_bytes=settings.max_body_bytes,
        capacity=capacity,
        callers=Callers(settings.api_keys),
    )
    server = HttpServer(app, "127.0.0.1", 0, log_level="warning")
    return server, await server.start()


class ServerThread:
    """The router as `router serve` runs it, on 127.0.0.1:0: the gRPC server and the REST
    gateway over one core. Entering gives the gRPC address; `http_url` is the gateway's.
    `clock` drives its circuits and `wall_clock` is its calendar (see `Runtime.build`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.wall_clock = wall_clock

    def __enter__(self) -> str:
        self.loops = _LoopThread.shared()
        self.runtime = Runtime.build(self.settings, clock=self.clock, wall_clock=self.wall_clock)
        self.core = RouterCore(self.runtime)
        self.running = self.loops.run(self._start())
        return f"127.0.0.1:{self.running.port}"

    async def _start(self) -> grpc_server.RunningServer:
        self.core.start()
        capacity = Capacity(self.settings)
        running = await grpc_server.start(self.settings, self.core, capacity)
        self.gateway, port = await _serve_gateway(
            lambda: LocalBackend(self.core), self.settings, capacity
        )
        self.http_url = f"http://127.0.0.1:{port}"
        return running

    def __exit__(self, *exc: object) -> None:
        self.loops.run(self.gateway.stop())
        self.loops.run(self.running.stop(0))
        self.loops.run(self.core.aclose())


class GatewayThread:
    """`router gateway --target`: the REST gateway alone, in front of the router at `target`.
    Entering gives its base URL."""

    def __init__(self, target: str, settings: Settings) -> None:
        self.target = target
        self.settings = settings

    def __enter__(self) -> str:
        self.loops = _LoopThread.shared()
        self.gateway, port = self.loops.run(
            _serve_gateway(
                lambda: RemoteBackend(self.target), self.settings, Capacity(self.settings)
            )
        )
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.loops.run(self.gateway.stop())
