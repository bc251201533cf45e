"""Why a model ranked where it did for a request: its terms against the winner's, with the
figures behind each term and where they come from, and a summary a person can read."""

from __future__ import annotations

from collections.abc import Iterable

from service.catalogue import ModelRecord
from service.errors import shown
from service.pb.router.v1 import router_pb2 as pb
from service.router import ModelRouter, per_mtok, wire_normalisation, wire_weights
from service.scorer import Candidate, InvalidRequest
from service.vocabulary import MODALITY_NAMES

# What each constraint means, completed from the request and the model's record.
CONSTRAINT_MEANINGS = {
    "dynamic_price": "it is priced per request, not per token, so its cost cannot be estimated",
    "not_realtime": "it answers in batches, not while the caller waits",
    "circuit_open": "its recent calls failed, so the router rests it for now",
    "free_quota": "free variants are not routed to now: their shared allowance is used up, or"
    " the router's settings turn them off (free_models)",
    "output_modalities": "it produces {outputs}, and this request asks for {wanted_outputs}",
    "meta_router": "it is a router itself, passing the request on to a model of its choosing;"
    " name it in allow_models to use it",
    "guard_model": "it is a safety classifier, not a chat model; name it in allow_models to use it",
    "context_window": "its context window ({context:,} tokens) is smaller than the {needed:,}"
    " this request needs (prompt + output tokens, or min_context_tokens if more)",
    "input_modalities": "it does not accept every input this request has ({wanted_inputs});"
    " it accepts {inputs}",
    "required_parameters": "it does not support every required parameter ({wanted_parameters})",
    "allow_models": "it is not among allow_models ({allow_models})",
    "deny_models": "it is among deny_models ({deny_models})",
    "allow_providers": "its author {author} is not among allow_providers ({allow_providers})",
    "deny_providers": "its author {author} is among deny_providers",
    "free_only": "it is not free and the request asks for free models only",
    "exclude_free": "it is free and the request excludes free models",
    "max_prompt_price": "its prompt price (${prompt_price:.3f}/M tokens) is above"
    " max_prompt_price_per_mtok ({max_prompt_price:g})",
    "max_completion_price": "its completion price (${completion_price:.3f}/M tokens) is above"
    " max_completion_price_per_mtok ({max_completion_price:g})",
    "max_ttft": "its time to first token is above max_ttft_seconds ({max_ttft:g})",
    "max_request_cost": "its expected cost for this request is above max_request_cost_usd"
    " ({max_request_cost:g})",
}


def explain(router: ModelRouter, request: pb.ExplainRequest) -> pb.ExplainResponse:
    """The request's winner and the model asked about (the winner when none is named)."""
    routing = request.routing
    model_id = request.model or _winner(router, routing)
    record = _record(router, model_id)
    found, profile = router.explain_ranking(routing, model_id)
    weights = wire_weights(found.weights)
    winner = _ranked(router, found.winner, 1, weights)
    if found.subject is None:
        subject = _unranked(record)
    else:
        subject = _ranked(router, found.subject, found.rank, weights)
    response = pb.ExplainResponse(
        winner=winner,
        subject=subject,
        excluded_by=found.excluded_by or "",
        weights=weights,
        normalisation=wire_normalisation(found.normalisation),
        eligible_models=found.eligible,
        catalogue_version=found.catalogue_version,
        profile=profile,
    )
    if found.subject is None:
        response.summary.extend(_exclusion(response, record, routing.constraints))
    else:
        response.summary.extend(_comparison(response))
    return response


def _winner(router: ModelRouter, routing: pb.RouteRequest) -> str:
    top = pb.RouteRequest()
    top.CopyFrom(routing)
    top.top_k = 1
    ranking, _ = router.rank(top)
    return ranking.best


def _record(router: ModelRouter, model_id: str) -> ModelRecord:
    record = router.model(model_id)
    if record is None:
        raise InvalidRequest(f"model {shown(model_id)} is not in the catalogue")
    return record


def _priced(explanation: pb.ModelExplanation, record: ModelRecord) -> pb.ModelExplanation:
    explanation.prompt_price_per_mtok = per_mtok(record.prompt_price)
    explanation.completion_price_per_mtok = per_mtok(record.completion_price)
    explanation.free = record.free
    return explanation


def _ranked(
    router: ModelRouter, c: Candidate, rank: int, weights: pb.Weights
) -> pb.ModelExplanation:
    """A model the request may use, with the figures the scorer used."""
    record = _record(router, c.model_id)
    latency_source = router.latency_source(c.model_id)
    return _priced(
        pb.ModelExplanation(
            model=c.model_id,
            rank=rank,
            score=c.score,
            terms=pb.ScoreTerms(latency=c.latency_term, cost=c.cost_term, quality=c.quality_term),
            contributions=pb.ScoreTerms(
                latency=weights.latency * c.latency_term,
                cost=weights.cost * c.cost_term,
                quality=weights.quality * c.quality_term,
            ),
            expected_cost_usd=c.expected_cost_usd,
            expected_latency_seconds=c.expected_latency_s,
            ttft_seconds=pb.Figure(
                value=c.ttft_s, source=latency_source, estimated=c.latency_estimated
            ),
            tokens_per_second=pb.Figure(
                value=c.tokens_per_s, source=latency_source, estimated=c.latency_estimated
            ),
            quality=pb.Figure(
                value=c.quality_term, source=record.quality_source, estimated=c.quality_estimated
            ),
        ),
        record,
    )


