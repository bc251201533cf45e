"""What the router adds to a completion over calling the fake OpenRouter directly.

Three processes share this machine's cores: the fake OpenRouter, the router (`router serve`,
pointed at the fake) and this load generator. Each case sends the same request both ways, one
after the other in the same run: straight to the fake with aiohttp (the HTTP client the router
itself uses), and through the router's gRPC port. "added" is the router's latency minus the
direct latency at the same percentile. Streaming cases time the first content token. The
router's CPU time per request is read from /proc: it does not depend on how busy the machine is.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.processes import cpu_seconds
from bench.timing import gc_paused
from cli.processes import FakeProcess, RouterProcess, fake_process, router_process
from cli.stats import percentile
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub

TEXT = "Say hello to the router benchmark."
ROUTING = pb.RouteRequest(
    mode=pb.MODE_QUALITY, constraints=pb.Constraints(free=pb.FREE_FILTER_EXCLUDE)
)
REQUEST = pb.CompleteRequest(routing=ROUTING, messages=[pb.ChatMessage(role="user", content=TEXT)])
REST_BODY = {
    "mode": "quality",
    "constraints": {"free": "exclude"},
    "messages": [{"role": "user", "content": TEXT}],
}
OPENAI_BODY = {
    "model": "router/quality",
    "router": {"constraints": {"free": "exclude"}},
    "messages": [{"role": "user", "content": TEXT}],
}
QUANTILES = (0.5, 0.99, 0.999)
START_TIMEOUT_S = 30.0
# Added latency at 50 in flight, judged on open-loop arrivals: in a closed loop, 50 identical
# requests move in lockstep bursts, and the two ways' tails are those of the bursts.
TARGET_MS = {0.5: 1.0, 0.99: 3.0}


@dataclass(frozen=True)
class Case:
    """`in_flight` requests at a time (closed loop), or arrivals at random at the rate that
    keeps `in_flight` requests in flight on average (open loop, Poisson)."""

    delay_s: float  # the fake's wait before its first token
    in_flight: int
    total: int  # requests each way
    open_loop: bool = False

    def label(self) -> str:
        delay = f"fake in {self.delay_s * 1000:g} ms" if self.delay_s else "instant fake"
        if self.open_loop:
            return f"{delay}, {self.in_flight} in flight (arrivals {self.rate():g}/s)"
        return f"{delay}, {self.in_flight} in flight"

    def rate(self) -> float:
        return self.in_flight / self.delay_s

    def warmup(self) -> int:
        return self.in_flight * 2


CASES = [
    Case(0.0, 1, 300),
    Case(0.0, 50, 2_000),
    Case(0.05, 1, 300),
    Case(0.05, 50, 2_000),
    Case(0.5, 50, 2_000, open_loop=True),
]
ARRIVALS_SEED = 7

Call = Callable[[], Coroutine[Any, Any, float]]


async def sample(call: Call, case: Case) -> tuple[list[float], float]:
    """Seconds per request after a warm-up, and requests per second; open-loop arrivals follow
    one seeded sequence, so both ways see the same one."""
    seconds: list[float] = []
    await asyncio.gather(*(call() for _ in range(case.warmup())))
    started = time.perf_counter()
    with gc_paused():
        if case.open_loop:
            loop = asyncio.get_running_loop()
            arrivals = random.Random(ARRIVALS_SEED)
            at = loop.time()
            tasks: list[asyncio.Task[float]] = []
            for _ in range(case.total):
                at += arrivals.expovariate(case.rate())
                await asyncio.sleep(max(0.0, at - loop.time()))
                tasks.append(asyncio.create_task(call()))
            seconds = list(await asyncio.gather(*tasks))
        else:
            gate = asyncio.Semaphore(case.in_flight)

            async def one() -> None:
                async with gate:
                    seconds.append(await call())

            await asyncio.gather(*(one() for _ in range(case.total)))
    return seconds, case.total / (time.perf_counter() - started)


def quantiles(seconds: list[float]) -> list[float]:
    ordered = sorted(int(s * 1e9) for s in seconds)
    return [percentile(ordered, q) / 1000 for q in QUANTILES]


class Ways:
    """The same completion sent straight to the fake and through the router."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        fake: FakeProcess,
        router: RouterProcess,
        channel: grpc.aio.Channel,
        model: str,
    ):
        self.http, self.url = http, fake.base_url + "/chat/completions"
        self.rest_url = router.http_url + "/complete"
        self.openai_url = router.http_url + "/v1/chat/completions"
        self.stub, self.health = RouterStub(channel), health_pb2_grpc.HealthStub(channel)
        self.body = {"model": model, "messages": [{"role": "user", "content": TEXT}]}
        self.headers = {"Authorization": f"Bearer {fake.api_key}"}

    async def direct(self) -> float:
        start = time.perf_counter()
        async with self.http.post(self.url, json=self.body, headers=self.headers) as reply:
            reply.raise_for_status()
            await reply.read()
        return time.perf_counter() - start

    async def direct_first_token(self) -> float:
        start = time.perf_counter()
        first = 0.0
        body = self.body | {"stream": True}
        async with self.http.post(self.url, json=body, headers=self.headers) as reply:
            reply.raise_for_status()
            async for line in reply.content:
                if not first and line.startswith(b"data: {"):
                    choices = json.loads(line[6:])["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        first = time.perf_counter() - start
        return first

    async def grpc_round_trip(self) -> float:
        """A health check: the gRPC round trip with none of the router's own code."""
        start = time.perf_counter()
        await self.health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        return time.perf_counter() - start

    async def routed(self) -> float:
        start = time.perf_counter()
        await self.stub.Complete(REQUEST, timeout=30)
        return time.perf_counter() - start

    async def _posted(self, url: str, body: dict[str, Any]) -> float:
        start = time.perf_counter()
        async with self.http.post(url, json=body) as reply:
            reply.raise_for_status()
            await reply.read()
        return time.perf_counter() - start

    async def routed_over_rest(self) -> float:
        return await self._posted(self.rest_url, REST_BODY)

    async def routed_over_openai_api(self) -> float:
        return await self._posted(self.openai_url, OPENAI_BODY)

    async def routed_first_token(self) -> float:
        start = time.perf_counter()
        first = 0.0
        async for event in self.stub.StreamComplete(REQUEST, timeout=30):
            if not first and event.WhichOneof("event") == "delta":
                first = time.perf_counter() - start
        return first


async def run_case(fake: FakeProcess, router: RouterProcess, delay_s: float) -> list[str]:
    """Every row of one fake delay; returns the verdicts on the target."""
    verdicts = []
    async with (
        grpc.aio.insecure_channel(router.grpc_address) as channel,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as http,
    ):
        await asyncio.wait_for(channel.channel_ready(), START_TIMEOUT_S)
        stub = RouterStub(channel)
        await stub.RefreshCatalogue(pb.RefreshCatalogueRequest())
        ways = Ways(http, fake, router, channel, (await stub.Route(ROUTING)).model)
        for case in CASES:
            if case.delay_s != delay_s:
                continue
            health = ways.grpc_round_trip
            pairs: list[tuple[str, Call, Call]] = [
                ("Complete", ways.direct, ways.routed),
                ("REST /complete", ways.direct, ways.routed_over_rest),
                ("/v1/chat/completions", ways.direct, ways.routed_over_openai_api),
                ("first token", ways.direct_first_token, ways.routed_first_token),
            ]
            for what, direct, routed in pairs:
                direct_q = quantiles((await sample(direct, case))[0])
                cpu_before = cpu_seconds(router.pid)
                routed_s, rate = await sample(routed, case)
                routed_q = quantiles(routed_s)
                cpu_ms = (
                    (cpu_seconds(router.pid) - cpu_before) * 1000 / (case.total + case.warmup())
                )
                added = [r - d for r, d in zip(routed_q, direct_q, strict=True)]
                name = f"{what}, {case.label()}"
                cells = " | ".join(
                    " ".join(f"{v:7.2f}" for v in q) for q in (direct_q, routed_q, added)
                )
                print(f"{name:<62} {cells} | {cpu_ms:6.2f}  n={case.total}", flush=True)
                if what == "Complete":
                    floor = " ".join(
                        f"{v:7.2f}" for v in quantiles((await sample(health, case))[0])
                    )
                    print(f"{'  gRPC round trip alone (health check)':<62} {'':23} | {floor}")
                if case.open_loop:
                    met = all(added[QUANTILES.index(q)] <= ms for q, ms in TARGET_MS.items())
                    verdicts.append(
                        f"{name}: added p50 {added[0]:.2f} ms, p99 {added[1]:.2f} ms"
                        f" -> {'met' if met else 'NOT met'} ({rate:.0f} requests/s, the router"
                        f" busy {cpu_ms * rate / 10:.0f}% of a core)"
                    )
    return verdicts


def main() -> None:
    print(__doc__.strip().splitlines()[0])
    print(
        "method: caller-side time.perf_counter per request, garbage collector paused; "
        "nearest-rank percentiles; router CPU per request (warm-up included) from /proc/<pid>/stat."
    )
    print(
        f"{'case (milliseconds)':<62} {'direct p50 / p99 / p99.9':^23} | "
        f"{'router p50 / p99 / p99.9':^23} | {'added p50 / p99 / p99.9':^23} | router CPU"
    )
    verdicts = []
    for delay_s in sorted({case.delay_s for case in CASES}):
        with fake_process(delay_s) as fake, router_process(fake) as router:
            verdicts += asyncio.run(run_case(fake, router, delay_s))
    print("target at 50 in flight (open-loop arrivals): added p50 <= 1 ms and p99 <= 3 ms")
    for verdict in verdicts:
        print(f"  {verdict}")


if __name__ == "__main__":
    main()
