"""Faults around the completions: bursts of concurrent requests over models that fail in every
way at once (nothing lost, nothing hangs, and the router recovers by itself once the faults are
gone), one model failing until its circuit opens and heals, and the backend of a `router
gateway --target` going away under load and coming back on the same port.

Redis faults are `tests/test_faults_redis.py` and `tests/test_redis_faults.py`; the catalogue
endpoint's, `tests/test_faults_catalogue.py` and `tests/test_refresh.py`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from cli.processes import free_port
from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import (
    DEFAULT_KEY,
    FakeOpenRouter,
    HttpError,
    MidStreamError,
    Reset,
    Stall,
)
from testkit.servers import GatewayThread, ServerThread, settings_for
from tests.faults_report import REPORT, write_fault_report  # noqa: F401  (the fixture)

HELLO = [pb.ChatMessage(role="user", content="Hello through a burst of faults.")]
CALL_TIMEOUT_S = 20
WAIT_S = 60  # the test's own waits, bounded: a hang fails the test
ATTEMPT_S = 1.0
COOLDOWN_S = 30.0  # the circuit policy's first cooldown (service/resilience.py)


class Clock:
    """The router's monotonic clock, moved forward by hand: circuits rest on it."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.ahead_s


# Every fault at once, each on a model of its own, and two healthy models to fail over to.
BURST_FAULTS = {
    "openai/gpt-4o-mini": ("503", HttpError.unavailable()),
    "openai/gpt-4o": ("stalled", Stall()),
    "anthropic/claude-3-haiku": ("reset", Reset()),
    "meta-llama/llama-3.3-70b-instruct": ("error mid-stream", MidStreamError(after_chunks=2)),
    "mistralai/mistral-nemo": ("429", HttpError.upstream_rate_limited(retry_after_s=30)),
}
HEALTHY = ["google/gemini-2.5-flash", "deepseek/deepseek-v4-flash"]
BURST = 40


@dataclass
class Ending:
    """How one request of a burst ended."""

    code: str  # "OK" or the gRPC status name
    first: str = ""  # the first attempt's outcome (answers)
    details: str = ""


def send(stub: RouterStub, models: list[str], streamed: bool) -> Ending:
    request = pb.CompleteRequest(models=models, messages=HELLO)
    try:
        if not streamed:
            response = stub.Complete(request, timeout=CALL_TIMEOUT_S)
            return Ending("OK", response.attempts[0].outcome)
        for chunk in stub.StreamComplete(request, timeout=CALL_TIMEOUT_S):
            if chunk.WhichOneof("event") == "summary":
                return Ending("OK", chunk.summary.attempts[0].outcome)
        return Ending("ENDED_WITHOUT_SUMMARY")
    except grpc.RpcError as error:
        return Ending(error.code().name, details=error.details())  # type: ignore[attr-defined]


def burst(stub: RouterStub, plan: list[tuple[list[str], bool]]) -> list[Ending]:
    """Every request of `plan` at once; each waits at most its gRPC deadline, and the test no
    longer than WAIT_S."""
    with ThreadPoolExecutor(len(plan)) as pool:
        futures = [pool.submit(send, stub, models, streamed) for models, streamed in plan]
        return [future.result(timeout=WAIT_S) for future in futures]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def router(fake: FakeOpenRouter, tmp_path: Path, clock: Clock) -> Iterator[tuple[str, RouterStub]]:
    fake.reset()
    settings = settings_for(
        fake,
        tmp_path / "state",
        attempt_timeout_s=ATTEMPT_S,
        first_token_timeout_s=ATTEMPT_S,
        stream_idle_timeout_s=ATTEMPT_S,
        endpoint_stats_models=0,
        openrouter_timeout_s=0.5,
    )
    with ServerThread(settings, clock=clock) as address, grpc.insecure_channel(address) as channel:
        stub = RouterStub(channel)
        assert stub.RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        yield address, stub


