"""Routing decisions: wire requests in, ranked candidates out (for the gRPC server and CLI)."""

from __future__ import annotations

import secrets
from typing import Literal

from service.catalogue import Catalogue, ModelRecord
from service.config import Settings
from service.errors import shown
from service.pb.router.v1 import router_pb2 as pb
from service.scorer import MODE_WEIGHTS, Constraints, Explanation, InvalidRequest, Ranking

MODE_NAMES = {
    pb.MODE_SPEED: "speed",
    pb.MODE_COST: "cost",
    pb.MODE_QUALITY: "quality",
    pb.MODE_BALANCED: "balanced",
}
MODALITY_NAMES = {
    pb.MODALITY_TEXT: "text",
    pb.MODALITY_IMAGE: "image",
    pb.MODALITY_FILE: "file",
    pb.MODALITY_AUDIO: "audio",
    pb.MODALITY_VIDEO: "video",
}
FREE_FILTERS: dict[pb.FreeFilter.ValueType, Literal["any", "only", "exclude"]] = {
    pb.FREE_FILTER_ANY: "any",
    pb.FREE_FILTER_ONLY: "only",
    pb.FREE_FILTER_EXCLUDE: "exclude",
}


def _modality(value: pb.Modality.ValueType, field: str) -> str:
    try:
        return MODALITY_NAMES[value]
    except KeyError:
        raise InvalidRequest(f"constraints.{field}: unknown modality {value}") from None


def _constraints(c: pb.Constraints) -> Constraints:
    if c.free not in FREE_FILTERS:
        raise InvalidRequest(f"constraints.free: unknown value {c.free}")
    return Constraints(
        min_context=c.min_context_tokens,
        input_modalities=[_modality(m, "input_modalities") for m in c.input_modalities],
        output_modalities=[_modality(m, "output_modalities") for m in c.output_modalities],
        required_parameters=list(c.required_parameters),
        max_prompt_price_per_mtok=(
            c.max_prompt_price_per_mtok if c.HasField("max_prompt_price_per_mtok") else None
        ),
        max_completion_price_per_mtok=(
            c.max_completion_price_per_mtok if c.HasField("max_completion_price_per_mtok") else None
        ),
        max_request_cost_usd=c.max_request_cost_usd if c.HasField("max_request_cost_usd") else None,
        max_ttft_s=c.max_ttft_seconds if c.HasField("max_ttft_seconds") else None,
        allow_models=list(c.allow_models),
        deny_models=list(c.deny_models),
        allow_providers=list(c.allow_providers),
        deny_providers=list(c.deny_providers),
        free=FREE_FILTERS[c.free],
    )


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
        self.set_free_available(True)

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    def replace_catalogue(self, catalogue: Catalogue) -> None:
        """Serve `catalogue` from now on; live stats of models that remain are kept."""
        self._scorer.replace_catalogue(catalogue.version, [m.spec() for m in catalogue.models])
        self._catalogue = catalogue
        self._by_id = {m.id: m for m in catalogue.models}
        self._latency_sources = {k: v for k, v in self._latency_sources.items() if k in self._by_id}

    def model(self, model_id: str) -> ModelRecord | None:
        """The catalogue's record of a model, if it lists it."""
        return self._by_id.get(model_id)

    def update_live_stats(self, stats: list[dict[str, object]]) -> None:
        """Apply live figures, all at once; models no longer in the catalogue are skipped.
        Each entry replaces the model's figures; its optional `latency_source` says where
        its latency figures come from."""
        known = [s for s in stats if s["id"] in self._by_id]
        self._scorer.update_stats(known)
        for entry in known:
            model_id, source = str(entry["id"]), entry.get("latency_source")
            if isinstance(source, str):
                self._latency_sources[model_id] = source
            else:
                self._latency_sources.pop(model_id, None)

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
        self._scorer.set_free_available(available and self._settings.free_models)

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

    def rank(self, request: pb.RouteRequest) -> tuple[Ranking, pb.RequestProfile]:
        profile = self.profile(request)
        ranking = self._scorer.rank(
            self.weights(request),
            prompt_tokens=profile.prompt_tokens,
            output_tokens=profile.output_tokens,
            top_k=request.top_k or self._settings.default_top_k,
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

    def route(self, request: pb.RouteRequest) -> pb.RouteResponse:
        ranking, profile = self.rank(request)
        response = pb.RouteResponse(
            model=ranking.best,
            decision_id=secrets.token_hex(16),
            catalogue_version=ranking.catalogue_version,
            weights=wire_weights(ranking.weights),
            eligible_models=ranking.eligible,
            removed_by_constraint=ranking.removed,
            profile=profile,
            normalisation=wire_normalisation(ranking.normalisation),
        )
        for c in ranking.candidates:
            response.candidates.add(
                model=c.model_id,
                score=c.score,
                terms=pb.ScoreTerms(
                    latency=c.latency_term, cost=c.cost_term, quality=c.quality_term
                ),
                expected_cost_usd=c.expected_cost_usd,
                expected_latency_seconds=c.expected_latency_s,
                quality_estimated=c.quality_estimated,
                latency_estimated=c.latency_estimated,
                quality_source=self._by_id[c.model_id].quality_source,
                latency_source=self.latency_source(c.model_id),
                ttft_seconds=c.ttft_s,
                tokens_per_second=c.tokens_per_s,
            )
        return response

    def list_models(self, request: pb.ListModelsRequest) -> pb.ListModelsResponse:
        query = request.query.lower()
        matching = [
            m
            for m in self._catalogue.models
            if (not request.author or m.author == request.author)
            and (query in m.id.lower() or query in m.name.lower())
        ]
        end = request.offset + request.limit if request.limit else None
        return pb.ListModelsResponse(
            models=[_model_info(m) for m in matching[request.offset : end]],
            total=len(matching),
            catalogue_version=self._catalogue.version,
        )


def per_mtok(price_per_token: float) -> float:
    """USD per million tokens; a dynamic price stays -1."""
    return price_per_token * 1e6 if price_per_token >= 0 else -1.0


def _model_info(m: ModelRecord) -> pb.ModelInfo:
    return pb.ModelInfo(
        id=m.id,
        name=m.name,
        author=m.author,
        context_length=m.context_length,
        max_output_tokens=m.max_output_tokens,
        prompt_price_per_mtok=per_mtok(m.prompt_price),
        completion_price_per_mtok=per_mtok(m.completion_price),
        input_modalities=m.input_modalities,
        output_modalities=m.output_modalities,
        supported_parameters=m.supported_parameters,
        quality=m.quality,
        quality_estimated=m.quality_estimated,
        ttft_seconds=m.ttft_s,
        tokens_per_second=m.tokens_per_s,
        latency_estimated=m.latency_estimated,
    )
