"""Route over gRPC and over REST `/route`, side by side, against one running router.

The router runs as `router serve` in a process of its own (gRPC and the REST gateway over one
core); h2load (Debian's nghttp2-client), a C load generator that costs the router's cores little,
sends the requests: gRPC unary calls as HTTP/2 POSTs of a framed RouteRequest on one connection,
REST as HTTP/1.1 POSTs of the same request in JSON on keep-alive connections. Rounds alternate
between the transports, so that both see the same machine; each row pools its rounds. The
router's CPU time per request is read from /proc.
"""

from __future__ import annotations

import shutil
import statistics
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.processes import cpu_seconds
from cli.processes import RouterProcess, fake_process, router_process
from cli.stats import percentile
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub

REQUEST = pb.RouteRequest(mode=pb.MODE_SPEED, top_k=5)
REST_BODY = b'{"mode": "speed", "top_k": 5}'
ROUNDS = 3
SEQUENTIAL = 2_000  # requests per round, one at a time
CONCURRENT = 6_000  # requests per round, 16 in flight
IN_FLIGHT = 16
WARMUP = 500
START_TIMEOUT_S = 30.0
# Targets of REST against gRPC on this machine.
SEQUENTIAL_P50_RATIO = 1.5
THROUGHPUT_SHARE = 0.5


@dataclass
class Run:
    """Per-request microseconds and requests per second of one h2load run."""

    micros: list[int]
    rate: float
    cpu_ms: float


def framed(message: pb.RouteRequest) -> bytes:
    """A gRPC message on the wire: not compressed, its length, the message."""
    body = message.SerializeToString()
    return struct.pack(">?I", False, len(body)) + body


def h2load(
    url: str,
    body: Path,
    headers: list[str],
    requests: int,
    in_flight: int,
    *,
    h1: bool,
    router: RouterProcess,
) -> Run:
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        command = ["h2load", "-n", str(requests), "-d", str(body), f"--log-file={log.name}"]
        if h1:
            command += ["--h1", "-c", str(in_flight), "-m", "1"]
        else:
            command += ["-c", "1", "-m", str(in_flight)]
        for header in headers:
            command += ["-H", header]
        cpu_before = cpu_seconds(router.pid)
        started = time.perf_counter()
        done = subprocess.run([*command, url], capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        cpu_ms = (cpu_seconds(router.pid) - cpu_before) * 1000 / requests
        if done.returncode != 0 or f"{requests} succeeded" not in done.stdout:
            raise RuntimeError(f"h2load failed: {done.stdout[-800:]} {done.stderr[-800:]}")
        micros = [int(line.split("\t")[2]) for line in log if line.strip()]
    statuses = done.stdout.split("status codes: ")[1].split("\n")[0]
    if not statuses.startswith(f"{requests} 2xx"):
        raise RuntimeError(f"not every request succeeded: {statuses}")
    return Run(micros, requests / elapsed, cpu_ms)


class Transports:
    def __init__(self, router: RouterProcess, workdir: Path) -> None:
        self.router = router
        self.grpc_body = workdir / "route.grpc"
        self.grpc_body.write_bytes(framed(REQUEST))
        self.rest_body = workdir / "route.json"
        self.rest_body.write_bytes(REST_BODY)
        host = router.grpc_address
        self.grpc_url = f"http://{host}/router.v1.Router/Route"
        self.rest_url = f"{router.http_url}/route"

    def grpc(self, requests: int, in_flight: int) -> Run:
        headers = ["content-type: application/grpc", "te: trailers"]
        return h2load(
            self.grpc_url,
            self.grpc_body,
            headers,
            requests,
            in_flight,
            h1=False,
            router=self.router,
        )

    def rest(self, requests: int, in_flight: int) -> Run:
        headers = ["content-type: application/json"]
        return h2load(
            self.rest_url, self.rest_body, headers, requests, in_flight, h1=True, router=self.router
        )


def row(name: str, runs: list[Run]) -> tuple[float, float]:
    """Print one pooled row; returns (p50 µs, requests per second: the median of the rounds)."""
    ordered = sorted(m * 1000 for run in runs for m in run.micros)
    p50, p99, p999 = (percentile(ordered, q) for q in (0.5, 0.99, 0.999))
    rate = statistics.median(run.rate for run in runs)
    cpu = statistics.median(run.cpu_ms for run in runs)
    print(
        f"{name:<34} {p50:>9.0f} {p99:>9.0f} {p999:>9.0f} {rate:>9.0f} {cpu * 1000:>9.0f}"
        f"  n={len(ordered)}",
        flush=True,
    )
    return p50, rate


def check_answers(router: RouterProcess) -> str:
    """The request routes over gRPC; the model it picks."""
    with grpc.insecure_channel(router.grpc_address) as channel:
        grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT_S)
        return RouterStub(channel).Route(REQUEST, timeout=10).model


def main() -> None:
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is missing: apt-get install nghttp2-client (make system-deps)")
    print(__doc__.strip().splitlines()[0])
    print(
        f"method: h2load, {ROUNDS} alternating rounds per row of {SEQUENTIAL} sequential or "
        f"{CONCURRENT} requests at {IN_FLIGHT} in flight (after {WARMUP} warm-up requests); "
        "per-request times from h2load's log, nearest-rank percentiles; router CPU per request "
        "from /proc/<pid>/stat."
    )
    with (
        fake_process() as fake,
        router_process(fake) as router,
        tempfile.TemporaryDirectory() as workdir,
    ):
        print(f"Route speed top 5 -> {check_answers(router)}")
        ways = Transports(router, Path(workdir))
        ways.grpc(WARMUP, 1)
        ways.rest(WARMUP, 1)
        print(
            f"{'case (microseconds)':<34} {'p50':>9} {'p99':>9} {'p99.9':>9} {'req/s':>9}"
            f" {'CPU µs':>9}"
        )
        results: dict[str, list[Run]] = {}
        cases: dict[str, Callable[[], Run]] = {
            "gRPC Route, sequential": lambda: ways.grpc(SEQUENTIAL, 1),
            "REST /route, sequential": lambda: ways.rest(SEQUENTIAL, 1),
            f"gRPC Route, {IN_FLIGHT} in flight": lambda: ways.grpc(CONCURRENT, IN_FLIGHT),
            f"REST /route, {IN_FLIGHT} in flight": lambda: ways.rest(CONCURRENT, IN_FLIGHT),
        }
        for _ in range(ROUNDS):
            for name, run in cases.items():
                results.setdefault(name, []).append(run())
        figures = {name: row(name, runs) for name, runs in results.items()}
    names = list(figures)
    seq_ratio = figures[names[1]][0] / figures[names[0]][0]
    share = figures[names[3]][1] / figures[names[2]][1]
    print(
        f"REST/gRPC sequential p50: {seq_ratio:.2f}x (target <= {SEQUENTIAL_P50_RATIO}x: "
        f"{'met' if seq_ratio <= SEQUENTIAL_P50_RATIO else 'NOT met'}); REST throughput at "
        f"{IN_FLIGHT} in flight: {share:.0%} of gRPC's (target >= {THROUGHPUT_SHARE:.0%}: "
        f"{'met' if share >= THROUGHPUT_SHARE else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
