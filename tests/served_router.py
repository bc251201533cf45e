"""`router serve` as an operator runs it: a process of its own, configured by its environment,
on the fake OpenRouter of the test process, its output kept in a file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from testkit.fake_openrouter import FakeOpenRouter
from testkit.servers import free_port

START_TIMEOUT_S = 30.0
# Every ROUTER_* variable of the test process is left out: the test says what it sets.
OWN_SETTINGS = ("ROUTER_", "OPENROUTER_API_KEY")


@dataclass
class ServedRouter:
    process: subprocess.Popen[bytes]
    grpc_address: str
    http_url: str
    output: Path

    def log(self) -> str:
        return self.output.read_text()

    def terminate(self, timeout_s: float) -> int:
        """SIGTERM, as a supervisor stops it; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


def environment(fake: FakeOpenRouter, api_key: str, state: Path, **settings: str) -> dict[str, str]:
    """The environment of a router on `fake` called with `api_key`, with `ROUTER_<NAME>` for
    each of `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_SETTINGS)}
    return env | {
        "ROUTER_STATE_DIR": str(state),
        "ROUTER_REFRESH_INTERVAL_S": "0",
        "ROUTER_ENDPOINT_STATS_MODELS": "0",
        "ROUTER_REFRESH_MIN_SHARE": "0.05",  # the fake lists fewer models than the embedded one
        "ROUTER_OPENROUTER_BASE_URL": fake.base_url,
        "OPENROUTER_API_KEY": api_key,
        **{f"ROUTER_{name.upper()}": value for name, value in settings.items()},
    }


@contextmanager
def served_router(env: dict[str, str], output: Path) -> Iterator[ServedRouter]:
    """`router serve` on free ports of 127.0.0.1 once its REST port answers /health; killed on
    the way out if it still runs."""
    grpc_port, http_port = free_port(), free_port()
    command = [sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1"]
    command += ["--grpc-port", str(grpc_port), "--http-port", str(http_port)]
    with open(output, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    served = ServedRouter(
        process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", output
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(f"{served.http_url}/health"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"router serve did not come up:\n{served.log()}")
            time.sleep(0.1)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
