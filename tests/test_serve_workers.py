"""`router serve --workers N` as a user runs it: two worker processes on one pair of ports
sharing a real redis-server, kept running by their parent, stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.processes import SERVING, announced_ports
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.servers import free_port
from tests.redis_server import RedisServer
from tests.test_serve import stopped

BIND_ATTEMPTS = 3
PORT_TAKEN = re.compile(r"already in use|Failed to bind", re.IGNORECASE)  # REST, gRPC
POLLS = 300  # of POLL_S each: the bound of every wait below
POLL_S = 0.05


class Served:
    def __init__(
        self, process: subprocess.Popen[bytes], log: Path, grpc_port: int, http_port: int
    ) -> None:
        self.process = process
        self.log = log
        self.grpc_port = grpc_port
        self.http_port = http_port

    def workers(self) -> set[int]:
        """The parent's live children (Linux lists them under /proc)."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(pid) for pid in path.read_text().split()}

    def workers_once(self, count: int) -> set[int]:
        for _ in range(POLLS):
            pids = self.workers()
            if len(pids) == count:
                return pids
            time.sleep(POLL_S)
        raise AssertionError(f"not {count} workers: {self.workers()}")

    def route_on_a_new_connection(self) -> pb.RouteResponse:
        with grpc.insecure_channel(
            f"127.0.0.1:{self.grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            answer: pb.RouteResponse = RouterStub(channel).Route(
                pb.RouteRequest(mode=pb.MODE_SPEED), timeout=10
            )
            return answer


def served_on_free_ports(env: dict[str, str], log: Path) -> Served:
    """The workers need fixed ports: free ones, and others when one was taken before they bound
    it."""
    attempt = 1
    while True:
        grpc_port, http_port = free_port(), free_port()
        arguments = ["serve", "--workers", "2", "--host", "127.0.0.1"]
        arguments += ["--grpc-port", str(grpc_port), "--http-port", str(http_port)]
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "cli", *arguments], stdout=output, stderr=output, env=env
            )
        try:
            announced_ports(log, process, SERVING)
        except RuntimeError:
            process.kill()
            process.wait()
            if attempt == BIND_ATTEMPTS or not PORT_TAKEN.search(log.read_text()):
                raise
            attempt += 1
        else:
            return Served(process, log, grpc_port, http_port)


@pytest.fixture
def served(redis_server: RedisServer, tmp_path: Path) -> Iterator[Served]:
    env = {
        **os.environ,
        "ROUTER_STATE_DIR": str(tmp_path / "state"),
        "ROUTER_REDIS_URL": redis_server.url,
    }
    served = served_on_free_ports(env, tmp_path / "router.log")
    yield served
    if served.process.poll() is None:
        served.process.kill()  # its workers get SIGTERM from the kernel
        served.process.wait(timeout=30)


def test_two_workers_answer_on_the_same_ports_and_share_decisions(served: Served) -> None:
    assert len(served.workers_once(2)) == 2
    decided = [served.route_on_a_new_connection().decision_id for _ in range(10)]
    url = f"http://127.0.0.1:{served.http_port}"
    for decision_id in decided:  # whichever worker decided, either finds it through Redis
        for _ in range(POLLS):
            with httpx.Client(base_url=url) as fresh:  # a new connection: any worker
                found = fresh.get(f"/decisions/{decision_id}", timeout=5)
            if found.status_code == 200:
                break
            assert found.status_code == 404
            time.sleep(POLL_S)
        assert found.json()["response"]["decision_id"] == decision_id


def test_a_killed_worker_is_replaced_and_sigterm_stops_them_all(served: Served) -> None:
    first = served.workers_once(2)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    for _ in range(POLLS):  # until the parent has reaped it and started another
        now = served.workers()
        if len(now) == 2 and victim not in now:
            break
        time.sleep(POLL_S)
    assert victim not in served.workers()
    assert len(served.workers()) == 2, "the parent started another worker"
    # Connections the killed worker had not accepted yet were reset with it; new ones are
    # served by the others.
    for _ in range(5):
        assert served.route_on_a_new_connection().model
    reply = httpx.post(
        f"http://127.0.0.1:{served.http_port}/route", json={"mode": "cost"}, timeout=5
    )
    assert reply.status_code == 200

    output = stopped(served.process, served.log)
    assert output.count("stopping: draining gRPC calls") >= 2


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["--workers", "2"], "--workers needs ROUTER_REDIS_URL"),
        (["--workers", "2", "--grpc-port", "0"], "--workers needs fixed ports"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_workers_that_cannot_share_are_refused(arguments: list[str], fragment: str) -> None:
    result = CliRunner().invoke(
        app, ["serve", *arguments], env={"ROUTER_REDIS_URL": "", "COLUMNS": "200"}
    )
    assert result.exit_code == 2
    assert fragment in result.output
