"""The bare servers `make bench` measures the router against, each in a process of its own:
they must answer as the router would, or the floors they give mean nothing."""

from __future__ import annotations

from pathlib import Path

import grpc

from bench.processes import bare_forwarder_process, bare_grpc_process
from bench.profile_complete import AIOHTTP, LEAVES, OTHER, OWN, place
from cli.processes import FakeProcess
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import DEFAULT_KEY, FakeOpenRouter

TIMEOUT_S = 30
OWN_AGAIN = "Completer._answered (service/completion/failover.py:446)"  # a callback into it


def test_the_bare_route_server_answers_the_bytes_it_was_given(tmp_path: Path) -> None:
    answer = pb.RouteResponse(model="vendor/chosen", decision_id="d-1")
    (tmp_path / "answer.bin").write_bytes(answer.SerializeToString())
    with (
        bare_grpc_process(tmp_path / "answer.bin") as bare,
        grpc.insecure_channel(bare.grpc_address) as channel,
    ):
        assert RouterStub(channel).Route(pb.RouteRequest(), timeout=TIMEOUT_S) == answer


def test_the_bare_forwarder_completes_through_the_upstream(fake: FakeOpenRouter) -> None:
    fake.reset()
    model = fake.models[0]["id"]
    upstream = FakeProcess(fake.base_url, DEFAULT_KEY, pid=0)
    request = pb.CompleteRequest(messages=[pb.ChatMessage(role="user", content="hello")])
    with (
        bare_forwarder_process(upstream, model) as bare,
        grpc.insecure_channel(bare.grpc_address) as channel,
    ):
        answer = RouterStub(channel).Complete(request, timeout=TIMEOUT_S)
    (sent,) = [r for r in fake.requests if r.path.endswith("/chat/completions")]
    assert sent.json["model"] == model
    assert sent.json["messages"] == [{"role": "user", "content": "hello"}]
    assert answer.choices[0].message.content
    assert answer.usage.total_tokens > 0


def test_profile_samples_are_placed_by_their_innermost_known_frame() -> None:
    loop = "run (asyncio/runners.py:118);BaseEventLoop._run_once (asyncio/base_events.py:1922)"
    own = f"{loop};RouterCore.complete (service/core.py:216)"
    assert place(f"{own};Completer._begin (service/completion/failover.py:187)") == OWN
    assert place(f"{own};ClientSession._request (aiohttp/client.py:900)") == AIOHTTP
    assert place(f"{own};ClientSession._request (aiohttp/client.py:900);{OWN_AGAIN}") == OWN
    assert place(f"{loop};Handle._run (asyncio/events.py:80)") == LEAVES[0][0]
    assert place(f"{loop};EpollSelector.select (selectors.py:468)") == LEAVES[1][0]
    assert (
        place("Thread._bootstrap (threading.py:1002);Thread.run (threading.py:982)")
        == (LEAVES[2][0])
    )
    assert place(f"{loop};BaseEventLoop.time (asyncio/base_events.py:707)") == OTHER
