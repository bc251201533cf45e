"""`router serve` (the gRPC server and the REST gateway over one core, in one process) and
`router gateway` (the REST gateway alone, in front of a router over gRPC); both stop gracefully
on SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import signal
import socket
from collections.abc import Callable

from cli.workers import STOP_SIGNALS
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


# After the grace period the calls still running are ended with UNAVAILABLE: this long is left
# for their errors to reach the callers before the servers drop whatever remains.
CUT_MARGIN_S = 2.0


def _stop_on_signals(stop: Callable[[], None]) -> None:
    """Stop on SIGINT and SIGTERM, including one that came while a worker started and held
    them (cli.workers)."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


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
    gateway = HttpServer(
        app,
        settings.http_host,
        settings.http_port,
        log_level=settings.log_level,
        graceful_s=math.ceil(settings.shutdown_grace_s + CUT_MARGIN_S),
    )
    stop = asyncio.Event()
    try:
        port = await gateway.start(http_socket)
        log.info("REST gateway serving on http://%s:%d", settings.http_host, port)
        _stop_on_signals(stop.set)
        _freeze_startup_objects()
        await gateway.wait(until=stop)
    finally:
        await _drain(core, grpc_running, gateway, settings.shutdown_grace_s)
        await core.aclose()


async def _drain(
    core: RouterCore, grpc_running: grpc_server.RunningServer, gateway: HttpServer, grace_s: float
) -> None:
    """Health turns NOT_SERVING, then both servers refuse new calls and give those in flight
    `grace_s` to finish; the completions still running then fail with UNAVAILABLE."""
    log.info("stopping: draining gRPC calls and REST requests for up to %.1fs", grace_s)
    core.serving = False
    await grpc_running.health.enter_graceful_shutdown()
    gateway.request_stop()
    cut = asyncio.get_running_loop().call_later(grace_s, _cut, core)
    try:
        stopped = await asyncio.gather(
            grpc_running.stop(grace_s + CUT_MARGIN_S), gateway.wait(), return_exceptions=True
        )
    finally:
        cut.cancel()
    for failure in stopped:
        if failure is not None:
            log.error("a server failed while stopping", exc_info=failure)


def _cut(core: RouterCore) -> None:
    log.warning("grace period over: %d completions still running fail", core.cut_calls())


async def run_gateway(settings: Settings, target: str) -> None:
    callers = Callers(settings.api_keys)
    warn_if_exposed((settings.http_host,), callers)
    app = create_app(
        RemoteBackend(target),
        max_body_bytes=settings.max_body_bytes,
        capacity=Capacity(settings),
        callers=callers,
    )
    gateway = HttpServer(app, settings.http_host, settings.http_port, log_level=settings.log_level)
    port = await gateway.start()
    log.info(
        "REST gateway on http://%s:%d in front of the router at %s",
        settings.http_host,
        port,
        target,
    )
    _stop_on_signals(gateway.request_stop)
    _freeze_startup_objects()
    await gateway.wait()
