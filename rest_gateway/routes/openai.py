from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from rest_gateway import openai_compat
from rest_gateway.deps import BackendDep, decision_headers, json_response
from rest_gateway.openai_compat import ChatCompletionBody, ChatCompletionChunks
from rest_gateway.sse import EventStream
from service.pb.router.v1 import router_pb2 as pb

router = APIRouter(prefix="/v1", tags=["openai"])
SESSION_HEADER = "x-router-session"


@router.post("/chat/completions")
async def chat_completions(
    body: ChatCompletionBody,
    request: Request,
    backend: BackendDep,
    x_router_cache: Annotated[str | None, Header()] = None,
) -> Response:
    """OpenAI's chat completions. `model` is the routing choice: `router/<mode>` (speed, cost,
    quality, balanced, or a custom mode), `router` (the policy in `router`, else the default
    mode), or a catalogue model id, called as named and failing over only to the ids of
    `models`. `router` takes the fields of `/route`. Other parameters reach the model as
    OpenAI's API defines them; fields it does not define are passed on unchanged.

    The headers name the model that answered (`x-router-model`), the routing decision
    (`x-router-decision-id`), the number of attempts (`x-router-attempts`) and whether the
    answer came from the response cache (`x-router-cache: hit|miss`); a stream sends them
    with its first chunk. `x-router-cache: true|false|force` on the request, or the `cache`
    field, asks for the response cache. A sticky session's key is `router.session`, else the
    `x-router-session` header, else `user`: its turns keep the model the first one was routed
    to while it is eligible. Errors are in OpenAI's shape; one after a stream has begun is
    its last event, without `[DONE]`.
    """
    message = body.to_complete_pb(x_router_cache, request.headers.get(SESSION_HEADER))
    created = int(time.time())
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        chunks = ChatCompletionChunks(created, include_usage)
        return EventStream(request, backend.stream(message, None), chunks)
    answer = await backend.complete(message, None)
    headers = decision_headers(
        answer.model, answer.decision_id, len(answer.attempts), cached=answer.cached
    )
    return json_response(openai_compat.completion(answer, created), headers=headers)


@router.get("/models")
async def models(backend: BackendDep) -> Response:
    """The routing choices (`router/<mode>`, custom modes included), then every catalogue
    model, in OpenAI's list shape."""
    status, listing = await asyncio.gather(
        backend.status(), backend.list_models(pb.ListModelsRequest())
    )
    return json_response(openai_compat.model_list(status.custom_modes, list(listing.models)))
