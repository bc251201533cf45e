"""What the dashboard costs: Route and Complete through the core with the dashboard never read,
against the same while its figures are read on the same event loop 60 times as often as an open
page polls, in alternating rounds; and one read of the figures (`service.dashboard.snapshot`),
which is all the dashboard does, only when it is asked."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from bench.rows import Results
from bench.timing import METHOD, sample_async
from service import catalogue, dashboard
from service.config import Settings
from service.core import RouterCore
from service.pb.router.v1 import router_pb2 as pb
from service.runtime import Runtime
from testkit.fake_openrouter import FakeOpenRouter
from testkit.servers import settings_for

SPEED = pb.RouteRequest(mode=pb.MODE_SPEED, top_k=5)
HELLO = pb.CompleteRequest(
    routing=SPEED, messages=[pb.ChatMessage(role="user", content="Say hello.")]
)
PAGE_POLL_S = 3.0  # how often an open page asks (POLL_MS in rest_gateway/dashboard/dashboard.js)
# How often the figures are read in each case (None: never): as one open page polls, and 60
# times as often, where a read's share of the event loop shows.
READS_EVERY_S = {
    "dashboard never read": None,
    f"dashboard read every {PAGE_POLL_S:.0f} s (one open page)": PAGE_POLL_S,
    f"dashboard read every {PAGE_POLL_S * 1e3 / 60:.0f} ms (60 open pages)": PAGE_POLL_S / 60,
}
ROUNDS = 5
ROUTES = 1_500
COMPLETIONS = 120
TOLERANCE = 0.10


@contextlib.asynccontextmanager
async def reading(core: RouterCore, every_s: float | None) -> AsyncIterator[list[int]]:
    """The dashboard's figures read at once, then every `every_s`, in the background (None:
    never); yields the count of reads."""
    reads = [0]

    async def poll(every_s: float) -> None:
        while True:
            await dashboard.snapshot(core)
            reads[0] += 1
            await asyncio.sleep(every_s)

    task = None if every_s is None else asyncio.create_task(poll(every_s))
    try:
        yield reads
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def compare(
    results: Results, what: str, core: RouterCore, call: Callable[[], Awaitable[object]], n: int
) -> None:
    """`call` in each case of READS_EVERY_S, in alternating rounds of `n` calls; the target:
    with one open page, the p50 of never within TOLERANCE."""
    samples: dict[str, list[int]] = {case: [] for case in READS_EVERY_S}
    reads = dict.fromkeys(READS_EVERY_S, 0)
    for _ in range(ROUNDS):
        for case, every_s in READS_EVERY_S.items():
            async with reading(core, every_s) as count:
                samples[case] += await sample_async(call, n, n // 10)
            reads[case] += count[0]
    rows = [
        results.samples(
            f"{what}, {case}" + (f", {reads[case]} reads" if reads[case] else ""), taken
        )
        for case, taken in samples.items()
    ]
    ratio = rows[1].p50 / rows[0].p50
    results.target(
        f"the dashboard adds nothing to {what}",
        f"p50 with one open page within {TOLERANCE:.0%} of the dashboard never read",
        f"p50 ratio {ratio:.3f}",
        abs(ratio - 1) <= TOLERANCE,
    )


async def rows(results: Results) -> None:
    embedded = RouterCore(Runtime.build(Settings(grpc_host="127.0.0.1", grpc_port=0)))
    await compare(results, "Route", embedded, lambda: embedded.route(SPEED), ROUTES)
    with FakeOpenRouter() as fake, tempfile.TemporaryDirectory() as state:
        on_fake = RouterCore(Runtime.build(settings_for(fake, Path(state))))
        await on_fake.refresh()
        await compare(
            results, "Complete", on_fake, lambda: on_fake.complete(HELLO, None), COMPLETIONS
        )
        await on_fake.aclose()
    one = await sample_async(lambda: dashboard.snapshot(embedded), 200, 20)
    models = len(catalogue.load().models)
    results.samples(f"one read of the dashboard's figures ({models} models)", one)
    results.note(
        "the dashboard has no code on the request path: Route and Complete do nothing more for "
        "it; a read runs on the router's event loop, so a request whose turn comes during one "
        "waits for it (the last row): Complete, which waits on the network, meets reads where "
        "they come often (60 open pages); Route, which does not, runs between them"
    )
    await embedded.aclose()


def run(results: Results) -> None:
    results.section(
        "Dashboard",
        f"RouterCore.route (speed, top 5, embedded catalogue, decision cache on) and "
        f"RouterCore.complete (on the fake OpenRouter in a thread of this process), each in "
        f"{ROUNDS} alternating rounds of {ROUTES:,} and {COMPLETIONS:,} calls per case: the "
        f"dashboard's figures never read, read in a task on the same loop as one open page "
        f"polls (at the start of each round, then every {PAGE_POLL_S:.0f} s), and 60 times as "
        f"often; then one read of the figures on the embedded catalogue. {METHOD}",
    )
    asyncio.run(rows(results))


def main() -> None:
    run(Results())


if __name__ == "__main__":
    main()
