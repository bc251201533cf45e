"""`router benchmark`: load a router's gRPC port as an internal service would, and report the
latency, the throughput, the errors and the decision cache's hit rate."""

from __future__ import annotations

import asyncio
import contextlib
import math
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import aiohttp
import grpc
import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.progress import Progress

from cli.common import RPC_TIMEOUT_S, AsJson, caller_metadata, err, fail, out
from cli.load import Call, CallFailed, Load, Tally, measure, warm_up
from cli.processes import RouterProcess, Upstream, fake_process, router_process
from cli.routing_options import routing_options
from cli.stats import histogram, percentile
from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub

if TYPE_CHECKING:
    from service.pb.router.v1.router_pb2_grpc import RouterAsyncStub

CONNECT_TIMEOUT_S = 5.0
COMPARE_ROUNDS = 3
START_TIMEOUT_S = 60.0  # a router started here, on two busy cores
PROMPT = "Say hello to the router benchmark."
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}
LOOKUPS = "router_decision_cache_lookups_total"  # service/decision_metrics.py
BAR_WIDTH = 40


class Rpc(StrEnum):
    route = "route"
    complete = "complete"


@routing_options
def benchmark(
    *,
    target: Annotated[
        str | None, typer.Option(help="gRPC address of the router to load, HOST:PORT.")
    ] = None,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Start a router (with --rpc complete, on a fake OpenRouter) in a process of "
            "its own on free ports, load it, and stop it.",
        ),
    ] = False,
    rpc: Annotated[
        Rpc,
        typer.Option(
            help="Route, or Complete with a short user message (against --target, a real "
            "completion each)."
        ),
    ] = Rpc.route,
    requests: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Calls to time (open loop: arrivals); default 1000, or no limit with --duration.",
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Calls in flight at most.")] = 10,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Open loop: calls arrive at random (Poisson) at this many per second, each "
            "started on arrival unless --concurrency are in flight (then it is dropped)."
        ),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop making calls after this many seconds.")
    ] = None,
    warmup: Annotated[int, typer.Option(min=0, help="Calls made first and not counted.")] = 10,
    compare_direct: Annotated[
        bool,
        typer.Option(
            "--compare-direct",
            help="With --rpc complete: also call the upstream directly (the fake with --local, "
            "else ROUTER_OPENROUTER_BASE_URL with OPENROUTER_API_KEY) for the model the router "
            "picked, in alternating rounds, and report what the router adds.",
        ),
    ] = False,
    routing: pb.RouteRequest,
    as_json: AsJson = False,
) -> None:
    """Measure the router's latency and throughput over gRPC: closed loop (--concurrency calls
    in flight) or open loop (--rate); percentiles in milliseconds, errors by status, the
    decision cache's hit rate (with --local) and a histogram."""
    if (target is not None) == local:
        raise fail("give one of --target HOST:PORT and --local")
    for name, value in (("--rate", rate), ("--duration", duration)):
        if value is not None and not value > 0:
            raise fail(f"{name} must be above 0")
    if compare_direct and rpc != Rpc.complete:
        raise fail("--compare-direct compares completions: add --rpc complete")
    load = Load(concurrency, requests or (None if duration else 1000), duration, rate)
    with ExitStack() as stack:
        router = stack.enter_context(_local_router(rpc)) if local else None
        address = router.grpc_address if router else target
        assert address is not None
        upstream = _upstream(router) if compare_direct else None
        report = asyncio.run(_run(address, router, rpc, routing, load, warmup, as_json, upstream))
    if as_json:
        out.print_json(data=report)
    else:
        _print(report)
    if report["requests"] and not report["ok"]:
        raise typer.Exit(code=1)


@contextmanager
def _local_router(rpc: Rpc) -> Iterator[RouterProcess]:
    with ExitStack() as stack:
        try:
            fake = stack.enter_context(fake_process()) if rpc == Rpc.complete else None
            router = stack.enter_context(router_process(fake))
        except RuntimeError as exc:  # the fake did not start
            raise fail(str(exc)) from None
        yield router


def _upstream(router: RouterProcess | None) -> Upstream:
    """What --compare-direct calls: the fake the router started here uses, else the configured
    OpenRouter."""
    if router is not None and router.upstream is not None:
        return router.upstream
    settings = Settings()
    if settings.openrouter_api_key is None:
        raise fail("--compare-direct needs the upstream's key: set OPENROUTER_API_KEY")
    return Upstream(settings.openrouter_base_url, settings.openrouter_api_key.get_secret_value())


