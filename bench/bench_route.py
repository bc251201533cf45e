"""Routing latency on the embedded catalogue: the native call, the in-process router, and gRPC.

Method: each case is warmed up, then timed call by call with time.perf_counter_ns over a fixed
number of iterations; the report gives p50, p99 and p99.9 in microseconds. No decision cache.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

import grpc

from service import catalogue, grpc_server
from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.router import ModelRouter
from service.scorer import MODE_WEIGHTS

WARMUP = 2_000


def percentiles(samples_ns: list[int]) -> tuple[float, float, float]:
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1_000

    return at(0.50), at(0.99), at(0.999)


def measure(name: str, call: Callable[[], object], iterations: int) -> None:
    for _ in range(WARMUP):
        call()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    report(name, samples)


def report(name: str, samples: list[int]) -> None:
    p50, p99, p999 = percentiles(samples)
    mean = statistics.fmean(samples) / 1_000
    print(f"{name:<44} {p50:>9.2f} {p99:>9.2f} {p999:>9.2f} {mean:>9.2f}  n={len(samples)}")


def main() -> None:
    snapshot = catalogue.load()
    scorer = snapshot.scorer()
    settings = Settings(grpc_host="127.0.0.1", grpc_port=0)
    router = ModelRouter(snapshot, settings)
    speed = MODE_WEIGHTS["speed"]
    print(f"catalogue {snapshot.version}: {len(snapshot.models)} models")
    print(f"{'case (microseconds)':<44} {'p50':>9} {'p99':>9} {'p99.9':>9} {'mean':>9}")
    measure(
        "native rank, best model",
        lambda: scorer.rank(speed, prompt_tokens=1000, output_tokens=500, top_k=1),
        50_000,
    )
    measure(
        "native rank, top-5 with breakdowns",
        lambda: scorer.rank(speed, prompt_tokens=1000, output_tokens=500, top_k=5),
        50_000,
    )
    request = pb.RouteRequest(mode=pb.MODE_SPEED, top_k=5)
    measure("in-process Route (proto in, proto out)", lambda: router.route(request), 20_000)

    asyncio.run(measure_grpc(settings, router, request, 3_000))


async def measure_grpc(
    settings: Settings, router: ModelRouter, request: pb.RouteRequest, iterations: int
) -> None:
    """Client and server share one event loop, so this is the whole round trip on one core."""
    running = await grpc_server.start(settings, router)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = RouterStub(channel)
        for _ in range(WARMUP // 10):
            await stub.Route(request)
        samples = []
        for _ in range(iterations):
            start = time.perf_counter_ns()
            await stub.Route(request)
            samples.append(time.perf_counter_ns() - start)
    await running.stop(0)
    report("gRPC Route over loopback (aio client)", samples)


if __name__ == "__main__":
    main()
