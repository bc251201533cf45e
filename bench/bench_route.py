"""Routing latency through the service layers on the embedded catalogue: the in-process router
(proto in, proto out) and a gRPC round trip over loopback. No decision cache."""

from __future__ import annotations

import asyncio
import time

import grpc

from bench.timing import HEADER, METHOD, gc_paused, measure, report
from service import catalogue, grpc_server
from service.config import Settings
from service.core import RouterCore
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.router import ModelRouter
from service.runtime import Runtime


async def grpc_round_trips(
    settings: Settings, request: pb.RouteRequest, iterations: int
) -> list[int]:
    """Client and server share one event loop, so this is the whole round trip on one core."""
    core = RouterCore(Runtime.build(settings))
    running = await grpc_server.start(settings, core)
    samples = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = RouterStub(channel)
        for _ in range(200):
            await stub.Route(request)
        with gc_paused():
            for _ in range(iterations):
                start = time.perf_counter_ns()
                await stub.Route(request)
                samples.append(time.perf_counter_ns() - start)
    await running.stop(0)
    await core.aclose()
    return samples


def main() -> None:
    snapshot = catalogue.load()
    settings = Settings(grpc_host="127.0.0.1", grpc_port=0)
    router = ModelRouter(snapshot, settings)
    request = pb.RouteRequest(mode=pb.MODE_SPEED, top_k=5)
    print(f"catalogue {snapshot.version}: {len(snapshot.models)} models; Route, speed, top 5")
    print(METHOD)
    print(HEADER)
    measure("in-process Route (proto in, proto out)", lambda: router.route(request), 20_000)
    samples = asyncio.run(grpc_round_trips(settings, request, 3_000))
    report("gRPC Route over loopback (aio client and server)", samples)


if __name__ == "__main__":
    main()
