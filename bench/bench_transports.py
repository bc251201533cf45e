"""Route over gRPC and over REST `/route`, side by side, against one running router, and the same
gRPC runs against a bare grpc.aio server: the floor under the router's gRPC latency and CPU.

The router runs as `router serve` in a process of its own (gRPC and the REST gateway over one
core), the bare server (`bench.bare_grpc`) in another, answering Route with the bytes of the
router's own answer; h2load (Debian's nghttp2-client), a C load generator that costs the
servers' cores little, sends the requests: gRPC unary calls as HTTP/2 POSTs of a framed
RouteRequest on one connection (`-m`: streams in flight), REST as HTTP/1.1 POSTs of the same
request in JSON on keep-alive connections. `router serve --workers 2` (on a Redis of its own)
is loaded on two connections beside the single process, as the kernel spreads connections, not
calls, over the workers. Rounds alternate between the cases, so that all see
the same machine; each row pools its rounds. Each server's CPU time per request is read from
/proc.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc

from bench.processes import bare_grpc_process, cpu_seconds, redis_process
from bench.rows import Extra, Results, Row
from cli.processes import fake_process, router_process
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub

REQUEST = pb.RouteRequest(mode=pb.MODE_SPEED, top_k=5)
REST_BODY = b'{"mode": "speed", "top_k": 5}'
GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"]
ROUNDS = 3
SEQUENTIAL = 2_000  # requests per round, one at a time
CONCURRENT = 6_000  # requests per round, several in flight
GRPC_IN_FLIGHT = (8, 16, 32)
REST_IN_FLIGHT = 16
WARMUP = 500
START_TIMEOUT_S = 30.0
CDF_POINTS = 200
# Targets of REST against gRPC on this machine.
SEQUENTIAL_P50_RATIO = 1.5
THROUGHPUT_SHARE = 0.5
# Targets of gRPC Route.
SEQUENTIAL_P50_US = 400.0
LOADED_IN_FLIGHT, LOADED_RATE, LOADED_P99_US = 32, 5_000.0, 2_000.0


@dataclass
class Run:
    """Per-request microseconds, requests per second and the server's CPU µs per request of one
    h2load run."""

    micros: list[int]
    rate: float
    cpu_us: float


def framed(message: pb.RouteRequest) -> bytes:
    """A gRPC message on the wire: not compressed, its length, the message."""
    body = message.SerializeToString()
    return struct.pack(">?I", False, len(body)) + body


@dataclass(frozen=True)
class Endpoint:
    """One way to send Route: h2load's URL, body and headers, and the server's process id."""

    url: str
    body: Path
    headers: list[str]
    h1: bool
    pid: int
    connections: int = 1  # for HTTP/2: the streams in flight are spread over them

    def run(self, requests: int, in_flight: int) -> Run:
        with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
            command = [
                "h2load",
                "-n",
                str(requests),
                "-d",
                str(self.body),
                f"--log-file={log.name}",
            ]
            if self.h1:
                command += ["--h1", "-c", str(in_flight), "-m", "1"]
            else:
                streams = max(1, in_flight // self.connections)
                command += ["-c", str(self.connections), "-m", str(streams)]
            for header in self.headers:
                command += ["-H", header]
            cpu_before = cpu_seconds(self.pid)
            started = time.perf_counter()
            done = subprocess.run([*command, self.url], capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - started
            cpu_us = (cpu_seconds(self.pid) - cpu_before) * 1e6 / requests
            if done.returncode != 0 or f"{requests} succeeded" not in done.stdout:
                raise RuntimeError(f"h2load failed: {done.stdout[-800:]} {done.stderr[-800:]}")
            micros = [int(line.split("\t")[2]) for line in log if line.strip()]
        statuses = done.stdout.split("status codes: ")[1].split("\n")[0]
        if not statuses.startswith(f"{requests} 2xx"):
            raise RuntimeError(f"not every request succeeded: {statuses}")
        return Run(micros, requests / elapsed, cpu_us)


def pooled(results: Results, name: str, runs: list[Run]) -> Row:
    """The row of a case's rounds: pooled latencies, the median round's rate and CPU."""
    return results.samples(
        name,
        [m * 1000 for run in runs for m in run.micros],
        Extra(
            rate=statistics.median(run.rate for run in runs),
            cpu_us_per_request=statistics.median(run.cpu_us for run in runs),
        ),
    )


def cdf(runs: list[Run]) -> list[tuple[float, float]]:
    """About CDF_POINTS points (µs, share of requests at or under it) of the pooled latencies."""
    ordered = sorted(m for run in runs for m in run.micros)
    step = max(1, len(ordered) // CDF_POINTS)
    points = [(float(ordered[i]), (i + 1) / len(ordered)) for i in range(0, len(ordered), step)]
    return [*points, (float(ordered[-1]), 1.0)]


def router_answer(address: str) -> pb.RouteResponse:
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT_S)
        answer: pb.RouteResponse = RouterStub(channel).Route(REQUEST, timeout=10)
        return answer


def cases(
    router: Endpoint, rest: Endpoint, bare: Endpoint, spread: dict[int, Endpoint]
) -> dict[str, Callable[[], Run]]:
    """Every case by its row's name; the bare floor beside each gRPC case; the router with 1
    and 2 workers (`spread`) on two connections."""
    table: dict[str, Callable[[], Run]] = {
        "gRPC Route, sequential": lambda: router.run(SEQUENTIAL, 1),
        "bare grpc.aio floor, sequential": lambda: bare.run(SEQUENTIAL, 1),
        "REST /route, sequential": lambda: rest.run(SEQUENTIAL, 1),
    }
    for m in GRPC_IN_FLIGHT:
        table[f"gRPC Route, {m} in flight"] = partial(router.run, CONCURRENT, m)
        table[f"bare grpc.aio floor, {m} in flight"] = partial(bare.run, CONCURRENT, m)
    table[f"REST /route, {REST_IN_FLIGHT} in flight"] = lambda: rest.run(CONCURRENT, REST_IN_FLIGHT)
    for workers, endpoint in spread.items():
        table[spread_name(workers)] = partial(endpoint.run, CONCURRENT, LOADED_IN_FLIGHT)
    return table


def spread_name(workers: int) -> str:
    plural = "s" * (workers > 1)
    return f"gRPC Route, {workers} worker{plural}, {LOADED_IN_FLIGHT} in flight on 2 connections"


def listening(address: str) -> int:
    """How many sockets listen on the address's port (a router's workers share it)."""
    port = f":{int(address.rsplit(':', 1)[1]):04X} "
    tables = (Path("/proc/net/tcp").read_text(), Path("/proc/net/tcp6").read_text())
    return sum(
        1
        for table in tables
        for line in table.splitlines()[1:]
        if line.split()[1].endswith(port.strip()) and line.split()[3] == "0A"
    )


def all_workers_listening(address: str, workers: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while listening(address) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not {workers} workers listening on {address}")
        time.sleep(0.1)


def measure(workdir: Path) -> dict[str, list[Run]]:
    """Every case's runs, round after round."""
    (workdir / "route.grpc").write_bytes(framed(REQUEST))
    (workdir / "route.json").write_bytes(REST_BODY)
    with (
        fake_process() as fake,
        router_process(fake) as router,
        redis_process() as redis_url,
        router_process(fake, workers=2, redis_url=redis_url) as workers,
    ):
        answer = router_answer(router.grpc_address)
        router_answer(workers.grpc_address)
        all_workers_listening(workers.grpc_address, 2)
        (workdir / "answer.bin").write_bytes(answer.SerializeToString())
        with bare_grpc_process(workdir / "answer.bin") as bare:
            router_url = f"http://{router.grpc_address}/router.v1.Router/Route"
            bare_url = f"http://{bare.grpc_address}/router.v1.Router/Route"
            router_grpc = Endpoint(
                router_url, workdir / "route.grpc", GRPC_HEADERS, False, router.pid
            )
            rest = Endpoint(
                f"{router.http_url}/route",
                workdir / "route.json",
                ["content-type: application/json"],
                True,
                router.pid,
            )
            bare_grpc = Endpoint(bare_url, workdir / "route.grpc", GRPC_HEADERS, False, bare.pid)
            spread = {
                1: dataclasses.replace(router_grpc, connections=2),
                2: Endpoint(
                    f"http://{workers.grpc_address}/router.v1.Router/Route",
                    workdir / "route.grpc",
                    GRPC_HEADERS,
                    False,
                    workers.pid,
                    connections=2,
                ),
            }
            for endpoint in (router_grpc, rest, bare_grpc, *spread.values()):
                endpoint.run(WARMUP, 1)
            ways = cases(router_grpc, rest, bare_grpc, spread)
            runs: dict[str, list[Run]] = {name: [] for name in ways}
            for _ in range(ROUNDS):
                for name, run in ways.items():
                    runs[name].append(run())
    return runs


