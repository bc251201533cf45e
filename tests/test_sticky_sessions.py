"""Sticky sessions: two router replicas on one real Redis, in front of the fake OpenRouter.

Two models of the fake's catalogue are in play, made to rank fast then rival under the speed
mode. A session pinned to rival by its first turn (whose constraints allowed only rival) shows
stickiness: later turns allow both, the ranking picks fast, the session keeps rival.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import redis
from pydantic import SecretStr

from service.config import ModelOverride
from service.core import RouterCore
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.runtime import Runtime
from service.sticky import StickySessions
from testkit.fake_openrouter import FakeOpenRouter, HttpError
from testkit.servers import ServerThread
from tests.redis_server import RedisServer
from tests.test_complete import router_settings
from tests.test_complete_learning import Clock

FAST, RIVAL = "openai/gpt-4o-mini", "x-ai/grok-4.6"
OVERRIDES = {
    FAST: ModelOverride(ttft_s=0.05, tokens_per_s=2_000),
    RIVAL: ModelOverride(ttft_s=0.1, tokens_per_s=2_000),
}
BOTH = pb.Constraints(allow_models=[FAST, RIVAL])
ONLY_RIVAL = pb.Constraints(allow_models=[RIVAL])
ONLY_FAST = pb.Constraints(allow_models=[FAST])
HELLO = pb.ChatMessage(role="user", content="Say hello to the router.")
# Distinctive enough to be found wherever it leaks.
RAW_SESSION = "conversation-7f3a9c-never-stored"
CONSECUTIVE_FAILURES_TO_OPEN = 5


class Replica:
    """A router replica: its gRPC stub and its REST gateway."""

    def __init__(self, server: ServerThread, address: str) -> None:
        self.server = server
        self.channel = grpc.insecure_channel(address)
        self.stub = RouterStub(self.channel)
        self.http = httpx.Client(base_url=server.http_url, timeout=30)

    def route(
        self,
        session: str = "",
        constraints: pb.Constraints = BOTH,
        mode: pb.Mode.ValueType = pb.MODE_SPEED,
    ) -> pb.RouteResponse:
        request = pb.RouteRequest(mode=mode, constraints=constraints, session=session)
        answer: pb.RouteResponse = self.stub.Route(request)
        return answer

    def turn(self, session: str) -> tuple[str, bool]:
        """The model a turn of `session` allowing both models gets, and whether it was kept."""
        answer = self.route(session)
        return answer.model, answer.sticky

    def complete(self, session: str, constraints: pb.Constraints = BOTH) -> pb.CompleteResponse:
        routing = pb.RouteRequest(mode=pb.MODE_SPEED, constraints=constraints, session=session)
        answer: pb.CompleteResponse = self.stub.Complete(
            pb.CompleteRequest(routing=routing, messages=[HELLO])
        )
        return answer

    def close(self) -> None:
        self.http.close()
        self.channel.close()


def _settings(fake: FakeOpenRouter, state: Path, redis_url: str | None, **extra: Any) -> Any:
    # A generous Redis timeout: a loaded test machine must not push the sessions into memory.
    return router_settings(
        fake, state, redis_url=redis_url, redis_timeout_s=0.5, model_overrides=OVERRIDES, **extra
    )


@pytest.fixture
def replicas(
    fake: FakeOpenRouter, redis_server: RedisServer, tmp_path: Path
) -> Iterator[tuple[Replica, Replica]]:
    """Two replicas sharing `redis_server`, on the freshly reset fake's catalogue."""
    fake.reset()
    servers = [
        ServerThread(_settings(fake, tmp_path / name, redis_server.url)) for name in ("a", "b")
    ]
    with servers[0] as a_address, servers[1] as b_address:
        made = (Replica(servers[0], a_address), Replica(servers[1], b_address))
        for replica in made:
            assert replica.http.post("/admin/catalogue/refresh").status_code == 200
        yield made
        for replica in made:
            replica.close()


