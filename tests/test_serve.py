"""`router serve` as a user runs it: a real process with both servers, stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli.processes import SERVING, announced_ports
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub

GATEWAY = {"http": re.compile(r"REST gateway on http://\S+:(\d+) in front of")}


def started(
    arguments: list[str],
    log: Path,
    env: dict[str, str],
    module: str = "cli",
    announces: Mapping[str, re.Pattern[str]] = SERVING,
) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """`python -m MODULE ARGUMENTS`, its output into `log`, once it has logged the ports it
    serves on (`announces`, by name)."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *arguments], stdout=output, stderr=output, env=env
        )
    try:
        return process, announced_ports(log, process, announces)
    except RuntimeError as exc:
        process.kill()
        process.wait()
        pytest.fail(f"{module} {arguments[0]} did not come up: {exc}")


def stopped(process: subprocess.Popen[bytes], log: Path) -> str:
    """Stop it with SIGTERM as a supervisor would; its output."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    output = log.read_text()
    assert process.returncode == 0, output
    return output


@dataclass(frozen=True)
class Served:
    process: subprocess.Popen[bytes]
    log: Path
    grpc_port: int
    http_port: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    state = tmp_path_factory.mktemp("state")
    env = {**os.environ, "ROUTER_STATE_DIR": str(state)}
    arguments = ["serve", "--grpc-port", "0", "--http-port", "0", "--host", "127.0.0.1"]
    process, ports = started(arguments, state / "router.log", env)
    yield Served(process, state / "router.log", ports["grpc"], ports["http"])
    if process.poll() is None:
        process.kill()
        process.wait()


def test_rest_and_grpc_answer(served: Served) -> None:
    grpc_port, http_port = served.grpc_port, served.http_port
    reply = httpx.post(f"http://127.0.0.1:{http_port}/route", json={"mode": "speed"}, timeout=5)
    assert reply.status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        decision = RouterStub(channel).Route(pb.RouteRequest(mode=pb.MODE_SPEED), timeout=5)
    assert decision.model == reply.json()["model"]


def test_a_gateway_in_front_of_the_router_answers_the_same(served: Served, tmp_path: Path) -> None:
    grpc_port, http_port = served.grpc_port, served.http_port
    target = ["gateway", "--target", f"127.0.0.1:{grpc_port}", "--http-port", "0"]
    gateway, ports = started(target, tmp_path / "gateway.log", dict(os.environ), announces=GATEWAY)
    port = ports["http"]
    try:
        body = {"mode": "quality", "constraints": {"deny_providers": ["openai"]}, "top_k": 3}
        beside = httpx.post(f"http://127.0.0.1:{http_port}/route", json=body, timeout=5).json()
        remote = httpx.post(f"http://127.0.0.1:{port}/route", json=body, timeout=5).json()
        for answer in (beside, remote):
            del answer["decision_id"]
        assert remote == beside
        unsatisfiable = {"constraints": {"min_context_tokens": 4_000_000_000}}
        refused = httpx.post(f"http://127.0.0.1:{port}/route", json=unsatisfiable, timeout=5)
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "unsatisfiable"
    finally:
        output = stopped(gateway, tmp_path / "gateway.log")
    assert f"in front of the router at 127.0.0.1:{grpc_port}" in output


def test_sigterm_stops_both_servers(served: Served) -> None:
    grpc_port, http_port = served.grpc_port, served.http_port
    output = stopped(served.process, served.log)
    assert "draining gRPC calls" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=1)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", grpc_port)):
        pass
