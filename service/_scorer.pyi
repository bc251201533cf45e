"""The router's native scorer: the catalogue in columnar form, constraints, scores and top-k.

Each request is ranked by

    score = w_latency * (1 - norm_latency) + w_cost * (1 - norm_cost) + w_quality * quality

over the models that pass the request's hard constraints. Expected cost (prompt tokens x prompt
price + output tokens x completion price) is min-max normalised on a log scale from the cheapest
paid eligible model (free models count as that one; never below `COST_FLOOR_USD`) to the
dearest; expected latency (time to first token + output tokens / throughput) is min-max
normalised on a log scale from the fastest eligible model (see `LATENCY_OUTLIER`) to the
slowest, capped at `LATENCY_SPAN` times the fastest (slower ones score 0). A degenerate range
normalises to 0.
Ties break on model id.

A plain route is a chat route: models whose output is text only, and of the chat kind. A request
widens it with `output_modalities` (text may accompany them) or by naming a meta-router or guard
model by id in `allow_models`.
"""

from collections.abc import Sequence
from typing import Final, Literal, Self, TypeAlias, final

__all__ = [
    "COST_FLOOR_USD",
    "LATENCY_FLOOR_S",
    "LATENCY_OUTLIER",
    "LATENCY_OUTLIER_POOL",
    "LATENCY_RANK",
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
    "LiveStats",
    "ModelSpec",
    "NoEligibleModel",
    "Ranking",
    "Scorer",
    "ScorerError",
]

MODE_WEIGHTS: Final[dict[str, tuple[float, float, float]]]
"""The named modes and their (latency, cost, quality) weights."""

COST_FLOOR_USD: Final[float]
"""Expected costs below this count as this on the log scale (the lowest possible cost floor)."""

LATENCY_FLOOR_S: Final[float]
"""Expected latencies below this count as this on the log scale."""

LATENCY_SPAN: Final[float]
"""The latency term reaches 0 at this multiple of where the latency scale starts."""

LATENCY_RANK: Final[int]
LATENCY_OUTLIER: Final[float]
LATENCY_OUTLIER_POOL: Final[int]
"""Among at least `LATENCY_OUTLIER_POOL` eligible models, the latency scale starts no lower than
`1 / LATENCY_OUTLIER` of the `LATENCY_RANK`-th fastest one's latency."""

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
    """The constraints removed every model; the message names each constraint and its count.

    removed maps each constraint's name to how many models it removed; "circuit_open" counts
    only models that satisfy every other constraint of the request."""

    removed: dict[str, int]

_Kind: TypeAlias = Literal["chat", "meta_router", "guard"]
"""What a model is for: chat routes take chat models only, unless a request names a meta-router
or guard model by id in `allow_models`."""

@final
class ModelSpec:
    """One model of a catalogue, as the scorer takes it; checked when it is made.

    id is "author/name"; context_length is in tokens; prompt_price and completion_price are USD
    per token (negative for dynamic pricing, at most `MAX_PRICE_PER_TOKEN`); input_modalities
    are among text, image, file, audio, video (output names the scorer does not know count as
    other); supported_parameters are the request parameters the model takes; quality lies in
    [0, 1]; ttft_s is seconds to first token (at most `MAX_TTFT_S`) and tokens_per_s output
    tokens per second (at least `MIN_TOKENS_PER_S`); quality_estimated and latency_estimated say
    whether those figures are priors rather than measurements; realtime is false for rows not
    served in real time (batch endpoints, moving aliases).

    Raises InvalidCatalogue for a malformed model; whether ids are unique is checked by
    `Scorer` and `Scorer.replace_catalogue`.
    """

    def __new__(
        cls,
        *,
        id: str,
        context_length: int,
        prompt_price: float,
        completion_price: float,
        input_modalities: Sequence[str],
        output_modalities: Sequence[str],
        kind: _Kind = "chat",
        realtime: bool = True,
        supported_parameters: Sequence[str],
        quality: float,
        quality_estimated: bool,
        ttft_s: float,
        tokens_per_s: float,
        latency_estimated: bool,
    ) -> Self: ...
    @property
    def id(self) -> str: ...
    @property
    def context_length(self) -> int: ...
    @property
    def prompt_price(self) -> float: ...
    @property
    def completion_price(self) -> float: ...
    @property
    def input_modalities(self) -> list[str]: ...
    @property
    def output_modalities(self) -> list[str]: ...
    @property
    def kind(self) -> _Kind: ...
    @property
    def realtime(self) -> bool: ...
    @property
    def supported_parameters(self) -> list[str]: ...
    @property
    def quality(self) -> float: ...
    @property
    def quality_estimated(self) -> bool: ...
    @property
    def ttft_s(self) -> float: ...
    @property
    def tokens_per_s(self) -> float: ...
    @property
    def latency_estimated(self) -> bool: ...

