"""Real servers on loopback for the tests: the router's gRPC server, its REST gateway, and a
fake of OpenRouter per test module (a module may define its own `fake`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from service.config import ModeWeights, Settings
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import FakeOpenRouter
from testkit.servers import GatewayThread, ServerThread, settings_for
from tests.adapters import ADAPTERS, Adapter
from tests.fuzzing import fake_router  # noqa: F401  (a fixture for the fuzz tests)
from tests.redis_server import redis_server  # noqa: F401  (a fixture for every test module)

HTTP_TIMEOUT_S = 30
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


@pytest.fixture
def on_fake(fake: FakeOpenRouter, tmp_path: Path) -> Iterator[str]:
    """The gRPC address of a fresh router on the freshly reset fake OpenRouter, serving the
    fake's catalogue."""
    fake.reset()
    settings = settings_for(fake, tmp_path / "state", endpoint_stats_models=0)
    with ServerThread(settings) as address, grpc.insecure_channel(address) as channel:
        assert RouterStub(channel).RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        yield address


@pytest.fixture(scope="session")
def router_server(settings: Settings) -> Iterator[ServerThread]:
    server = ServerThread(settings)
    with server:
        yield server


@pytest.fixture(scope="session")
def grpc_address(router_server: ServerThread) -> str:
    return f"127.0.0.1:{router_server.running.port}"


@pytest.fixture(scope="session")
def remote_gateway_url(grpc_address: str, settings: Settings) -> Iterator[str]:
    with GatewayThread(grpc_address, settings) as url:
        yield url


@pytest.fixture(scope="session", params=["in-process", "remote"])
def gateway_url(request: pytest.FixtureRequest, router_server: ServerThread) -> str:
    """The router's REST gateway: the one `router serve` runs beside the core, and one that
    `router gateway --target` runs in front of its gRPC port. Same answers either way."""
    if request.param == "in-process":
        return router_server.http_url
    url: str = request.getfixturevalue("remote_gateway_url")
    return url


@pytest.fixture
def gateway(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, timeout=HTTP_TIMEOUT_S) as client:
        yield client


@pytest.fixture(params=list(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> Adapter:
    """Each way into the router: gRPC, REST (in process and remote), the CLI (here and remote)."""
    return ADAPTERS[request.param](request)
