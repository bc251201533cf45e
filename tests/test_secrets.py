"""Secrets in `router serve` as an operator runs it (caller keys from ROUTER_API_KEYS, the
OpenRouter key from OPENROUTER_API_KEY, ROUTER_LOG_LEVEL=debug): every RPC and every REST path
but the deliberately open ones refuse a missing or wrong caller key, and no key shows in the
router's debug log, its answers, errors, metrics, health, listings, decision records or the
CLI's output, whatever the traffic (upstream 401, 402 and 500 included).

`tests/test_caller_keys.py` checks the keys' rules on routers in this process; here the RPCs
and paths come from the service descriptor and the application itself, so a new one is covered
without being listed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.descriptor import MethodDescriptor
from starlette.routing import Route

from rest_gateway.app import create_app
from rest_gateway.backend import RemoteBackend
from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.shedding import Capacity
from testkit.fake_openrouter import FakeOpenRouter, HttpError, InsufficientCredits, Reply
from tests.served_router import ServedRouter, environment, served_router

# Distinctive values: a substring search for any of them is meaningful.
OPENROUTER_KEY = "sk-or-v1-ORKEYSECRET-5f1e9c7a3b2d4e6f"
ALICE = "alice-CALLERSECRET-8c2e4a6b0d1f3e5a"
BOB = "bob-CALLERSECRET-1a3c5e7b9d0f2e4c"
WRONG = "wrong-GUESSSECRET-7e5c3a1b9f8d6e4c"
SECRETS = (OPENROUTER_KEY, ALICE, BOB, WRONG)
# A piece of a key is a leak too (a key shortened for a log line, say).
MARKERS = ("ORKEYSECRET", "CALLERSECRET", "GUESSSECRET", "5f1e9c7a3b2d", "8c2e4a6b0d1f")
MISSING = "missing API key: send authorization: Bearer <key> (or x-api-key: <key>)"
INVALID = "invalid API key"
SERVICE = pb.DESCRIPTOR.services_by_name["Router"]
# Open by design (rest_gateway/app.py `_open_paths`): the probe, and the API's documentation.
OPEN_PATHS = {"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
HELLO = [{"role": "user", "content": "Say hello to the router."}]
TIMEOUT_S = 30.0


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


@dataclass
class Seen:
    """Everything a caller or an operator could read."""

    texts: list[str] = field(default_factory=list)

    def add(self, *texts: object) -> None:
        self.texts.extend(str(t) for t in texts)

    def reply(self, reply: httpx.Response) -> httpx.Response:
        self.add(reply.status_code, reply.headers, reply.text)
        return reply

    def rpc_error(self, error: grpc.RpcError) -> grpc.Call:
        assert isinstance(error, grpc.Call)
        self.add(error.code(), error.details(), error.trailing_metadata(), error)
        return error


def assert_no_secret(text: str) -> None:
    for secret in (*SECRETS, *MARKERS):
        assert secret not in text


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenRouter]:
    with FakeOpenRouter(api_keys=(OPENROUTER_KEY,)) as server:
        yield server


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secrets")


@pytest.fixture(scope="module")
def env(fake: FakeOpenRouter, state: Path) -> dict[str, str]:
    """The router's environment: caller keys on, the OpenRouter key, DEBUG logs."""
    keys = json.dumps({"alice": ALICE, "bob": BOB})
    return environment(fake, OPENROUTER_KEY, state / "state", api_keys=keys, log_level="debug")


@pytest.fixture(scope="module")
def router(env: dict[str, str], state: Path) -> Iterator[ServedRouter]:
    with served_router(env, state / "router.log") as served:
        yield served


@pytest.fixture(scope="module")
def channel(router: ServedRouter) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(router.grpc_address) as opened:
        yield opened


def _rpc(channel: grpc.Channel, method: MethodDescriptor, key: str | None) -> Any:
    """`method` called with an empty request of its type, with `key` if any."""
    request = getattr(pb, method.input_type.name)()
    path = f"/{SERVICE.full_name}/{method.name}"
    serialize = type(request).SerializeToString
    metadata = () if key is None else bearer(key)
    if method.server_streaming:
        stream = channel.unary_stream(path, request_serializer=serialize)
        return list(stream(request, metadata=metadata, timeout=TIMEOUT_S))
    return channel.unary_unary(path, request_serializer=serialize)(
        request, metadata=metadata, timeout=TIMEOUT_S
    )


