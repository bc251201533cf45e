"""Decisions looked up by id: across replicas through a real redis-server, in one process
without it, over gRPC, REST and the CLI."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import ANY_MODEL, FakeOpenRouter, HttpError, Reply
from testkit.servers import ServerThread, settings_for
from tests.redis_server import RedisServer

ROUTING = pb.RouteRequest(
    mode=pb.MODE_QUALITY,
    constraints=pb.Constraints(deny_providers=["nobody"]),
    profile=pb.RequestProfile(prompt_tokens=300, output_tokens=50),
    top_k=3,
)
HELLO = [pb.ChatMessage(role="user", content="Say hello.")]
# Polls of a record written in the background; each waits POLL_S.
POLLS = 500
POLL_S = 0.01


class Router:
    """One router replica: its server and a gRPC stub on it."""

    def __init__(self, server: ServerThread, stub: RouterStub) -> None:
        self.server = server
        self.stub = stub

    def lookup(self, decision_id: str) -> pb.DecisionRecord | grpc.StatusCode:
        """The record, or the status GetDecision answered instead."""
        try:
            record: pb.DecisionRecord = self.stub.GetDecision(
                pb.GetDecisionRequest(decision_id=decision_id), timeout=10
            )
        except grpc.RpcError as error:
            if not isinstance(error, grpc.Call):
                raise
            code: grpc.StatusCode = error.code()
            return code
        return record

    def get(self, decision_id: str) -> pb.DecisionRecord:
        record = self.lookup(decision_id)
        assert isinstance(record, pb.DecisionRecord), record
        return record

    def code_of(self, decision_id: str) -> grpc.StatusCode:
        code = self.lookup(decision_id)
        assert isinstance(code, grpc.StatusCode), code
        return code

    def eventually(self, decision_id: str) -> pb.DecisionRecord:
        """The record, once the replica that made it has written it to Redis."""
        for _ in range(POLLS):
            record = self.lookup(decision_id)
            if isinstance(record, pb.DecisionRecord):
                return record
            assert record == grpc.StatusCode.NOT_FOUND
            time.sleep(POLL_S)
        raise AssertionError(f"decision {decision_id} never found")


@pytest.fixture
def replicas(fake: FakeOpenRouter, tmp_path: Path) -> Iterator[Callable[..., list[Router]]]:
    """`replicas(n, **settings)`: n fresh routers on the fake, sharing `redis_url` if given."""
    fake.reset()
    states = itertools.count()
    with ExitStack() as stack:

        def make(n: int = 1, **extra: Any) -> list[Router]:
            routers = []
            for _ in range(n):
                state = tmp_path / f"state-{next(states)}"
                settings = settings_for(fake, state, endpoint_stats_models=0, **extra)
                server = ServerThread(settings)
                address = stack.enter_context(server)
                channel = stack.enter_context(grpc.insecure_channel(address))
                stub = RouterStub(channel)
                refreshed = stub.RefreshCatalogue(pb.RefreshCatalogueRequest())
                # A replica may have taken another's refresh through Redis already.
                assert refreshed.replaced or refreshed.catalogue.source == "shared"
                routers.append(Router(server, stub))
            return routers

        yield make


def test_a_decision_is_found_by_id_on_another_replica_sharing_redis(
    replicas: Callable[..., list[Router]], redis_server: RedisServer
) -> None:
    one, other = replicas(2, redis_url=redis_server.url)
    before = time.time()
    decision = one.stub.Route(ROUTING)
    after = time.time()
    record = other.eventually(decision.decision_id)
    assert record.request == ROUTING
    assert record.response == decision
    assert record.catalogue_version == decision.catalogue_version
    assert not record.completion
    assert before <= record.decided_at <= after
    assert one.get(decision.decision_id) == record


def test_without_redis_only_the_deciding_router_knows_the_decision(
    replicas: Callable[..., list[Router]],
) -> None:
    one, other = replicas(2)
    decision = one.stub.Route(ROUTING)
    assert one.get(decision.decision_id).response == decision
    assert other.code_of(decision.decision_id) == grpc.StatusCode.NOT_FOUND


def test_expired_records_are_not_found(
    replicas: Callable[..., list[Router]], redis_server: RedisServer
) -> None:
    one, other = replicas(2, redis_url=redis_server.url, decision_record_ttl_s=0.5)
    decision_id = one.stub.Route(ROUTING).decision_id
    other.eventually(decision_id)
    for _ in range(POLLS):
        if [one.lookup(decision_id), other.lookup(decision_id)] == [grpc.StatusCode.NOT_FOUND] * 2:
            return
        time.sleep(POLL_S)
    raise AssertionError("the record never expired")


@pytest.mark.parametrize("decision_id", ["", "nope", "D" * 32, "d" * 31, "d" * 33, "g" * 32])
def test_a_malformed_id_is_an_invalid_argument(
    replicas: Callable[..., list[Router]], decision_id: str
) -> None:
    (one,) = replicas()
    assert one.code_of(decision_id) == grpc.StatusCode.INVALID_ARGUMENT


def test_an_unknown_id_is_not_found(replicas: Callable[..., list[Router]]) -> None:
    (one,) = replicas()
    assert one.code_of("0" * 32) == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
def test_a_completions_record_has_its_attempts_and_the_answering_model(
    replicas: Callable[..., list[Router]],
    fake: FakeOpenRouter,
    redis_server: RedisServer,
    streamed: bool,
) -> None:
    one, other = replicas(2, redis_url=redis_server.url)
    first, second = (c.model for c in one.stub.Route(ROUTING).candidates[:2])
    fake.script(first, HttpError(503, "overloaded"))
    fake.set_behaviour(second, Reply("hello"))
    request = pb.CompleteRequest(routing=ROUTING, messages=HELLO)
    if streamed:
        chunks = list(one.stub.StreamComplete(request, timeout=10))
        answer = chunks[-1].summary
    else:
        answer = one.stub.Complete(request, timeout=10)
    assert [a.model for a in answer.attempts] == [first, second]
    for router in (one, other):
        record = _finished(router, answer.decision_id)
        assert record.completion
        assert record.request == ROUTING
        assert record.response.decision_id == answer.decision_id
        assert list(record.attempts) == list(answer.attempts)
        assert record.answered_by == answer.model == second


def _finished(router: Router, decision_id: str) -> pb.DecisionRecord:
    """The record once the completion's end has reached it."""
    for _ in range(POLLS):
        record = router.eventually(decision_id)
        if record.attempts:
            return record
        time.sleep(POLL_S)
    raise AssertionError(f"decision {decision_id} never got its attempts")