async def _run(
    address: str,
    router: RouterProcess | None,
    rpc: Rpc,
    routing: pb.RouteRequest,
    load: Load,
    warmup: int,
    as_json: bool,
    upstream: Upstream | None,
) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await asyncio.wait_for(
                channel.channel_ready(), START_TIMEOUT_S if router else CONNECT_TIMEOUT_S
            )
        except TimeoutError:
            if router:
                raise fail(f"the router started here did not answer on {address}") from None
            raise fail(f"cannot reach {address}") from None
        stub = RouterStub(channel)
        if router and rpc == Rpc.complete:  # the fake's catalogue, in place of the embedded one
            await stub.RefreshCatalogue(
                pb.RefreshCatalogueRequest(), timeout=RPC_TIMEOUT_S, metadata=caller_metadata()
            )
        call = _call(stub, rpc, routing)
        await warm_up(call, warmup, load.concurrency)
        before = await _cache_lookups(router)
        with Progress(console=err, transient=True, disable=as_json or not err.is_terminal) as bar:
            task = bar.add_task(f"{rpc} calls", total=load.requests)

            def advance() -> None:
                bar.advance(task)

            if upstream is None:
                tally = await measure(call, load, advance)
            else:
                model = (await _complete(stub, routing)).model
                tally, direct = await _side_by_side(call, upstream, model, load, warmup, advance)
        after = await _cache_lookups(router)
    report = _report(address, rpc, load, warmup, tally, _hit_rate(before, after))
    if upstream is not None:
        report |= _compared(report, _report(upstream.base_url, rpc, load, warmup, direct, None))
    return report


async def _side_by_side(
    call: Call, upstream: Upstream, model: str, load: Load, warmup: int, done: Callable[[], None]
) -> tuple[Tally, Tally]:
    """The router's calls and direct calls to `upstream` for `model`, in alternating rounds."""
    rounds = Load(
        load.concurrency,
        None if load.requests is None else math.ceil(load.requests / COMPARE_ROUNDS),
        None if load.duration_s is None else load.duration_s / COMPARE_ROUNDS,
        load.rate,
    )
    routed, direct = Tally(), Tally()
    async with _direct_calls(upstream, model) as straight:
        await warm_up(straight, warmup, load.concurrency)
        for _ in range(COMPARE_ROUNDS):
            routed.add(await measure(call, rounds, done))
            direct.add(await measure(straight, rounds, lambda: None))
    return routed, direct


