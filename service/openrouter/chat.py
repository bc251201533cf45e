"""`POST /chat/completions`, plain and streamed, with each failure classified for failover.

Classification follows the reference: timeouts, connection errors, 408, 429, 5xx (524 and 529
too), 404 "no endpoints", a 200 whose body is an error, and a stream that fails or stalls before
its first token may succeed on another model; a context-length 400 may succeed on a model with
a larger window; other 400s, 401, 402 and 403 will fail everywhere.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx

CHAT_PATH = "/chat/completions"
CONTEXT_LENGTH = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|too long", re.IGNORECASE
)
CONTEXT_ERROR_TYPES = {"context_length_exceeded", "max_tokens_exceeded", "token_limit_exceeded"}


class Failure(enum.Enum):
    RETRYABLE = "retryable"  # another model, or this one later, may succeed
    CONTEXT_LENGTH = "context_length"  # a model with a larger window may succeed
    BAD_REQUEST = "bad_request"
    AUTH = "auth"  # the API key is missing, wrong or disabled
    CREDITS = "credits"  # out of credits, or the key's limit is spent
    MODERATION = "moderation"  # refused by moderation or a guardrail


class UpstreamError(Exception):
    """One attempt on one model failed; `outcome` names the failure for the attempt record."""

    def __init__(
        self,
        kind: Failure,
        outcome: str,
        message: str,
        *,
        status: int = 0,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.outcome = outcome
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float | None  # as OpenRouter billed it, when it says


@dataclass(frozen=True, slots=True)
class ChatResult:
    id: str
    model: str
    provider: str
    choices: list[dict[str, Any]]
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class StreamStart:
    """The stream is open; the first piece of content has not necessarily arrived."""

    id: str
    model: str
    provider: str


@dataclass(frozen=True, slots=True)
class StreamDelta:
    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    finish_reason: str
    usage: Usage | None


StreamEvent: TypeAlias = StreamStart | StreamDelta | StreamEnd


class MidStreamError(Exception):
    """The stream failed after content was sent: no failover is possible any more."""


def _retry_after(response: httpx.Response) -> float | None:
    for header, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = response.headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


def _error_of(body: object) -> Mapping[str, Any] | None:
    error = body.get("error") if isinstance(body, Mapping) else None
    return error if isinstance(error, Mapping) else None


def _error_text(error: Mapping[str, Any] | None, fallback: str) -> str:
    message = error.get("message") if error else None
    text = message if isinstance(message, str) and message else fallback
    metadata = error.get("metadata") if error else None
    raw = metadata.get("raw") if isinstance(metadata, Mapping) else None
    if isinstance(raw, str) and raw and raw not in text:
        text = f"{text}: {raw}"
    return text[:500]


def classify(
    status: int, error: Mapping[str, Any] | None, retry_after_s: float | None
) -> UpstreamError:
    """The failure an error status and body mean."""
    text = _error_text(error, f"HTTP {status}")
    metadata = error.get("metadata") if error else None
    error_type = metadata.get("error_type") if isinstance(metadata, Mapping) else None
    outcome = f"http_{status}"
    if status == 400 and (error_type in CONTEXT_ERROR_TYPES or CONTEXT_LENGTH.search(text)):
        return UpstreamError(Failure.CONTEXT_LENGTH, "context_length", text, status=status)
    kind = {
        401: Failure.AUTH,
        402: Failure.CREDITS,
        403: Failure.MODERATION,
    }.get(status)
    if kind is None:
        retryable = status in (404, 408, 429) or status >= 500
        kind = Failure.RETRYABLE if retryable else Failure.BAD_REQUEST
    return UpstreamError(kind, outcome, text, status=status, retry_after_s=retry_after_s)


def _usage(raw: object) -> Usage | None:
    if not isinstance(raw, Mapping):
        return None

    def count(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    cost = raw.get("cost")
    return Usage(
        prompt_tokens=count("prompt_tokens"),
        completion_tokens=count("completion_tokens"),
        total_tokens=count("total_tokens"),
        cost_usd=float(cost)
        if isinstance(cost, int | float) and not isinstance(cost, bool)
        else None,
    )


def _has_output(choice: object) -> bool:
    message = choice.get("message") if isinstance(choice, Mapping) else None
    if not isinstance(message, Mapping):
        return False
    return bool(message.get("content")) or bool(message.get("tool_calls"))


def _transport_error(exc: httpx.HTTPError) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamError(Failure.RETRYABLE, "timeout", f"timed out ({type(exc).__name__})")
    return UpstreamError(Failure.RETRYABLE, "connection", f"{type(exc).__name__}: {exc}")


async def complete(
    http: httpx.AsyncClient, headers: Mapping[str, str], body: Mapping[str, Any], timeout_s: float
) -> ChatResult:
    """One non-streamed completion; raises UpstreamError."""
    try:
        response = await http.post(CHAT_PATH, json=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise _transport_error(exc) from None
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if response.status_code != 200:
        raise classify(response.status_code, _error_of(payload), _retry_after(response))
    error = _error_of(payload)
    if error is not None:
        raise UpstreamError(
            Failure.RETRYABLE, "error_in_200", _error_text(error, "error in a 200 answer")
        )
    choices = payload.get("choices") if isinstance(payload, Mapping) else None
    if not isinstance(choices, list) or not choices:
        raise UpstreamError(Failure.RETRYABLE, "no_choices", "the answer has no choices")
    if any(isinstance(c, Mapping) and c.get("finish_reason") == "error" for c in choices):
        raise UpstreamError(Failure.RETRYABLE, "error_in_200", "the answer finished with an error")
    if not any(_has_output(c) for c in choices):
        raise UpstreamError(Failure.RETRYABLE, "empty_answer", "the answer is empty")
    assert isinstance(payload, Mapping)
    return ChatResult(
        id=str(payload.get("id") or response.headers.get("x-generation-id") or ""),
        model=str(payload.get("model") or body.get("model") or ""),
        provider=str(payload.get("provider") or ""),
        choices=[c for c in choices if isinstance(c, dict)],
        usage=_usage(payload.get("usage")),
    )


async def stream(
    http: httpx.AsyncClient,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    *,
    first_token_timeout_s: float,
    idle_timeout_s: float,
) -> AsyncIterator[StreamEvent]:
    """A streamed completion. Before its first content it raises UpstreamError (the caller
    may fail over); after it, MidStreamError (the caller must tell its own caller). Time
    limits apply to this function's own waits, never to the caller's work between events."""
    loop = asyncio.get_running_loop()
    first_deadline = loop.time() + first_token_timeout_s
    request = http.build_request("POST", CHAT_PATH, json={**body, "stream": True}, headers=headers)
    started = False

    def broken(text: str, outcome: str) -> Exception:
        if started:
            return MidStreamError(text)
        return UpstreamError(Failure.RETRYABLE, outcome, text)

    try:
        async with asyncio.timeout_at(first_deadline):
            response = await http.send(request, stream=True)
    except TimeoutError:
        raise UpstreamError(Failure.RETRYABLE, "timeout", "no answer in time") from None
    except httpx.HTTPError as exc:
        raise _transport_error(exc) from None
    try:
        if response.status_code != 200:
            try:
                async with asyncio.timeout_at(first_deadline):
                    await response.aread()
                payload = response.json()
            except (TimeoutError, httpx.HTTPError, json.JSONDecodeError, UnicodeDecodeError):
                payload = None
            raise classify(response.status_code, _error_of(payload), _retry_after(response))
        lines = response.aiter_lines()
        finish = ""
        usage: Usage | None = None
        opened = False
        while True:
            try:
                if started:
                    async with asyncio.timeout(idle_timeout_s):
                        line = await anext(lines)
                else:
                    async with asyncio.timeout_at(first_deadline):
                        line = await anext(lines)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise broken("the stream stalled", "timeout") from None
            except httpx.HTTPError as exc:
                raise broken(f"the stream broke: {type(exc).__name__}", "connection") from None
            if not line.startswith("data:"):
                continue  # blank separators and `: OPENROUTER PROCESSING` comments
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except json.JSONDecodeError:
                raise broken("a stream event is not JSON", "bad_stream") from None
            if not isinstance(chunk, Mapping):
                continue
            if not opened:
                opened = True
                yield StreamStart(
                    id=str(chunk.get("id") or ""),
                    model=str(chunk.get("model") or body.get("model") or ""),
                    provider=str(chunk.get("provider") or ""),
                )
            choices = chunk.get("choices") or []
            choice = choices[0] if isinstance(choices, list) and choices else {}
            choice = choice if isinstance(choice, Mapping) else {}
            error = _error_of(chunk)
            if error is not None or choice.get("finish_reason") == "error":
                raise broken(_error_text(error, "the stream ended with an error"), "stream_error")
            if chunk.get("usage") is not None:
                usage = _usage(chunk.get("usage"))
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, Mapping) else None
            if isinstance(content, str) and content:
                started = True
                yield StreamDelta(content)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                finish = reason
        if not finish:
            raise broken("the stream ended without finishing", "empty_stream")
        if not started and finish != "tool_calls":
            raise broken("the answer is empty", "empty_answer")
        yield StreamEnd(finish_reason=finish, usage=usage)
    finally:
        await response.aclose()
