"""`POST /chat/completions`, plain and streamed, with each failure classified for failover.

Classification follows the reference: timeouts, connection errors, 408, 429, 5xx (524 and 529
too), 404 "no endpoints", a 200 whose body is an error, and a stream that fails or stalls before
its first token may succeed on another model; a context-length 400 may succeed on a model with
a larger window; other 400s, 401, 402, 403 and redirects will fail everywhere.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import aiohttp
from multidict import CIMultiDictProxy

from service.openrouter.free_allowance import FreeLimitHit, free_limit_hit

# One SSE line may carry a whole generated image as base64.
MAX_SSE_LINE_BYTES = 16 * 1024 * 1024
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
    MISCONFIGURED = "misconfigured"  # the router's OpenRouter URL redirects elsewhere


class UpstreamError(Exception):
    """One attempt on one model failed; `outcome` names the failure for the attempt record.
    `free_limit` is set when OpenRouter refused a free variant for the account's allowance."""

    def __init__(
        self,
        kind: Failure,
        outcome: str,
        message: str,
        *,
        status: int = 0,
        retry_after_s: float | None = None,
        free_limit: FreeLimitHit | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.outcome = outcome
        self.status = status
        self.retry_after_s = retry_after_s
        self.free_limit = free_limit


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
    tool_calls: tuple[dict[str, Any], ...] = ()  # whole, in the order the model made them


StreamEvent: TypeAlias = StreamStart | StreamDelta | StreamEnd


class MidStreamError(Exception):
    """The stream failed after content was sent: no failover is possible any more."""


def _retry_after(headers: CIMultiDictProxy[str]) -> float | None:
    for header, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(header)
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
    status: int, error: Mapping[str, Any] | None, headers: CIMultiDictProxy[str]
) -> UpstreamError:
    """The failure an error status, body and headers mean."""
    if 300 <= status < 400:  # never followed: a POST would turn into a GET elsewhere
        where = headers.get("location", "elsewhere")
        text = f"HTTP {status}: the OpenRouter base URL redirects to {where}"
        return UpstreamError(Failure.MISCONFIGURED, f"http_{status}", text, status=status)
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
    return UpstreamError(
        kind,
        outcome,
        text,
        status=status,
        retry_after_s=_retry_after(headers),
        free_limit=free_limit_hit(status, error, headers),
    )


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


def _transport_error(exc: aiohttp.ClientError | TimeoutError) -> UpstreamError:
    if isinstance(exc, TimeoutError):
        return UpstreamError(Failure.RETRYABLE, "timeout", "no answer in time")
    return UpstreamError(Failure.RETRYABLE, "connection", f"{type(exc).__name__}: {exc}")


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


async def complete(
    http: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    timeout_s: float,
) -> ChatResult:
    """One non-streamed completion; raises UpstreamError."""
    try:
        async with (
            asyncio.timeout(timeout_s),
            http.post(url, json=body, headers=headers, allow_redirects=False) as response,
        ):
            status, answer_headers = response.status, response.headers
            payload = _json(await response.read())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _transport_error(exc) from None
    if status != 200:
        raise classify(status, _error_of(payload), answer_headers)
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
        id=str(payload.get("id") or answer_headers.get("x-generation-id") or ""),
        model=str(payload.get("model") or body.get("model") or ""),
        provider=str(payload.get("provider") or ""),
        choices=[c for c in choices if isinstance(c, dict)],
        usage=_usage(payload.get("usage")),
    )


