"""The native scorer, re-exported with its public names."""

from service._scorer import (
    COST_FLOOR_USD,
    MAX_PRICE_PER_TOKEN,
    MAX_TTFT_S,
    MIN_TOKENS_PER_S,
    MODE_WEIGHTS,
    Candidate,
    Constraints,
    InvalidCatalogue,
    InvalidRequest,
    NoEligibleModel,
    Ranking,
    Scorer,
    ScorerError,
)

__all__ = [
    "COST_FLOOR_USD",
    "MAX_PRICE_PER_TOKEN",
    "MAX_TTFT_S",
    "MIN_TOKENS_PER_S",
    "MODE_WEIGHTS",
    "Candidate",
    "Constraints",
    "InvalidCatalogue",
    "InvalidRequest",
    "NoEligibleModel",
    "Ranking",
    "Scorer",
    "ScorerError",
]