@pytest.mark.parametrize("method", list(SERVICE.methods), ids=lambda m: m.name)
def test_every_rpc_refuses_a_missing_or_wrong_key(
    channel: grpc.Channel, method: MethodDescriptor
) -> None:
    for key, message in [(None, MISSING), (WRONG, INVALID)]:
        with pytest.raises(grpc.RpcError) as refused:
            _rpc(channel, method, key)
        error = refused.value
        assert isinstance(error, grpc.Call)
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, message)


def _routes(router: ServedRouter) -> list[tuple[str, str]]:
    """(method, path) of every route of the gateway `router serve` runs: its API as its
    OpenAPI schema lists it, and the schema and docs themselves."""

    async def listed() -> list[tuple[str, str]]:
        backend = RemoteBackend(router.grpc_address)
        try:
            app = create_app(backend, capacity=Capacity(Settings()))
            api = [
                (verb.upper(), path)
                for path, verbs in app.openapi()["paths"].items()
                for verb in verbs
            ]
            docs = [
                (verb, route.path)
                for route in app.routes
                if isinstance(route, Route)
                for verb in sorted(route.methods or ())
                if verb != "HEAD"
            ]
            return api + docs
        finally:
            await backend.aclose()

    return asyncio.run(listed())


def test_every_rest_path_but_the_open_ones_refuses_a_missing_or_wrong_key(
    router: ServedRouter,
) -> None:
    routes = _routes(router)
    assert {path for _, path in routes} >= OPEN_PATHS | {"/metrics", "/v1/chat/completions"}
    with httpx.Client(base_url=router.http_url, timeout=TIMEOUT_S) as http:
        for verb, template in routes:
            path = template.format(decision_id="0" * 32)
            if template in OPEN_PATHS:
                assert http.request(verb, path).status_code == 200, path
                continue
            for headers, message in [({}, MISSING), ({"x-api-key": WRONG}, INVALID)]:
                reply = http.request(verb, path, headers=headers)
                assert reply.status_code == 401, (verb, path)
                assert reply.headers["www-authenticate"] == "Bearer"
                error = reply.json()["error"]
                assert (error["code"], error["message"]) == ("unauthenticated", message)


def _drive_grpc(router: ServedRouter, fake: FakeOpenRouter, seen: Seen) -> None:
    with grpc.insecure_channel(router.grpc_address) as channel:
        stub = RouterStub(channel)
        meta = bearer(ALICE)
        seen.add(stub.RefreshCatalogue(pb.RefreshCatalogueRequest(), metadata=meta))
        route = stub.Route(pb.RouteRequest(mode=pb.MODE_QUALITY, top_k=4), metadata=meta)
        seen.add(route)
        ok, unauthorized, broke, failing = (c.model for c in route.candidates)
        fake.set_behaviour(ok, Reply("All fine here."))
        fake.set_behaviour(unauthorized, HttpError.unauthorized())
        fake.set_behaviour(broke, InsufficientCredits())
        fake.set_behaviour(failing, HttpError.internal())
        messages = [pb.ChatMessage(**m) for m in HELLO]
        answer = stub.Complete(pb.CompleteRequest(messages=messages, models=[ok]), metadata=meta)
        streamed = stub.StreamComplete(
            pb.CompleteRequest(messages=messages, models=[ok]), metadata=meta
        )
        seen.add(answer, list(streamed))
        for decision_id in (route.decision_id, answer.decision_id):
            request = pb.GetDecisionRequest(decision_id=decision_id)
            seen.add(stub.GetDecision(request, metadata=meta))
        seen.add(stub.Explain(pb.ExplainRequest(), metadata=meta))
        seen.add(stub.ListModels(pb.ListModelsRequest(), metadata=meta))
        seen.add(stub.GetStatus(pb.GetStatusRequest(), metadata=meta))
        failures: list[Any] = [
            lambda m=model: stub.Complete(
                pb.CompleteRequest(messages=messages, models=[m]), metadata=meta
            )
            for model in (unauthorized, broke, failing)
        ]
        failures += [
            lambda: list(
                stub.StreamComplete(
                    pb.CompleteRequest(messages=messages, models=[unauthorized]), metadata=meta
                )
            ),
            lambda: stub.Complete(pb.CompleteRequest(), metadata=meta),
            lambda: stub.GetDecision(pb.GetDecisionRequest(decision_id="nope"), metadata=meta),
            lambda: stub.Route(pb.RouteRequest(), metadata=bearer(WRONG)),
            lambda: stub.Route(pb.RouteRequest(), metadata=(("x-api-key", OPENROUTER_KEY),)),
        ]
        for failure in failures:
            with pytest.raises(grpc.RpcError) as failed:
                failure()
            seen.rpc_error(failed.value)


