"""The router's errors, by kind; each adapter maps the kinds to its own statuses in one table."""

from __future__ import annotations

import enum

from service.pb.router.v1 import router_pb2 as pb
from service.resilience import CircuitBreakers
from service.scorer import InvalidRequest, NoEligibleModel

# Characters of a caller's text that an error message shows.
SHOWN_CHARS = 64
# An error message is cut at this length, whatever built it: gRPC carries messages in metadata,
# which is limited to a few KB, and no caller reads further.
MAX_MESSAGE_CHARS = 2000


def cut(text: str) -> str:
    """A caller's text as an error shows it unquoted: cut after SHOWN_CHARS characters."""
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def bounded(message: str) -> str:
    """An error message as it leaves the router: cut to MAX_MESSAGE_CHARS characters."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 1] + "…"


def shown(text: str) -> str:
    """A caller's text as an error shows it: quoted, and cut after SHOWN_CHARS characters."""
    return repr(text[:SHOWN_CHARS]) + ("…" if len(text) > SHOWN_CHARS else "")


class ErrorKind(enum.Enum):
    """What went wrong, in the router's words; the value is the code callers see."""

    INVALID_REQUEST = "invalid_request"  # the caller's request is malformed
    TOO_LARGE = "request_too_large"  # the caller's request is bigger than the router accepts
    UNSATISFIABLE = "unsatisfiable"  # well-formed, but no model satisfies its constraints
    NOT_FOUND = "not_found"
    UNAUTHENTICATED = "unauthenticated"  # the caller's key is missing or wrong
    REFUSED_BY_MODEL = "refused_by_model"  # the model rejected the request as invalid
    MODERATION = "moderation"  # the provider's moderation refused the request
    SPEND_LIMIT = "spend_limit"  # the router's daily spend limit is reached
    OVERLOADED = "overloaded"  # the router is at capacity: retry shortly
    OUT_OF_CREDITS = "out_of_credits"  # the router's OpenRouter account is out of credits
    UNAVAILABLE = "unavailable"  # every candidate failed, or the upstream is down
    UPSTREAM_AUTH = "upstream_auth"  # OpenRouter refused the router's own key
    MISCONFIGURED = "misconfigured"  # the router cannot serve this as configured
    DEADLINE = "deadline_exceeded"
    INTERNAL = "internal"  # a defect in the router; details go to the log, not the caller


class RouterError(Exception):
    """A request failed; `attempts` lists the calls a completion made before it gave up, and
    `retry_after_s` when the caller may expect the router to serve it (upstream outages)."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        attempts: list[pb.Attempt] | None = None,
        *,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.attempts = attempts or []
        self.retry_after_s = retry_after_s


def unroutable(exc: NoEligibleModel, breakers: CircuitBreakers) -> RouterError:
    """The error for a request no model can take: unsatisfiable constraints are the caller's
    to change; models removed only for their open circuits are an upstream outage, which ends
    when the first circuit's cooldown does."""
    resting = exc.removed.get("circuit_open", 0)
    if not resting:
        return RouterError(ErrorKind.UNSATISFIABLE, str(exc))
    wait_s = breakers.next_probe_in()
    models = "model satisfies" if resting == 1 else f"{resting} models that satisfy"
    return RouterError(
        ErrorKind.UNAVAILABLE,
        f"the {models} the request failed recently and rest (circuit open); the first may be "
        f"tried again in {wait_s:.1f} s",
        retry_after_s=wait_s,
    )


def as_router_error(exc: Exception) -> RouterError | None:
    """The router's error for what the scorer raised; None for anything unexpected."""
    if isinstance(exc, RouterError):
        return exc
    if isinstance(exc, InvalidRequest):
        return RouterError(ErrorKind.INVALID_REQUEST, str(exc))
    if isinstance(exc, NoEligibleModel):
        return RouterError(ErrorKind.UNSATISFIABLE, str(exc))
    return None
