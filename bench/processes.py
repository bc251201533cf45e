"""A process's CPU time, a redis-server of its own and the bare gRPC server, for the benchmarks
(the router and the fake OpenRouter in processes of their own: `cli.processes`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cli.processes import FakeProcess, announcing, free_port


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process and its live children (a router's workers) have
    used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(cpu_seconds(int(child)) for child in children)


@contextmanager
def redis_process(*, paused: bool = False) -> Iterator[str]:
    """A redis-server of its own on loopback, without persistence; yields its URL. `paused`:
    frozen (SIGSTOP) once it answers, so it takes connections and never replies."""
    port = free_port()
    command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    command += ["--appendonly", "no"]
    with (
        tempfile.TemporaryDirectory() as workdir,
        subprocess.Popen([*command, "--dir", workdir], stdout=subprocess.DEVNULL) as redis,
    ):
        try:
            for _ in range(500):
                if redis.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                        sock.sendall(b"PING\r\n")
                        if sock.recv(64).startswith(b"+PONG"):
                            break
                except OSError:
                    time.sleep(0.01)
            if paused:
                redis.send_signal(signal.SIGSTOP)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            redis.send_signal(signal.SIGCONT)
            redis.terminate()
            redis.wait(10)


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