@contextlib.asynccontextmanager
async def _direct_calls(upstream: Upstream, model: str) -> AsyncIterator[Call]:
    """A call of the upstream's chat completions for `model`, as the router makes it."""
    url = upstream.base_url.rstrip("/") + "/chat/completions"
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    headers = {"authorization": f"Bearer {upstream.api_key}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=RPC_TIMEOUT_S)) as http:

        async def call() -> None:
            try:
                async with http.post(url, json=body, headers=headers) as reply:
                    await reply.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise CallFailed(type(exc).__name__) from None
            if reply.status != 200:
                raise CallFailed(f"HTTP {reply.status}")

        yield call


def _compared(routed: dict[str, Any], direct: dict[str, Any]) -> dict[str, Any]:
    """The direct calls' figures, and what the router adds to each percentile."""
    added = None
    if routed["latency_ms"] and direct["latency_ms"]:
        added = {
            name: round(routed["latency_ms"][name] - direct["latency_ms"][name], 3)
            for name in QUANTILES
        }
    kept = ("target", "requests", "ok", "errors", "seconds", "throughput_per_s", "latency_ms")
    return {"direct": {key: direct[key] for key in kept}, "added_ms": added}


async def _complete(stub: RouterAsyncStub, routing: pb.RouteRequest) -> pb.CompleteResponse:
    answer: pb.CompleteResponse = await _call(stub, Rpc.complete, routing)()  # type: ignore[assignment]
    return answer


def _call(stub: RouterAsyncStub, rpc: Rpc, routing: pb.RouteRequest) -> Call:
    key = caller_metadata()
    if rpc == Rpc.route:
        return lambda: stub.Route(routing, timeout=RPC_TIMEOUT_S, metadata=key)
    request = pb.CompleteRequest(
        routing=routing, messages=[pb.ChatMessage(role="user", content=PROMPT)]
    )
    return lambda: stub.Complete(request, timeout=RPC_TIMEOUT_S, metadata=key)


async def _cache_lookups(router: RouterProcess | None) -> Counter[str] | None:
    """The decision cache's lookups so far, by level and outcome, from the router's /metrics
    (on its REST port: known only for a router started here)."""
    if router is None:
        return None
    try:
        text = await asyncio.to_thread(_get, f"{router.http_url}/metrics")
    except OSError:
        return None
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == LOOKUPS:
                counts[f"{sample.labels['level']} {sample.labels['outcome']}"] += int(sample.value)
    return counts


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as reply:
        text: str = reply.read().decode()
        return text


def _hit_rate(before: Counter[str] | None, after: Counter[str] | None) -> dict[str, Any] | None:
    """Decisions the cache answered (in process or from Redis) among those it was asked for."""
    if before is None or after is None:
        return None
    lookups = after - before
    decisions = lookups["l1 hit"] + lookups["l1 miss"]
    hits = lookups["l1 hit"] + lookups["l2 hit"]
    return {"decisions": decisions, "hit_rate": hits / decisions if decisions else None}


def _report(
    address: str, rpc: Rpc, load: Load, warmup: int, tally: Tally, cache: dict[str, Any] | None
) -> dict[str, Any]:
    ordered = sorted(tally.latencies_ns)
    return {
        "target": address,
        "rpc": str(rpc),
        "loop": "closed" if load.rate is None else "open",
        "concurrency": load.concurrency,
        "rate_per_s": load.rate,
        "warmup": warmup,
        "requests": tally.calls,
        "ok": len(ordered),
        "errors": dict(tally.errors.most_common()),
        "dropped": tally.dropped,
        "seconds": round(tally.elapsed_s, 3),
        "throughput_per_s": round(tally.calls / tally.elapsed_s, 1) if tally.elapsed_s else 0.0,
        "latency_ms": _latency_ms(ordered),
        "decision_cache": cache,
        "histogram_ms": [
            {"from": low / 1e6, "to": high / 1e6, "count": count}
            for low, high, count in histogram(ordered)
        ],
    }


def _latency_ms(ordered: list[int]) -> dict[str, float] | None:
    if not ordered:
        return None
    quantiles = {name: percentile(ordered, q) / 1000 for name, q in QUANTILES.items()}
    return {name: round(ms, 3) for name, ms in (quantiles | {"max": ordered[-1] / 1e6}).items()}


def _print(report: dict[str, Any]) -> None:
    out.print("\n".join(_lines(report)), highlight=False, markup=False, soft_wrap=True)


def _lines(r: dict[str, Any]) -> Iterator[str]:
    if r["loop"] == "closed":
        loop = f"closed loop, {r['concurrency']} in flight"
    else:
        loop = f"open loop, arrivals at {r['rate_per_s']:g}/s, at most {r['concurrency']} in flight"
    yield f"{r['rpc']} on {r['target']}: {loop}, after {r['warmup']} warm-up calls"
    calls = (
        f"calls      {r['requests']} in {r['seconds']:.2f} s, {r['throughput_per_s']:.1f}/s: "
        f"{r['ok']} ok, {r['requests'] - r['ok']} failed"
    )
    if r["loop"] == "open":
        calls += f"; {r['dropped']} arrivals dropped (found {r['concurrency']} in flight)"
    yield calls
    latency = r["latency_ms"]
    if latency is None:
        yield "latency    no call succeeded"
    else:
        figures = "  ".join(f"{name} {ms:.3f}" for name, ms in latency.items())
        yield f"latency    ms, of the calls that succeeded: {figures}"
    errors = ", ".join(f"{code} {count}" for code, count in r["errors"].items())
    yield f"errors     {errors or 'none'}"
    if "direct" in r:
        yield from _direct_lines(r["direct"], r["added_ms"])
    yield f"cache      {_cache_line(r['decision_cache'])}"
    if r["histogram_ms"]:
        yield "histogram  ms, of the calls that succeeded"
        most = max(row["count"] for row in r["histogram_ms"])
        for row in r["histogram_ms"]:
            bar = "#" * math.ceil(BAR_WIDTH * row["count"] / most)
            yield f"  {row['from']:>8g} - {row['to']:<8g} {bar:<{BAR_WIDTH}} {row['count']}"


def _direct_lines(direct: dict[str, Any], added: dict[str, float] | None) -> Iterator[str]:
    failed = direct["requests"] - direct["ok"]
    yield (
        f"direct     {direct['requests']} calls of {direct['target']} in alternating rounds, "
        f"{direct['ok']} ok, {failed} failed"
        + ("" if not failed else ": " + ", ".join(f"{k} {n}" for k, n in direct["errors"].items()))
    )
    if direct["latency_ms"] is not None:
        figures = "  ".join(f"{name} {ms:.3f}" for name, ms in direct["latency_ms"].items())
        yield f"           ms: {figures}"
    if added is not None:
        figures = "  ".join(f"{name} {ms:+.3f}" for name, ms in added.items())
        yield f"added      ms, by the router over calling directly: {figures}"


def _cache_line(cache: dict[str, Any] | None) -> str:
    if cache is None:
        return "decision cache hit rate not reported (the router's /metrics: with --local)"
    if cache["hit_rate"] is None:
        return "no decision cache lookups (is the cache off?)"
    return f"decision cache hit rate {cache['hit_rate']:.1%} of {cache['decisions']} decisions"
