from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from rest_gateway.deps import BackendDep, json_response
from rest_gateway.models_query import ModelsQuery
from rest_gateway.proto_models import response_model
from rest_gateway.schemas import ErrorBody
from service.pb.router.v1 import router_pb2 as pb

router = APIRouter(tags=["catalogue"])


@router.get(
    "/models",
    response_model=response_model(pb.ListModelsResponse.DESCRIPTOR),
    responses={400: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def list_models(backend: BackendDep, params: Annotated[ModelsQuery, Query()]) -> Response:
    """The catalogue the router ranks, with the quality and latency figures it uses.

    With a mode, custom mode or weights, a profile, or constraints, the catalogue ranked for
    that request: the models it may use, best first, each with its `rank` in the whole ranking
    and its scores term by term (`candidate`), and what the ranking was made with (`weights`,
    `eligible_models`, `removed_by_constraint`, `profile`, `normalisation`). `query`, `author`,
    `limit` and `offset` then apply to the ranking, and `total` counts the eligible models that
    match. 400 and 422 as for `/route`.
    """
    return json_response(await backend.list_models(params.to_pb()))
