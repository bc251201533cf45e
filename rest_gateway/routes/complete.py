from __future__ import annotations

from fastapi import APIRouter, Response

from rest_gateway.deps import BackendDep, json_response
from rest_gateway.proto_models import response_model
from rest_gateway.schemas import CompleteBody, ErrorBody
from service.pb.router.v1 import router_pb2 as pb

router = APIRouter(tags=["completion"])


@router.post(
    "/complete",
    response_model=response_model(pb.CompleteResponse.DESCRIPTOR),
    responses={
        400: {"model": ErrorBody},
        422: {"model": ErrorBody},
        429: {"model": ErrorBody},
        502: {"model": ErrorBody},
        503: {"model": ErrorBody},
        504: {"model": ErrorBody},
    },
)
async def complete(body: CompleteBody, backend: BackendDep) -> Response:
    """Route the request, call the chosen model and fail over down the ranking on failure.

    The answer lists every attempt. 503 when every candidate failed (each cause is named), 429
    when the daily spend limit is reached, 502 when OpenRouter refuses the router's own key,
    504 past the deadline.
    """
    return json_response(await backend.complete(body.to_complete_pb(), None))
