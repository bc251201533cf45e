"""Real servers on loopback for the tests: the router's gRPC server and its REST gateway."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from rest_gateway.app import create_app
from service import grpc_server
from service.config import ModeWeights, Settings
from service.runtime import Runtime

CUSTOM_MODES = {"frugal-genius": ModeWeights(latency=0.0, cost=0.5, quality=0.5)}


class ServerThread:
    """The gRPC server on 127.0.0.1:0, in a thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        self.runtime = Runtime.build(self.settings)
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


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        custom_modes=CUSTOM_MODES,
        state_dir=tmp_path_factory.mktemp("state"),
        refresh_interval_s=0,
    )


@pytest.fixture(scope="session")
def grpc_address(settings: Settings) -> Iterator[str]:
    with ServerThread(settings) as address:
        yield address


@pytest.fixture
def gateway(grpc_address: str) -> Iterator[TestClient]:
    with TestClient(create_app(grpc_address)) as client:
        yield client
