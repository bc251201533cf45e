"""What OpenRouter says about the allowance of `:free` variants: the key's tier (`GET /key`,
reference §5.2) and its own 429s `free-models-per-min` / `free-models-per-day` (§4.2, §4.5)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from service.openrouter.models import PayloadError

FREE_LIMIT = re.compile(r"free-models-per-(min|day)")

Per = Literal["minute", "day"]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    is_free_tier: bool  # the account never bought credits


@dataclass(frozen=True, slots=True)
class FreeLimitHit:
    """OpenRouter refused a free call: the account's allowance `per` is spent."""

    per: Per
    limit: int | None  # X-RateLimit-Limit, when sent
    reset_at: float | None  # Unix seconds (X-RateLimit-Reset is epoch ms), when sent


def parse_key(payload: object) -> KeyInfo:
    data = payload.get("data") if isinstance(payload, Mapping) else None
    free_tier = data.get("is_free_tier") if isinstance(data, Mapping) else None
    if not isinstance(free_tier, bool):
        raise PayloadError("expected {data: {is_free_tier: bool, ...}}")
    return KeyInfo(is_free_tier=free_tier)


def _positive_int(value: object) -> int | None:
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if number > 0 else None


def free_limit_hit(
    status: int, error: Mapping[str, Any] | None, headers: Mapping[str, str]
) -> FreeLimitHit | None:
    """The free-model limit a 429 reports, if it is one: read from `error.metadata.headers`,
    else from the response's own `X-RateLimit-*` headers."""
    message = error.get("message") if error else None
    found = FREE_LIMIT.search(message) if status == 429 and isinstance(message, str) else None
    if found is None:
        return None
    metadata = error.get("metadata") if error else None
    echoed = metadata.get("headers") if isinstance(metadata, Mapping) else None
    sent = {str(k).lower(): v for k, v in echoed.items()} if isinstance(echoed, Mapping) else {}

    def header(name: str) -> int | None:
        return _positive_int(sent.get(name, headers.get(name)))

    reset_ms = header("x-ratelimit-reset")
    return FreeLimitHit(
        per="minute" if found[1] == "min" else "day",
        limit=header("x-ratelimit-limit"),
        reset_at=reset_ms / 1000 if reset_ms is not None else None,
    )
