"""The router's gRPC server on 127.0.0.1:0 in a thread of its own, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from service import grpc_server
from service.config import Settings
from service.runtime import Runtime
from testkit.fake_openrouter import DEFAULT_KEY, FakeOpenRouter


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


def free_port() -> int:
    """A port free on 127.0.0.1 just now (another process could still take it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerThread:
    """The gRPC server on 127.0.0.1:0, in a thread with its own event loop; `wall_clock` is
    the runtime's calendar (see `Runtime.build`)."""

    def __init__(self, settings: Settings, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.wall_clock = wall_clock
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        self.runtime = Runtime.build(self.settings, wall_clock=self.wall_clock)
        started = asyncio.run_coroutine_threadsafe(
            grpc_server.start(self.settings, self.runtime), self.loop
        )
        self.running = started.result(timeout=10)
        return f"127.0.0.1:{self.running.port}"

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(0), self.loop).result(timeout=10)
        asyncio.run_coroutine_threadsafe(self.runtime.aclose(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
