"""A process's CPU time, and a redis-server of its own, for the benchmarks (the router and the fake
OpenRouter in processes of their own: `cli.processes`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cli.processes import free_port


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
