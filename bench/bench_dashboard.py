"""What the dashboard costs: Route through the core with the dashboard never read, against Route
while its figures are read on the same event loop 60 times as often as an open page polls, in
alternating rounds; and one read of the figures (`service.dashboard.snapshot`), which is all the
dashboard does, only when it is asked."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from bench.rows import Results
from bench.timing import METHOD, sample_async
from service import catalogue, dashboard
from service.config import Settings
from service.core import RouterCore
from service.pb.router.v1 import router_pb2 as pb
from service.runtime import Runtime

SPEED = pb.RouteRequest(mode=pb.MODE_SPEED, top_k=5)
PAGE_POLL_S = 3.0  # how often an open page asks (POLL_MS in rest_gateway/dashboard/dashboard.js)
READ_EVERY_S = PAGE_POLL_S / 60
ROUNDS = 5
CALLS = 2_000
TOLERANCE = 0.10


@contextlib.asynccontextmanager
async def reading(core: RouterCore) -> AsyncIterator[list[int]]:
    """The dashboard's figures read every READ_EVERY_S in the background; yields the count."""
    reads = [0]

    async def poll() -> None:
        while True:
            await dashboard.snapshot(core)
            reads[0] += 1
            await asyncio.sleep(READ_EVERY_S)

    task = asyncio.create_task(poll())
    try:
        yield reads
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def rows(results: Results) -> None:
    settings = Settings(grpc_host="127.0.0.1", grpc_port=0, refresh_interval_s=0)
    core = RouterCore(Runtime.build(settings))
    never: list[int] = []
    polled: list[int] = []
    reads = 0
    for _ in range(ROUNDS):
        never += await sample_async(lambda: core.route(SPEED), CALLS, 200)
        async with reading(core) as count:
            polled += await sample_async(lambda: core.route(SPEED), CALLS, 200)
        reads += count[0]
    quiet = results.samples("Route through the core, dashboard never read", never)
    busy = results.samples(
        f"Route through the core, dashboard read every {READ_EVERY_S * 1e3:.0f} ms ({reads} reads)",
        polled,
    )
    one = await sample_async(lambda: dashboard.snapshot(core), 200, 20)
    results.samples(
        f"one read of the dashboard's figures ({len(catalogue.load().models)} models)", one
    )
    ratio = busy.p50 / quiet.p50
    results.target(
        "the dashboard adds nothing to Route",
        f"Route p50 with the dashboard read within {TOLERANCE:.0%} of never read",
        f"p50 ratio {ratio:.3f}",
        abs(ratio - 1) <= TOLERANCE,
    )
    results.note(
        "the dashboard has no code on the request path: Route and Complete count nothing more "
        "for it; a read runs between requests on the loop, so a request that arrives during one "
        "waits for it (the last row), once per open page every "
        f"{PAGE_POLL_S:.0f} s"
    )
    await core.aclose()


def run(results: Results) -> None:
    results.section(
        "Dashboard",
        f"RouterCore.route, speed, top 5, embedded catalogue, decision cache on, in "
        f"{ROUNDS} alternating rounds of {CALLS:,} calls: the dashboard's figures never read, "
        f"and read in a task on the same loop every {READ_EVERY_S * 1e3:.0f} ms (60 times as "
        f"often as an open page polls); then one read of the figures. {METHOD}",
    )
    asyncio.run(rows(results))


def main() -> None:
    run(Results())


if __name__ == "__main__":
    main()
