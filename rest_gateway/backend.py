"""What the gateway serves from: the router's core in this process, or a router over gRPC.

Both answer with the same messages and raise the same `RouterError`s, so the REST API behaves
the same either way.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Awaitable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rest_gateway.caller_keys import caller_key
from service.core import RouterCore
from service.errors import ErrorKind, RouterError
from service.grpc_server import ERROR_KIND_KEY, RETRY_AFTER_KEY
from service.pb.router.v1 import router_pb2 as pb

if TYPE_CHECKING:
    from service.pb.router.v1.router_pb2_grpc import RouterAsyncStub
else:
    from service.pb.router.v1.router_pb2_grpc import RouterStub as RouterAsyncStub

R = TypeVar("R")
CHECK_TIMEOUT_S = 2.0
# What a remote router's status means when its answer carries no error kind (an older router,
# or a failure in gRPC itself rather than in the router).
KIND_OF_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: ErrorKind.INVALID_REQUEST,
    grpc.StatusCode.FAILED_PRECONDITION: ErrorKind.UNSATISFIABLE,
    grpc.StatusCode.NOT_FOUND: ErrorKind.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: ErrorKind.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: ErrorKind.MODERATION,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ErrorKind.SPEND_LIMIT,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorKind.DEADLINE,
}
KINDS = {kind.value: kind for kind in ErrorKind}


class Backend(Protocol):
    async def route(self, request: pb.RouteRequest) -> pb.RouteResponse: ...
    async def explain(self, request: pb.ExplainRequest) -> pb.ExplainResponse: ...
    async def list_models(self, request: pb.ListModelsRequest) -> pb.ListModelsResponse: ...
    async def get_decision(self, request: pb.GetDecisionRequest) -> pb.DecisionRecord: ...
    async def status(self) -> pb.RouterStatus: ...
    async def serving(self) -> bool: ...
    async def refresh(self) -> pb.RefreshCatalogueResponse: ...
    async def complete(
        self, request: pb.CompleteRequest, timeout_s: float | None
    ) -> pb.CompleteResponse: ...
    def stream(
        self, request: pb.CompleteRequest, timeout_s: float | None
    ) -> AsyncGenerator[pb.CompleteChunk]: ...
    async def aclose(self) -> None: ...


class LocalBackend:
    """The core of the router this process runs: no serialisation, no network."""

    def __init__(self, core: RouterCore) -> None:
        self._core = core

    @property
    def core(self) -> RouterCore:
        return self._core

    async def route(self, request: pb.RouteRequest) -> pb.RouteResponse:
        return await self._core.route(request)

    async def explain(self, request: pb.ExplainRequest) -> pb.ExplainResponse:
        return self._core.explain(request)

    async def list_models(self, request: pb.ListModelsRequest) -> pb.ListModelsResponse:
        return self._core.list_models(request)

    async def get_decision(self, request: pb.GetDecisionRequest) -> pb.DecisionRecord:
        return await self._core.get_decision(request)

    async def status(self) -> pb.RouterStatus:
        return await self._core.status()

    async def serving(self) -> bool:
        return self._core.serving

    async def refresh(self) -> pb.RefreshCatalogueResponse:
        return await self._core.refresh()

    async def complete(
        self, request: pb.CompleteRequest, timeout_s: float | None
    ) -> pb.CompleteResponse:
        return await self._core.complete(request, timeout_s)

    def stream(
        self, request: pb.CompleteRequest, timeout_s: float | None
    ) -> AsyncGenerator[pb.CompleteChunk]:
        return self._core.stream(request, timeout_s)

    async def aclose(self) -> None:
        """The core belongs to whoever built it."""


def _router_error(exc: grpc.aio.AioRpcError, target: str) -> RouterError:
    # grpc.aio's metadata iterates as (key, value) pairs, whatever its stubs say.
    trailers = dict(cast(Any, exc.trailing_metadata()) or ())
    kind_name = trailers.get(ERROR_KIND_KEY)
    if isinstance(kind_name, str) and kind_name in KINDS:
        return RouterError(
            KINDS[kind_name], exc.details() or kind_name, retry_after_s=_seconds(trailers)
        )
    kind = KIND_OF_STATUS.get(exc.code(), ErrorKind.UNAVAILABLE)
    details = exc.details() or exc.code().name
    if kind is ErrorKind.UNAVAILABLE:
        details = f"the router at {target} did not answer: {exc.code().name}: {details}"
    return RouterError(kind, details)


def _seconds(trailers: dict[str, Any]) -> float | None:
    try:
        seconds = float(trailers[RETRY_AFTER_KEY])
    except (KeyError, TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _forwarded_key() -> tuple[tuple[str, str], ...]:
    """The caller's key, for a router that checks keys itself."""
    key = caller_key.get()
    return () if key is None else (("authorization", f"Bearer {key}"),)


class RemoteBackend:
    """A router over gRPC, through one channel for the gateway's lifetime; each call carries
    the key its caller sent."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._channel = grpc.aio.insecure_channel(target)
        self._stub: RouterAsyncStub = RouterAsyncStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def _answer(self, call: Awaitable[R]) -> R:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise _router_error(exc, self._target) from None

    async def route(self, request: pb.RouteRequest) -> pb.RouteResponse:
        return await self._answer(self._stub.Route(request, metadata=_forwarded_key()))

    async def explain(self, request: pb.ExplainRequest) -> pb.ExplainResponse:
        return await self._answer(self._stub.Explain(request, metadata=_forwarded_key()))

    async def list_models(self, request: pb.ListModelsRequest) -> pb.ListModelsResponse:
        return await self._answer(self._stub.ListModels(request, metadata=_forwarded_key()))

    async def get_decision(self, request: pb.GetDecisionRequest) -> pb.DecisionRecord:
        return await self._answer(self._stub.GetDecision(request, metadata=_forwarded_key()))

    async def status(self) -> pb.RouterStatus:
        return await self._answer(
            self._stub.GetStatus(
                pb.GetStatusRequest(), timeout=CHECK_TIMEOUT_S, metadata=_forwarded_key()
            )
        )

    async def serving(self) -> bool:
        check = self._health.Check(health_pb2.HealthCheckRequest(), timeout=CHECK_TIMEOUT_S)
        reply = await self._answer(check)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def refresh(self) -> pb.RefreshCatalogueResponse:
        return await self._answer(
            self._stub.RefreshCatalogue(pb.RefreshCatalogueRequest(), metadata=_forwarded_key())
        )

    async def complete(
        self, request: pb.CompleteRequest, timeout_s: float | None
    ) -> pb.CompleteResponse:
        return await self._answer(
            self._stub.Complete(request, timeout=timeout_s, metadata=_forwarded_key())
        )

    async def stream(
        self, request: pb.CompleteRequest, timeout_s: float | None
    ) -> AsyncGenerator[pb.CompleteChunk]:
        call = self._stub.StreamComplete(request, timeout=timeout_s, metadata=_forwarded_key())
        try:
            async for chunk in call:
                yield chunk
        except grpc.aio.AioRpcError as exc:
            raise _router_error(exc, self._target) from None
        finally:
            call.cancel()

    async def aclose(self) -> None:
        await self._channel.close(None)
