"""What the fake does with one request: scripted replies and failures, as frozen values.

In an `HttpError` message or string metadata value, `{model}` becomes the model id the request
asked for and `{provider}` the provider it was routed to; `route_metadata` names metadata keys
filled from the routing decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

INTEGRATIONS_URL = "https://openrouter.ai/settings/integrations"


@dataclass(frozen=True)
class ToolCall:
    """One OpenAI-style function call; sent only when the request carries `tools`."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """A successful completion.

    `content=None` answers with a sentence naming the served model; `content=""` is the
    empty-content 200 seen during provider cold starts. Streaming waits `first_token_delay_s`
    (sending `: OPENROUTER PROCESSING` comments meanwhile) and `chunk_delay_s` between chunks,
    or with `burst` sends every content chunk in one write (events that arrive together);
    a non-streaming reply waits as long as the whole stream would take. Token counts default to
    the fake's deterministic count of the text.
    """

    content: str | None = None
    reasoning: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    first_token_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    burst: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class RateLimitHeaders:
    """`X-RateLimit-*` headers of OpenRouter's own 429s, also copied to `error.metadata.headers`."""

    limit: int
    per: Literal["minute", "day"]


@dataclass(frozen=True)
class HttpError:
    """A request-level error: HTTP status = `error.code`; body `{"error": {…}, "user_id": …}`."""

    status: int
    message: str
    metadata: Mapping[str, Any] | None = None
    retry_after_s: float | None = None
    rate_limit: RateLimitHeaders | None = None
    route_metadata: tuple[Literal["provider_name", "model_slug"], ...] = ()
    availability: str | None = None

    @classmethod
    def unauthorized(cls) -> HttpError:
        return cls(401, "User not found.")

    @classmethod
    def moderation(
        cls, reasons: Sequence[str] = ("harassment",), flagged_input: str = "..."
    ) -> HttpError:
        """403 from moderation; `flagged_input` is cut to 100 characters like the real one."""
        return cls(
            403,
            "{model} requires moderation on {provider}. Your input was flagged for "
            f'"{", ".join(reasons)}". No credits were charged.',
            {"reasons": list(reasons), "flagged_input": flagged_input[:100]},
            route_metadata=("provider_name", "model_slug"),
        )

    @classmethod
    def no_endpoints(cls, *, availability: bool = False) -> HttpError:
        return cls(
            404,
            "No endpoints found for {model}.",
            availability="no_endpoints" if availability else None,
        )

    @classmethod
    def timeout(cls) -> HttpError:
        return cls(408, "Operation timed out. Please try again later.")

    @classmethod
    def rate_limited(
        cls,
        retry_after_s: float | None = None,
        *,
        per: Literal["minute", "day"] = "minute",
        limit: int | None = None,
    ) -> HttpError:
        """OpenRouter's own free-model 429 (`free-models-per-min` or `-per-day`); `limit`
        defaults to 20 a minute, 50 a day. Only the 50-a-day message was observed; past 1,000
        a day the fake leaves out its advice to buy credits."""
        if per == "minute":
            message, limit = "Rate limit exceeded: free-models-per-min. ", limit or 20
        else:
            limit = limit or 50
            message = "Rate limit exceeded: free-models-per-day. "
            if limit < 1000:
                message += "Add 10 credits to unlock 1000 free model requests per day"
        return cls(
            429,
            message,
            {"provider_name": None},
            retry_after_s=retry_after_s,
            rate_limit=RateLimitHeaders(limit, per),
        )

    @classmethod
    def upstream_rate_limited(cls, retry_after_s: float | None = None) -> HttpError:
        """429 passed through from the provider that served the model."""
        raw = (
            "{model} is temporarily rate-limited upstream. Please retry shortly, or add your own "
            f"key to accumulate your rate limits: {INTEGRATIONS_URL}"
        )
        metadata = {
            "raw": raw,
            "is_byok": False,
            "provider_error_code": "engine_overloaded",
            "limit_source": "upstream_provider_shared_pool",
        }
        return cls(
            429,
            "Provider returned error",
            metadata,
            retry_after_s=retry_after_s,
            route_metadata=("provider_name",),
        )

    @classmethod
    def internal(cls) -> HttpError:
        return cls(500, "Internal Server Error")

    @classmethod
    def bad_gateway(cls, raw: str = "upstream connect error or disconnect/reset") -> HttpError:
        return cls(502, "Provider returned error", {"raw": raw}, route_metadata=("provider_name",))

    @classmethod
    def unavailable(
        cls, retry_after_s: float | None = None, *, availability: bool = False
    ) -> HttpError:
        return cls(
            503,
            "Service temporarily unavailable",
            retry_after_s=retry_after_s,
            availability="temporarily_unavailable" if availability else None,
        )

    @classmethod
    def edge_timeout(cls) -> HttpError:
        return cls(524, "Request timed out. Please try again later.")

    @classmethod
    def overloaded(cls) -> HttpError:
        return cls(
            529, "Provider returned error", {"raw": "Overloaded"}, route_metadata=("provider_name",)
        )


@dataclass(frozen=True)
class InsufficientCredits:
    """402 "requires more credits, or fewer max_tokens … can only afford `can_afford`".

    The fake also answers this by itself when the balance (or the key's limit) cannot cover
    `max_tokens`; script it to force one. `key_limit` selects the per-key-limit wording.
    """

    can_afford: int = 0
    key_limit: bool = False


@dataclass(frozen=True)
class ContextLengthExceeded:
    """400 "This endpoint's maximum context length is N tokens…", from the served model's window."""


@dataclass(frozen=True)
class ErrorIn200:
    """HTTP 200 whose body is a top-level `error` and no `choices` (streaming: one error event)."""

    code: int = 502
    message: str = "Provider returned error"
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class MidStreamError:
    """After `after_chunks` content chunks, an error chunk with `finish_reason: "error"`.

    Non-streaming requests get the partial content with `choices[0].error`. `done` sends
    `data: [DONE]` after the error event.
    """

    after_chunks: int = 1
    code: int = 429
    message: str = "Rate limit exceeded"
    error_type: str = "rate_limit_exceeded"
    content: str | None = None
    done: bool = False


@dataclass(frozen=True)
class Stall:
    """Send `after_chunks` chunks (for a non-streaming request: nothing, or half of the body when
    `after_chunks > 0`), then nothing until the client gives up or the fake stops."""

    after_chunks: int = 0
    content: str | None = None


@dataclass(frozen=True)
class Reset:
    """Like `Stall`, but then reset the TCP connection (RST)."""

    after_chunks: int = 0
    content: str | None = None


@dataclass(frozen=True)
class Drop:
    """Like `Stall`, but then close the connection (FIN) without completing the response."""

    after_chunks: int = 0
    content: str | None = None


@dataclass(frozen=True)
class InvalidJson:
    """`GET /models` answers 200 with a body that is not JSON."""

    body: str = '{"data": [{"id": "openai/gpt-4o-mini", "name": '


@dataclass(frozen=True)
class ModelsReply:
    """`GET /models` serves `models` (None: the current catalogue) once, after `delay_s`."""

    models: Sequence[Mapping[str, Any]] | None = None
    delay_s: float = 0.0


Fault: TypeAlias = Stall | Reset | Drop
ChatBehaviour: TypeAlias = (
    Reply
    | HttpError
    | InsufficientCredits
    | ContextLengthExceeded
    | ErrorIn200
    | MidStreamError
    | Fault
)
ModelsBehaviour: TypeAlias = HttpError | InvalidJson | ModelsReply | Fault
