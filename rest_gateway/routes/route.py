from __future__ import annotations

from fastapi import APIRouter

from rest_gateway.deps import Stub
from rest_gateway.schemas import ErrorBody, RouteBody, RouteResult, as_json

router = APIRouter(tags=["routing"])


@router.post(
    "/route",
    response_model=RouteResult,
    responses={400: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def route(body: RouteBody, stub: Stub) -> RouteResult:
    """Rank the catalogue for one request and return the best model with its runners-up.

    400: the request is well-formed but invalid (e.g. negative or all-zero weights, unknown
    custom mode). 422: the body does not parse, or no model satisfies the constraints.
    """
    return RouteResult.model_validate(as_json(await stub.Route(body.to_pb())))