@final
class LiveStats:
    """What the router has observed of one model, for `Scorer.update_stats`; checked when it is
    made.

    ttft_s (seconds to first token, at most `MAX_TTFT_S`) and tokens_per_s (output tokens per
    second, at least `MIN_TOKENS_PER_S`) replace the catalogue's priors; None keeps the prior.
    circuit_open removes the model from every route. latency_estimated says whether the figures
    are still a prior (e.g. rescaled); None counts them as measured when they give a time to
    first token or a throughput, else keeps the catalogue's flag.

    Raises InvalidRequest for an out-of-range figure.
    """

    def __new__(
        cls,
        id: str,
        *,
        ttft_s: float | None = None,
        tokens_per_s: float | None = None,
        circuit_open: bool = False,
        latency_estimated: bool | None = None,
    ) -> Self: ...
    @property
    def id(self) -> str: ...
    @property
    def ttft_s(self) -> float | None: ...
    @property
    def tokens_per_s(self) -> float | None: ...
    @property
    def circuit_open(self) -> bool: ...
    @property
    def latency_estimated(self) -> bool | None: ...

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
        output_modalities: Sequence[str] = ...,
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
    @property
    def ttft_s(self) -> float:
        """The time to first token the latency was computed from."""
    @property
    def tokens_per_s(self) -> float:
        """The throughput the latency was computed from."""

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
    @property
    def normalisation(self) -> tuple[float, float, float, float]:
        """(latency_min_s, latency_max_s, cost_floor_usd, cost_max_usd) over the eligible models."""

@final
class Explanation:
    """Where one model stands in a request's whole ranking, beside the winner."""

    @property
    def winner(self) -> Candidate: ...
    @property
    def subject(self) -> Candidate | None:
        """None when a constraint removed the model."""
    @property
    def rank(self) -> int:
        """1 for the winner; 0 when a constraint removed the model."""
    @property
    def excluded_by(self) -> str | None: ...
    @property
    def eligible(self) -> int: ...
    @property
    def weights(self) -> tuple[float, float, float]: ...
    @property
    def normalisation(self) -> tuple[float, float, float, float]: ...
    @property
    def catalogue_version(self) -> str: ...

@final
class Scorer:
    """Holds the catalogue and live stats; both are swapped whole, atomically for readers.

    A catalogue is a version and its models; an id listed twice raises InvalidCatalogue.
    """

    def __new__(cls, version: str, models: Sequence[ModelSpec]) -> Self: ...
    @property
    def version(self) -> str: ...
    def __len__(self) -> int: ...
    def model_ids(self) -> list[str]: ...
    def replace_catalogue(self, version: str, models: Sequence[ModelSpec]) -> None:
        """Swap in a new catalogue; live stats of models that remain are kept. An id listed
        twice raises InvalidCatalogue and keeps the current catalogue."""

    def update_stats(self, stats: Sequence[LiveStats]) -> None:
        """Apply live stats, all or nothing.

        An entry replaces that model's previous stats wholesale. An unknown id raises
        InvalidRequest and applies nothing. Readers never see part of a batch.
        """
    def set_free_available(self, available: bool) -> None:
        """Let free models be routed to, or remove them all (reason "free_quota")."""

    def eligibility(self) -> tuple[int, int, list[tuple[str, int]]]:
        """(models, routable, [(rule, models it keeps out)]) for a plain chat route."""

    def explain(
        self,
        weights: tuple[float, float, float],
        model_id: str,
        *,
        prompt_tokens: int,
        output_tokens: int,
        constraints: Constraints | None = None,
    ) -> Explanation:
        """Rank every eligible model and place `model_id` among them, or say what removed it.

        Raises InvalidRequest for an unknown model or a malformed request, NoEligibleModel when
        the constraints remove every model.
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