@dataclass(slots=True)
class _StreamReading:
    """What the SSE lines of a stream have said so far."""

    model: str
    start: StreamStart | None = None
    finish: str = ""
    usage: Usage | None = None
    done: bool = False
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)

    def take(self, lines: list[bytes]) -> tuple[str, tuple[str, str] | None]:
        """The text these lines add, and the failure they report as (message, outcome)."""
        text: list[str] = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators and `: OPENROUTER PROCESSING` comments
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                return "".join(text), ("a stream event is not JSON", "bad_stream")
            if not isinstance(chunk, Mapping):
                continue
            if self.start is None:
                self.start = StreamStart(
                    id=str(chunk.get("id") or ""),
                    model=str(chunk.get("model") or self.model),
                    provider=str(chunk.get("provider") or ""),
                )
            choices = chunk.get("choices") or []
            choice = choices[0] if isinstance(choices, list) and choices else {}
            choice = choice if isinstance(choice, Mapping) else {}
            error = _error_of(chunk)
            if error is not None or choice.get("finish_reason") == "error":
                failure = _error_text(error, "the stream ended with an error"), "stream_error"
                return "".join(text), failure
            if chunk.get("usage") is not None:
                self.usage = _usage(chunk.get("usage"))
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, Mapping) else None
            if isinstance(content, str) and content:
                text.append(content)
            fragments = delta.get("tool_calls") if isinstance(delta, Mapping) else None
            for fragment in fragments if isinstance(fragments, list) else ():
                self._add_tool_call(fragment)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish = reason
        return "".join(text), None

    def _add_tool_call(self, fragment: object) -> None:
        """A streamed tool call comes in pieces under one index: its id, type and name once,
        its arguments in parts."""
        if not isinstance(fragment, Mapping):
            return
        index = fragment.get("index", len(self.tool_calls))
        if not isinstance(index, int):
            return
        call = self.tool_calls.setdefault(
            index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        for key in ("id", "type"):
            value = fragment.get(key)
            if isinstance(value, str) and value:
                call[key] = value
        function = fragment.get("function")
        if isinstance(function, Mapping):
            name, arguments = function.get("name"), function.get("arguments")
            if isinstance(name, str) and name:
                call["function"]["name"] = name
            if isinstance(arguments, str):
                call["function"]["arguments"] += arguments

    def whole_tool_calls(self) -> tuple[dict[str, Any], ...]:
        return tuple(self.tool_calls[index] for index in sorted(self.tool_calls))


async def stream(
    http: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    *,
    first_token_timeout_s: float,
    idle_timeout_s: float,
) -> AsyncIterator[StreamEvent]:
    """A streamed completion. Before its first content it raises UpstreamError (the caller
    may fail over); after it, MidStreamError (the caller must tell its own caller). Time
    limits apply to this function's own waits, never to the caller's work between events.
    The text of the events that arrive together is passed on as one delta."""
    loop = asyncio.get_running_loop()
    first_deadline = loop.time() + first_token_timeout_s
    started = finished = False

    def broken(text: str, outcome: str) -> Exception:
        if started:
            return MidStreamError(text)
        return UpstreamError(Failure.RETRYABLE, outcome, text)

    try:
        async with asyncio.timeout_at(first_deadline):
            response = await http.post(
                url, json={**body, "stream": True}, headers=headers, allow_redirects=False
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _transport_error(exc) from None
    try:
        if response.status != 200:
            try:
                async with asyncio.timeout_at(first_deadline):
                    payload = _json(await response.read())
            except (aiohttp.ClientError, TimeoutError):
                payload = None
            raise classify(response.status, _error_of(payload), response.headers)
        reading = _StreamReading(model=str(body.get("model") or ""))
        pending: list[bytes] = []  # the start of a line still arriving
        pending_size = 0
        while not reading.done:
            try:
                async with (
                    asyncio.timeout(idle_timeout_s)
                    if started
                    else asyncio.timeout_at(first_deadline)
                ):
                    received = await response.content.readany()
            except TimeoutError:
                raise broken("the stream stalled", "timeout") from None
            except aiohttp.ClientError as exc:
                raise broken(f"the stream broke: {type(exc).__name__}", "connection") from None
            if not received:
                break
            if b"\n" not in received:
                pending.append(received)
                pending_size += len(received)
                if pending_size > MAX_SSE_LINE_BYTES:
                    raise broken("a stream event is too long", "bad_stream")
                continue
            *lines, tail = b"".join([*pending, received]).split(b"\n")
            pending, pending_size = [tail], len(tail)
            opened = reading.start is not None
            text, failure = reading.take(lines)
            if reading.start is not None and not opened:
                yield reading.start
            if text:
                started = True
                yield StreamDelta(text)
            if failure is not None:
                raise broken(*failure)
        if not reading.finish:
            raise broken("the stream ended without finishing", "empty_stream")
        if not started and not reading.tool_calls:
            raise broken("the answer is empty", "empty_answer")
        finished = True
        yield StreamEnd(reading.finish, reading.usage, reading.whole_tool_calls())
    finally:
        if finished:
            response.release()
        else:  # a connection left mid-answer cannot carry another request
            response.close()
