"""What the router adds to a completion: the same requests sent to the fake OpenRouter directly
and through the router's gRPC Complete and StreamComplete, side by side in one run.

Everything runs on this machine (client, router, fake), so the figures include their
competition for its cores. Overhead = router latency - direct latency at each percentile.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx
from pydantic import SecretStr

from bench.timing import METHOD, gc_paused, percentile
from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from tests.fake_openrouter import ANY_MODEL, DEFAULT_KEY, FakeOpenRouter, Reply
from tests.servers import ServerThread

MESSAGES = [{"role": "user", "content": "Say hello to the router benchmark."}]
ROUTING = pb.RouteRequest(mode=pb.MODE_QUALITY, constraints=pb.Constraints(free=2))
REQUESTS = {1: 300, 50: 1_000}


def _has_content(line: str) -> bool:
    return line.startswith("data:") and '"content":"' in line and '"content":""' not in line


async def timed(
    call: Callable[[], Awaitable[float | None]], total: int, concurrency: int
) -> list[float]:
    """Seconds per request (or to its first token, when `call` returns that)."""
    gate = asyncio.Semaphore(concurrency)
    samples: list[float] = []

    async def one() -> None:
        async with gate:
            start = time.perf_counter()
            first = await call()
            samples.append((first if first is not None else time.perf_counter()) - start)

    for _ in range(min(total, 20)):
        await call()
    with gc_paused():
        await asyncio.gather(*(one() for _ in range(total)))
    return samples


def row(name: str, direct: list[float], routed: list[float]) -> None:
    d, r = sorted(direct), sorted(routed)
    cells = []
    for q in (0.5, 0.99, 0.999):
        cells.append(f"{percentile([int(x * 1e9) for x in r], q) / 1000:8.2f}")
        overhead = percentile([int(x * 1e9) for x in r], q) - percentile(
            [int(x * 1e9) for x in d], q
        )
        cells.append(f"{overhead / 1000:+8.2f}")
    print(f"{name:<40} " + " ".join(cells) + f"  n={len(r)}")


async def compare(fake: FakeOpenRouter, stub: RouterStub, model: str, label: str) -> None:
    async with httpx.AsyncClient(
        base_url=fake.base_url,
        headers={"Authorization": f"Bearer {DEFAULT_KEY}"},
        limits=httpx.Limits(max_connections=100),
        timeout=30,
    ) as direct_client:

        async def direct() -> None:
            reply = await direct_client.post(
                "/chat/completions", json={"model": model, "messages": MESSAGES}
            )
            reply.raise_for_status()

        async def direct_first_token() -> float | None:
            body = {"model": model, "messages": MESSAGES, "stream": True}
            first = None
            async with direct_client.stream("POST", "/chat/completions", json=body) as reply:
                async for line in reply.aiter_lines():
                    if first is None and _has_content(line):
                        first = time.perf_counter()
            return first

        request = pb.CompleteRequest(
            routing=ROUTING, messages=[pb.ChatMessage(role="user", content=MESSAGES[0]["content"])]
        )

        async def routed() -> None:
            await stub.Complete(request, timeout=30)

        async def routed_first_token() -> float | None:
            first = None
            async for chunk in stub.StreamComplete(request, timeout=30):
                if first is None and chunk.WhichOneof("event") == "delta":
                    first = time.perf_counter()
            return first

        for concurrency, total in REQUESTS.items():
            row(
                f"complete, {label}, {concurrency} in flight",
                await timed(direct, total, concurrency),
                await timed(routed, total, concurrency),
            )
            row(
                f"first token, {label}, {concurrency} in flight",
                await timed(direct_first_token, total, concurrency),
                await timed(routed_first_token, total, concurrency),
            )


async def run(fake: FakeOpenRouter, address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = RouterStub(channel)
        await stub.RefreshCatalogue(pb.RefreshCatalogueRequest())
        model = (await stub.Route(ROUTING)).model
        print(f"model chosen: {model}")
        print(
            f"{'case (milliseconds)':<40} {'p50':>8} {'+router':>8} {'p99':>8} {'+router':>8} "
            f"{'p99.9':>8} {'+router':>8}"
        )
        fake.set_behaviour(ANY_MODEL, Reply("Hello, benchmark."))
        await compare(fake, stub, model, "instant fake")
        fake.set_behaviour(ANY_MODEL, Reply("Hello, benchmark.", first_token_delay_s=0.05))
        await compare(fake, stub, model, "fake +50 ms")


def main() -> None:
    print(METHOD.replace("time.perf_counter_ns on one thread", "time.perf_counter per request"))
    with FakeOpenRouter() as fake, tempfile.TemporaryDirectory() as state:
        settings = Settings(
            grpc_host="127.0.0.1",
            grpc_port=0,
            state_dir=Path(state),
            refresh_interval_s=0,
            refresh_min_share=0.05,
            endpoint_stats_models=0,
            openrouter_base_url=fake.base_url,
            openrouter_api_key=SecretStr(DEFAULT_KEY),
        )
        with ServerThread(settings) as address:
            asyncio.run(run(fake, address))


if __name__ == "__main__":
    main()
