from __future__ import annotations

from fastapi import APIRouter

from rest_gateway.deps import Stub
from rest_gateway.schemas import CompleteBody, CompleteResult, ErrorBody, as_json

router = APIRouter(tags=["completion"])


@router.post(
    "/complete",
    response_model=CompleteResult,
    responses={
        400: {"model": ErrorBody},
        422: {"model": ErrorBody},
        429: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def complete(body: CompleteBody, stub: Stub) -> CompleteResult:
    """Route the request, call the chosen model and fail over down the ranking on failure.

    The answer lists every attempt. 503 when every candidate failed (each cause is named), 429
    when the daily spend limit or the account's credits are exhausted, 504 past the deadline.
    """
    reply = await stub.Complete(body.to_complete_pb())
    return CompleteResult.model_validate(as_json(reply))
