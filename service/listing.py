"""The catalogue as ListModels shows it: filtered by id, name or author and paged; ranked for a
request when the listing asks for one, each model with its place and its scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from service.catalogue import ModelRecord
from service.pb.router.v1 import router_pb2 as pb
from service.router import ModelRouter, made_with, per_mtok

T = TypeVar("T")


def list_models(router: ModelRouter, request: pb.ListModelsRequest) -> pb.ListModelsResponse:
    if request.HasField("ranking"):
        return _ranked(router, request)
    catalogue = router.catalogue
    matching = [m for m in catalogue.models if _matches(request, m)]
    response = pb.ListModelsResponse(total=len(matching), catalogue_version=catalogue.version)
    for m in _page(request, matching):
        response.models.add(**model_fields(m))
    return response


def _ranked(router: ModelRouter, request: pb.ListModelsRequest) -> pb.ListModelsResponse:
    """Every model the ranking request may use, best first; the filters and the page apply to
    the ranking, so a model keeps its place in the whole of it."""
    ranking, profile = router.rank(request.ranking, top_k=len(router.catalogue.models))
    records = {m.id: m for m in router.catalogue.models}
    matching = [
        (place, c)
        for place, c in enumerate(ranking.candidates, start=1)
        if _matches(request, records[c.model_id])
    ]
    response = pb.ListModelsResponse(total=len(matching), **made_with(ranking, profile))
    for place, c in _page(request, matching):
        response.models.add(
            rank=place, candidate=router.candidate(c), **model_fields(records[c.model_id])
        )
    return response


def _matches(request: pb.ListModelsRequest, m: ModelRecord) -> bool:
    query = request.query.lower()
    return (not request.author or m.author == request.author) and (
        query in m.id.lower() or query in m.name.lower()
    )


def _page(request: pb.ListModelsRequest, items: Sequence[T]) -> Sequence[T]:
    end = request.offset + request.limit if request.limit else None
    return items[request.offset : end]


def model_fields(m: ModelRecord) -> dict[str, Any]:
    """The fields of the model's `pb.ModelInfo`."""
    return {
        "id": m.id,
        "name": m.name,
        "author": m.author,
        "context_length": m.context_length,
        "max_output_tokens": m.max_output_tokens,
        "prompt_price_per_mtok": per_mtok(m.prompt_price),
        "completion_price_per_mtok": per_mtok(m.completion_price),
        "input_modalities": m.input_modalities,
        "output_modalities": m.output_modalities,
        "supported_parameters": m.supported_parameters,
        "quality": m.quality,
        "quality_estimated": m.quality_estimated,
        "ttft_seconds": m.ttft_s,
        "tokens_per_second": m.tokens_per_s,
        "latency_estimated": m.latency_estimated,
        "created": m.created,
    }
