"""One model's figures from its provider endpoints: what the router takes from OpenRouter's
`/models/{author}/{slug}/endpoints`."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from service.openrouter.models import EndpointStats
from service.scorer import MAX_TTFT_S, MIN_TOKENS_PER_S


@dataclass(frozen=True, slots=True)
class EndpointFigures:
    """Medians over a model's healthy endpoints; None where none reports the figure."""

    ttft_s: float | None
    tokens_per_s: float | None


def model_figures(endpoints: list[EndpointStats]) -> EndpointFigures | None:
    """Medians of time to first token and throughput over the healthy endpoints that report
    them; None when no endpoint reports latency."""
    healthy = [e for e in endpoints if e.status == 0]
    ttft = [e.ttft_p50_s for e in healthy if e.ttft_p50_s is not None]
    throughput = [e.tokens_per_s_p50 for e in healthy if e.tokens_per_s_p50 is not None]
    if not ttft and not throughput:
        return None
    return EndpointFigures(
        ttft_s=min(statistics.median(ttft), MAX_TTFT_S) if ttft else None,
        tokens_per_s=max(statistics.median(throughput), MIN_TOKENS_PER_S) if throughput else None,
    )


def variant_endpoints(endpoints: list[EndpointStats], *, free: bool) -> list[EndpointStats]:
    """The endpoints that serve a model's `:free` variant (those that cost nothing) or, with
    `free` false, the paid model (the others); all of them when none matches. A model's list
    holds the endpoints of both."""
    return [e for e in endpoints if e.free == free] or endpoints
