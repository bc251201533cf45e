"""One pooled async HTTP client for OpenRouter. The API key never leaves the request headers.

aiohttp, not httpx: httpx's connection pool scans every pooled connection on each request and
each release; with 50 completions in flight the router spent 2.4 ms of CPU per completion on
httpx, 0.8 ms on aiohttp (`bench/bench_complete.py`).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from pydantic import SecretStr

from service.openrouter import chat as chat_api
from service.openrouter.free_allowance import KeyInfo, parse_key
from service.openrouter.models import (
    EndpointStats,
    ListedModel,
    PayloadError,
    parse_endpoints,
    parse_models,
)

CHAT_PATH = "/chat/completions"
APP_HEADERS = {"X-Title": "model-router", "HTTP-Referer": "https://github.com/model-router"}


class OpenRouterError(Exception):
    """OpenRouter answered with an error, or did not answer usably."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _error_message(status: int, reason: str | None, raw: bytes) -> str:
    """The `error.message` of an error body, else a short description of the response."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else None
    if isinstance(message, str) and message:
        return f"HTTP {status}: {message}"
    return f"HTTP {status} {reason or ''}".rstrip()


def _proxy_for(url: str) -> str | None:
    """The proxy HTTPS_PROXY / HTTP_PROXY name for `url`, unless NO_PROXY exempts its host.
    Looked up once: aiohttp's own `trust_env` looks it up in a thread on every request."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class OpenRouterClient:
    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None,
        *,
        timeout_s: float = 30.0,
        max_connections: int = 100,
    ) -> None:
        self._key = api_key
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        key = "with key" if self._key else "without key"
        return f"OpenRouterClient({self._base_url!r}, {key})"

    def _http(self) -> aiohttp.ClientSession:
        """The pooled session, opened on first use: it belongs to the event loop that uses it."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                headers=APP_HEADERS,
                proxy=_proxy_for(self._base_url),
                # each call sets its own deadline; this only bounds connecting
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout_s),
            )
        return self._session

    @property
    def has_key(self) -> bool:
        return self._key is not None and bool(self._key.get_secret_value())

    def _auth(self) -> dict[str, str]:
        if not self.has_key:
            return {}
        assert self._key is not None
        return {"Authorization": f"Bearer {self._key.get_secret_value()}"}

    async def _get_json(self, path: str, *, authorised: bool) -> Any:
        headers = self._auth() if authorised else {}
        url = self._base_url + path
        try:
            async with (
                asyncio.timeout(self._timeout_s),
                self._http().get(url, headers=headers, allow_redirects=False) as response,
            ):
                status, reason, raw = response.status, response.reason, await response.read()
        except TimeoutError:
            raise OpenRouterError(f"GET {path}: timed out after {self._timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise OpenRouterError(f"GET {path}: {type(exc).__name__}: {exc}") from None
        if status != 200:
            raise OpenRouterError(
                f"GET {path}: {_error_message(status, reason, raw)}", status=status
            )
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise OpenRouterError(f"GET {path}: the body is not JSON", status=200) from None

    async def list_models(self) -> list[ListedModel]:
        """Every text model OpenRouter lists (the public `GET /models`)."""
        payload = await self._get_json("/models", authorised=True)
        try:
            return parse_models(payload)
        except PayloadError as exc:
            raise OpenRouterError(f"GET /models: {exc}", status=200) from None

    async def endpoints(self, model_id: str) -> list[EndpointStats]:
        """The provider endpoints of one model id, as it is (OpenRouter answers 404 for a
        `:free` id: see `service.endpoint_sweep`); latency and throughput need the API key."""
        path = f"/models/{model_id}/endpoints"
        payload = await self._get_json(path, authorised=True)
        try:
            return parse_endpoints(payload)
        except PayloadError as exc:
            raise OpenRouterError(f"GET {path}: {exc}", status=200) from None

    async def key(self) -> KeyInfo:
        """What `GET /key` says of the router's key (its tier sets the free-model allowance)."""
        payload = await self._get_json("/key", authorised=True)
        try:
            return parse_key(payload)
        except PayloadError as exc:
            raise OpenRouterError(f"GET /key: {exc}", status=200) from None

    def _chat_headers(self) -> dict[str, str]:
        if not self.has_key:
            raise chat_api.UpstreamError(
                chat_api.Failure.AUTH, "no_key", "no OpenRouter API key is configured"
            )
        return self._auth()

    async def chat(self, body: Mapping[str, Any], timeout_s: float) -> chat_api.ChatResult:
        """One completion; raises UpstreamError, classified for failover."""
        return await chat_api.complete(
            self._http(), self._base_url + CHAT_PATH, self._chat_headers(), body, timeout_s
        )

    def chat_stream(
        self, body: Mapping[str, Any], *, first_token_timeout_s: float, idle_timeout_s: float
    ) -> AsyncIterator[chat_api.StreamEvent]:
        """A streamed completion; see service.openrouter.chat.stream for its errors."""
        return chat_api.stream(
            self._http(),
            self._base_url + CHAT_PATH,
            self._chat_headers(),
            body,
            first_token_timeout_s=first_token_timeout_s,
            idle_timeout_s=idle_timeout_s,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
