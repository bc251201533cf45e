"""What the router adds to a completion, against the fake OpenRouter on this machine.

For each request the router reports how long its call to the model took (the attempt's total
time, or time to first token when streaming); the router's overhead is what the caller waited
beyond that: routing, the gRPC hop, failover bookkeeping, and queueing inside the router when
many requests are in flight. Direct calls to the fake with the same body are timed in the same
run for scale. Client, router and fake share this machine's cores, so under load part of what
shows as overhead is their competition.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx

from bench.timing import gc_paused, percentile
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from tests.fake_openrouter import ANY_MODEL, DEFAULT_KEY, FakeOpenRouter, Reply
from tests.servers import ServerThread, settings_for

TEXT = "Say hello to the router benchmark."
ROUTING = pb.RouteRequest(mode=pb.MODE_QUALITY, constraints=pb.Constraints(free=2))
REQUEST = pb.CompleteRequest(routing=ROUTING, messages=[pb.ChatMessage(role="user", content=TEXT)])
RUNS = {1: 300, 50: 1_000}


async def sample(
    call: Callable[[], Awaitable[tuple[float, float]]], total: int, concurrency: int
) -> tuple[list[float], list[float]]:
    """(caller's seconds, upstream seconds) per request, `concurrency` of them in flight."""
    gate = asyncio.Semaphore(concurrency)
    waited: list[float] = []
    upstream: list[float] = []

    async def one() -> None:
        async with gate:
            caller, model = await call()
            waited.append(caller)
            upstream.append(model)

    for _ in range(20):
        await call()
    with gc_paused():
        await asyncio.gather(*(one() for _ in range(total)))
    return waited, upstream


def row(name: str, values: list[float]) -> None:
    ordered = sorted(int(v * 1e9) for v in values)
    cells = " ".join(f"{percentile(ordered, q) / 1000:9.3f}" for q in (0.5, 0.99, 0.999))
    print(f"{name:<54} {cells}  n={len(values)}")


async def run(fake: FakeOpenRouter, address: str) -> None:
    async with (
        grpc.aio.insecure_channel(address) as channel,
        httpx.AsyncClient(
            base_url=fake.base_url,
            headers={"Authorization": f"Bearer {DEFAULT_KEY}"},
            limits=httpx.Limits(max_connections=100),
            timeout=30,
        ) as direct_client,
    ):
        stub = RouterStub(channel)
        await stub.RefreshCatalogue(pb.RefreshCatalogueRequest())
        model = (await stub.Route(ROUTING)).model

        async def direct() -> tuple[float, float]:
            start = time.perf_counter()
            reply = await direct_client.post(
                "/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": TEXT}]},
            )
            reply.raise_for_status()
            spent = time.perf_counter() - start
            return spent, spent

        async def complete() -> tuple[float, float]:
            start = time.perf_counter()
            answer = await stub.Complete(REQUEST, timeout=30)
            return time.perf_counter() - start, sum(a.total_seconds for a in answer.attempts)

        async def first_token() -> tuple[float, float]:
            start = time.perf_counter()
            first = 0.0
            async for chunk in stub.StreamComplete(REQUEST, timeout=30):
                if not first and chunk.WhichOneof("event") == "delta":
                    first = time.perf_counter() - start
                elif chunk.WhichOneof("event") == "summary":
                    attempts = chunk.summary.attempts
                    # the model's time to first token, plus the earlier attempts in full
                    model_wait = (
                        sum(a.total_seconds for a in attempts[:-1]) + attempts[-1].ttft_seconds
                    )
            return first, model_wait

        print(f"model chosen: {model}")
        print(f"{'case (milliseconds)':<54} {'p50':>9} {'p99':>9} {'p99.9':>9}")
        for label, reply in (
            ("instant fake", Reply("Hello, benchmark.")),
            ("fake answering in 50 ms", Reply("Hello, benchmark.", first_token_delay_s=0.05)),
        ):
            fake.set_behaviour(ANY_MODEL, reply)
            for concurrency, total in RUNS.items():
                where = f"{label}, {concurrency} in flight"
                waited, _ = await sample(direct, total, concurrency)
                row(f"direct call to the fake, {where}", waited)
                waited, upstream = await sample(complete, total, concurrency)
                row(
                    f"router overhead, Complete, {where}",
                    [w - u for w, u in zip(waited, upstream, strict=True)],
                )
                waited, upstream = await sample(first_token, total, concurrency)
                row(
                    f"router overhead, first token, {where}",
                    [w - u for w, u in zip(waited, upstream, strict=True)],
                )


def main() -> None:
    print(__doc__.strip().splitlines()[0])
    print(
        "method: caller-side time.perf_counter per request, garbage collector paused; "
        "nearest-rank percentiles."
    )
    with FakeOpenRouter() as fake, tempfile.TemporaryDirectory() as state:
        settings = settings_for(fake, Path(state), endpoint_stats_models=0)
        with ServerThread(settings) as address:
            asyncio.run(run(fake, address))


if __name__ == "__main__":
    main()
