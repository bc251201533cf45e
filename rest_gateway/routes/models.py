from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from rest_gateway.deps import BackendDep, json_response
from rest_gateway.proto_models import response_model
from rest_gateway.schemas import UINT32_MAX
from service.pb.router.v1 import router_pb2 as pb

router = APIRouter(tags=["catalogue"])


@router.get("/models", response_model=response_model(pb.ListModelsResponse.DESCRIPTOR))
async def list_models(
    backend: BackendDep,
    query: Annotated[str, Query(description="substring of the id or name")] = "",
    author: Annotated[str, Query(description="exact author, e.g. openai")] = "",
    limit: Annotated[int, Query(ge=0, le=10_000, description="0: all")] = 0,
    offset: Annotated[int, Query(ge=0, le=UINT32_MAX)] = 0,
) -> Response:
    """The catalogue the router ranks, with the quality and latency figures it uses."""
    request = pb.ListModelsRequest(query=query, author=author, limit=limit, offset=offset)
    return json_response(await backend.list_models(request))