def test_a_session_keeps_its_model_over_turns_when_the_ranking_picks_another(
    replicas: tuple[Replica, Replica],
) -> None:
    a, _ = replicas
    first = a.route("s1", ONLY_RIVAL)
    assert (first.model, first.sticky) == (RIVAL, False)
    assert a.route().model == FAST, "without the session the ranking picks fast"
    for _ in range(3):
        turn = a.route("s1")
        assert (turn.model, turn.sticky) == (RIVAL, True)
        assert [c.model for c in turn.candidates] == [RIVAL, FAST]
        assert turn.candidates[0].score > 0, "a scored candidate, not a bare name"


def test_the_session_is_scoped_to_the_policy(replicas: tuple[Replica, Replica]) -> None:
    a, _ = replicas
    assert a.route("s1", ONLY_RIVAL).model == RIVAL
    assert not a.route("s1", mode=pb.MODE_QUALITY).sticky, "another mode is another session"
    assert a.route("s1").sticky


def test_a_turn_on_the_other_replica_keeps_the_model(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    assert a.route("s1", ONLY_RIVAL).model == RIVAL
    assert b.turn("s1") == (RIVAL, True)
    answer = b.complete("s1")
    assert answer.model == RIVAL
    assert [attempt.model for attempt in answer.attempts] == [RIVAL]
    routing = pb.RouteRequest(mode=pb.MODE_SPEED, constraints=BOTH, session="s1")
    chunks = list(a.stub.StreamComplete(pb.CompleteRequest(routing=routing, messages=[HELLO])))
    assert chunks[-1].summary.model == RIVAL


def test_an_ineligible_model_moves_the_session_and_it_stays_moved(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    assert a.route("s1", ONLY_RIVAL).model == RIVAL
    moved = a.route("s1", ONLY_FAST)
    assert (moved.model, moved.sticky) == (FAST, False)
    for replica in (a, b):
        assert replica.turn("s1") == (FAST, True)


def test_a_failing_model_moves_the_session_to_the_one_that_answered(
    replicas: tuple[Replica, Replica], fake: FakeOpenRouter
) -> None:
    a, b = replicas
    assert a.complete("s1").model == FAST
    fake.set_behaviour(FAST, HttpError.unavailable())
    answer = a.complete("s1")
    assert [attempt.model for attempt in answer.attempts] == [FAST, RIVAL]
    assert answer.model == RIVAL
    fake.set_behaviour(FAST, None)
    assert b.route().model == FAST, "the other replica's ranking picks fast"
    for replica in (a, b):
        assert replica.complete("s1").model == RIVAL
        assert replica.turn("s1") == (RIVAL, True)


def test_an_open_circuit_moves_the_session(
    replicas: tuple[Replica, Replica], fake: FakeOpenRouter
) -> None:
    a, _ = replicas
    assert a.complete("s1").model == FAST
    fake.set_behaviour(FAST, HttpError.unavailable())
    # Fast first by name: what the fake's answers teach the ranking must not spare it a failure.
    named = pb.CompleteRequest(messages=[HELLO], models=[FAST, RIVAL])
    for _ in range(CONSECUTIVE_FAILURES_TO_OPEN):
        assert a.stub.Complete(named).model == RIVAL
    answer = a.complete("s1")
    assert [attempt.model for attempt in answer.attempts] == [RIVAL], "fast was not tried"
    fake.set_behaviour(FAST, None)
    assert a.turn("s1") == (RIVAL, True)


@pytest.mark.parametrize("outage", ["killed", "paused"])
def test_sessions_live_on_in_memory_while_redis_is_away(
    replicas: tuple[Replica, Replica], redis_server: RedisServer, outage: str
) -> None:
    """Killed: connections are refused; paused: Redis takes them and never answers."""
    a, _ = replicas
    assert a.route("s1", ONLY_RIVAL).model == RIVAL
    leave, back = (
        (redis_server.kill, redis_server.start)
        if outage == "killed"
        else (redis_server.pause, redis_server.resume)
    )
    leave()
    try:
        assert a.turn("s1") == (RIVAL, True), "remembered by the replica"
        assert a.route("s2", ONLY_RIVAL).model == RIVAL
        assert a.turn("s2") == (RIVAL, True), "a session begun while Redis is away"
        assert a.complete("s2").model == RIVAL
    finally:
        back()
    assert a.turn("s2") == (RIVAL, True)


def test_without_redis_sessions_are_the_replicas_own(fake: FakeOpenRouter, tmp_path: Path) -> None:
    fake.reset()
    server = ServerThread(_settings(fake, tmp_path / "alone", None))
    with server as address:
        alone = Replica(server, address)
        assert alone.route("s1", ONLY_RIVAL).model == RIVAL
        assert alone.route("s1").sticky
        alone.close()


def test_callers_with_the_same_session_key_have_sessions_of_their_own(
    fake: FakeOpenRouter, redis_server: RedisServer, tmp_path: Path
) -> None:
    fake.reset()
    keys = {name: SecretStr(f"{name}-key-0123456789abcdef") for name in ("alice", "bob")}
    settings = _settings(fake, tmp_path / "keyed", redis_server.url, api_keys=keys)
    with ServerThread(settings) as address, grpc.insecure_channel(address) as channel:
        stub = RouterStub(channel)

        def turn(caller: str, constraints: pb.Constraints) -> pb.RouteResponse:
            request = pb.RouteRequest(mode=pb.MODE_SPEED, constraints=constraints, session="s1")
            key = keys[caller].get_secret_value()
            answer: pb.RouteResponse = stub.Route(
                request, metadata=(("authorization", f"Bearer {key}"),)
            )
            return answer

        assert turn("alice", ONLY_RIVAL).model == RIVAL
        bobs = turn("bob", BOTH)
        assert (bobs.model, bobs.sticky) == (FAST, False)
        assert turn("alice", BOTH).sticky
    shared = redis.Redis.from_url(redis_server.url)
    try:
        names = sorted(key.decode().split(":")[2] for key in shared.keys("router:sticky:*"))
    finally:
        shared.close()
    assert names == ["alice", "bob"]


def test_the_session_key_is_never_stored_logged_or_counted(
    replicas: tuple[Replica, Replica], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = replicas
    caplog.set_level(logging.DEBUG)
    a.route(RAW_SESSION, ONLY_RIVAL)
    b.complete(RAW_SESSION)
    shared = redis.Redis.from_url(redis_server.url)
    try:
        keys = [key.decode() for key in shared.keys("*")]
        sticky = [key for key in keys if key.startswith("router:sticky:")]
        assert len(sticky) == 1
        assert all(RAW_SESSION not in key for key in keys)
        assert shared.get(sticky[0]) == RIVAL.encode()
        assert 0 < shared.pttl(sticky[0]) <= 1800 * 1000
    finally:
        shared.close()
    assert RAW_SESSION not in caplog.text
    assert RAW_SESSION not in a.http.get("/metrics").text


def test_an_overlong_session_key_is_refused(replicas: tuple[Replica, Replica]) -> None:
    a, _ = replicas
    with pytest.raises(grpc.RpcError) as refused:
        a.route("x" * 257)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "session" in str(refused.value.details())
    reply = a.http.post("/route", json={"session": "x" * 257})
    assert reply.status_code == 400, reply.text


def _rest_route(http: httpx.Client, session: str, allowed: list[str]) -> str:
    body = {"mode": "speed", "constraints": {"allow_models": allowed}, "session": session}
    reply = http.post("/route", json=body)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["model"])


def _rest_complete(http: httpx.Client, session: str, allowed: list[str]) -> str:
    body = {
        "mode": "speed",
        "constraints": {"allow_models": allowed},
        "session": session,
        "messages": [{"role": "user", "content": "hi"}],
    }
    reply = http.post("/complete", json=body)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["model"])


def _openai(http: httpx.Client, session: str, allowed: list[str], how: str) -> str:
    body: dict[str, Any] = {
        "model": "router/speed",
        "messages": [{"role": "user", "content": "hi"}],
        "router": {"constraints": {"allow_models": allowed}},
    }
    headers = {}
    if how == "user":
        body["user"] = session
    else:
        headers["x-router-session"] = session
    reply = http.post("/v1/chat/completions", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.headers["x-router-model"]


ENTRIES = {
    "rest-route": _rest_route,
    "rest-complete": _rest_complete,
    "v1-user": lambda http, session, allowed: _openai(http, session, allowed, "user"),
    "v1-header": lambda http, session, allowed: _openai(http, session, allowed, "header"),
}


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_every_way_in_carries_the_session(replicas: tuple[Replica, Replica], entry: str) -> None:
    a, b = replicas
    turn = ENTRIES[entry]
    assert turn(a.http, "s1", [RIVAL]) == RIVAL
    assert b.route().model == FAST, "the other replica's ranking picks fast"
    assert turn(b.http, "s1", [FAST, RIVAL]) == RIVAL


def _sticky_count(http: httpx.Client, outcome: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(f'router_sticky_sessions_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_hit_rate_of_conversations_spread_over_two_replicas(
    replicas: tuple[Replica, Replica],
) -> None:
    """20 conversations of 5 turns, turns alternating between the replicas: every turn after
    the first hits, and the metrics count it."""
    a, b = replicas
    before = {o: _sticky_count(a.http, o) for o in ("hit", "miss", "move")}
    sticky_turns = 0
    turns = 0
    for conversation in range(20):
        for turn in range(5):
            replica = (a, b)[(conversation + turn) % 2]
            answer = replica.route(f"conversation-{conversation}", BOTH if turn else ONLY_RIVAL)
            assert answer.model == RIVAL
            sticky_turns += answer.sticky
            turns += 1
    hit_rate = sticky_turns / turns
    print(f"sticky hit rate: {hit_rate:.2%} of {turns} turns")
    assert hit_rate == 0.8
    counted = {o: _sticky_count(a.http, o) - before[o] for o in ("hit", "miss", "move")}
    assert counted == {"hit": 80, "miss": 20, "move": 0}


async def test_in_memory_sessions_expire_and_stay_bounded(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    runtime = Runtime.build(_settings(fake, tmp_path / "state", None))
    clock = Clock()
    sticky = StickySessions(
        runtime.router, None, enabled=True, ttl_s=60, timeout_s=0.5, max_local=2, clock=clock
    )

    async def turn(session: str, constraints: pb.Constraints = BOTH) -> pb.RouteResponse:
        request = pb.RouteRequest(mode=pb.MODE_SPEED, constraints=constraints, session=session)
        return await sticky.route(request, sticky.key(request), runtime.router.route(request))

    try:
        for session in ("s1", "s2"):
            await turn(session, ONLY_RIVAL)
        clock.now += 59
        assert (await turn("s1")).sticky, "renewed by this turn"
        await turn("s3", ONLY_RIVAL)
        assert not (await turn("s2")).sticky, "the least recently used, forgotten"
        clock.now += 61
        assert not (await turn("s3")).sticky, "expired"
    finally:
        await runtime.aclose()


async def test_sessions_turned_off_are_ignored(fake: FakeOpenRouter, tmp_path: Path) -> None:
    runtime = Runtime.build(_settings(fake, tmp_path / "state", None, sticky_sessions=False))
    try:
        core = RouterCore(runtime)
        request = pb.RouteRequest(mode=pb.MODE_SPEED, constraints=ONLY_RIVAL, session="s1")
        assert (await core.route(request)).model == RIVAL
        request.constraints.CopyFrom(BOTH)
        assert (await core.route(request)).model == FAST
    finally:
        await runtime.aclose()
