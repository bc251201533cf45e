"""The OpenRouter client's connection settings, against the fake over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr

from service.openrouter import OpenRouterClient
from tests.fake_openrouter import DEFAULT_KEY, FakeOpenRouter


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def forward_proxy(targets: list[str]) -> AsyncIterator[str]:
    """A plain-HTTP forward proxy on loopback, one request per connection; records each
    request's absolute target and yields the proxy's URL."""

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        head = await client_r.readuntil(b"\r\n\r\n")
        target = head.split(b" ", 2)[1].decode()
        targets.append(target)
        url = urllib.parse.urlsplit(target)
        upstream_r, upstream_w = await asyncio.open_connection(url.hostname, url.port)
        origin = url.path + (f"?{url.query}" if url.query else "")
        upstream_w.write(head.replace(target.encode(), origin.encode(), 1))
        await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenRouter]:
    with FakeOpenRouter() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def test_requests_go_through_the_proxy_the_environment_names(
    fake: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets: list[str] = []
    async with forward_proxy(targets) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        client = OpenRouterClient(fake.base_url, SecretStr(DEFAULT_KEY))
        try:
            assert len(await client.list_models()) == len(fake.models)
        finally:
            await client.aclose()
    assert targets == [f"{fake.base_url}/models"]


async def test_no_proxy_exempts_the_openrouter_host(
    fake: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets: list[str] = []
    async with forward_proxy(targets) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        client = OpenRouterClient(fake.base_url, SecretStr(DEFAULT_KEY))
        try:
            assert await client.list_models()
        finally:
            await client.aclose()
    assert targets == []
