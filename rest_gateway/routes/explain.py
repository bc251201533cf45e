from __future__ import annotations

from fastapi import APIRouter, Response

from rest_gateway.deps import BackendDep, json_response
from rest_gateway.proto_models import response_model
from rest_gateway.schemas import ErrorBody, ExplainBody
from service.pb.router.v1 import router_pb2 as pb

router = APIRouter(tags=["routing"])


@router.post(
    "/explain",
    response_model=response_model(pb.ExplainResponse.DESCRIPTOR),
    responses={400: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def explain(body: ExplainBody, backend: BackendDep) -> Response:
    """Why `model` ranks where it does for this request: its score term by term against the
    winner's, the figures behind each term and their sources, and a summary in plain lines.
    Without `model`, the winner alone. A model a constraint removed has rank 0 and
    `excluded_by` names the constraint.

    400: an unknown model, or the request is invalid as for `/route`. 422: no model satisfies
    the constraints.
    """
    return json_response(await backend.explain(body.to_explain_pb()))
