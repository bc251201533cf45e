"""Routing decisions: wire requests in, ranked candidates out (for the gRPC server and CLI)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from service.catalogue import Catalogue, ModelRecord
from service.config import Settings
from service.decision_metrics import DECISIONS
from service.errors import shown
from service.live_epoch import LiveEpoch
from service.pb.router.v1 import router_pb2 as pb
from service.scorer import (
    MODE_WEIGHTS,
    Candidate,
    Constraints,
    Explanation,
    InvalidRequest,
    LiveStats,
    Ranking,
)
from service.vocabulary import MODE_NAMES, kind_of_value, value_names

# The fields of `pb.Constraints` that the scorer's `Constraints` names otherwise; every other
# field is the scorer's keyword of the same name. Enum values go by their short names; a field
# the request leaves unset keeps the scorer's default, which is the proto's.
SCORER_KEYWORDS = {"min_context_tokens": "min_context", "max_ttft_seconds": "max_ttft_s"}


def _enum_value(field: FieldDescriptor, number: int) -> str:
    enum = field.enum_type
    assert enum is not None, field.full_name
    name = value_names(enum).get(number)
    if name is None:
        raise InvalidRequest(f"constraints.{field.name}: unknown {kind_of_value(enum)} {number}")
    return name


def mode_label(request: pb.RouteRequest) -> str:
    """The request's policy as the decision metrics label it: the mode's name, custom, weights
    or default (an unknown mode is refused before it is counted). Fields of the policy oneof
    other than the one set read as empty, and that is cheaper than asking which one is set."""
    if request.mode:
        return MODE_NAMES.get(request.mode, "default")
    if request.custom_mode:
        return "custom"
    return "weights" if request.HasField("weights") else "default"


def _constraints(c: pb.Constraints) -> Constraints:
    """The scorer's constraints for the wire's: the one mapping of the constraint fields."""
    given: dict[str, Any] = {}
    for field, value in c.ListFields():
        if field.type == FieldDescriptor.TYPE_ENUM:
            if field.is_repeated:
                value = [_enum_value(field, v) for v in value]
            else:
                value = _enum_value(field, value)
        elif field.is_repeated:
            value = list(value)
        given[SCORER_KEYWORDS.get(field.name, field.name)] = value
    return Constraints(**given)


def _given_constraints(request: pb.RouteRequest) -> Constraints | None:
    return _constraints(request.constraints) if request.HasField("constraints") else None


def wire_weights(weights: tuple[float, float, float]) -> pb.Weights:
    """The scorer's (latency, cost, quality) weights as the wire has them."""
    latency, cost, quality = weights
    return pb.Weights(latency=latency, cost=cost, quality=quality)


def wire_normalisation(bounds: tuple[float, float, float, float]) -> pb.Normalisation:
    """The scorer's (latency min, latency max, cost floor, cost max) as the wire has them."""
    latency_min, latency_max, cost_floor, cost_max = bounds
    return pb.Normalisation(
        latency_min_seconds=latency_min,
        latency_max_seconds=latency_max,
        cost_floor_usd=cost_floor,
        cost_max_usd=cost_max,
    )


