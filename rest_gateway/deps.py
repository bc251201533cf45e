"""Shared dependencies of the routes, and how they answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request, Response
from google.protobuf.message import Message

from rest_gateway.backend import Backend
from rest_gateway.proto_models import to_json


async def _backend(request: Request) -> Backend:
    # async: FastAPI would run a plain function in anyio's worker threads (up to 40), on every
    # request; as a plain function it takes router serve from 12 threads to 43 after a burst of
    # REST calls (tests/test_gateway_threads.py).
    backend: Backend = request.app.state.backend
    return backend


BackendDep = Annotated[Backend, Depends(_backend)]


def json_response(
    content: Message | dict[str, Any],
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A message in its REST JSON form (or a body already in it), without revalidation."""
    body = to_json(content) if isinstance(content, Message) else content
    return Response(
        orjson.dumps(body), status_code=status_code, headers=headers, media_type="application/json"
    )


def _header_value(text: str) -> str:
    """Printable ASCII only: a model id comes from upstream, and must not break the headers."""
    return "".join(c for c in text if " " <= c <= "~")


def decision_headers(
    model: str, decision_id: str, attempts: int, *, cached: bool
) -> dict[str, str]:
    """Which model answered a completion, after how many attempts, for which routing decision,
    and whether the answer came from the response cache."""
    return {
        "x-router-model": _header_value(model),
        "x-router-decision-id": decision_id,
        "x-router-attempts": str(attempts),
        "x-router-cache": "hit" if cached else "miss",
    }
