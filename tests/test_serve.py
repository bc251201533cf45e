"""`router serve` as a user runs it: a real process with both servers, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.servers import free_port

START_TIMEOUT_S = 30.0


def started(
    arguments: list[str], http_port: int, env: dict[str, str], module: str = "cli"
) -> subprocess.Popen[bytes]:
    """`python -m MODULE ARGUMENTS` once its REST port answers /health."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.communicate()[0].decode()
            pytest.fail(f"{module} {arguments[0]} did not come up:\n{output}")
        time.sleep(0.1)


def _stopped(process: subprocess.Popen[bytes]) -> str:
    """Stop it with SIGTERM as a supervisor would; its output."""
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "ROUTER_STATE_DIR": str(tmp_path_factory.mktemp("state"))}
    arguments = ["serve", "--grpc-port", str(grpc_port), "--http-port", str(http_port)]
    process = started([*arguments, "--host", "127.0.0.1"], http_port, env)
    yield process, grpc_port, http_port
    if process.poll() is None:
        process.kill()
        process.communicate()


def test_rest_and_grpc_answer(served: tuple[subprocess.Popen[bytes], int, int]) -> None:
    _, grpc_port, http_port = served
    reply = httpx.post(f"http://127.0.0.1:{http_port}/route", json={"mode": "speed"}, timeout=5)
    assert reply.status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        decision = RouterStub(channel).Route(pb.RouteRequest(mode=pb.MODE_SPEED), timeout=5)
    assert decision.model == reply.json()["model"]


def test_a_gateway_in_front_of_the_router_answers_the_same(
    served: tuple[subprocess.Popen[bytes], int, int],
) -> None:
    _, grpc_port, http_port = served
    port = free_port()
    target = ["gateway", "--target", f"127.0.0.1:{grpc_port}", "--http-port", str(port)]
    gateway = started(target, port, dict(os.environ))
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
        output = _stopped(gateway)
    assert f"in front of the router at 127.0.0.1:{grpc_port}" in output


def test_sigterm_stops_both_servers(served: tuple[subprocess.Popen[bytes], int, int]) -> None:
    process, grpc_port, http_port = served
    output = _stopped(process)
    assert "draining gRPC calls" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=1)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", grpc_port)):
        pass
