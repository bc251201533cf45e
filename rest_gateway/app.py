"""The FastAPI application: one gRPC channel to the router, opened and closed with the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from fastapi import FastAPI

from rest_gateway import errors
from rest_gateway.routes import admin, complete, explain, health, metrics, models, route
from service.pb.router.v1.router_pb2_grpc import RouterStub


def create_app(grpc_target: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with grpc.aio.insecure_channel(grpc_target) as channel:
            app.state.channel = channel
            app.state.stub = RouterStub(channel)
            yield

    app = FastAPI(
        title="Model router",
        summary="Picks the best OpenRouter model for each request, by speed, cost or quality.",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (route, explain, complete, models, health, metrics, admin):
        app.include_router(module.router)
    return app
