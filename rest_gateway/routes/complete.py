from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Request, Response

from rest_gateway.deps import BackendDep, decision_headers, json_response
from rest_gateway.proto_models import response_model, to_json
from rest_gateway.schemas import CompleteBody, ErrorBody
from rest_gateway.sse import EventStream
from service.pb.router.v1 import router_pb2 as pb

router = APIRouter(tags=["completion"])


class CompleteEvents:
    """Each chunk as one event in its JSON form; the summary is the last."""

    end = b""

    def render(self, chunk: pb.CompleteChunk) -> Iterable[object]:
        return (to_json(chunk),)


@router.post(
    "/complete",
    response_model=response_model(pb.CompleteResponse.DESCRIPTOR),
    responses={
        200: {"content": {"text/event-stream": {}}},
        400: {"model": ErrorBody},
        404: {"model": ErrorBody},
        422: {"model": ErrorBody},
        429: {"model": ErrorBody},
        502: {"model": ErrorBody},
        503: {"model": ErrorBody},
        504: {"model": ErrorBody},
    },
)
async def complete(body: CompleteBody, request: Request, backend: BackendDep) -> Response:
    """Route the request, call the chosen model and fail over down the ranking on failure;
    `models` names the models to try instead, in order (404 when one is not in the catalogue).

    The answer lists every attempt; its headers name the model that answered
    (`x-router-model`), the routing decision (`x-router-decision-id`), the number of
    attempts (`x-router-attempts`) and whether the answer came from the response cache
    (`x-router-cache: hit|miss`; `cache` asks for it). 503 when every candidate failed (each
    cause is named), 429 when the daily spend limit is reached, 502 when OpenRouter refuses
    the router's own key, 504 past the deadline.

    With `"stream": true` the answer is Server-Sent Events, one per chunk in its JSON form: the
    text as it comes (`delta`), then the `summary`; the first carries `head` (who answers) and
    the headers are sent with it. A failure before it is an error answer as above; after it,
    the last event is `{"error": {...}}` in place of the summary.
    """
    message = body.to_complete_pb()
    if body.stream:
        return EventStream(request, backend.stream(message, None), CompleteEvents())
    answer = await backend.complete(message, None)
    headers = decision_headers(
        answer.model, answer.decision_id, len(answer.attempts), cached=answer.cached
    )
    return json_response(answer, headers=headers)
