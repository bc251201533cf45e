"""A plain-Python reference of the native scorer's semantics, for differential tests and benchmarks.

It is written to be obviously right rather than fast: one loop over the catalogue, checking the
hard constraints in their documented order, then min-max normalisation on log scales and a
sort. Every float is computed in the same order as the specification, so its results can be
compared with the native scorer's to within rounding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CONSTRAINT_ORDER",
    "COST_FLOOR_USD",
    "LATENCY_FLOOR_S",
    "LATENCY_OUTLIER",
    "LATENCY_OUTLIER_POOL",
    "LATENCY_RANK",
    "LATENCY_SPAN",
    "LIMITS",
    "MODALITIES",
    "NoEligible",
    "RefCandidate",
    "RefRanking",
    "rank",
]

COST_FLOOR_USD = 1e-9
"""The lowest cost floor (USD); above it, the cheapest paid eligible model's cost is the floor."""

LATENCY_FLOOR_S = 1e-3
"""Expected latencies below this (seconds) count as this on the log scale."""

LATENCY_SPAN = 32.0
"""The latency term reaches 0 at this multiple of where the scale starts."""

LATENCY_RANK, LATENCY_OUTLIER, LATENCY_OUTLIER_POOL = 3, 2.0, 10
"""Among at least `LATENCY_OUTLIER_POOL` eligible models the latency scale starts no lower than
`1 / LATENCY_OUTLIER` of the `LATENCY_RANK`-th fastest one's latency."""

MODALITIES = frozenset({"text", "image", "file", "audio", "video"})

CONSTRAINT_ORDER = (
    "dynamic_price",
    "not_realtime",
    "circuit_open",
    "free_quota",
    "output_modalities",
    "meta_router",
    "guard_model",
    "context_window",
    "input_modalities",
    "required_parameters",
    "allow_models",
    "deny_models",
    "allow_providers",
    "deny_providers",
    "free_only",
    "exclude_free",
    "max_prompt_price",
    "max_completion_price",
    "max_ttft",
    "max_request_cost",
)
"""Every reason a model can be removed, in the order they are checked."""

LIMITS = (
    "max_prompt_price_per_mtok",
    "max_completion_price_per_mtok",
    "max_request_cost_usd",
    "max_ttft_s",
)


class NoEligible(LookupError):
    """The constraints removed every model; `removed` counts the models per constraint."""

    def __init__(self, removed: dict[str, int]) -> None:
        self.removed = removed
        parts = ", ".join(f"{name}: {count}" for name, count in removed.items())
        super().__init__(f"no model satisfies the request; removed by {parts or 'nothing'}")


@dataclass(frozen=True)
class RefCandidate:
    model_id: str
    score: float
    latency_term: float
    cost_term: float
    quality_term: float
    expected_cost_usd: float
    expected_latency_s: float
    quality_estimated: bool
    latency_estimated: bool


@dataclass(frozen=True)
class RefRanking:
    candidates: list[RefCandidate]
    eligible: int
    removed: dict[str, int] = field(default_factory=dict)
    weights: tuple[float, float, float] = (0.0, 0.0, 0.0)
    normalisation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


def normalised_weights(weights: tuple[float, float, float]) -> tuple[float, float, float]:
    """Validate (latency, cost, quality) and scale them to sum to one unless they already do."""
    for w, name in zip(weights, ("latency", "cost", "quality"), strict=True):
        if not (math.isfinite(w) and w >= 0.0):
            raise ValueError(f"weight {name} must be a non-negative number, got {w}")
    wl, wc, wq = weights
    total = wl + wc + wq
    if total <= 0.0:
        raise ValueError("weights must not all be zero")
    if abs(total - 1.0) <= 1e-12:
        return (wl, wc, wq)
    return (wl / total, wc / total, wq / total)


def _strings(mapping: Mapping[str, object], key: str) -> list[str]:
    value = mapping.get(key) or []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{key} must be a list of strings")
    return [str(v) for v in value]


def _int(mapping: Mapping[str, object], key: str, default: int = 0) -> int:
    value = mapping.get(key, default)
    assert isinstance(value, int), key
    return value


def _limit(constraints: Mapping[str, object], key: str) -> float | None:
    value = constraints.get(key)
    if value is None:
        return None
    assert isinstance(value, int | float), key
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{key} must be a non-negative number, got {value}")
    return float(value)


