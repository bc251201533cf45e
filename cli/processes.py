"""The router (`router serve`) and the fake OpenRouter, each in a process of its own: for
`router benchmark --local` and the benchmarks of `bench/`."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0
# What `router serve` logs once each server listens, with the port it bound.
SERVING = {
    "grpc": re.compile(r"router gRPC serving on \S+:(\d+),"),
    "http": re.compile(r"REST gateway serving on http://\S+:(\d+)$"),
}


def free_port() -> int:
    """A port free on 127.0.0.1 just now (another process could still take it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class FakeProcess:
    base_url: str
    api_key: str
    pid: int


@contextmanager
def announcing(
    command: list[str], lines: int, env: dict[str, str] | None = None
) -> Iterator[tuple[int, list[str]]]:
    """`command` in a process of its own (with `env` added to the environment) that prints
    `lines` lines once it serves; yields its process id and those lines."""
    environment = None if env is None else os.environ | env
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=environment
    ) as process:
        try:
            assert process.stdout is not None
            yield process.pid, [process.stdout.readline() for _ in range(lines)]
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def fake_process(delay_s: float = 0.0) -> Iterator[FakeProcess]:
    """The fake OpenRouter of `testkit/` in a process of its own."""
    command = [sys.executable, "-m", "testkit.fake_openrouter", "--port", "0"]
    command += ["--first-token-delay", str(delay_s)]
    with announcing(command, 2) as (pid, (started, key)):
        if not started.startswith("fake OpenRouter at ") or not key.startswith("API key: "):
            raise RuntimeError(f"the fake OpenRouter did not start: {started!r}")
        yield FakeProcess(started.split()[3], key.split()[2], pid)


@dataclass(frozen=True)
class Upstream:
    """An OpenRouter (or the fake) as a router calls it."""

    base_url: str
    api_key: str


@dataclass(frozen=True)
class RouterProcess:
    grpc_address: str
    http_url: str
    pid: int
    upstream: Upstream | None = None  # the fake it was pointed at


@contextmanager
def router_process(
    fake: FakeProcess | None = None, *, workers: int = 1, redis_url: str | None = None
) -> Iterator[RouterProcess]:
    """`router serve` in a process of its own on free ports of 127.0.0.1, with a state directory
    of its own and no periodic refresh; pointed at `fake` when given, with `workers` worker
    processes (which need `redis_url`, and fixed ports: they share them). Yields once it
    serves."""
    grpc_port, http_port = (0, 0) if workers == 1 else (free_port(), free_port())
    with tempfile.TemporaryDirectory() as state:
        env = os.environ | {
            "ROUTER_STATE_DIR": state,
            "ROUTER_REFRESH_INTERVAL_S": "0",
            "ROUTER_ENDPOINT_STATS_MODELS": "0",
        }
        if redis_url is not None:
            env["ROUTER_REDIS_URL"] = redis_url
        if fake is not None:
            env |= {
                "ROUTER_OPENROUTER_BASE_URL": fake.base_url,
                "OPENROUTER_API_KEY": fake.api_key,
                "ROUTER_REFRESH_MIN_SHARE": "0.05",
            }
        command = [sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1"]
        command += ["--grpc-port", str(grpc_port), "--http-port", str(http_port)]
        command += ["--workers", str(workers)]
        with (
            open(Path(state) / "router.log", "w") as log,
            subprocess.Popen(command, cwd=state, env=env, stdout=log, stderr=log) as router,
        ):
            try:
                if workers == 1:
                    ports = announced_ports(Path(state) / "router.log", router, SERVING)
                    grpc_port, http_port = ports["grpc"], ports["http"]
                yield RouterProcess(
                    f"127.0.0.1:{grpc_port}",
                    f"http://127.0.0.1:{http_port}",
                    router.pid,
                    None if fake is None else Upstream(fake.base_url, fake.api_key),
                )
            finally:
                router.terminate()
                router.wait(20)


def announced_ports(
    log: Path, process: subprocess.Popen[Any], patterns: Mapping[str, re.Pattern[str]]
) -> dict[str, int]:
    """The ports `process` bound, by name, read from its `log` as they appear: each pattern's
    first group is the port. Waits until every pattern has matched a line."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        lines = log.read_text().splitlines()
        ports = {
            name: int(found[1])
            for name, pattern in patterns.items()
            for line in lines
            if (found := pattern.search(line))
        }
        if ports.keys() == patterns.keys():
            return ports
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"process {process.pid} announced no ports:\n{log.read_text()}")
        time.sleep(0.05)
