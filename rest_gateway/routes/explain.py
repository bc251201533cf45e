from __future__ import annotations

from fastapi import APIRouter

from rest_gateway.deps import Stub
from rest_gateway.schemas import ErrorBody, ExplainBody, ExplainResult, as_json

router = APIRouter(tags=["routing"])


@router.post(
    "/explain",
    response_model=ExplainResult,
    responses={400: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def explain(body: ExplainBody, stub: Stub) -> ExplainResult:
    """Why `model` ranks where it does for this request: its score term by term against the
    winner's, the figures behind each term and their sources, and a summary in plain lines.
    Without `model`, the winner alone. A model a constraint removed has rank 0 and
    `excluded_by` names the constraint.

    400: an unknown model, or the request is invalid as for `/route`. 422: the body does not
    parse, or no model satisfies the constraints.
    """
    return ExplainResult.model_validate(as_json(await stub.Explain(body.to_explain_pb())))
