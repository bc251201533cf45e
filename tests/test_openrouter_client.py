"""The OpenRouter client's connections: through a proxy, redirected, and to nowhere."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from pydantic import SecretStr

from service.config import Settings
from service.openrouter import OpenRouterClient, OpenRouterError
from service.openrouter.chat import Failure, UpstreamError
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import DEFAULT_KEY, FakeOpenRouter
from testkit.servers import ServerThread, refused_port


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


@contextlib.asynccontextmanager
async def client_of(base_url: str) -> AsyncIterator[OpenRouterClient]:
    client = OpenRouterClient(base_url, SecretStr(DEFAULT_KEY))
    try:
        yield client
    finally:
        await client.aclose()


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
        async with client_of(fake.base_url) as client:
            assert len(await client.list_models()) == len(fake.models)
    assert targets == [f"{fake.base_url}/models"]


async def test_no_proxy_exempts_the_openrouter_host(
    fake: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets: list[str] = []
    async with forward_proxy(targets) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with client_of(fake.base_url) as client:
            assert await client.list_models()
    assert targets == []


@pytest.fixture
def unreachable_url() -> Iterator[str]:
    """A loopback URL that refuses connections."""
    with refused_port() as port:
        yield f"http://127.0.0.1:{port}/api/v1"


async def test_an_unreachable_openrouter_is_a_clear_error(unreachable_url: str) -> None:
    async with client_of(unreachable_url) as client:
        with pytest.raises(OpenRouterError, match="GET /models: ClientConnectorError"):
            await client.list_models()
        with pytest.raises(UpstreamError) as caught:
            await client.chat({"model": "openai/gpt-4o-mini", "messages": []}, timeout_s=5)
        assert (caught.value.kind, caught.value.outcome) == (Failure.RETRYABLE, "connection")


def router_settings(openrouter_url: str, state_dir: Path) -> Settings:
    """A router on the embedded catalogue whose OpenRouter is at `openrouter_url`."""
    return Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        state_dir=state_dir,
        refresh_interval_s=0,
        openrouter_base_url=openrouter_url,
        openrouter_api_key=SecretStr(DEFAULT_KEY),
    )


def test_completions_fail_over_across_connection_errors_then_say_why(
    tmp_path: Path, unreachable_url: str
) -> None:
    settings = router_settings(unreachable_url, tmp_path)
    request = pb.CompleteRequest(messages=[pb.ChatMessage(role="user", content="Hello")])
    with (
        ServerThread(settings) as address,
        grpc.insecure_channel(address) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        RouterStub(channel).Complete(request, timeout=10)
    error = caught.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    details = error.details()  # type: ignore[attr-defined]
    assert details.count(": connection (ClientConnectorError") == settings.max_attempts
    assert DEFAULT_KEY not in details


@contextlib.contextmanager
def redirecting_to(location: str) -> Iterator[str]:
    """An HTTP server on loopback that answers every request with a 307 to `location`;
    yields its base URL."""

    class Redirect(BaseHTTPRequestHandler):
        def _redirect(self) -> None:
            self.send_response(307)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _redirect

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Redirect) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/api/v1"
        finally:
            server.shutdown()
            thread.join(5)


async def test_a_redirect_is_reported_not_followed(fake: FakeOpenRouter) -> None:
    """A POST followed through a redirect may become a GET elsewhere: the router says where
    its OpenRouter URL points instead."""
    before = len(fake.requests)
    with redirecting_to(fake.base_url) as url:
        async with client_of(url) as client:
            with pytest.raises(OpenRouterError, match="GET /models: HTTP 307"):
                await client.list_models()
            body = {"model": "openai/gpt-4o-mini", "messages": []}
            with pytest.raises(UpstreamError) as caught:
                await client.chat(body, timeout_s=5)
            assert caught.value.kind is Failure.MISCONFIGURED
            assert f"redirects to {fake.base_url}" in str(caught.value)
            events = client.chat_stream(body, first_token_timeout_s=5, idle_timeout_s=5)
            with pytest.raises(UpstreamError) as caught:
                await anext(events)
            assert caught.value.kind is Failure.MISCONFIGURED
    assert len(fake.requests) == before


def test_a_redirecting_openrouter_url_fails_fast_as_misconfiguration(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    request = pb.CompleteRequest(messages=[pb.ChatMessage(role="user", content="Hello")])
    with (
        redirecting_to(fake.base_url) as url,
        ServerThread(router_settings(url, tmp_path)) as address,
        grpc.insecure_channel(address) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        RouterStub(channel).Complete(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    details = caught.value.details()  # type: ignore[attr-defined]
    assert "the router is misconfigured" in details
    assert details.count("http_307") == 1, "no other candidate is tried"
