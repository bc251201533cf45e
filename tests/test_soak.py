"""Soak (`make test-slow`): `router serve` in a process of its own, with a redis-server of its
own, on the fake OpenRouter in another process answering after a realistic first-token delay,
under open-loop load for minutes: Route over gRPC, then Complete over gRPC (each from a `router
benchmark` process), with REST calls of /route, /complete and /v1/chat/completions throughout.
No call may fail or be dropped; after the warm-up the router's memory stays flat and its thread
count does not grow. The figures go to `tests/.soak-report.md` and the test's output."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.processes import redis_process
from cli.load import Load, Tally, measure
from cli.processes import ROOT, RouterProcess, fake_process, router_process
from cli.stats import percentile
from service.config import Settings
from tests.router_load import HTTP_TIMEOUT_S, REST_CALLS, Sample, rest_call, sample, serving

pytestmark = pytest.mark.slow

PHASE_S = 120.0  # each gRPC phase, Route then Complete; the REST calls run through both
WARMUP_S = 20.0  # every kind of call at its rate, whatever they answer, before the first sample
# The warm-up also makes as many Route calls (ten at a time) as the router keeps decision
# records in process: until that store is full, memory grows by about 1.3 KB a decision.
DECISIONS_KEPT = Settings.model_fields["decision_records_local"].default
FIRST_TOKEN_DELAY_S = 0.2
ROUTE_RATE = 50.0  # arrivals per second
COMPLETE_RATE = 10.0
REST_RATE = 3.0  # of each REST path
IN_FLIGHT = 200  # calls in flight at most per load: an arrival that finds them is dropped
ARRIVALS_BOUND = 2.0  # times rate and duration: the most arrivals of each load
RSS_GROWTH = 0.05
SAMPLE_EVERY_S = 10.0
REPORT = Path(__file__).parent / ".soak-report.md"
QUANTILES = ("p50", "p99", "p99.9")


@dataclass(frozen=True)
class Row:
    """One load's figures."""

    name: str
    rate: float | None  # None: closed loop
    requests: int
    ok: int
    errors: dict[str, int]
    dropped: int
    throughput: float
    latency_ms: dict[str, float] | None


def _bound(rate: float, duration_s: float) -> int:
    return math.ceil(ARRIVALS_BOUND * rate * duration_s)


async def _benchmark(address: str, rpc: str, *options: str) -> Row:
    """`router benchmark` in a process of its own, loading `address` with `rpc` calls."""
    command = [sys.executable, "-m", "cli", "benchmark", "--target", address, "--rpc", rpc]
    command += ["--warmup", "0", "--mode", "speed", "--json", *options]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, f"router benchmark --rpc {rpc} failed"
    report: dict[str, Any] = json.loads(output)
    return Row(
        f"gRPC {rpc}",
        report["rate_per_s"],
        report["requests"],
        report["ok"],
        report["errors"],
        report["dropped"],
        report["throughput_per_s"],
        report["latency_ms"],
    )


async def _open_loop(address: str, rpc: str, rate: float, duration_s: float) -> Row:
    return await _benchmark(
        address,
        rpc,
        *("--rate", str(rate), "--duration", str(duration_s)),
        *("--requests", str(_bound(rate, duration_s)), "--concurrency", str(IN_FLIGHT)),
    )


async def _rest(url: str, duration_s: float) -> list[Row]:
    """Each REST path at `REST_RATE` for `duration_s`, from this process."""
    load = Load(IN_FLIGHT, _bound(REST_RATE, duration_s), duration_s, REST_RATE)
    limits = httpx.Limits(max_connections=IN_FLIGHT * len(REST_CALLS))
    async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT_S, limits=limits) as client:
        tallies = await asyncio.gather(
            *(measure(rest_call(client, path), load, lambda: None) for path in REST_CALLS)
        )
    return [
        _rest_row(f"REST {path}", tally) for path, tally in zip(REST_CALLS, tallies, strict=True)
    ]


def _rest_row(name: str, tally: Tally) -> Row:
    ordered = sorted(tally.latencies_ns)
    latency = None
    if ordered:
        quantiles = {"p50": 0.5, "p99": 0.99, "p99.9": 0.999}
        latency = {q: percentile(ordered, at) / 1000 for q, at in quantiles.items()}
    return Row(
        name,
        REST_RATE,
        tally.calls,
        len(ordered),
        dict(tally.errors),
        tally.dropped,
        tally.calls / tally.elapsed_s,
        latency,
    )