class ModelRouter:
    """Ranks the catalogue for each request under the configured modes and defaults."""

    def __init__(self, catalogue: Catalogue, settings: Settings) -> None:
        self._settings = settings
        self._catalogue = catalogue
        self._by_id = {m.id: m for m in catalogue.models}
        self._scorer = catalogue.scorer()
        self._latency_sources: dict[str, str] = {}
        self._epoch = LiveEpoch(settings.decision_cache_live_shift)
        self._free_available = True
        self.set_free_available(True)

    @property
    def decision_state(self) -> tuple[str, bool, int]:
        """What, beside the request, a decision depends on: the catalogue's version, whether
        free variants are routed to, and the live figures' fingerprint (see `LiveEpoch`)."""
        return (self._catalogue.version, self._free_available, self._epoch.fingerprint)

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    def replace_catalogue(self, catalogue: Catalogue) -> None:
        """Serve `catalogue` from now on; live stats of models that remain are kept."""
        self._scorer.replace_catalogue(catalogue.version, [m.spec() for m in catalogue.models])
        self._catalogue = catalogue
        self._by_id = {m.id: m for m in catalogue.models}
        self._latency_sources = {k: v for k, v in self._latency_sources.items() if k in self._by_id}
        self._epoch.keep(self._by_id)

    def model(self, model_id: str) -> ModelRecord | None:
        """The catalogue's record of a model, if it lists it."""
        return self._by_id.get(model_id)

    def update_live_stats(self, stats: Sequence[tuple[LiveStats, str | None]]) -> None:
        """Apply live figures, all at once; models no longer in the catalogue are skipped.
        Each entry replaces the model's figures; beside it, where its latency figures come
        from (None: the catalogue's own source)."""
        known = [(figures, source) for figures, source in stats if figures.id in self._by_id]
        self._scorer.update_stats([figures for figures, _ in known])
        self._epoch.update(known)
        for figures, source in known:
            if source is None:
                self._latency_sources.pop(figures.id, None)
            else:
                self._latency_sources[figures.id] = source

    def latency_source(self, model_id: str) -> str:
        """Where the model's latency figures come from now: "learned", "openrouter-endpoints",
        "calibrated:<catalogue source>", or the catalogue's own source."""
        source = self._latency_sources.get(model_id)
        if source is not None:
            return source
        record = self._by_id.get(model_id)
        return record.latency_source if record is not None else ""

    def set_free_available(self, available: bool) -> None:
        """Route to free variants, or to none of them while their allowance is spent; never
        while the settings turn them off."""
        self._free_available = available and self._settings.free_models
        self._scorer.set_free_available(self._free_available)

    def eligibility(self) -> tuple[int, int, dict[str, int]]:
        """(models, routable, {rule: models it keeps out}) for a plain chat route."""
        models, routable, excluded = self._scorer.eligibility()
        return models, routable, dict(excluded)

    def top_models(self, mode: str, count: int) -> list[str]:
        """The ids of the best `count` models of a named mode for the default request."""
        ranking = self._scorer.rank(
            MODE_WEIGHTS[mode],
            prompt_tokens=self._settings.default_prompt_tokens,
            output_tokens=self._settings.default_output_tokens,
            top_k=max(count, 1),
        )
        return [c.model_id for c in ranking.candidates][:count]

    @property
    def custom_modes(self) -> dict[str, tuple[float, float, float]]:
        """The configured named modes and their (latency, cost, quality) weights."""
        return {name: weights.as_tuple() for name, weights in self._settings.custom_modes.items()}

    def weights(self, request: pb.RouteRequest) -> tuple[float, float, float]:
        """The (latency, cost, quality) weights the request asks for, before scaling."""
        policy = request.WhichOneof("policy")
        if policy == "weights":
            w = request.weights
            return (w.latency, w.cost, w.quality)
        if policy == "custom_mode":
            custom = self._settings.custom_modes.get(request.custom_mode)
            if custom is None:
                known = ", ".join(sorted(self._settings.custom_modes)) or "none are configured"
                raise InvalidRequest(f"unknown custom mode {shown(request.custom_mode)} ({known})")
            return custom.as_tuple()
        if policy == "mode" and request.mode != pb.MODE_UNSPECIFIED:
            name = MODE_NAMES.get(request.mode)
            if name is None:
                raise InvalidRequest(f"unknown mode {request.mode}")
            return MODE_WEIGHTS[name]
        return MODE_WEIGHTS[self._settings.default_mode]

    def profile(self, request: pb.RouteRequest) -> pb.RequestProfile:
        given = request.profile
        return pb.RequestProfile(
            prompt_tokens=given.prompt_tokens or self._settings.default_prompt_tokens,
            output_tokens=given.output_tokens or self._settings.default_output_tokens,
        )

    def rank(
        self,
        request: pb.RouteRequest,
        *,
        top_k: int | None = None,
        profile: pb.RequestProfile | None = None,
    ) -> tuple[Ranking, pb.RequestProfile]:
        """The best `top_k` models for `request` (default: the request's `top_k`), for
        `profile` (default: the request's)."""
        profile = profile or self.profile(request)
        ranking = self._scorer.rank(
            self.weights(request),
            prompt_tokens=profile.prompt_tokens,
            output_tokens=profile.output_tokens,
            top_k=top_k or request.top_k or self._settings.default_top_k,
            constraints=_given_constraints(request),
        )
        return ranking, profile

    def explain_ranking(
        self, request: pb.RouteRequest, model_id: str
    ) -> tuple[Explanation, pb.RequestProfile]:
        """Where `model_id` stands in the whole ranking for `request`, beside the winner."""
        profile = self.profile(request)
        explanation = self._scorer.explain(
            self.weights(request),
            model_id,
            prompt_tokens=profile.prompt_tokens,
            output_tokens=profile.output_tokens,
            constraints=_given_constraints(request),
        )
        return explanation, profile

    def candidate(self, c: Candidate) -> dict[str, Any]:
        """The fields of a ranked model's `pb.Candidate`, with where its figures come from."""
        return {
            "model": c.model_id,
            "score": c.score,
            "terms": pb.ScoreTerms(
                latency=c.latency_term, cost=c.cost_term, quality=c.quality_term
            ),
            "expected_cost_usd": c.expected_cost_usd,
            "expected_latency_seconds": c.expected_latency_s,
            "quality_estimated": c.quality_estimated,
            "latency_estimated": c.latency_estimated,
            "quality_source": self._by_id[c.model_id].quality_source,
            "latency_source": self.latency_source(c.model_id),
            "ttft_seconds": c.ttft_s,
            "tokens_per_second": c.tokens_per_s,
        }

    def named(self, request: pb.RouteRequest, models: list[str]) -> pb.RouteResponse:
        """The caller's own decision: `models` as the candidates, in their order, unranked."""
        return pb.RouteResponse(
            model=models[0],
            candidates=[pb.Candidate(model=m) for m in models],
            decision_id=secrets.token_hex(16),
            catalogue_version=self._catalogue.version,
            profile=self.profile(request),
        )

    def route(
        self,
        request: pb.RouteRequest,
        mode: str | None = None,
        profile: pb.RequestProfile | None = None,
    ) -> pb.RouteResponse:
        """The decision for `request` (for `profile`, by default the request's), counted in the
        metrics under `mode` (by default the request's own, see `mode_label`)."""
        started = time.perf_counter_ns()
        ranking, profile = self.rank(request, profile=profile)
        elapsed = time.perf_counter_ns() - started
        DECISIONS.record(mode or mode_label(request), ranking.best, elapsed)
        response = pb.RouteResponse(
            model=ranking.best, decision_id=secrets.token_hex(16), **made_with(ranking, profile)
        )
        for c in ranking.candidates:
            response.candidates.add(**self.candidate(c))
        return response


def made_with(ranking: Ranking, profile: pb.RequestProfile) -> dict[str, Any]:
    """What a ranking was made with, as the fields of the answers that carry one."""
    return {
        "catalogue_version": ranking.catalogue_version,
        "weights": wire_weights(ranking.weights),
        "eligible_models": ranking.eligible,
        "removed_by_constraint": ranking.removed,
        "profile": profile,
        "normalisation": wire_normalisation(ranking.normalisation),
    }


def per_mtok(price_per_token: float) -> float:
    """USD per million tokens; a dynamic price stays -1."""
    return price_per_token * 1e6 if price_per_token >= 0 else -1.0
