"""OpenRouter's error envelope, `{"error": {"code", "message", "metadata"?}, "user_id"?}`."""

from __future__ import annotations

import calendar
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from .behaviours import HttpError, InsufficientCredits, RateLimitHeaders

DOCS_URL = "https://openrouter.ai/docs/api_reference/errors-and-debugging"
RETRYABLE_AVAILABILITY = {"capacity_exhausted", "temporarily_unavailable"}


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        headers=dict(headers or {}),
        media_type="application/json",
    )


@dataclass(frozen=True)
class ErrorResult:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, headers: Mapping[str, str] | None = None) -> Response:
        return json_response(self.body, self.status, {**self.headers, **(headers or {})})


def error(
    status: int,
    message: str,
    metadata: Mapping[str, Any] | None = None,
    *,
    user_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ErrorResult:
    inner: dict[str, Any] = {"code": status, "message": message}
    if metadata is not None:
        inner["metadata"] = dict(metadata)
    body: dict[str, Any] = {"error": inner}
    if user_id is not None:
        body["user_id"] = user_id
    return ErrorResult(status, body, dict(headers or {}))


def _reset_epoch_ms(per: str, now: float) -> int:
    if per == "minute":
        return (int(now) // 60 + 1) * 60_000
    day = time.gmtime(now)
    midnight = calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0))
    return (midnight + 86_400) * 1000


def rate_limit_headers(limit: RateLimitHeaders, now: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit.limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(_reset_epoch_ms(limit.per, now)),
    }


def render_http_error(
    spec: HttpError,
    *,
    model: str = "",
    provider: str | None = None,
    user_id: str | None = None,
    now: float | None = None,
) -> ErrorResult:
    """`now` (Unix seconds, default the real time) dates the reset of a rate limit."""

    def fill(text: str) -> str:
        return text.replace("{model}", model).replace("{provider}", provider or "the provider")

    metadata: dict[str, Any] | None = None
    if spec.metadata is not None or spec.route_metadata or spec.rate_limit:
        metadata = {
            key: fill(value) if isinstance(value, str) else value
            for key, value in (spec.metadata or {}).items()
        }
        routed = {"provider_name": provider, "model_slug": model}
        metadata.update({key: routed[key] for key in spec.route_metadata})
    headers: dict[str, str] = {}
    if spec.rate_limit is not None:
        headers = rate_limit_headers(spec.rate_limit, time.time() if now is None else now)
        metadata = {"headers": dict(headers), **(metadata or {})}
    if spec.retry_after_s is not None:
        headers["Retry-After"] = str(math.ceil(spec.retry_after_s))
    result = error(spec.status, fill(spec.message), metadata, user_id=user_id, headers=headers)
    if spec.availability is not None:
        availability: dict[str, Any] = {
            "code": spec.availability,
            "retryable": spec.availability in RETRYABLE_AVAILABILITY,
            "requested_models": [model] if model else [],
            "docs_url": DOCS_URL,
        }
        if spec.retry_after_s is not None:
            availability["retry_after"] = math.ceil(spec.retry_after_s)
        result.body["error"]["availability"] = availability
    return result


def insufficient_credits(spec: InsufficientCredits, requested: int, *, user_id: str) -> ErrorResult:
    where = (
        "https://openrouter.ai/settings/keys and create a key with a higher monthly limit"
        if spec.key_limit
        else "https://openrouter.ai/settings/credits and upgrade to a paid account"
    )
    message = (
        "This request requires more credits, or fewer max_tokens. You requested up to "
        f"{requested} tokens, but can only afford {spec.can_afford}. To increase, visit {where}"
    )
    return error(402, message, {"provider_name": None}, user_id=user_id)


def out_of_credits(*, user_id: str) -> ErrorResult:
    return error(
        402,
        "Insufficient credits. Add more using https://openrouter.ai/credits",
        {"provider_name": None},
        user_id=user_id,
    )


def context_length_exceeded(window: int, prompt: int, output: int, *, user_id: str) -> ErrorResult:
    parts = f"{prompt} of text input" + (f", {output} in the output" if output else "")
    message = (
        f"This endpoint's maximum context length is {window} tokens. However, you requested "
        f"about {prompt + output} tokens ({parts}). Please reduce the length of either one, or "
        'use the "middle-out" transform to compress your prompt automatically.'
    )
    return error(400, message, {"provider_name": None}, user_id=user_id)
