from __future__ import annotations

from fastapi import APIRouter, Response

from rest_gateway.deps import BackendDep, json_response
from rest_gateway.proto_models import response_model
from rest_gateway.schemas import ErrorBody, RouteBody
from service.pb.router.v1 import router_pb2 as pb

router = APIRouter(tags=["routing"])


@router.post(
    "/route",
    response_model=response_model(pb.RouteResponse.DESCRIPTOR),
    responses={400: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def route(body: RouteBody, backend: BackendDep) -> Response:
    """Rank the catalogue for one request and return the best model with its runners-up.

    400: the body is malformed or invalid (e.g. negative or all-zero weights, unknown custom
    mode). 422: no model satisfies the constraints.
    """
    return json_response(await backend.route(body.to_pb()))
