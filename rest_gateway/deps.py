"""Shared dependencies of the routes, and how they answer."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request, Response
from google.protobuf.message import Message

from rest_gateway.backend import Backend
from rest_gateway.proto_models import to_json


async def _backend(request: Request) -> Backend:
    # async: FastAPI would run a plain function in a worker thread, on every request.
    backend: Backend = request.app.state.backend
    return backend


BackendDep = Annotated[Backend, Depends(_backend)]


def json_response(content: Message | dict[str, Any], status_code: int = 200) -> Response:
    """A message in its REST JSON form (or a body already in it), without revalidation."""
    body = to_json(content) if isinstance(content, Message) else content
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")
