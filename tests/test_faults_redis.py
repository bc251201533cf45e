"""Two replicas on one Redis, under Route and Complete traffic, while Redis goes away and comes
back: no caller sees an error, and what the replicas share in the background (here a model's
open circuit, opened on one replica while Redis was down) reaches the other replica once Redis
is back, without a restart of either. One replica's Redis faults under load (killed, paused,
healthy) are `tests/test_redis_faults.py`."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import FakeOpenRouter, HttpError
from testkit.servers import ServerThread, settings_for
from tests.faults_report import REPORT, write_fault_report  # noqa: F401  (the fixture)
from tests.redis_server import RedisServer

HELLO = [pb.ChatMessage(role="user", content="Hello through a Redis restart.")]
HEALTHY = "google/gemini-2.5-flash"
BROKEN = "openai/gpt-4o-mini"
CALL_TIMEOUT_S = 20
WAIT_S = 30


@pytest.fixture
def fake() -> Iterator[FakeOpenRouter]:
    with FakeOpenRouter() as server:
        yield server


class Traffic:
    """A thread per replica alternating Route and Complete until stopped, counting each
    request's ending."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.answered = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _run(self, address: str) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = RouterStub(channel)
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    if i % 2:
                        stub.Route(pb.RouteRequest(mode=pb.MODE_QUALITY), timeout=CALL_TIMEOUT_S)
                    else:
                        request = pb.CompleteRequest(models=[HEALTHY], messages=HELLO)
                        stub.Complete(request, timeout=CALL_TIMEOUT_S)
                except grpc.RpcError as error:
                    with self._lock:
                        self.errors.append(f"{error.code()}: {error.details()}")  # type: ignore[attr-defined]
                    continue
                with self._lock:
                    self.answered += 1
                time.sleep(0.01)

    @contextlib.contextmanager
    def running(self) -> Iterator[Traffic]:
        threads = [threading.Thread(target=self._run, args=(a,)) for a in self.addresses]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(WAIT_S)
                assert not thread.is_alive(), "a request hung"


def circuit_open_on(stub: RouterStub) -> bool:
    ranked = stub.Route(pb.RouteRequest(mode=pb.MODE_QUALITY, top_k=50), timeout=CALL_TIMEOUT_S)
    return ranked.removed_by_constraint["circuit_open"] >= 1 and BROKEN not in [
        c.model for c in ranked.candidates
    ]


def test_a_circuit_opened_while_redis_was_down_reaches_the_other_replica_once_it_is_back(
    fake: FakeOpenRouter, tmp_path: Path, redis_server: RedisServer
) -> None:
    replicas = [
        ServerThread(
            settings_for(
                fake,
                tmp_path / f"state-{n}",
                redis_url=redis_server.url,
                shared_state_interval_s=0.1,
                endpoint_stats_models=0,
            )
        )
        for n in range(2)
    ]
    with (
        replicas[0] as first,
        replicas[1] as second,
        grpc.insecure_channel(first) as a,
        grpc.insecure_channel(second) as b,
    ):
        one, other = RouterStub(a), RouterStub(b)
        assert one.RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        for _ in range(50):  # the other replica takes the catalogue through Redis
            if (
                other.Route(pb.RouteRequest()).catalogue_version
                == one.Route(pb.RouteRequest()).catalogue_version
            ):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the other replica never took the catalogue")
        with Traffic([first, second]).running() as traffic:
            redis_server.kill()
            fake.set_behaviour(BROKEN, HttpError.bad_gateway())
            for _ in range(5):  # the circuit policy's consecutive failures, on one replica
                with pytest.raises(grpc.RpcError):
                    one.Complete(
                        pb.CompleteRequest(models=[BROKEN], messages=HELLO),
                        timeout=CALL_TIMEOUT_S,
                    )
            assert circuit_open_on(one)
            time.sleep(0.5)  # several exchange intervals with Redis down
            assert not circuit_open_on(other), "nothing is shared while Redis is away"
            redis_server.start()
            for _ in range(WAIT_S * 10):
                if circuit_open_on(other):
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("the open circuit never reached the other replica")
        assert traffic.errors == []
        assert traffic.answered > 0
    REPORT.add(
        "Redis killed and restarted under two replicas (a circuit opened meanwhile)",
        "gRPC Route + Complete on both replicas",
        "no error; the circuit reached the other replica once Redis was back",
        sent=traffic.answered + len(traffic.errors),
        answered=traffic.answered,
        errors=len(traffic.errors),
    )
