from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from rest_gateway.deps import Stub
from rest_gateway.schemas import UINT32_MAX, ModelList, as_json
from service.pb.router.v1 import router_pb2 as pb

router = APIRouter(tags=["catalogue"])


@router.get("/models", response_model=ModelList)
async def list_models(
    stub: Stub,
    query: Annotated[str, Query(description="substring of the id or name")] = "",
    author: Annotated[str, Query(description="exact author, e.g. openai")] = "",
    limit: Annotated[int, Query(ge=0, le=10_000, description="0: all")] = 0,
    offset: Annotated[int, Query(ge=0, le=UINT32_MAX)] = 0,
) -> ModelList:
    """The catalogue the router ranks, with the quality and latency figures it uses."""
    request = pb.ListModelsRequest(query=query, author=author, limit=limit, offset=offset)
    return ModelList.model_validate(as_json(await stub.ListModels(request)))
