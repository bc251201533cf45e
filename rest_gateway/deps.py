"""Shared dependencies of the routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

if TYPE_CHECKING:
    from service.pb.router.v1.router_pb2_grpc import RouterAsyncStub
else:
    from service.pb.router.v1.router_pb2_grpc import RouterStub as RouterAsyncStub


def _stub(request: Request) -> RouterAsyncStub:
    stub: RouterAsyncStub = request.app.state.stub
    return stub


Stub = Annotated[RouterAsyncStub, Depends(_stub)]
