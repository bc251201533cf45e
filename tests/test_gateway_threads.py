"""The REST gateway answers on the event loop alone: a burst of calls leaves `router serve` with
the threads it had. FastAPI runs a plain `def` endpoint or dependency (and Starlette a plain
`def` exception handler) in anyio's worker threads, up to 40 of them; with one such dependency
a router went from 9 threads to 47 after its first burst."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from cli.processes import fake_process, router_process
from tests.router_load import HTTP_TIMEOUT_S, REST_CALLS, sample, serving

BURST = 100  # calls of each path at once
SPARE_THREADS = 2  # what grpc's own pools may add; anyio's would add dozens
INVALID = ("/route", {"top_k": "many"})  # answered by the gateway's exception handler


async def _burst(url: str, each: int) -> Counter[int]:
    calls = [*REST_CALLS.items(), INVALID]
    limits = httpx.Limits(max_connections=each * len(calls))
    async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT_S, limits=limits) as client:
        replies = await asyncio.gather(
            *(client.post(path, json=body) for path, body in calls for _ in range(each))
        )
    return Counter(reply.status_code for reply in replies)


def test_a_rest_burst_leaves_the_router_with_the_threads_it_had() -> None:
    with fake_process(0.05) as fake, router_process(fake) as router:
        serving(router)
        asyncio.run(_burst(router.http_url, 1))  # whatever starts on first use has started
        before = sample(router.pid).threads
        answers = asyncio.run(_burst(router.http_url, BURST))
        after = sample(router.pid).threads
    assert answers == Counter({200: len(REST_CALLS) * BURST, 400: BURST})
    assert after <= before + SPARE_THREADS, f"{before} threads before the burst, {after} after"