def _unranked(record: ModelRecord) -> pb.ModelExplanation:
    """A model a constraint removed: not scored, so its figures are the catalogue's."""
    return _priced(
        pb.ModelExplanation(
            model=record.id,
            terms=pb.ScoreTerms(),
            contributions=pb.ScoreTerms(),
            ttft_seconds=pb.Figure(
                value=record.ttft_s,
                source=record.latency_source,
                estimated=record.latency_estimated,
            ),
            tokens_per_second=pb.Figure(
                value=record.tokens_per_s,
                source=record.latency_source,
                estimated=record.latency_estimated,
            ),
            quality=pb.Figure(
                value=record.quality,
                source=record.quality_source,
                estimated=record.quality_estimated,
            ),
        ),
        record,
    )


def _estimated(figure: pb.Figure) -> str:
    return " (estimated)" if figure.estimated else ""


def _seconds(m: pb.ModelExplanation) -> str:
    s = m.expected_latency_seconds
    return (f"{s:.1f} s" if s >= 1 else f"{s:.2f} s") + _estimated(m.ttft_seconds)


def _usd(m: pb.ModelExplanation) -> str:
    return "free" if m.expected_cost_usd == 0 else f"${m.expected_cost_usd:.6f}"


def _quality(m: pb.ModelExplanation) -> str:
    return f"{m.quality.value:.3f}" + _estimated(m.quality)


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "\N{MINUS SIGN}")


def _comparison(response: pb.ExplainResponse) -> list[str]:
    """One line per term, then the total: the subject against the winner, or the winner alone."""
    subject, winner, weights = response.subject, response.winner, response.weights
    alone = subject.model == winner.model
    lines = []
    for name, figure in (("latency", _seconds), ("cost", _usd), ("quality", _quality)):
        weight = getattr(weights, name)
        term = getattr(subject.terms, name)
        times = f"\N{MULTIPLICATION SIGN} {weight:.2f}"
        if alone:
            lines.append(
                f"{name}: {figure(subject)} → term {term:.2f}, {times} = {weight * term:.2f}"
            )
        else:
            best = getattr(winner.terms, name)
            lines.append(
                f"{name}: {figure(subject)} vs {figure(winner)} → term {term:.2f} vs {best:.2f},"
                f" {times} = {_signed(weight * (term - best))}"
            )
    ranked = f"ranked {subject.rank} of {response.eligible_models}"
    if alone:
        lines.append(f"{ranked}, score {subject.score:.2f}")
    else:
        lines.append(
            f"{ranked}, {winner.score - subject.score:.2f} behind {winner.model}"
            f" ({subject.score:.2f} vs {winner.score:.2f})"
        )
    return lines


def _names(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values) or "none"


def _exclusion(
    response: pb.ExplainResponse, record: ModelRecord, constraints: pb.Constraints
) -> list[str]:
    """Which constraint removed the subject, what it means, and what won instead."""
    profile = response.profile
    facts = {
        "outputs": _names(record.output_modalities),
        "wanted_outputs": _names([MODALITY_NAMES.get(m, m) for m in constraints.output_modalities])
        if constraints.output_modalities
        else "text only (a chat route)",
        "inputs": _names(record.input_modalities),
        "wanted_inputs": _names([MODALITY_NAMES.get(m, m) for m in constraints.input_modalities]),
        "wanted_parameters": _names(constraints.required_parameters),
        "context": record.context_length,
        "needed": max(
            profile.prompt_tokens + profile.output_tokens, constraints.min_context_tokens
        ),
        "allow_models": _names(constraints.allow_models),
        "deny_models": _names(constraints.deny_models),
        "allow_providers": _names(constraints.allow_providers),
        "author": record.author,
        "prompt_price": response.subject.prompt_price_per_mtok,
        "completion_price": response.subject.completion_price_per_mtok,
        "max_prompt_price": constraints.max_prompt_price_per_mtok,
        "max_completion_price": constraints.max_completion_price_per_mtok,
        "max_ttft": constraints.max_ttft_seconds,
        "max_request_cost": constraints.max_request_cost_usd,
    }
    name = response.excluded_by
    meaning = CONSTRAINT_MEANINGS.get(name, "the request's constraints rule it out")
    winner = response.winner
    return [
        f"excluded by {name}: {meaning.format_map(facts)}",
        f"not ranked; {winner.model} wins among {response.eligible_models} eligible models"
        f" with score {winner.score:.2f}",
    ]
