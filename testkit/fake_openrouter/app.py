"""The ASGI application: the OpenRouter routes the router calls, under `/api/v1`, behind the
request recorder; any other path answers OpenRouter's 404."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from .accounts import AccountsApi
from .catalogue_api import CatalogueApi
from .chat import ChatApi
from .errors import error
from .state import FakeState
from .wire import Recorder


async def _http_exception(_: Request, exc: Exception) -> Response:
    """Unknown paths (and wrong methods) answer in OpenRouter's error envelope."""
    assert isinstance(exc, HTTPException)
    message = "Resource not found" if exc.status_code == 404 else exc.detail
    return error(exc.status_code, message).response()


def create_app(state: FakeState) -> ASGIApp:
    catalogue, chat, accounts = CatalogueApi(state), ChatApi(state), AccountsApi(state)
    routes = [
        Route("/api/v1/models", catalogue.models, methods=["GET"]),
        Route("/api/v1/models/{author}/{slug}/endpoints", catalogue.endpoints, methods=["GET"]),
        Route("/api/v1/chat/completions", chat.completions, methods=["POST"]),
        Route("/api/v1/key", accounts.key, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})
    return Recorder(app, state)