def run(results: Results) -> None:
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is missing: apt-get install nghttp2-client (make system-deps)")
    results.section(
        "Route over gRPC and REST, and the bare grpc.aio floor",
        f"h2load against `router serve` and against the bare server (`bench/bare_grpc.py`), each "
        f"in a process of its own; {ROUNDS} alternating rounds per row of {SEQUENTIAL:,} "
        f"sequential or {CONCURRENT:,} requests in flight (after {WARMUP} warm-up requests to "
        "each endpoint); gRPC on one HTTP/2 connection with `-m` streams in flight, REST on "
        "`-c` HTTP/1.1 keep-alive connections; per-request times from h2load's log, pooled, "
        "nearest-rank percentiles; req/s the median round's; server CPU per request from "
        "/proc/<pid>/stat.",
    )
    with tempfile.TemporaryDirectory() as workdir:
        runs = measure(Path(workdir))
    rows = {name: pooled(results, name, taken) for name, taken in runs.items()}
    for load in ("sequential", *(f"{m} in flight" for m in GRPC_IN_FLIGHT)):
        router, bare = rows[f"gRPC Route, {load}"], rows[f"bare grpc.aio floor, {load}"]
        cpu_share = (bare.cpu_us_per_request or 0) / (router.cpu_us_per_request or 1)
        results.note(
            f"{load}: the bare grpc.aio server takes {bare.p50 / router.p50:.0%} of gRPC Route's "
            f"p50 and {cpu_share:.0%} of its CPU per request; it serves {bare.rate or 0:,.0f} "
            f"req/s to the router's {router.rate or 0:,.0f}"
        )
    one, two = (
        rows[
            f"gRPC Route, {n} worker{'s' * (n > 1)}, {LOADED_IN_FLIGHT} in flight on 2 connections"
        ]
        for n in (1, 2)
    )
    results.note(
        f"`router serve --workers 2` (sharing Redis) serves {two.rate or 0:,.0f} req/s at "
        f"{LOADED_IN_FLIGHT} in flight on two connections, against {one.rate or 0:,.0f} for one "
        f"worker: {(two.rate or 0) / (one.rate or 1):.2f}x on this machine, whose "
        f"{os.cpu_count()} cores the one worker already nearly fills with h2load "
        f"({one.rate or 0:,.0f} req/s x {one.cpu_us_per_request or 0:.0f} µs = "
        f"{(one.rate or 0) * (one.cpu_us_per_request or 0) / 1e6:.2f} cores: gRPC's threads "
        "work outside the GIL)"
    )
    for label in ("gRPC", "REST", "bare floor"):
        prefix = {"gRPC": "gRPC Route", "REST": "REST /route", "bare floor": "bare grpc.aio floor"}
        for load in ("sequential", f"{REST_IN_FLIGHT} in flight"):
            name = f"{prefix[label]}, {load}"
            results.plots.setdefault(f"route-cdf {load}", {})[label] = cdf(runs[name])
    targets(results, rows)


