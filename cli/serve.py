"""`router serve` (the gRPC server and the REST gateway over one core, in one process) and
`router gateway` (the REST gateway alone, in front of a router over gRPC); both stop gracefully
on SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket

from rest_gateway.app import create_app
from rest_gateway.backend import LocalBackend, RemoteBackend
from rest_gateway.serving import HttpServer
from service import grpc_server
from service.callers import Callers, warn_if_exposed
from service.config import Settings
from service.core import RouterCore
from service.redis_link import redacted
from service.runtime import Runtime
from service.shedding import Capacity

log = logging.getLogger("router")


def _stop_on_signals(gateway: HttpServer) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, gateway.request_stop)


def _freeze_startup_objects() -> None:
    # What startup built (modules, catalogue, schemas) lives as long as the process: kept out of
    # the collector's sight, a full collection takes a few ms instead of about 50 ms mid-request.
    gc.collect()
    gc.freeze()


async def run(settings: Settings, http_socket: socket.socket | None = None) -> None:
    """Serve both APIs until SIGINT or SIGTERM; REST on `http_socket` when given (a worker's
    share of the port its parent bound), else on `settings.http_port`."""
    callers = Callers(settings.api_keys)
    warn_if_exposed((settings.grpc_host, settings.http_host), callers)
    core = RouterCore(Runtime.build(settings))
    if settings.redis_url:
        log.info(
            "Redis at %s, keys under %r", redacted(settings.redis_url), settings.redis_key_prefix
        )
    core.start()
    capacity = Capacity(settings)
    grpc_running = await grpc_server.start(settings, core, capacity)
    app = create_app(
        LocalBackend(core),
        max_body_bytes=settings.max_body_bytes,
        capacity=capacity,
        callers=callers,
    )
    gateway = HttpServer(app, settings.http_host, settings.http_port)
    try:
        port = await gateway.start(http_socket)
        log.info("REST gateway serving on http://%s:%d", settings.http_host, port)
        _stop_on_signals(gateway)
        _freeze_startup_objects()
        await gateway.wait()
    finally:
        log.info("stopping: draining gRPC calls for up to %.1fs", settings.shutdown_grace_s)
        core.serving = False
        await grpc_running.stop(settings.shutdown_grace_s)
        await core.aclose()


async def run_gateway(settings: Settings, target: str) -> None:
    callers = Callers(settings.api_keys)
    warn_if_exposed((settings.http_host,), callers)
    app = create_app(
        RemoteBackend(target),
        max_body_bytes=settings.max_body_bytes,
        capacity=Capacity(settings),
        callers=callers,
    )
    gateway = HttpServer(app, settings.http_host, settings.http_port)
    port = await gateway.start()
    log.info(
        "REST gateway on http://%s:%d in front of the router at %s",
        settings.http_host,
        port,
        target,
    )
    _stop_on_signals(gateway)
    _freeze_startup_objects()
    await gateway.wait()
