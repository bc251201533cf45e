"""Each form of `ROUTER_REDIS_URL` against real redis-servers on loopback: a password, TLS with
a CA file, a Unix socket, a Sentinel naming the master; a key prefix keeping two routers apart on
one Redis; and URLs the settings refuse, without showing their password."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from service.config import Settings
from service.core import RouterCore
from service.errors import ErrorKind, RouterError
from service.free_counter import FreeCounter
from service.pb.router.v1 import router_pb2 as pb
from service.redis_link import connect, redacted
from service.runtime import Runtime
from testkit.fake_openrouter import FakeOpenRouter
from testkit.servers import refused_port, settings_for
from tests.redis_server import RedisServer

PASSWORD = "hunter2-never-shown"
ROUTING = pb.RouteRequest(mode=pb.MODE_SPEED, session="conversation-1")
CACHED = pb.CompleteRequest(
    routing=ROUTING,
    messages=[pb.ChatMessage(role="user", content="Hello through Redis.")],
    params=pb.GenerationParams(temperature=0),
    cache=pb.CacheOptions(enabled=True),
)
# What one route and one completion write, after the key prefix.
USERS = ("spend:{", "sticky:", "decision:", "decision-cache:", "response:", "learned")
# Polls of what the router writes in the background; each waits POLL_S.
POLLS = 500
POLL_S = 0.01


@contextlib.asynccontextmanager
async def router(fake: FakeOpenRouter, state: Path, **settings: Any) -> AsyncIterator[RouterCore]:
    """A started router on the fake's catalogue, under a daily spend limit. A generous Redis
    timeout: a loaded machine must not send it to memory."""
    core = RouterCore(
        Runtime.build(
            settings_for(
                fake,
                state,
                endpoint_stats_models=0,
                daily_spend_limit_usd=100.0,
                redis_timeout_s=5.0,
                **settings,
            )
        )
    )
    try:
        assert await core.runtime.keeper.refresh()
        core.start()
        yield core
    finally:
        await core.aclose()


async def use(core: RouterCore) -> str:
    """A route and a completion, through every user of Redis they reach; the route's id."""
    decision = await core.route(ROUTING)
    answer = await core.complete(CACHED, None)
    assert answer.choices
    return decision.decision_id


def keys(client: redis.Redis) -> list[str]:
    return sorted(key.decode() for key in client.scan_iter(count=1000))


async def written(client: redis.Redis, prefix: str) -> list[str]:
    """Every key in Redis, once each user has written under `prefix` (some write in the
    background)."""
    for _ in range(POLLS):
        found = keys(client)
        if all(any(key.startswith(prefix + user) for key in found) for user in USERS):
            return found
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"not every user of Redis wrote under {prefix!r}: {keys(client)}")


