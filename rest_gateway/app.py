"""The FastAPI application over a backend: the router's core in process, or one over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from rest_gateway import errors
from rest_gateway.backend import Backend
from rest_gateway.body_limit import BodyLimit
from rest_gateway.caller_keys import CallerKeys
from rest_gateway.concurrency_limit import ConcurrencyLimit
from rest_gateway.routes import (
    admin,
    complete,
    dashboard,
    decisions,
    explain,
    health,
    metrics,
    models,
    openai,
    route,
)
from service.callers import Callers
from service.config import Settings
from service.shedding import Capacity

DEFAULT_MAX_BODY_BYTES = Settings.model_fields["max_body_bytes"].default


def create_app(
    backend: Backend,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    capacity: Capacity,
    callers: Callers | None = None,
) -> FastAPI:
    """The gateway over `backend`; with `callers` that have keys, every path but the health
    check, the API docs and the dashboard's page and script needs one of them. `capacity`
    (shared with a gRPC server beside it) caps the requests in flight."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await backend.aclose()

    app = FastAPI(
        title="Model router",
        summary="Picks the best OpenRouter model for each request, by speed, cost or quality.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.backend = backend
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(ConcurrencyLimit, capacity=capacity)
    # Added last, so it runs first: a caller without a key learns nothing else.
    app.add_middleware(CallerKeys, callers=callers or Callers({}), open_paths=_open_paths(app))
    for module in (
        route,
        explain,
        decisions,
        complete,
        openai,
        models,
        health,
        metrics,
        admin,
        dashboard,
    ):
        app.include_router(module.router)
    return app


def _open_paths(app: FastAPI) -> frozenset[str]:
    docs = (app.docs_url, app.swagger_ui_oauth2_redirect_url, app.redoc_url, app.openapi_url)
    return frozenset({"/health", *dashboard.OPEN_PATHS, *(path for path in docs if path)})