def test_a_burst_over_every_fault_at_once_loses_nothing_and_recovers(
    router: tuple[str, RouterStub], fake: FakeOpenRouter, clock: Clock
) -> None:
    _, stub = router
    faulty = list(BURST_FAULTS)
    for model, (_, behaviour) in BURST_FAULTS.items():
        fake.set_behaviour(model, behaviour)
    # Request i names a faulty model, then a healthy one; every other one is streamed.
    plan = [([faulty[i % len(faulty)], HEALTHY[i % 2]], i % 2 == 1) for i in range(BURST)]
    endings = burst(stub, plan)

    codes = Counter(e.code for e in endings)
    answered = codes["OK"]
    errors = [e for e in endings if e.code != "OK"]
    assert answered + len(errors) == BURST, "every request ended, none hung"
    # Failing over is refused past the retry budget, and a stream that had begun cannot fail
    # over: both are UNAVAILABLE, saying why. Nothing else may go wrong.
    for e in errors:
        assert e.code == "UNAVAILABLE", e
        assert "after it began" in e.details or "retry budget" in e.details, e
    mid_stream = [
        (models, streamed)
        for models, streamed in plan
        if streamed and models[0] == "meta-llama/llama-3.3-70b-instruct"
    ]
    assert sum("after it began" in e.details for e in errors) <= len(mid_stream)
    REPORT.add(
        "5 faults at once (503, stall, RST, mid-stream error, 429), 2 healthy models",
        "gRPC, 40 concurrent, half streamed",
        ", ".join(f"{code} {n}" for code, n in sorted(codes.items())),
        sent=BURST,
        answered=answered,
        errors=len(errors),
    )

    # The faults are over. Circuits that opened rest for their cooldown, then a probe closes
    # them: once past it, each faulty model answers by itself, first time.
    for model in faulty:
        fake.set_behaviour(model, None)
    clock.ahead_s += COOLDOWN_S + 1
    for model in faulty:
        ending = send(stub, [model], streamed=False)
        assert (ending.code, ending.first) == ("OK", "ok"), (model, ending)
    ranked = stub.Route(pb.RouteRequest(top_k=50))
    assert "circuit_open" not in ranked.removed_by_constraint
    endings = burst(stub, [([faulty[i % len(faulty)]], i % 2 == 1) for i in range(BURST)])
    assert [(e.code, e.first) for e in endings] == [("OK", "ok")] * BURST
    REPORT.add(
        "recovery after the burst (circuits past their cooldown)",
        "gRPC, 40 concurrent, half streamed",
        "every request answered by the model it named, first attempt",
        sent=BURST + len(faulty),
        answered=BURST + len(faulty),
        errors=0,
    )


def test_an_open_circuit_says_when_to_retry_and_closes_after_its_cooldown(
    router: tuple[str, RouterStub], fake: FakeOpenRouter, clock: Clock
) -> None:
    """A model failing alone: five failures open its circuit, calls naming it are refused at once
    with the time to wait, and after the cooldown the half-open probe closes it again."""
    _, stub = router
    broken = "openai/gpt-4o-mini"
    fake.set_behaviour(broken, HttpError.bad_gateway())
    sent = 0
    for _ in range(5):  # the policy's consecutive failures
        assert send(stub, [broken], streamed=False).code == "UNAVAILABLE"
        sent += 1
    request = pb.CompleteRequest(models=[broken], messages=HELLO)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Complete(request, timeout=CALL_TIMEOUT_S)
    sent += 1
    trailers = dict(caught.value.trailing_metadata())  # type: ignore[attr-defined]
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert 0 < float(trailers["router-retry-after-s"]) <= COOLDOWN_S
    calls = [r for r in fake.requests if r.path.endswith("/chat/completions")]
    assert len(calls) == 5, "the open circuit called nothing"

    fake.set_behaviour(broken, None)
    clock.ahead_s += COOLDOWN_S + 1
    for streamed in (False, True, False):
        ending = send(stub, [broken], streamed=streamed)
        assert (ending.code, ending.first) == ("OK", "ok"), ending
        sent += 1
    REPORT.add(
        "one model failing (502) until its circuit opens, then healed",
        "gRPC",
        "5 x UNAVAILABLE (http_502), 1 x UNAVAILABLE at once with retry-after, "
        "then answered after the cooldown",
        sent=sent,
        answered=3,
        errors=6,
    )