async def redis_state(core: RouterCore, wanted: str) -> str:
    """What the router's status says of Redis, once it says `wanted` (or after POLLS)."""
    state = ""
    for _ in range(POLLS):
        state = (await core.status()).redis
        if state == wanted:
            break
        await asyncio.sleep(POLL_S)
    return state


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA (ca.crt) and a certificate for 127.0.0.1 it signed (server.crt, server.key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    where = tmp_path_factory.mktemp("tls")
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for command in (
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca",
        "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1",
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt "
        "-days 2 -extfile san.ext",
    ):
        subprocess.run([openssl, *command.split()], cwd=where, check=True, capture_output=True)
    return where


@pytest.fixture
def tls_server(tmp_path: Path, certificates: Path) -> Iterator[RedisServer]:
    options = [
        "--port", "0",
        "--tls-port", "{port}",
        "--tls-cert-file", str(certificates / "server.crt"),
        "--tls-key-file", str(certificates / "server.key"),
        "--tls-ca-cert-file", str(certificates / "ca.crt"),
        "--tls-auth-clients", "no",
    ]  # fmt: skip
    url = "rediss://127.0.0.1:{port}/0?ssl_ca_certs=" + str(certificates / "ca.crt")
    with RedisServer(tmp_path / "tls", options=options, url=url) as server:
        yield server


@pytest.fixture
def password_server(tmp_path: Path) -> Iterator[RedisServer]:
    url = f"redis://:{PASSWORD}@127.0.0.1:{{port}}/0"
    with RedisServer(tmp_path / "auth", options=["--requirepass", PASSWORD], url=url) as made:
        yield made


async def test_a_password_in_the_url_is_used(
    fake: FakeOpenRouter, tmp_path: Path, password_server: RedisServer
) -> None:
    async with router(fake, tmp_path / "state", redis_url=password_server.url) as core:
        await use(core)
        with redis.Redis.from_url(password_server.url) as client:
            found = await written(client, "router:")
        assert await redis_state(core, "connected") == "connected"
    assert all(key.startswith("router:") for key in found), found
    assert any(key.startswith("router:spend:{20") for key in found), "the day's hash tag"


async def test_a_wrong_password_degrades_to_memory_without_an_error_or_the_password_shown(
    fake: FakeOpenRouter,
    tmp_path: Path,
    password_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = f"redis://:not-{PASSWORD}@127.0.0.1:{password_server.port}/0"
    with caplog.at_level(logging.INFO):
        async with router(fake, tmp_path / "state", redis_url=wrong) as core:
            decision_id = await use(core)
            await use(core)  # a second time: from memory
            assert await redis_state(core, "degraded") == "degraded"
            record = await core.get_decision(pb.GetDecisionRequest(decision_id=decision_id))
            assert record.response.decision_id == decision_id
    with redis.Redis.from_url(password_server.url) as client:
        assert keys(client) == []
    shown = "\n".join(record.getMessage() for record in caplog.records)
    assert "Redis unavailable (AuthenticationError" in shown
    assert PASSWORD not in shown


async def test_rediss_with_a_ca_file(
    fake: FakeOpenRouter, tmp_path: Path, tls_server: RedisServer
) -> None:
    async with router(fake, tmp_path / "state", redis_url=tls_server.url) as core:
        await use(core)
        with redis.Redis.from_url(tls_server.url) as client:
            await written(client, "router:")
        assert await redis_state(core, "connected") == "connected"


async def test_rediss_checks_the_certificate(
    fake: FakeOpenRouter, tmp_path: Path, tls_server: RedisServer
) -> None:
    """Without the CA that signed the server's certificate, Redis is not trusted: memory."""
    untrusted = f"rediss://127.0.0.1:{tls_server.port}/0"
    async with router(fake, tmp_path / "state", redis_url=untrusted) as core:
        await use(core)
        assert await redis_state(core, "degraded") == "degraded"
    with redis.Redis.from_url(tls_server.url) as client:
        assert keys(client) == []


async def test_a_unix_socket_url(fake: FakeOpenRouter, tmp_path: Path) -> None:
    socket = tmp_path / "redis.sock"
    options = ["--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700"]
    with RedisServer(tmp_path / "unix", options=options, url=f"unix://{socket}?db=2") as server:
        async with router(fake, tmp_path / "state", redis_url=server.url) as core:
            await use(core)
            with redis.Redis.from_url(server.url) as client:
                await written(client, "router:")


async def test_a_sentinel_url_finds_the_master(
    fake: FakeOpenRouter, tmp_path: Path, password_server: RedisServer
) -> None:
    """The URL names the Sentinel only; the keys land on the master it names."""
    config = (
        f"sentinel monitor primary 127.0.0.1 {password_server.port} 1\n"
        f"sentinel auth-pass primary {PASSWORD}\n"
    )
    with (
        RedisServer(tmp_path / "sentinel", options=["--sentinel"], config=config) as sentinel,
        refused_port() as gone,
    ):
        url = f"redis+sentinel://:{PASSWORD}@127.0.0.1:{gone},127.0.0.1:{sentinel.port}/primary/0"
        async with router(fake, tmp_path / "state", redis_url=url) as core:
            await use(core)
            with redis.Redis.from_url(password_server.url) as client:
                await written(client, "router:")
            assert await redis_state(core, "connected") == "connected"


async def test_routers_with_different_key_prefixes_share_nothing(
    fake: FakeOpenRouter, tmp_path: Path, redis_server: RedisServer
) -> None:
    url = redis_server.url
    async with (
        router(fake, tmp_path / "a", redis_url=url, redis_key_prefix="alpha:") as alpha,
        router(fake, tmp_path / "b", redis_url=url, redis_key_prefix="beta/") as beta,
    ):
        decision_id = await use(alpha)
        with redis.Redis.from_url(url) as client:
            await written(client, "alpha:")
            assert (await beta.runtime.completer._ledger.status()).spent_usd == 0
            assert (await alpha.runtime.completer._ledger.status()).spent_usd > 0
            with pytest.raises(RouterError) as unknown:
                await beta.get_decision(pb.GetDecisionRequest(decision_id=decision_id))
            assert unknown.value.kind is ErrorKind.NOT_FOUND

            answer = await beta.complete(CACHED, None)
            assert not answer.cached, "beta does not see alpha's cached answer"
            found = await written(client, "beta/")
    assert all(key.startswith(("alpha:", "beta/")) for key in found), found


async def test_the_free_counter_counts_under_the_prefix(redis_server: RedisServer) -> None:
    """Free variants are off in the routers above: the counter on its own."""
    noon = dt.datetime(2025, 3, 14, 12, 0, tzinfo=dt.UTC).timestamp()
    client = connect(redis_server.url, timeout_s=1.0)
    try:
        counter = FreeCounter(client, key_prefix="alpha:", timeout_s=1.0)
        assert await counter.take(noon, {"minute": 20, "day": 50})
    finally:
        await client.aclose()
    with redis.Redis.from_url(redis_server.url) as admin:
        assert keys(admin) == [
            "alpha:free:{2025-03-14}:day",
            "alpha:free:{2025-03-14}:minute:12:00",
        ]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"redis+cluster://:{PASSWORD}@127.0.0.1:7000", "Redis Cluster is not supported"),
        (f"http://:{PASSWORD}@127.0.0.1:6379", "the scheme must be one of redis://"),
        (f"{PASSWORD}@127.0.0.1:6379", "the scheme must be one of redis://"),
        (f"redis://:{PASSWORD}@127.0.0.1:port/0", "the port must be a number"),
        (f"redis://:{PASSWORD}@127.0.0.1:6379/zero", "the path must be a database number"),
        (f"redis://:{PASSWORD}@127.0.0.1?db=zero", "Invalid value for 'db'"),
        (f"redis://:{PASSWORD}@127.0.0.1?socket_timeout=5", "query parameters socket_timeout"),
        (f"redis://:{PASSWORD}@127.0.0.1?ssl_ca_certs=/ca.crt", "query parameters ssl_ca_certs"),
        (f"rediss://:{PASSWORD}@127.0.0.1?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of"),
        (f"unix://:{PASSWORD}@", "needs the socket's path"),
        (f"redis+sentinel://:{PASSWORD}@127.0.0.1/primary", "Sentinels as host:port"),
        (f"redis+sentinel://:{PASSWORD}@127.0.0.1:26379", "end in /service_name"),
        (f"redis+sentinel://:{PASSWORD}@127.0.0.1:26379/primary/zero", "end in /service_name"),
    ],
)
def test_an_unusable_url_is_refused_at_start_without_its_password(
    url: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTER_REDIS_URL", url)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert says in str(refused.value)
    assert "redis_url" in str(refused.value)
    assert PASSWORD not in str(refused.value)


def test_a_key_prefix_with_a_brace_is_refused() -> None:
    """A brace would move the hash tags that keep related keys in one slot."""
    with pytest.raises(ValidationError, match="may not contain"):
        Settings(redis_key_prefix="router{1}:")


def test_the_password_is_never_shown() -> None:
    settings = Settings(redis_url=f"redis://user:{PASSWORD}@127.0.0.1:6379/0")
    assert PASSWORD not in repr(settings)
    assert redacted(settings.redis_url or "") == "redis://user:***@127.0.0.1:6379/0"
    sentinels = f"redis+sentinel://:{PASSWORD}@10.0.0.1:26379,10.0.0.2:26379/primary"
    assert redacted(sentinels) == "redis+sentinel://:***@10.0.0.1:26379,10.0.0.2:26379/primary"
    assert redacted(f"redis://{PASSWORD}@h") == "redis://***@h"
    assert redacted("rediss://127.0.0.1:6380/0") == "rediss://127.0.0.1:6380/0"
