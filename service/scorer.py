"""The native scorer, re-exported with its public names."""

from service._scorer import (
    COST_FLOOR_USD,
    LATENCY_FLOOR_S,
    LATENCY_SPAN,
    MAX_PRICE_PER_TOKEN,
    MAX_TTFT_S,
    MIN_TOKENS_PER_S,
    MODE_WEIGHTS,
    Candidate,
    Constraints,
    Explanation,
    InvalidCatalogue,
    InvalidRequest,
    NoEligibleModel,
    Ranking,
    Scorer,
    ScorerError,
)

__all__ = [
    "COST_FLOOR_USD",
    "LATENCY_FLOOR_S",
    "LATENCY_SPAN",
    "MAX_PRICE_PER_TOKEN",
    "MAX_TTFT_S",
    "MIN_TOKENS_PER_S",
    "MODE_WEIGHTS",
    "Candidate",
    "Constraints",
    "Explanation",
    "InvalidCatalogue",
    "InvalidRequest",
    "NoEligibleModel",
    "Ranking",
    "Scorer",
    "ScorerError",
]
