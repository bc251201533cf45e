"""The fake OpenRouter and the router, each in a process of its own, for the benchmarks."""

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

from testkit.fake_openrouter import DEFAULT_KEY
from testkit.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def fake_process(delay_s: float) -> Iterator[str]:
    """The fake OpenRouter in a process of its own; yields its base URL."""
    command = [sys.executable, "-m", "testkit.fake_openrouter", "--port", str(free_port())]
    command += ["--first-token-delay", str(delay_s)]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as fake:
        try:
            assert fake.stdout is not None
            line = fake.stdout.readline()
            if not line.startswith("fake OpenRouter at "):
                raise RuntimeError(f"the fake OpenRouter did not start: {line!r}")
            yield line.split()[3]
        finally:
            fake.terminate()
            fake.wait(10)


@dataclass(frozen=True)
class RouterProcess:
    grpc_address: str
    http_url: str
    pid: int


@contextmanager
def router_process(base_url: str) -> Iterator[RouterProcess]:
    """`router serve` in a process of its own, on the fake."""
    grpc_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as state:
        env = os.environ | {
            "ROUTER_OPENROUTER_BASE_URL": base_url,
            "OPENROUTER_API_KEY": DEFAULT_KEY,
            "ROUTER_STATE_DIR": state,
            "ROUTER_REFRESH_INTERVAL_S": "0",
            "ROUTER_REFRESH_MIN_SHARE": "0.05",
            "ROUTER_ENDPOINT_STATS_MODELS": "0",
        }
        command = [sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1"]
        command += ["--grpc-port", str(grpc_port), "--http-port", str(http_port)]
        with (
            open(Path(state) / "router.log", "w") as log,
            subprocess.Popen(command, cwd=state, env=env, stdout=log, stderr=log) as router,
        ):
            try:
                yield RouterProcess(
                    f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", router.pid
                )
            finally:
                router.terminate()
                router.wait(20)


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
