"""Redis faults cost callers nothing: 50 concurrent clients route and complete (plain routes,
completions with a session key, completions from the response cache, under a daily spend
limit) against a router on a real redis-server that is killed and restarted, or paused, or
healthy; every request is answered, none waits much longer than the Redis timeout, and Redis
is used again once it is back."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import redis

from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import FakeOpenRouter
from testkit.servers import ServerThread, settings_for
from tests.redis_server import RedisServer

CLIENTS = 50
REQUESTS_PER_CLIENT = 20
HELLO = [pb.ChatMessage(role="user", content="Hello through a Redis fault.")]
ZERO = pb.GenerationParams(temperature=0)
CACHED = pb.CacheOptions(enabled=True)
SHARED_KEYS = ("router:sticky:", "router:decision:", "router:response:", "router:spend:")
CALL_TIMEOUT_S = 15


class Load:
    """`CLIENTS` threads, each sending `REQUESTS_PER_CLIENT` requests in turn (Route, Complete
    with a session key, Complete from the response cache), counting answers and errors."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = RouterStub(self.channel)
        self.answers = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)

    def request(self, client: int, n: int) -> Callable[[], Any]:
        session = pb.RouteRequest(session=f"client-{client}")
        match n % 3:
            case 0:
                return lambda: self.stub.Route(pb.RouteRequest(), timeout=CALL_TIMEOUT_S)
            case 1:
                request = pb.CompleteRequest(routing=session, messages=HELLO)
                return lambda: self.stub.Complete(request, timeout=CALL_TIMEOUT_S)
            case _:
                request = pb.CompleteRequest(messages=HELLO, params=ZERO, cache=CACHED)
                return lambda: self.stub.Complete(request, timeout=CALL_TIMEOUT_S)

    def _client(self, client: int) -> None:
        for n in range(REQUESTS_PER_CLIENT):
            send = self.request(client, n)
            try:
                send()
            except grpc.RpcError as error:
                with self._progress:
                    self.errors.append(f"{error.code()}: {error.details()}")
                    self._progress.notify_all()
                continue
            with self._progress:
                self.answers += 1
                self._progress.notify_all()

    def run(self, meanwhile: Callable[[Load], None] = lambda load: None) -> None:
        """Send every request, calling `meanwhile` while they run, and wait for the answers."""
        with ThreadPoolExecutor(CLIENTS) as pool:
            done = [pool.submit(self._client, client) for client in range(CLIENTS)]
            meanwhile(self)
            for future in done:
                future.result(timeout=60)
        assert self.answers + len(self.errors) == CLIENTS * REQUESTS_PER_CLIENT
        assert self.errors == []

    def wait_for(self, answered: int) -> None:
        """Until `answered` requests have been answered (or all have ended)."""
        with self._progress:
            assert self._progress.wait_for(
                lambda: (
                    self.answers >= answered
                    or self.answers + len(self.errors) == CLIENTS * REQUESTS_PER_CLIENT
                ),
                timeout=30,
            )

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def fake() -> Iterator[FakeOpenRouter]:
    with FakeOpenRouter() as server:
        yield server


@contextlib.contextmanager
def loaded_router(
    fake: FakeOpenRouter, state: Path, redis_url: str, **extra: Any
) -> Iterator[tuple[ServerThread, Load]]:
    """A router on `redis_url` under a daily spend limit, its catalogue the fake's, and a
    `Load` on it."""
    settings = settings_for(
        fake,
        state,
        redis_url=redis_url,
        daily_spend_limit_usd=100.0,
        endpoint_stats_models=0,
        **extra,
    )
    server = ServerThread(settings)
    with server as address, grpc.insecure_channel(address) as channel:
        assert RouterStub(channel).RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        load = Load(address)
        try:
            yield server, load
        finally:
            load.close()


def redis_in_use(server: ServerThread, store: RedisServer, load: Load) -> bool:
    """After a few more requests (one the response cache has not seen): whether /health says
    Redis is connected and every user's keys are in it (a restarted Redis starts empty)."""
    for client in range(3):
        load.request(client, 1)()
    unseen = [pb.ChatMessage(role="user", content=f"Unseen {time.monotonic_ns()}")]
    load.stub.Complete(
        pb.CompleteRequest(messages=unseen, params=ZERO, cache=CACHED), timeout=CALL_TIMEOUT_S
    )
    health = httpx.get(f"{server.http_url}/health", timeout=CALL_TIMEOUT_S).json()
    with redis.Redis(port=store.port, socket_timeout=5) as client:
        keys = [key.decode() for key in client.scan_iter("router:*", count=1000)]
    found = all(any(key.startswith(prefix) for key in keys) for prefix in SHARED_KEYS)
    return health["redis"] == "connected" and found


def wait_until_redis_in_use(server: ServerThread, store: RedisServer, load: Load) -> None:
    # The breakers probe Redis once a second after a failure: a few seconds at most.
    for _ in range(50):
        if redis_in_use(server, store, load):
            return
        time.sleep(0.1)
    raise AssertionError("Redis is not used again")


def test_redis_killed_and_restarted_under_load_fails_no_request(
    fake: FakeOpenRouter, tmp_path: Path, redis_server: RedisServer
) -> None:
    total = CLIENTS * REQUESTS_PER_CLIENT
    answered_at_kill: list[int] = []

    def kill_then_restart(load: Load) -> None:
        load.wait_for(total // 4)
        redis_server.kill()
        answered_at_kill.append(load.answers)
        load.wait_for(total // 2)
        redis_server.start()

    with loaded_router(fake, tmp_path, redis_server.url) as (server, load):
        load.run(kill_then_restart)
        assert answered_at_kill[0] < total // 2, "requests ran while Redis was down"
        wait_until_redis_in_use(server, redis_server, load)


def test_a_paused_redis_holds_up_no_request(
    fake: FakeOpenRouter, tmp_path: Path, redis_server: RedisServer
) -> None:
    """Every request is answered while Redis still answers nothing (how long each waits for it
    is measured by bench/bench_route.py, "Route with a session, Redis paused")."""
    with loaded_router(fake, tmp_path, redis_server.url) as (server, load):
        redis_server.pause()
        try:
            load.run()
        finally:
            redis_server.resume()
        wait_until_redis_in_use(server, redis_server, load)


def test_a_healthy_redis_under_load_never_trips_a_breaker(
    fake: FakeOpenRouter,
    tmp_path: Path,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A generous Redis timeout: a trip is then a failed Redis call, not a slow machine.
    with loaded_router(fake, tmp_path, redis_server.url, redis_timeout_s=5.0) as (server, load):
        with caplog.at_level(logging.WARNING):
            load.run()
        trips = [r.getMessage() for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert trips == []
        assert redis_in_use(server, redis_server, load)
