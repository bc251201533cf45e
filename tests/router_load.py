"""A `router serve` process under REST load, for the soak and the thread tests: what /proc says
of it, and REST calls as `cli.load` makes them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cli.load import Call, CallFailed
from cli.processes import RouterProcess

START_TIMEOUT_S = 60.0  # a router started here, on two busy cores
HTTP_TIMEOUT_S = 30.0
PROMPT = [{"role": "user", "content": "Say hello to the soak test."}]
REST_CALLS: dict[str, dict[str, Any]] = {
    "/route": {"mode": "speed"},
    "/complete": {"mode": "speed", "messages": PROMPT},
    "/v1/chat/completions": {"model": "router/speed", "messages": PROMPT},
}


@dataclass(frozen=True)
class Sample:
    rss_kib: int
    threads: int


def sample(pid: int) -> Sample:
    """The process's resident memory and thread count, from /proc/<pid>/status."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines)
    return Sample(int(fields["VmRSS"].split()[0]), int(fields["Threads"]))


def serving(router: RouterProcess) -> None:
    """Once the router answers on its REST port, with the catalogue of the fake it was
    pointed at in place of the embedded one."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{router.http_url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the router did not answer on {router.http_url}")
        time.sleep(0.1)
    refreshed = httpx.post(f"{router.http_url}/admin/catalogue/refresh", timeout=HTTP_TIMEOUT_S)
    assert refreshed.json()["replaced"]


def rest_call(client: httpx.AsyncClient, path: str) -> Call:
    """A POST of `path` with its body of `REST_CALLS`; a failure is anything but 200."""
    body = REST_CALLS[path]

    async def call() -> None:
        try:
            reply = await client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise CallFailed(type(exc).__name__) from None
        if reply.status_code != 200:
            raise CallFailed(f"HTTP {reply.status_code}")

    return call
