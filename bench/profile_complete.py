"""Where a completion's CPU goes: py-spy samples of `router serve` and of the bare forwarder.

`python -m bench.profile_complete [--seconds S]` (`make profile`) starts the fake OpenRouter
(500 ms to answer), `router serve` and the bare forwarder (`bench.bare_grpc --forward`: gRPC in,
aiohttp out, nothing chosen), each in a process of its own. For each server in turn,
`router benchmark` sends Completes at 100 arrivals a second from a process of its own while
py-spy samples the server (without pausing it) and /proc gives its CPU time. The samples are
sorted into where they were taken, and each share is turned into CPU milliseconds per
completion. py-spy needs to be allowed to read the server's memory (root, or ptrace allowed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc

from bench.processes import bare_forwarder_process, cpu_seconds
from cli.processes import ROOT, fake_process, router_process
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub

RATE = 100
IN_FLIGHT = 60  # above what 100 arrivals a second keep in flight at 500 ms
SAMPLES_PER_S = 250
SETTLE_S = 6.0  # load before the samples: warm-up and the first arrivals
OWN, AIOHTTP = "the router's own code", "aiohttp (the call to OpenRouter)"
# By the innermost frame: of the router's code or aiohttp's, else what runs at the leaf.
LEAVES = (
    ("grpc.aio and asyncio callbacks (native)", "Handle._run"),
    ("waiting for events (epoll)", "EpollSelector.select"),
    ("gRPC's threads (native)", "Thread.run"),
)
OTHER = "the event loop and the rest"
PLACES = (OWN, AIOHTTP, *(name for name, _ in LEAVES), OTHER)


def place(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        if "(service/" in frame:
            return OWN
        if "aiohttp/" in frame:
            return AIOHTTP
    return next((name for name, leaf in LEAVES if frames[-1].startswith(leaf)), OTHER)


def sampled(pid: int, target: str, seconds: float, out: Path) -> tuple[Counter[str], float, int]:
    """Samples of `pid` by place, its CPU seconds and the completions answered meanwhile."""
    load = [sys.executable, "-m", "cli", "benchmark", "--target", target, "--rpc", "complete"]
    load += ["--mode", "quality", "--rate", str(RATE), "--concurrency", str(IN_FLIGHT)]
    load += ["--duration", str(seconds + 2 * SETTLE_S), "--warmup", "0", "--json"]
    with subprocess.Popen(load, cwd=ROOT, stdout=subprocess.PIPE, text=True) as generator:
        time.sleep(SETTLE_S)
        before = cpu_seconds(pid)
        spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid)]
        spy += ["--nonblocking"]
        spy += ["--rate", str(SAMPLES_PER_S), "--duration", str(int(seconds))]
        spy += ["--format", "raw", "--output", str(out)]
        subprocess.run(spy, check=True, capture_output=True)
        used = cpu_seconds(pid) - before
        report = json.loads(generator.communicate()[0])
    if report["errors"]:
        raise RuntimeError(f"completions failed while sampled: {report['errors']}")
    places: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        places[place(stack)] += int(count)
    return places, used, round(report["throughput_per_s"] * seconds)


def table(rows: dict[str, tuple[Counter[str], float, int]]) -> str:
    """CPU ms per completion by place, a column per server."""
    names = list(rows)
    lines = ["| where | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for where in PLACES:
        cells = []
        for places, used, completions in rows.values():
            share = places[where] / max(sum(places.values()), 1)
            cells.append(f"{share * used * 1000 / completions:.2f} ms ({share:.0%})")
        lines.append(f"| {where} | " + " | ".join(cells) + " |")
    totals = [f"{used * 1000 / n:.2f} ms" for _, used, n in rows.values()]
    lines.append("| **CPU per completion** | " + " | ".join(totals) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="sampling time per server")
    args = parser.parse_args()
    rows: dict[str, tuple[Counter[str], float, int]] = {}
    with (
        tempfile.TemporaryDirectory() as work,
        fake_process(0.5) as fake,
        router_process(fake) as router,
        grpc.insecure_channel(router.grpc_address) as channel,
    ):
        stub = RouterStub(channel)
        stub.RefreshCatalogue(pb.RefreshCatalogueRequest(), wait_for_ready=True, timeout=30)
        model = stub.Route(pb.RouteRequest(mode=pb.MODE_QUALITY)).model
        rows["router serve"] = sampled(
            router.pid, router.grpc_address, args.seconds, Path(work) / "router.txt"
        )
        with bare_forwarder_process(fake, model) as bare:
            rows["bare forwarder"] = sampled(
                bare.pid, bare.grpc_address, args.seconds, Path(work) / "bare.txt"
            )
    print(f"Complete at {RATE} arrivals/s, fake OpenRouter answering in 500 ms:\n")
    print(table(rows))


if __name__ == "__main__":
    main()
