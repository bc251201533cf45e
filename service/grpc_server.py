"""The gRPC server: Router service, standard health service and server reflection."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from service.catalogue_keeper import CatalogueStatus
from service.completion.failover import CompletionError
from service.config import Settings
from service.explain import explain
from service.free_quota import FreeQuotaStatus
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1 import router_pb2_grpc
from service.runtime import Runtime
from service.scorer import InvalidRequest, NoEligibleModel

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Router"].full_name

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[["RouterServicer", Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception, name: str) -> None:
    """End the call with the status the router's error means; anything unexpected is logged,
    not leaked to the caller."""
    if isinstance(exc, InvalidRequest):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, NoEligibleModel):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, CompletionError):
        await context.abort(exc.code, str(exc))
    log.error("%s failed", name, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error in the router")


def _statuses(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Turn the router's errors into gRPC statuses."""

    @functools.wraps(method)
    async def wrapper(
        self: RouterServicer, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, method.__name__)
        raise AssertionError("context.abort returned")

    return wrapper


def catalogue_status(status: CatalogueStatus) -> pb.CatalogueStatus:
    return pb.CatalogueStatus(
        version=status.version,
        models=status.models,
        source=status.source,
        last_refresh_attempt=status.last_refresh_attempt,
        last_refresh_success=status.last_refresh_success,
        last_refresh_error=status.last_refresh_error,
        consecutive_refresh_failures=status.consecutive_refresh_failures,
        stale=status.stale,
        eligibility=pb.Eligibility(
            models=status.eligibility.models,
            routable=status.eligibility.routable,
            excluded_by_rule=status.eligibility.excluded_by_rule,
        ),
        latency_calibration=pb.LatencyCalibration(
            ttft_ratio=status.latency_calibration.ttft.value,
            ttft_models=status.latency_calibration.ttft.models,
            throughput_ratio=status.latency_calibration.throughput.value,
            throughput_models=status.latency_calibration.throughput.models,
        ),
    )


def free_quota_status(status: FreeQuotaStatus) -> pb.FreeQuotaStatus:
    return pb.FreeQuotaStatus(
        enabled=status.enabled,
        per_minute_limit=status.per_minute_limit,
        per_day_limit=status.per_day_limit,
        used_this_minute=status.used_this_minute,
        used_today=status.used_today,
        blocked_until=status.blocked_until,
        blocked_reason=status.blocked_reason,
        tier=status.tier,
    )


class RouterServicer(router_pb2_grpc.RouterServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._router = runtime.router
        self._keeper = runtime.keeper
        self._completer = runtime.completer
        self._free_quota = runtime.free_quota

    @_statuses
    async def Route(
        self,
        request: pb.RouteRequest,
        context: grpc.aio.ServicerContext[pb.RouteRequest, pb.RouteResponse],
    ) -> pb.RouteResponse:
        self._free_quota.before_routing()
        return self._router.route(request)

    @_statuses
    async def Explain(
        self,
        request: pb.ExplainRequest,
        context: grpc.aio.ServicerContext[pb.ExplainRequest, pb.ExplainResponse],
    ) -> pb.ExplainResponse:
        self._free_quota.before_routing()
        return explain(self._router, request)

    @_statuses
    async def ListModels(
        self,
        request: pb.ListModelsRequest,
        context: grpc.aio.ServicerContext[pb.ListModelsRequest, pb.ListModelsResponse],
    ) -> pb.ListModelsResponse:
        return self._router.list_models(request)

    @_statuses
    async def GetStatus(
        self,
        request: pb.GetStatusRequest,
        context: grpc.aio.ServicerContext[pb.GetStatusRequest, pb.RouterStatus],
    ) -> pb.RouterStatus:
        return pb.RouterStatus(
            catalogue=catalogue_status(self._keeper.status()),
            free_quota=free_quota_status(await self._free_quota.status()),
        )

    @_statuses
    async def RefreshCatalogue(
        self,
        request: pb.RefreshCatalogueRequest,
        context: grpc.aio.ServicerContext[pb.RefreshCatalogueRequest, pb.RefreshCatalogueResponse],
    ) -> pb.RefreshCatalogueResponse:
        previous = self._router.catalogue.version
        replaced = await self._keeper.refresh()
        if replaced:
            await self._keeper.refresh_endpoint_stats()
        return pb.RefreshCatalogueResponse(
            replaced=replaced,
            previous_version=previous,
            catalogue=catalogue_status(self._keeper.status()),
        )

    @_statuses
    async def Complete(
        self,
        request: pb.CompleteRequest,
        context: grpc.aio.ServicerContext[pb.CompleteRequest, pb.CompleteResponse],
    ) -> pb.CompleteResponse:
        return await self._completer.complete(request, context.time_remaining())

    async def StreamComplete(
        self,
        request: pb.CompleteRequest,
        context: grpc.aio.ServicerContext[pb.CompleteRequest, pb.CompleteChunk],
    ) -> AsyncIterator[pb.CompleteChunk]:
        try:
            # Headers now, while the model thinks, not in front of its first token.
            await context.send_initial_metadata(())
            async for chunk in self._completer.stream(request, context.time_remaining()):
                yield chunk
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, "StreamComplete")


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: HealthServicer
    refresher: asyncio.Task[None]

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        self.refresher.cancel()
        await self.server.stop(grace)
        with contextlib.suppress(asyncio.CancelledError):
            await self.refresher


async def start(settings: Settings, runtime: Runtime) -> RunningServer:
    """Start serving on `settings.grpc_host:grpc_port` (port 0 picks a free one), and the
    periodic catalogue refresh."""
    router = runtime.router
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(runtime), server)
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
    refresher = asyncio.create_task(runtime.keeper.run(), name="catalogue-refresh")
    runtime.free_quota.keep_tier_fresh()
    return RunningServer(server=server, port=port, health=health, refresher=refresher)
