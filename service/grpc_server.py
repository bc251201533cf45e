"""The gRPC server: Router service, standard health service and server reflection."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1 import router_pb2_grpc
from service.router import ModelRouter
from service.scorer import InvalidRequest, NoEligibleModel

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Router"].full_name

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[["RouterServicer", Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]


def _statuses(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Turn the router's errors into gRPC statuses; anything unexpected is logged, not leaked."""

    @functools.wraps(method)
    async def wrapper(
        self: RouterServicer, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        try:
            return await method(self, request, context)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except NoEligibleModel as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in the router")
        raise AssertionError("context.abort returned")

    return wrapper


class RouterServicer(router_pb2_grpc.RouterServicer):
    def __init__(self, router: ModelRouter) -> None:
        self._router = router

    @_statuses
    async def Route(
        self,
        request: pb.RouteRequest,
        context: grpc.aio.ServicerContext[pb.RouteRequest, pb.RouteResponse],
    ) -> pb.RouteResponse:
        return self._router.route(request)

    @_statuses
    async def ListModels(
        self,
        request: pb.ListModelsRequest,
        context: grpc.aio.ServicerContext[pb.ListModelsRequest, pb.ListModelsResponse],
    ) -> pb.ListModelsResponse:
        return self._router.list_models(request)

    @_statuses
    async def Complete(
        self,
        request: pb.CompleteRequest,
        context: grpc.aio.ServicerContext[pb.CompleteRequest, pb.CompleteResponse],
    ) -> pb.CompleteResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "Complete is not served by this version of the router; use Route",
        )
        raise AssertionError("context.abort returned")

    async def StreamComplete(
        self,
        request: pb.CompleteRequest,
        context: grpc.aio.ServicerContext[pb.CompleteRequest, pb.CompleteChunk],
    ) -> AsyncIterator[pb.CompleteChunk]:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "StreamComplete is not served by this version of the router; use Route",
        )
        yield pb.CompleteChunk()


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: HealthServicer

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start(settings: Settings, router: ModelRouter) -> RunningServer:
    """Start serving on `settings.grpc_host:grpc_port` (port 0 picks a free one)."""
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(router), server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
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
        router.catalogue.version,
        len(router.catalogue.models),
    )
    return RunningServer(server=server, port=port, health=health)
