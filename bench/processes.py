"""A process's CPU time, a redis-server of its own and the bare gRPC server, for the benchmarks
(the router and the fake OpenRouter in processes of their own: `cli.processes`)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cli.local_redis import start_redis, stop
from cli.processes import FakeProcess, announcing


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process and its live children (a router's workers) have
    used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(cpu_seconds(int(child)) for child in children)


@contextmanager
def redis_process(*, paused: bool = False) -> Iterator[str]:
    """A redis-server of its own on loopback, without persistence (`make run`'s); yields its
    URL. `paused`: frozen (SIGSTOP) once it answers, so it takes connections and never replies."""
    with tempfile.TemporaryDirectory() as workdir:
        redis, url = start_redis("redis-server", Path(workdir))
        try:
            if paused:
                redis.send_signal(signal.SIGSTOP)
            yield url
        finally:
            redis.send_signal(signal.SIGCONT)
            stop(redis)


@dataclass(frozen=True)
class BareProcess:
    grpc_address: str
    pid: int


@contextmanager
def bare_grpc_process(response: Path) -> Iterator[BareProcess]:
    """`bench.bare_grpc` in a process of its own, answering Route with the bytes of `response`."""
    with _bare(["--response", str(response)]) as bare:
        yield bare


@contextmanager
def bare_forwarder_process(fake: FakeProcess, model: str) -> Iterator[BareProcess]:
    """`bench.bare_grpc` in a process of its own, forwarding Complete to `fake` for `model`."""
    url = fake.base_url + "/chat/completions"
    with _bare(["--forward", url, "--model", model], {"BARE_UPSTREAM_KEY": fake.api_key}) as bare:
        yield bare


@contextmanager
def _bare(options: list[str], env: dict[str, str] | None = None) -> Iterator[BareProcess]:
    command = [sys.executable, "-m", "bench.bare_grpc", *options]
    with announcing(command, 1, env) as (pid, (started,)):
        if not started.startswith("bare gRPC at "):
            raise RuntimeError(f"the bare gRPC server did not start: {started!r}")
        yield BareProcess(started.split()[3], pid)