class RestLoad:
    """Threads sending `/route` and `/complete` to a gateway until stopped, keeping how each
    request ended: its status and error code, or the exception that ended it."""

    def __init__(self, url: str, threads: int = 6) -> None:
        self.url = url
        self.threads = threads
        self.endings: list[tuple[int, str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Condition()

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=CALL_TIMEOUT_S) as http:
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    if (n + i) % 2:
                        reply = http.post("/route", json={"mode": "speed"})
                    else:
                        body = {
                            "models": [HEALTHY[0]],
                            "messages": [{"role": "user", "content": "hi"}],
                        }
                        reply = http.post("/complete", json=body)
                except httpx.HTTPError as exc:  # a hang or a broken connection
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                        self._lock.notify_all()
                    continue
                code = "" if reply.status_code == 200 else str(reply.json()["error"]["code"])
                with self._lock:
                    self.endings.append((reply.status_code, code))
                    self._lock.notify_all()
                time.sleep(0.005)

    def __enter__(self) -> RestLoad:
        self._pool = ThreadPoolExecutor(self.threads)
        self._futures = [self._pool.submit(self._run, n) for n in range(self.threads)]
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for future in self._futures:
            future.result(timeout=WAIT_S)
        self._pool.shutdown()

    def wait_for(self, what: str, predicate: Any) -> None:
        """Until `predicate(endings)` holds; fails after WAIT_S."""
        with self._lock:
            assert self._lock.wait_for(lambda: predicate(self.endings), timeout=WAIT_S), what

    def mark(self) -> int:
        with self._lock:
            return len(self.endings)


class ThreadBackend:
    """The router in a thread of this process (`ServerThread`), stopped with no grace."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: ServerThread | None = None

    def start(self) -> None:
        self.server = ServerThread(self.settings)
        self.server.__enter__()

    def stop(self) -> None:
        if self.server is not None:
            self.server.__exit__(None, None, None)
            self.server = None


class ProcessBackend:
    """`router serve` in a process of its own, killed with SIGKILL."""

    def __init__(self, settings: Settings, fake: FakeOpenRouter) -> None:
        self.settings = settings
        self.fake = fake
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        state = self.settings.state_dir
        state.mkdir(parents=True, exist_ok=True)
        env = os.environ | {
            "ROUTER_STATE_DIR": str(state),
            "ROUTER_REFRESH_INTERVAL_S": "0",
            "ROUTER_ENDPOINT_STATS_MODELS": "0",
            "ROUTER_OPENROUTER_BASE_URL": self.fake.base_url,
            "OPENROUTER_API_KEY": DEFAULT_KEY,
            "ROUTER_REFRESH_MIN_SHARE": "0.05",
        }
        command = [sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1"]
        command += ["--grpc-port", str(self.settings.grpc_port)]
        command += ["--http-port", str(free_port())]
        with open(state / "router.log", "ab") as log:
            self.process = subprocess.Popen(command, cwd=state, env=env, stdout=log, stderr=log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(WAIT_S)
            self.process = None


@pytest.mark.parametrize("kind", ["thread, stopped", "process, SIGKILL"])
def test_the_gateways_backend_restarted_under_load(
    fake: FakeOpenRouter, tmp_path: Path, kind: str
) -> None:
    """`router gateway --target` in front of a router that goes away and starts again on the
    same port while REST requests flow: 503 `unavailable` while it is down, never a 500 or a
    hang, and served again by itself once it is back."""
    fake.reset()
    settings = settings_for(fake, tmp_path / "state", endpoint_stats_models=0).model_copy(
        update={"grpc_port": free_port()}
    )
    target = f"127.0.0.1:{settings.grpc_port}"
    backend = (
        ThreadBackend(settings) if kind.startswith("thread") else ProcessBackend(settings, fake)
    )

    def start() -> None:
        backend.start()
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=WAIT_S)
            # The fake's catalogue: fetched the first time, found persisted after a restart.
            refreshed = RouterStub(channel).RefreshCatalogue(
                pb.RefreshCatalogueRequest(), timeout=CALL_TIMEOUT_S
            )
            assert refreshed.catalogue.models == len(fake.models)

    try:
        start()
        with GatewayThread(target, settings) as url, RestLoad(url) as load:
            load.wait_for("answers before the restart", lambda e: len(e) >= 50)
            backend.stop()
            down = load.mark()
            load.wait_for(
                "503s while the backend is down",
                lambda e: sum(s == 503 for s, _ in e[down:]) >= 20,
            )
            start()
            back = load.mark()
            load.wait_for(
                "answers once the backend is back",
                lambda e: sum(s == 200 for s, _ in e[back:]) >= 50,
            )
    finally:
        backend.stop()
    statuses = Counter(load.endings)
    assert load.failures == [], "no request hung or lost its connection"
    assert set(statuses) <= {(200, ""), (503, "unavailable")}, statuses
    answered = statuses[200, ""]
    errors = statuses[503, "unavailable"]
    REPORT.add(
        f"gateway's backend ({kind}) restarted on the same port",
        "REST via router gateway --target",
        f"200 x {answered}, 503 unavailable x {errors}, no 500, no hang",
        sent=len(load.endings) + len(load.failures),
        answered=answered,
        errors=errors,
    )