def test_a_failed_completions_record_has_its_attempts(
    replicas: Callable[..., list[Router]], fake: FakeOpenRouter
) -> None:
    (one,) = replicas(max_attempts=2)
    fake.set_behaviour(ANY_MODEL, HttpError(503, "overloaded"))
    with pytest.raises(grpc.RpcError):
        one.stub.Complete(pb.CompleteRequest(routing=ROUTING, messages=HELLO), timeout=10)
    recorded = [r for r in _records(one) if r.completion]
    assert len(recorded) == 1
    called = [str(r.json["model"]) for r in fake.requests if r.path.endswith("/completions")]
    assert len(called) >= 2
    assert [a.model for a in recorded[0].attempts] == called
    assert {a.outcome for a in recorded[0].attempts} == {"http_503"}
    assert recorded[0].answered_by == ""


def _records(router: Router) -> list[pb.DecisionRecord]:
    """Every record the router keeps in memory."""

    async def read() -> list[pb.DecisionRecord]:
        records = router.server.runtime.records
        found = [await records.get(decision_id) for decision_id in list(records._local)]
        return [r for r in found if r is not None]

    return router.server.loops.run(read())


def test_rest_finds_a_decision_by_id(
    replicas: Callable[..., list[Router]], redis_server: RedisServer
) -> None:
    one, other = replicas(2, redis_url=redis_server.url)
    with httpx.Client(base_url=one.server.http_url, timeout=10) as client:
        decision = client.post("/route", json={"mode": "speed"}).json()
    other.eventually(decision["decision_id"])
    with httpx.Client(base_url=other.server.http_url, timeout=10) as client:
        found = client.get(f"/decisions/{decision['decision_id']}")
        assert found.status_code == 200, found.text
        assert found.json()["response"] == decision
        assert found.json()["request"]["mode"] == "speed"
        missing = client.get(f"/decisions/{'0' * 32}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        malformed = client.get("/decisions/not-an-id")
        assert malformed.status_code == 400
        assert "32 lowercase hex" in malformed.json()["error"]["message"]


def test_health_says_whether_redis_is_in_use(
    replicas: Callable[..., list[Router]], redis_server: RedisServer
) -> None:
    (with_redis,) = replicas(redis_url=redis_server.url)
    (without,) = replicas()
    assert httpx.get(f"{with_redis.server.http_url}/health").json()["redis"] == "connected"
    assert httpx.get(f"{without.server.http_url}/health").json()["redis"] == "off"
    redis_server.kill()
    with_redis.stub.Route(ROUTING)
    for _ in range(POLLS):
        if httpx.get(f"{with_redis.server.http_url}/health").json()["redis"] == "degraded":
            return
        time.sleep(POLL_S)
    raise AssertionError("/health never said degraded")


def test_with_redis_stopped_decisions_are_answered_and_kept_locally(
    replicas: Callable[..., list[Router]], redis_server: RedisServer
) -> None:
    one, other = replicas(2, redis_url=redis_server.url)
    redis_server.kill()
    decisions = [one.stub.Route(ROUTING) for _ in range(20)]
    for decision in decisions:
        assert one.get(decision.decision_id).response == decision
    assert other.code_of(decisions[0].decision_id) == grpc.StatusCode.NOT_FOUND


def test_the_cli_explains_a_decision_by_id(
    replicas: Callable[..., list[Router]], fake: FakeOpenRouter
) -> None:
    (one,) = replicas()
    answer = one.stub.Complete(pb.CompleteRequest(routing=ROUTING, messages=HELLO), timeout=10)
    address = f"127.0.0.1:{one.server.running.port}"
    runner = CliRunner()
    shown = runner.invoke(app, ["explain", answer.decision_id, "--target", address])
    assert shown.exit_code == 0, shown.output
    assert f"decision {answer.decision_id}" in shown.stdout
    assert f"answered by: {answer.model}" in shown.stdout
    as_json = runner.invoke(app, ["explain", answer.decision_id, "--target", address, "--json"])
    assert as_json.exit_code == 0, as_json.output
    both = json.loads(as_json.stdout)
    assert both["record"]["answered_by"] == answer.model
    assert both["explanation_now"]["subject"]["model"] == answer.model
    assert both["explanation_now"]["profile"] == both["record"]["response"]["profile"]


def test_the_cli_needs_a_target_for_a_decision_id_and_says_when_it_is_unknown(
    replicas: Callable[..., list[Router]],
) -> None:
    (one,) = replicas()
    runner = CliRunner()
    alone = runner.invoke(app, ["explain", "0" * 32])
    assert alone.exit_code == 2
    assert "--target" in alone.output
    address = f"127.0.0.1:{one.server.running.port}"
    unknown = runner.invoke(app, ["explain", "0" * 32, "--target", address])
    assert unknown.exit_code == 2
    assert "NOT_FOUND" in unknown.output
