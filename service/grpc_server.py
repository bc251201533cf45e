"""The gRPC server: Router service, standard health service and server reflection."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from service.callers import Callers, current_caller, presented_key
from service.config import Settings
from service.core import RouterCore
from service.errors import ErrorKind, RouterError, bounded
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1 import router_pb2_grpc
from service.shedding import Capacity, Load

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["Router"]
SERVICE_NAME = SERVICE.full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Served without a caller key, so that probes and tools work.
OPEN_SERVICES = frozenset({HEALTH_SERVICE_NAME, reflection.SERVICE_NAME})
# Under the cap on completions (see service/shedding.py); every other method, under the cap on
# calls. Health and reflection are other services, under no cap: probes answer under overload.
COMPLETIONS = frozenset({"Complete", "StreamComplete"})
TRANSPORT = "grpc"
# The router's error kind travels in this trailer, so a gateway in front of a remote router
# answers exactly as one beside it.
ERROR_KIND_KEY = "router-error-kind"
# Seconds after which the call may succeed, on errors that say (an upstream outage).
RETRY_AFTER_KEY = "router-retry-after-s"

STATUS = {
    ErrorKind.INVALID_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.UNSATISFIABLE: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.REFUSED_BY_MODEL: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.MODERATION: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.SPEND_LIMIT: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.OUT_OF_CREDITS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.UPSTREAM_AUTH: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.MISCONFIGURED: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.DEADLINE: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[["RouterServicer", Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: RouterError) -> NoReturn:
    trailers = [(ERROR_KIND_KEY, error.kind.value)]
    if error.retry_after_s is not None:
        trailers.append((RETRY_AFTER_KEY, f"{error.retry_after_s:.3f}"))
    context.set_trailing_metadata(tuple(trailers))
    await context.abort(STATUS[error.kind], bounded(error.message))
    raise AssertionError("context.abort returned")


def _unary(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """End the call with the status of the router's error, if one is raised."""

    @functools.wraps(method)
    async def wrapper(
        self: RouterServicer, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        try:
            return await method(self, request, context)
        except RouterError as error:
            await _abort(context, error)

    return wrapper


class RouterServicer(router_pb2_grpc.RouterServicer):
    """The gRPC adapter: each RPC is one call of the core."""

    def __init__(self, core: RouterCore) -> None:
        self._core = core

    @_unary
    async def Route(
        self,
        request: pb.RouteRequest,
        context: grpc.aio.ServicerContext[pb.RouteRequest, pb.RouteResponse],
    ) -> pb.RouteResponse:
        return await self._core.route(request)

    @_unary
    async def Explain(
        self,
        request: pb.ExplainRequest,
        context: grpc.aio.ServicerContext[pb.ExplainRequest, pb.ExplainResponse],
    ) -> pb.ExplainResponse:
        return self._core.explain(request)

    @_unary
    async def GetDecision(
        self,
        request: pb.GetDecisionRequest,
        context: grpc.aio.ServicerContext[pb.GetDecisionRequest, pb.DecisionRecord],
    ) -> pb.DecisionRecord:
        return await self._core.get_decision(request)

    @_unary
    async def ListModels(
        self,
        request: pb.ListModelsRequest,
        context: grpc.aio.ServicerContext[pb.ListModelsRequest, pb.ListModelsResponse],
    ) -> pb.ListModelsResponse:
        return self._core.list_models(request)

    @_unary
    async def GetStatus(
        self,
        request: pb.GetStatusRequest,
        context: grpc.aio.ServicerContext[pb.GetStatusRequest, pb.RouterStatus],
    ) -> pb.RouterStatus:
        return await self._core.status()

    @_unary
    async def RefreshCatalogue(
        self,
        request: pb.RefreshCatalogueRequest,
        context: grpc.aio.ServicerContext[pb.RefreshCatalogueRequest, pb.RefreshCatalogueResponse],
    ) -> pb.RefreshCatalogueResponse:
        return await self._core.refresh()

    @_unary
    async def Complete(
        self,
        request: pb.CompleteRequest,
        context: grpc.aio.ServicerContext[pb.CompleteRequest, pb.CompleteResponse],
    ) -> pb.CompleteResponse:
        return await self._core.complete(request, context.time_remaining())

    async def StreamComplete(
        self,
        request: pb.CompleteRequest,
        context: grpc.aio.ServicerContext[pb.CompleteRequest, pb.CompleteChunk],
    ) -> AsyncIterator[pb.CompleteChunk]:
        try:
            # Headers now, while the model thinks, not in front of its first token.
            await context.send_initial_metadata(())
            async for chunk in self._core.stream(request, context.time_remaining()):
                yield chunk
        except RouterError as error:
            await _abort(context, error)


if TYPE_CHECKING:
    ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # generic in its stubs only
    ServerInterceptor = grpc.aio.ServerInterceptor


class CallerKeys(ServerInterceptor):
    """Every method but those of `OPEN_SERVICES` needs a caller key, and knows its caller."""

    def __init__(self, callers: Callers) -> None:
        self._callers = callers

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        service = handler_call_details.method.lstrip("/").partition("/")[0]
        if service not in OPEN_SERVICES:
            metadata = dict(cast(Any, handler_call_details.invocation_metadata) or ())
            key = presented_key(metadata.get("authorization"), metadata.get("x-api-key"))
            try:
                caller = self._callers.authenticate(key)
            except RouterError as error:
                return _refusal(error)
            # The call is served in this task: the servicer and the core see it.
            current_caller.set(caller)
        return await continuation(handler_call_details)


def _refusal(error: RouterError) -> grpc.RpcMethodHandler[Any, Any]:
    async def refuse(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await _abort(context, error)

    return grpc.unary_unary_rpc_method_handler(refuse)


async def _undecodable(context: grpc.aio.ServicerContext[Any, Any], error: DecodeError) -> NoReturn:
    await _abort(context, RouterError(ErrorKind.INVALID_REQUEST, f"undecodable: {error}"))


@contextlib.asynccontextmanager
async def _admitted(
    capacity: Capacity, load: Load, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[None]:
    """The call counted in `capacity` while inside; refused (RESOURCE_EXHAUSTED) at its cap."""
    try:
        capacity.acquire(load, TRANSPORT)
    except RouterError as error:
        await _abort(context, error)
    try:
        yield
    finally:
        capacity.release(load)


def _handler(
    method: MethodDescriptor, servicer: RouterServicer, capacity: Capacity
) -> grpc.RpcMethodHandler[Any, Any]:
    """A method's handler that parses the request itself (for bytes that do not parse, grpc
    would answer UNKNOWN and name the exception), under the capacity's cap for its load."""
    parse = getattr(pb, method.input_type.name).FromString
    serialize = getattr(pb, method.output_type.name).SerializeToString
    behaviour = getattr(servicer, method.name)
    load = Load.COMPLETION if method.name in COMPLETIONS else Load.CALL
    if method.server_streaming:

        async def stream(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with _admitted(capacity, load, context):
                try:
                    request = parse(raw)
                except DecodeError as error:
                    await _undecodable(context, error)
                async for reply in behaviour(request, context):
                    yield reply

        return grpc.unary_stream_rpc_method_handler(stream, response_serializer=serialize)

    async def unary(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async with _admitted(capacity, load, context):
            try:
                request = parse(raw)
            except DecodeError as error:
                await _undecodable(context, error)
            return await behaviour(request, context)

    return grpc.unary_unary_rpc_method_handler(unary, response_serializer=serialize)


def _add_router(core: RouterCore, server: grpc.aio.Server, capacity: Capacity) -> None:
    """The Router service, as `router_pb2_grpc.add_RouterServicer_to_server` adds it, but with
    requests parsed and admitted by `_handler`."""
    servicer = RouterServicer(core)
    handlers = {m.name: _handler(m, servicer, capacity) for m in SERVICE.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    # grpc-stubs does not know this method of grpc.aio.Server yet.
    cast(Any, server).add_registered_method_handlers(SERVICE_NAME, handlers)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: HealthServicer

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start(
    settings: Settings, core: RouterCore, capacity: Capacity | None = None
) -> RunningServer:
    """Start serving on `settings.grpc_host:grpc_port` (port 0 picks a free one), under
    `capacity` (shared with a gateway beside it), else a capacity of its own."""
    catalogue = core.runtime.router.catalogue
    callers = Callers(settings.api_keys)
    server = grpc.aio.server(interceptors=[CallerKeys(callers)] if callers.required else [])
    _add_router(core, server, capacity or Capacity(settings))
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            HEALTH_SERVICE_NAME,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = server.add_insecure_port(settings.grpc_target)
    await server.start()
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "router gRPC serving on %s:%d, catalogue %s (%d models)",
        settings.grpc_host,
        port,
        catalogue.version,
        len(catalogue.models),
    )
    return RunningServer(server=server, port=port, health=health)
