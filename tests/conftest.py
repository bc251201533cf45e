"""Real servers on loopback for the tests: the router's gRPC server, its REST gateway, and a
fake of OpenRouter per test module (a module may define its own `fake`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from rest_gateway.app import create_app
from service.config import ModeWeights, Settings
from testkit.fake_openrouter import FakeOpenRouter
from testkit.servers import ServerThread
from tests.redis_server import redis_server  # noqa: F401  (a fixture for every test module)

CUSTOM_MODES = {"frugal-genius": ModeWeights(latency=0.0, cost=0.5, quality=0.5)}


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        custom_modes=CUSTOM_MODES,
        state_dir=tmp_path_factory.mktemp("state"),
        refresh_interval_s=0,
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenRouter]:
    with FakeOpenRouter() as server:
        yield server


@pytest.fixture(scope="session")
def grpc_address(settings: Settings) -> Iterator[str]:
    with ServerThread(settings) as address:
        yield address


@pytest.fixture
def gateway(grpc_address: str) -> Iterator[TestClient]:
    with TestClient(create_app(grpc_address)) as client:
        yield client
