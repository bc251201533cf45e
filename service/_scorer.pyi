"""The router's native scorer: the catalogue in columnar form, constraints, scores and top-k.

Each request is ranked by

    score = w_latency * (1 - norm_latency) + w_cost * (1 - norm_cost) + w_quality * quality

over the models that pass the request's hard constraints. Expected cost (prompt tokens x prompt
price + output tokens x completion price) is min-max normalised on a log scale, with costs below
`COST_FLOOR_USD` counted as the floor; expected latency (time to first token + output tokens /
throughput) is min-max normalised; a degenerate range normalises to 0. Ties break on model id.
"""

from collections.abc import Mapping, Sequence
from typing import Final, Literal, Self, final

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

MODE_WEIGHTS: Final[dict[str, tuple[float, float, float]]]
"""The named modes and their (latency, cost, quality) weights."""

COST_FLOOR_USD: Final[float]
"""Expected costs below this count as this on the log scale."""

MAX_PRICE_PER_TOKEN: Final[float]
"""The largest price (USD per token) a catalogue may list."""

MAX_TTFT_S: Final[float]
"""The largest time to first token (seconds) a catalogue or live stats may give."""

MIN_TOKENS_PER_S: Final[float]
"""The smallest throughput (output tokens per second) a catalogue or live stats may give."""

class ScorerError(ValueError):
    """Base of every error the scorer raises."""

class InvalidCatalogue(ScorerError):
    """The catalogue handed to the scorer is malformed."""

class InvalidRequest(ScorerError):
    """The weights, profile or constraints of a request are malformed."""

class NoEligibleModel(ScorerError):
    """The constraints removed every model; the message names each constraint and its count."""

@final
class Constraints:
    """Hard constraints. Prices are USD per million tokens, cost USD, time seconds.

    Model patterns are exact ids or `author/*`; providers are authors (the id before `/`).
    """

    def __new__(
        cls,
        *,
        min_context: int = 0,
        input_modalities: Sequence[str] = ...,
        required_parameters: Sequence[str] = ...,
        max_prompt_price_per_mtok: float | None = None,
        max_completion_price_per_mtok: float | None = None,
        max_request_cost_usd: float | None = None,
        max_ttft_s: float | None = None,
        allow_models: Sequence[str] = ...,
        deny_models: Sequence[str] = ...,
        allow_providers: Sequence[str] = ...,
        deny_providers: Sequence[str] = ...,
        free: Literal["any", "only", "exclude"] = "any",
    ) -> Self: ...

@final
class Candidate:
    """One ranked model: its score, the three terms of the score, and the raw expectations."""

    @property
    def model_id(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def latency_term(self) -> float: ...
    @property
    def cost_term(self) -> float: ...
    @property
    def quality_term(self) -> float: ...
    @property
    def expected_cost_usd(self) -> float: ...
    @property
    def expected_latency_s(self) -> float: ...
    @property
    def quality_estimated(self) -> bool: ...
    @property
    def latency_estimated(self) -> bool: ...

@final
class Ranking:
    """The best candidates, best first; how many models were eligible and why others were not."""

    @property
    def best(self) -> str:
        """The id of the best candidate."""
    @property
    def candidates(self) -> list[Candidate]: ...
    @property
    def eligible(self) -> int: ...
    @property
    def removed(self) -> dict[str, int]: ...
    @property
    def weights(self) -> tuple[float, float, float]: ...
    @property
    def catalogue_version(self) -> str: ...

@final
class Scorer:
    """Holds the catalogue and live stats; both are swapped whole, atomically for readers.

    Each model is a mapping with the keys: id (str, "author/name"), context_length (int),
    prompt_price and completion_price (float, USD per token; negative for dynamic pricing),
    input_modalities (text, image, file, audio, video), text_output (bool),
    supported_parameters (str list), quality (float in [0, 1]), quality_estimated (bool),
    ttft_s (float, seconds to first token), tokens_per_s (float > 0), latency_estimated (bool).
    """

    def __new__(cls, version: str, models: Sequence[Mapping[str, object]]) -> Self: ...
    @property
    def version(self) -> str: ...
    def __len__(self) -> int: ...
    def model_ids(self) -> list[str]: ...
    def replace_catalogue(self, version: str, models: Sequence[Mapping[str, object]]) -> None:
        """Swap in a new catalogue; live stats of models that remain are kept."""

    def update_stats(self, stats: Sequence[Mapping[str, object]]) -> None:
        """Apply live stats, all or nothing.

        Each mapping has `id` and optionally `ttft_s`, `ttft_p95_s`, `tokens_per_s`,
        `error_rate` (floats or None; None keeps the catalogue's prior) and `circuit_open`
        (bool, default False). An entry replaces that model's previous stats wholesale. An
        unknown id or an out-of-range figure raises InvalidRequest and applies nothing.
        Readers never see part of a batch.
        """
    def rank(
        self,
        weights: tuple[float, float, float],
        *,
        prompt_tokens: int,
        output_tokens: int,
        top_k: int = 5,
        constraints: Constraints | None = None,
    ) -> Ranking:
        """Rank the catalogue; weights are (latency, cost, quality), scaled to sum to 1.

        Raises InvalidRequest for malformed weights or constraints, NoEligibleModel when the
        constraints remove every model.
        """