class Sampler:
    """The router's memory and threads every `SAMPLE_EVERY_S`, and the most of each seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.taken: list[Sample] = []

    def take(self) -> Sample:
        self.taken.append(sample(self.pid))
        return self.taken[-1]

    @property
    def peak(self) -> Sample:
        return Sample(max(s.rss_kib for s in self.taken), max(s.threads for s in self.taken))

    async def run(self) -> None:
        while True:
            self.take()
            await asyncio.sleep(SAMPLE_EVERY_S)


async def _soak(router: RouterProcess) -> tuple[list[Row], dict[str, Sample], list[Sample]]:
    await asyncio.gather(
        _benchmark(router.grpc_address, "route", "--requests", str(DECISIONS_KEPT)),
        _open_loop(router.grpc_address, "complete", COMPLETE_RATE, WARMUP_S),
        _rest(router.http_url, WARMUP_S),
    )
    sampler = Sampler(router.pid)
    samples = {"start (after warm-up)": sampler.take()}
    sampling = asyncio.create_task(sampler.run())
    rest = asyncio.create_task(_rest(router.http_url, 2 * PHASE_S))
    route = await _open_loop(router.grpc_address, "route", ROUTE_RATE, PHASE_S)
    samples["mid (after Route)"] = sampler.take()
    complete = await _open_loop(router.grpc_address, "complete", COMPLETE_RATE, PHASE_S)
    rows = [route, complete, *await rest]
    samples["end"] = sampler.take()
    sampling.cancel()
    samples["peak"] = sampler.peak
    return rows, samples, sampler.taken


def _report(rows: list[Row], samples: dict[str, Sample], trace: list[Sample]) -> str:
    lines = [
        f"Soak, after {WARMUP_S:g} s of warm-up and {DECISIONS_KEPT} Route calls: "
        f"{PHASE_S:g} s of gRPC Route, then {PHASE_S:g} s of gRPC Complete, REST "
        f"throughout; fake OpenRouter first token after {FIRST_TOKEN_DELAY_S:g} s; open loop, "
        f"at most {IN_FLIGHT} in flight per load",
        "",
        "| load | offered /s | calls | ok | errors | dropped | served /s | "
        + " | ".join(f"{q} ms" for q in QUANTILES)
        + " |",
        "|---|---:|---:|---:|---|---:|---:|" + "---:|" * len(QUANTILES),
    ]
    for row in rows:
        errors = ", ".join(f"{k} {n}" for k, n in row.errors.items()) or "0"
        latency = [f"{row.latency_ms[q]:.2f}" if row.latency_ms else "-" for q in QUANTILES]
        rate = "-" if row.rate is None else f"{row.rate:g}"
        lines.append(
            f"| {row.name} | {rate} | {row.requests} | {row.ok} | {errors} | "
            f"{row.dropped} | {row.throughput:.1f} | " + " | ".join(latency) + " |"
        )
    lines += ["", "| router process | RSS MiB | threads |", "|---|---:|---:|"]
    lines += [f"| {k} | {s.rss_kib / 1024:.1f} | {s.threads} |" for k, s in samples.items()]
    lines += ["", f"RSS MiB about every {SAMPLE_EVERY_S:g} s from the start:"]
    lines.append(" ".join(f"{s.rss_kib / 1024:.1f}" for s in trace))
    return "\n".join(lines) + "\n"


@pytest.fixture
def router() -> Iterator[RouterProcess]:
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_process())
        fake = stack.enter_context(fake_process(FIRST_TOKEN_DELAY_S))
        running = stack.enter_context(router_process(fake, redis_url=redis_url))
        serving(running)
        yield running


def test_the_router_holds_steady_under_minutes_of_load(router: RouterProcess) -> None:
    rows, samples, trace = asyncio.run(_soak(router))
    report = _report(rows, samples, trace)
    REPORT.write_text(report)
    print("\n" + report)
    for row in rows:
        assert (row.errors, row.dropped) == ({}, 0), row
        assert row.ok == row.requests, row
    start, mid, end = (samples[k] for k in ("start (after warm-up)", "mid (after Route)", "end"))
    assert end.rss_kib < start.rss_kib * (1 + RSS_GROWTH), (start, end)
    assert end.threads <= mid.threads, (mid, end)
