"""Callers' API keys: a router started with keys refuses every call without one of them, over
gRPC and REST alike (beside the core and through a remote gateway), and never shows a key."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError

from rest_gateway.backend import RemoteBackend
from rest_gateway.caller_keys import caller_key
from service import callers as callers_module
from service.callers import Callers, current_caller, is_loopback, warn_if_exposed
from service.config import Settings
from service.errors import ErrorKind, RouterError
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import FakeOpenRouter
from testkit.servers import GatewayThread, ServerThread, settings_for
from tests.known_decision import KNOWN_DECISION_ID, plant_decision

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-fedcba9876543210"
WRONG = "wrong-key-0123456789abcdef"
KEYS = {"alice": SecretStr(ALICE), "bob": SecretStr(BOB)}
SECRETS = (ALICE, BOB, WRONG)
ROUTER = pb.DESCRIPTOR.services_by_name["Router"]
HELLO = [pb.ChatMessage(role="user", content="Say hello to the router.")]
COMPLETION = pb.CompleteRequest(routing=pb.RouteRequest(mode=pb.MODE_QUALITY), messages=HELLO)
# A valid request for every RPC of the Router service.
RPC_REQUESTS: dict[str, Any] = {
    "Route": pb.RouteRequest(),
    "Explain": pb.ExplainRequest(),
    "ListModels": pb.ListModelsRequest(limit=1),
    "GetStatus": pb.GetStatusRequest(),
    "GetDecision": pb.GetDecisionRequest(decision_id=KNOWN_DECISION_ID),
    "RefreshCatalogue": pb.RefreshCatalogueRequest(),
    "Complete": COMPLETION,
    "StreamComplete": COMPLETION,
}
REST_COMPLETION = {"mode": "quality", "messages": [{"role": "user", "content": "Hello"}]}
# A valid request for every REST endpoint but the open ones.
REST_REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/route"): {"json": {"mode": "speed"}},
    ("POST", "/explain"): {"json": {"mode": "speed"}},
    ("POST", "/complete"): {"json": REST_COMPLETION},
    ("GET", "/models"): {"params": {"limit": 1}},
    ("GET", "/decisions/{decision_id}"): {},
    ("GET", "/metrics"): {},
    ("GET", "/dashboard/data"): {},
    ("POST", "/admin/catalogue/refresh"): {},
    ("POST", "/v1/chat/completions"): {
        "json": {"model": "router/speed", "messages": REST_COMPLETION["messages"]}
    },
    ("GET", "/v1/models"): {},
}
OPENAI_ERROR = {"message", "type", "param", "code"}
OPEN_PATHS = (
    "/health",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/dashboard",
    "/dashboard/dashboard.js",
)
MISSING = "missing API key: send authorization: Bearer <key> (or x-api-key: <key>)"


def known(path: str) -> str:
    """A REST path with the known decision's id in its template."""
    return path.format(decision_id=KNOWN_DECISION_ID)


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture(scope="module")
def keyed(fake: FakeOpenRouter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = settings_for(
        fake, tmp_path_factory.mktemp("state"), endpoint_stats_models=0, api_keys=KEYS
    )
    server = ServerThread(settings)
    with server as address, grpc.insecure_channel(address) as channel:
        assert (
            RouterStub(channel)
            .RefreshCatalogue(pb.RefreshCatalogueRequest(), metadata=bearer(ALICE))
            .replaced
        )
        plant_decision(server)
        yield server


@pytest.fixture(scope="module")
def address(keyed: ServerThread) -> str:
    return f"127.0.0.1:{keyed.running.port}"


@pytest.fixture(scope="module")
def stub(address: str) -> Iterator[RouterStub]:
    with grpc.insecure_channel(address) as channel:
        yield RouterStub(channel)


@pytest.fixture(scope="module")
def keyless_remote_url(address: str, keyed: ServerThread) -> Iterator[str]:
    """`router gateway` without keys of its own: the router behind it checks them."""
    settings = keyed.settings.model_copy(update={"api_keys": {}})
    with GatewayThread(address, settings) as url:
        yield url


@pytest.fixture(scope="module")
def keyed_remote_url(address: str, keyed: ServerThread) -> Iterator[str]:
    """`router gateway` with the router's keys: it checks them, then passes them on."""
    with GatewayThread(address, keyed.settings) as url:
        yield url


@pytest.fixture(params=["in-process", "remote"])
def rest(request: pytest.FixtureRequest, keyed: ServerThread) -> Iterator[httpx.Client]:
    url = (
        keyed.http_url
        if request.param == "in-process"
        else request.getfixturevalue("keyed_remote_url")
    )
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


def call_rpc(stub: RouterStub, name: str, metadata: tuple[tuple[str, str], ...]) -> Any:
    answer = getattr(stub, name)(RPC_REQUESTS[name], metadata=metadata, timeout=10)
    return list(answer) if ROUTER.methods_by_name[name].server_streaming else answer


def refusal(call: Callable[[], Any]) -> str:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error = raised.value
    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
    return error.details() or ""


def test_every_rpc_is_listed() -> None:
    assert set(RPC_REQUESTS) == set(ROUTER.methods_by_name)


@pytest.mark.parametrize("name", sorted(RPC_REQUESTS))
def test_every_rpc_needs_a_configured_key(stub: RouterStub, name: str) -> None:
    assert refusal(lambda: call_rpc(stub, name, ())) == MISSING
    assert refusal(lambda: call_rpc(stub, name, bearer(WRONG))) == "invalid API key"
    assert refusal(lambda: call_rpc(stub, name, (("authorization", f"Basic {ALICE}"),))) == MISSING
    assert call_rpc(stub, name, bearer(ALICE))
    assert call_rpc(stub, name, (("authorization", f"bearer {BOB}"),))
    assert call_rpc(stub, name, (("x-api-key", ALICE),))


def test_health_and_reflection_need_no_key(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service=ROUTER.full_name), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        services = {s.name for a in answers for s in a.list_services_response.service}
        assert ROUTER.full_name in services


def test_the_core_knows_the_caller(
    keyed: ServerThread, stub: RouterStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []

    def spy(method: str) -> None:
        original = getattr(keyed.core, method)

        def observed(*args: Any) -> Any:
            seen.append(current_caller.get())
            return original(*args)

        monkeypatch.setattr(keyed.core, method, observed)

    spy("route")
    spy("stream")
    call_rpc(stub, "Route", bearer(ALICE))
    call_rpc(stub, "StreamComplete", (("x-api-key", BOB),))
    with httpx.Client(base_url=keyed.http_url, timeout=30) as client:
        assert client.post("/route", json={}, headers={"x-api-key": BOB}).status_code == 200
    assert seen == ["alice", "bob", "bob"]


def test_every_rest_endpoint_is_listed(rest: httpx.Client) -> None:
    schema = rest.get("/openapi.json").json()
    served = {(verb.upper(), path) for path, verbs in schema["paths"].items() for verb in verbs}
    assert served - set(REST_REQUESTS) == {("GET", "/health")}


@pytest.mark.parametrize(("verb", "path"), sorted(REST_REQUESTS))
def test_every_rest_endpoint_needs_a_configured_key(
    rest: httpx.Client, verb: str, path: str
) -> None:
    def send(headers: dict[str, str]) -> httpx.Response:
        return rest.request(verb, known(path), headers=headers, **REST_REQUESTS[(verb, path)])

    for headers, message in [
        ({}, MISSING),
        ({"authorization": f"Bearer {WRONG}"}, "invalid API key"),
        ({"x-api-key": WRONG}, "invalid API key"),
    ]:
        reply = send(headers)
        assert reply.status_code == 401, reply.text
        assert reply.headers["www-authenticate"] == "Bearer"
        error = reply.json()["error"]
        assert (error["code"], error["message"]) == ("unauthenticated", message)
        assert set(error) == (OPENAI_ERROR if path.startswith("/v1/") else {"code", "message"})
    for headers in ({"Authorization": f"Bearer {ALICE}"}, {"x-api-key": BOB}):
        reply = send(headers)
        assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("path", OPEN_PATHS)
def test_health_and_docs_need_no_key(rest: httpx.Client, path: str) -> None:
    reply = rest.get(path)
    assert reply.status_code == 200, reply.text


def test_openai_paths_answer_401_in_openai_shape(rest: httpx.Client) -> None:
    reply = rest.post("/v1/chat/completions", json={"messages": []})
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert reply.json() == {
        "error": {
            "message": MISSING,
            "type": "authentication_error",
            "param": None,
            "code": "unauthenticated",
        }
    }


def test_the_openai_sdk_bearer_token_is_accepted(rest: httpx.Client) -> None:
    base_url = f"{str(rest.base_url).rstrip('/')}/v1"
    with (
        openai.OpenAI(base_url=base_url, api_key=WRONG, max_retries=0) as client,
        pytest.raises(openai.AuthenticationError) as refused,
    ):
        client.models.list()
    assert refused.value.code == "unauthenticated"
    with openai.OpenAI(base_url=base_url, api_key=ALICE, max_retries=0) as client:
        assert "router/speed" in {model.id for model in client.models.list()}


def test_a_remote_gateway_passes_the_key_on(keyless_remote_url: str) -> None:
    with httpx.Client(base_url=keyless_remote_url, timeout=30) as client:
        for verb, path in [("POST", "/route"), ("POST", "/complete"), ("GET", "/models")]:
            request = REST_REQUESTS[(verb, path)]
            refused = client.request(verb, path, **request)
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"] == "Bearer"
            assert refused.json()["error"] == {"code": "unauthenticated", "message": MISSING}
            wrong = client.request(verb, path, headers={"x-api-key": WRONG}, **request)
            assert wrong.json()["error"]["message"] == "invalid API key"
            headers = {"authorization": f"Bearer {ALICE}"}
            assert client.request(verb, path, headers=headers, **request).status_code == 200
        # What no key could be is not passed on (gRPC metadata could not carry it).
        for garbled in (b"Bearer \xff" + ALICE.encode(), b"Bearer " + ALICE.encode() + b"\t!"):
            reply = client.post("/route", json={}, headers={"authorization": garbled})
            assert reply.json()["error"] == {"code": "unauthenticated", "message": MISSING}
        # Probes need no key: the router serves; its details need one.
        assert client.get("/health").json() == {"status": "SERVING"}
        detailed = client.get("/health", headers={"x-api-key": BOB}).json()
        assert detailed["status"] == "SERVING"
        assert "catalogue" in detailed


def test_a_remote_backend_streams_with_the_callers_key(keyed: ServerThread, address: str) -> None:
    async def stream(key: str | None) -> list[pb.CompleteChunk]:
        backend = RemoteBackend(address)
        caller_key.set(key)
        try:
            return [chunk async for chunk in backend.stream(COMPLETION, 10)]
        finally:
            await backend.aclose()

    assert keyed.loops.run(stream(ALICE))
    with pytest.raises(RouterError) as refused:
        keyed.loops.run(stream(None))
    assert (refused.value.kind, refused.value.message) == (ErrorKind.UNAUTHENTICATED, MISSING)


def test_keys_never_show_in_logs_errors_or_metrics(
    keyed: ServerThread,
    stub: RouterStub,
    keyless_remote_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    for key in (WRONG, ALICE):
        for name in RPC_REQUESTS:
            try:
                call_rpc(stub, name, bearer(key))
            except grpc.RpcError as error:
                shown.append(str(error))
        for url in (keyed.http_url, keyless_remote_url):
            with httpx.Client(base_url=url, timeout=30) as client:
                for (verb, path), request in REST_REQUESTS.items():
                    headers = {"authorization": f"Bearer {key}"}
                    reply = client.request(verb, known(path), headers=headers, **request)
                    shown.append(reply.text)
                shown.append(client.post("/v1/chat/completions", headers=headers).text)
    assert any("invalid API key" in text for text in shown)
    assert any("router_catalogue_models" in text for text in shown), "/metrics was read"
    assert caplog.records, "the run logged at DEBUG"
    for secret in SECRETS:
        assert all(secret not in text for text in shown)
        assert secret not in caplog.text


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(callers_module.hmac, "compare_digest", compare_digest)
    keys = {**KEYS, "carol": SecretStr("carol-key-0123456789abcdef")}
    callers = Callers(keys)
    for key, caller in [(ALICE, "alice"), (BOB, "bob"), (WRONG, None)]:
        compared.clear()
        assert callers.identify(key) == caller
        assert len(compared) == len(keys), "each key compared once, whichever matched"
        assert len({b for _, b in compared}) == len(keys)
        assert all(ALICE not in repr(pair) for pair in compared), "digests, not keys"


def test_without_keys_every_caller_is_served() -> None:
    assert Callers({}).authenticate(None) is None
    assert Callers({}).authenticate(WRONG) is None
    assert not Callers({}).required


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "router.example.com"])
def test_a_warning_when_listening_beyond_loopback_without_keys(
    host: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="service.callers")
    assert not is_loopback(host)
    assert warn_if_exposed(("127.0.0.1", host), Callers({}))
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert host in caplog.text
    assert "without caller API keys" in caplog.text
    caplog.clear()
    assert not warn_if_exposed((host,), Callers(KEYS))
    assert not caplog.records


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_no_warning_on_loopback(host: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="service.callers")
    assert not warn_if_exposed((host,), Callers({}))
    assert not caplog.records


def test_keys_come_from_the_environment_and_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTER_API_KEYS", f'{{"alice": "{ALICE}"}}')
    from_env = Settings()
    assert from_env.api_keys["alice"].get_secret_value() == ALICE
    assert ALICE not in repr(from_env)
    monkeypatch.delenv("ROUTER_API_KEYS")
    config = tmp_path / "router.toml"
    config.write_text(f'[api_keys]\nbob = "{BOB}"\n')
    monkeypatch.setenv("ROUTER_CONFIG_FILE", str(config))
    from_file = Settings()
    assert from_file.api_keys["bob"].get_secret_value() == BOB
    assert BOB not in f"{from_file!r} {from_file!s}"


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        ({"alice": "short-key"}, "entry 1: a key is at least 16"),
        ({"alice": ALICE, "bob": "sixteen chars and spaces"}, "entry 2: a key is"),
        ({"alice": ALICE, "carol": BOB, "bob": ALICE}, "entries 1 and 3 have the same key"),
        ({"has space": ALICE}, "entry 1: a caller name is"),
        ({"x" * 33: ALICE}, "entry 1: a caller name is"),
        ({ALICE: "alice"}, "entry 1: a key is at least 16"),
    ],
)
def test_bad_keys_are_refused_without_showing_them(keys: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(api_keys=keys)
    assert fragment in str(refused.value)
    for key in {*keys, *keys.values()} - {"alice", "bob"}:
        assert key not in str(refused.value)


def _spent_by(metrics_text: str, caller: str) -> tuple[float, float]:
    """(completions, USD) that `caller` accounts for in the metrics."""
    completions = spend = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.labels.get("caller") != caller:
                continue
            if sample.name == "router_completions_total":
                completions += sample.value
            elif sample.name == "router_spend_usd_total":
                spend += sample.value
    return completions, spend


def test_completions_and_spend_are_counted_by_key_name(
    keyed: ServerThread, stub: RouterStub, fake: FakeOpenRouter
) -> None:
    with httpx.Client(base_url=keyed.http_url, headers={"x-api-key": BOB}) as rest:
        before = _spent_by(rest.get("/metrics").text, "bob")
        alice_before = _spent_by(rest.get("/metrics").text, "alice")
        spent_before = fake.spent_usd
        answer = stub.Complete(COMPLETION, metadata=bearer(BOB))
        assert rest.post("/complete", json=REST_COMPLETION).status_code == 200
        after = _spent_by(rest.get("/metrics").text, "bob")
        assert _spent_by(rest.get("/metrics").text, "alice") == alice_before
    assert answer.usage.cost_usd > 0
    assert after[0] - before[0] == 2
    assert after[1] - before[1] == pytest.approx(fake.spent_usd - spent_before)
