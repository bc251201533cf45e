from __future__ import annotations

from fastapi import APIRouter, Response

from rest_gateway.deps import BackendDep, json_response
from rest_gateway.proto_models import response_model
from rest_gateway.schemas import ErrorBody
from service.pb.router.v1 import router_pb2 as pb

router = APIRouter(tags=["routing"])


@router.get(
    "/decisions/{decision_id}",
    response_model=response_model(pb.DecisionRecord.DESCRIPTOR),
    responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)
async def get_decision(decision_id: str, backend: BackendDep) -> Response:
    """A recent decision by the `decision_id` its answer carried (from `/route`, `/complete`
    or `/v1/chat/completions`, header `x-router-decision-id`): the request as asked, the
    decision with its candidates and scores, when, on which catalogue, and for a completion its
    attempts and the model that answered. Any replica sharing the router's Redis finds it.

    400: not 32 lowercase hex characters. 404: unknown or expired.
    """
    return json_response(await backend.get_decision(pb.GetDecisionRequest(decision_id=decision_id)))