def _drive_rest(router: ServedRouter, seen: Seen) -> None:
    with httpx.Client(base_url=router.http_url, timeout=TIMEOUT_S) as http:
        keyed = {"x-api-key": BOB}
        route = seen.reply(http.post("/route", json={"mode": "speed"}, headers=keyed)).json()
        seen.reply(http.get(f"/decisions/{route['decision_id']}", headers=keyed))
        seen.reply(http.post("/explain", json={"mode": "speed"}, headers=keyed))
        seen.reply(http.post("/complete", json={"messages": HELLO}, headers=keyed))
        chat = {"model": "router/speed", "messages": HELLO}
        seen.reply(http.post("/v1/chat/completions", json=chat, headers=keyed))
        seen.reply(http.post("/v1/chat/completions", json=chat | {"stream": True}, headers=keyed))
        seen.reply(http.post("/admin/catalogue/refresh", headers=keyed))
        for path in ("/models", "/v1/models", "/health", "/metrics"):
            seen.reply(http.get(path, headers=keyed))
        seen.reply(http.get("/health"))
        # Failures: bad input, a model that is not listed, wrong keys in each header.
        seen.reply(http.post("/route", content=b"{not json", headers=keyed))
        seen.reply(http.post("/complete", json={"messages": []}, headers=keyed))
        seen.reply(http.post("/v1/chat/completions", json=chat | {"model": "x/y"}, headers=keyed))
        seen.reply(http.post("/route", json={}))
        seen.reply(http.post("/route", json={}, headers={"authorization": f"Bearer {WRONG}"}))
        seen.reply(http.get("/metrics", headers={"x-api-key": OPENROUTER_KEY}))


def _drive_cli(router: ServedRouter, env: dict[str, str], seen: Seen) -> None:
    """The CLI against the router (with a caller key, right or wrong) and in process (with the
    OpenRouter key)."""
    target = ["--target", router.grpc_address]
    runs: list[tuple[str, list[str]]] = [
        (ALICE, ["route", "--mode", "speed", *target]),
        (ALICE, ["catalogue", "status", *target]),
        (ALICE, ["complete", "Say hello.", *target]),
        (WRONG, ["route", *target]),
        ("", ["catalogue", "diff"]),
        ("", ["complete", "Say hello."]),
    ]
    for key, arguments in runs:
        done = subprocess.run(
            [sys.executable, "-m", "cli", *arguments],
            capture_output=True,
            text=True,
            env=env | {"ROUTER_API_KEY": key},
            timeout=2 * TIMEOUT_S,
        )
        seen.add(" ".join(arguments), done.returncode, done.stdout, done.stderr)


def test_no_key_shows_in_logs_answers_errors_or_cli_output(
    router: ServedRouter, fake: FakeOpenRouter, env: dict[str, str]
) -> None:
    seen = Seen()
    _drive_grpc(router, fake, seen)
    _drive_rest(router, seen)
    _drive_cli(router, env, seen)
    # A refresh that OpenRouter refuses.
    fake.script_models(HttpError.unauthorized())
    with grpc.insecure_channel(router.grpc_address) as channel:
        refresh = RouterStub(channel).RefreshCatalogue(
            pb.RefreshCatalogueRequest(), metadata=bearer(ALICE), timeout=TIMEOUT_S
        )
        seen.add(refresh)
    everything = "\n".join([*seen.texts, router.log()])
    for expected in (
        INVALID,
        MISSING,
        "OpenRouter refused the router's API key",  # upstream 401
        "out of credits",  # 402
        "http_500",
        "must not be empty",
        "router_catalogue_models",  # /metrics
        "GET /models: HTTP 401",  # the refused refresh
    ):
        assert expected in everything, f"the traffic included {expected!r}"
    for text in seen.texts:
        assert_no_secret(text)
    log = router.log()
    assert " DEBUG " in log, "the router logged at DEBUG"
    assert " DEBUG uvicorn" in log or " DEBUG grpc" in log or " DEBUG asyncio" in log
    for line in log.splitlines():
        assert_no_secret(line)