def _check_patterns(patterns: list[str], key: str) -> None:
    for pattern in patterns:
        body = pattern.removesuffix("/*")
        if not body or "*" in body:
            raise ValueError(f"{key}: {pattern!r} is not a model id or an author/* pattern")


def matches_model(pattern: str, model_id: str) -> bool:
    """`author/*` matches every `author/<something>`; any other pattern is an exact id."""
    if pattern.endswith("/*"):
        author = pattern[:-2]
        return len(model_id) > len(author) + 1 and model_id.startswith(author + "/")
    return pattern == model_id


def _norm(x: float, lo: float, hi: float) -> float:
    return (x - lo) / (hi - lo) if hi > lo else 0.0


def rank(
    models: Sequence[Mapping[str, object]],
    stats: Mapping[str, Mapping[str, object]],
    weights: tuple[float, float, float],
    *,
    prompt_tokens: int,
    output_tokens: int,
    top_k: int,
    constraints: Mapping[str, object],
    free_available: bool = True,
) -> RefRanking:
    """Rank `models` for one request; `stats` maps a model id to its latest live stats;
    `free_available` is false while the free variants' allowance is spent.

    `constraints` takes the keyword names of `service.scorer.Constraints`; missing keys take
    their defaults. Raises ValueError for a malformed request and NoEligible when nothing passes.
    """
    wl, wc, wq = normalised_weights(weights)
    if top_k < 1:
        raise ValueError("top_k must be at least 1")

    min_context = _int(constraints, "min_context")
    modalities = _strings(constraints, "input_modalities")
    for m in modalities:
        if m not in MODALITIES:
            raise ValueError(f"unknown input modality {m!r}")
    wanted_outputs = set(_strings(constraints, "output_modalities"))
    for m in wanted_outputs:
        if m not in MODALITIES:
            raise ValueError(f"unknown output modality {m!r}")
    required_params = set(_strings(constraints, "required_parameters"))
    allow_models = _strings(constraints, "allow_models")
    deny_models = _strings(constraints, "deny_models")
    _check_patterns(allow_models, "allow_models")
    _check_patterns(deny_models, "deny_models")
    allow_providers = _strings(constraints, "allow_providers")
    deny_providers = _strings(constraints, "deny_providers")
    free_filter = constraints.get("free", "any")
    if free_filter not in ("any", "only", "exclude"):
        raise ValueError(f"free must be one of any, only, exclude; got {free_filter!r}")
    max_prompt, max_completion, max_cost, max_ttft = (_limit(constraints, k) for k in LIMITS)
    max_prompt_price = None if max_prompt is None else max_prompt / 1e6
    max_completion_price = None if max_completion is None else max_completion / 1e6

    needed_context = max(min_context, prompt_tokens + output_tokens)
    prompt = float(prompt_tokens)
    output = float(output_tokens)
    required_modalities = set(modalities)

    removed = dict.fromkeys(CONSTRAINT_ORDER, 0)
    # (model, expected cost, expected latency, latency estimated) per eligible model.
    eligible: list[tuple[Mapping[str, Any], float, float, bool]] = []
    catalogue: Sequence[Mapping[str, Any]] = models  # the figures' types are the scorer's
    for model in catalogue:
        model_id: str = model["id"]
        author = model_id.split("/", 1)[0]
        prompt_price: float = model["prompt_price"]
        completion_price: float = model["completion_price"]
        live: Mapping[str, Any] = stats.get(model_id, {})
        live_ttft: float | None = live.get("ttft_s")
        live_throughput: float | None = live.get("tokens_per_s")
        ttft: float = model["ttft_s"] if live_ttft is None else live_ttft
        throughput: float = model["tokens_per_s"] if live_throughput is None else live_throughput
        free = prompt_price == 0.0 and completion_price == 0.0
        expected_cost = prompt * prompt_price + output * completion_price

        # Output names the router does not know count as one "other" modality.
        outputs = {m if m in MODALITIES else "other" for m in model["output_modalities"]}
        if wanted_outputs:
            outputs_fit = wanted_outputs <= outputs <= wanted_outputs | {"text"}
        else:
            outputs_fit = outputs == {"text"}
        kind = model.get("kind", "chat")

        if prompt_price < 0.0 or completion_price < 0.0:
            reason = "dynamic_price"
        elif not model.get("realtime", True):
            reason = "not_realtime"
        elif model_id.endswith(":free") and not free_available:
            reason = "free_quota"
        elif not outputs_fit:
            reason = "output_modalities"
        elif kind == "meta_router" and model_id not in allow_models:
            reason = "meta_router"
        elif kind == "guard" and model_id not in allow_models:
            reason = "guard_model"
        elif model["context_length"] < needed_context:
            reason = "context_window"
        elif required_modalities and not required_modalities <= set(model["input_modalities"]):
            reason = "input_modalities"
        elif required_params and not required_params <= set(model["supported_parameters"]):
            reason = "required_parameters"
        elif allow_models and not any(matches_model(p, model_id) for p in allow_models):
            reason = "allow_models"
        elif any(matches_model(p, model_id) for p in deny_models):
            reason = "deny_models"
        elif allow_providers and author not in allow_providers:
            reason = "allow_providers"
        elif author in deny_providers:
            reason = "deny_providers"
        elif free_filter == "only" and not free:
            reason = "free_only"
        elif free_filter == "exclude" and free:
            reason = "exclude_free"
        elif max_prompt_price is not None and prompt_price > max_prompt_price:
            reason = "max_prompt_price"
        elif max_completion_price is not None and completion_price > max_completion_price:
            reason = "max_completion_price"
        elif max_ttft is not None and ttft > max_ttft:
            reason = "max_ttft"
        elif max_cost is not None and expected_cost > max_cost:
            reason = "max_request_cost"
        elif live.get("circuit_open", False):  # counted only when the request would take it
            reason = "circuit_open"
        else:
            expected_latency = ttft + output / throughput
            latency_estimated = live.get("latency_estimated")
            if latency_estimated is None:
                latency_estimated = (
                    bool(model["latency_estimated"])
                    and live_ttft is None
                    and live_throughput is None
                )
            eligible.append((model, expected_cost, expected_latency, latency_estimated))
            continue
        removed[reason] += 1

    removed = {name: count for name, count in removed.items() if count}
    if not eligible:
        raise NoEligible(removed)

    # Cost: log scale from the cheapest paid model (free ones count as it) to the dearest.
    paid = [e[1] for e in eligible if e[1] > 0.0]
    cost_floor = max(min(paid), COST_FLOOR_USD) if paid else COST_FLOOR_USD
    cost_max = max(max(e[1] for e in eligible), cost_floor)
    cost_lo, cost_hi = math.log(cost_floor), math.log(cost_max)
    # Latency: log scale from the fastest (no lower than half the third fastest, among ten
    # models or more) to the slowest, at most LATENCY_SPAN times the start.
    fastest = sorted(e[2] for e in eligible)
    start = fastest[0]
    if len(fastest) >= LATENCY_OUTLIER_POOL:
        start = max(start, fastest[LATENCY_RANK - 1] / LATENCY_OUTLIER)
    latency_min = max(start, LATENCY_FLOOR_S)
    latency_max = min(max(max(e[2] for e in eligible), LATENCY_FLOOR_S), latency_min * LATENCY_SPAN)
    latency_lo, latency_hi = math.log(latency_min), math.log(latency_max)
    candidates = []
    for model, expected_cost, expected_latency, latency_estimated in eligible:
        log_latency = math.log(max(expected_latency, LATENCY_FLOOR_S))
        latency_term = 1.0 - min(max(_norm(log_latency, latency_lo, latency_hi), 0.0), 1.0)
        log_cost = math.log(expected_cost) if expected_cost > 0.0 else -math.inf
        cost_term = 1.0 - _norm(max(log_cost, cost_lo), cost_lo, cost_hi)
        quality_term = float(model["quality"])
        candidates.append(
            RefCandidate(
                model_id=str(model["id"]),
                score=wl * latency_term + wc * cost_term + wq * quality_term,
                latency_term=latency_term,
                cost_term=cost_term,
                quality_term=quality_term,
                expected_cost_usd=expected_cost,
                expected_latency_s=expected_latency,
                quality_estimated=bool(model["quality_estimated"]),
                latency_estimated=latency_estimated,
            )
        )
    candidates.sort(key=lambda c: (-c.score, c.model_id))
    return RefRanking(
        candidates=candidates[:top_k],
        eligible=len(eligible),
        removed=removed,
        weights=(wl, wc, wq),
        normalisation=(latency_min, latency_max, cost_floor, cost_max),
    )