def targets(results: Results, rows: dict[str, Row]) -> None:
    sequential = rows["gRPC Route, sequential"]
    results.target(
        "gRPC Route sequential p50",
        f"<= {SEQUENTIAL_P50_US:.0f} µs",
        f"{sequential.p50:.0f} µs",
        sequential.p50 <= SEQUENTIAL_P50_US,
    )
    loaded = rows[f"gRPC Route, {LOADED_IN_FLIGHT} in flight"]
    rate = loaded.rate or 0.0
    results.target(
        f"gRPC Route at {LOADED_IN_FLIGHT} in flight",
        f">= {LOADED_RATE:,.0f} req/s with p99 <= {LOADED_P99_US / 1000:g} ms",
        f"{rate:,.0f} req/s, p99 {loaded.p99 / 1000:.2f} ms",
        rate >= LOADED_RATE and loaded.p99 <= LOADED_P99_US,
    )
    ratio = rows["REST /route, sequential"].p50 / sequential.p50
    results.target(
        "REST /route sequential p50 over gRPC's",
        f"<= {SEQUENTIAL_P50_RATIO}x",
        f"{ratio:.2f}x",
        ratio <= SEQUENTIAL_P50_RATIO,
    )
    rest_rate = rows[f"REST /route, {REST_IN_FLIGHT} in flight"].rate or 0.0
    share = rest_rate / (rows[f"gRPC Route, {REST_IN_FLIGHT} in flight"].rate or 1.0)
    results.target(
        f"REST /route throughput at {REST_IN_FLIGHT} in flight, share of gRPC's",
        f">= {THROUGHPUT_SHARE:.0%}",
        f"{share:.0%}",
        share >= THROUGHPUT_SHARE,
    )


def main() -> None:
    run(Results())


if __name__ == "__main__":
    main()
