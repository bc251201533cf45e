"""Every error class of the OpenRouter reference on one completion, on every way in: gRPC
`Complete` and `StreamComplete`, REST `/complete` (plain and streamed) and
`/v1/chat/completions` (plain and streamed), against a fresh router on the fake OpenRouter.

The request names two models (`models`), so the candidates are known and the ranking plays no
part: the fault is scripted on the first, and the second answers if it is asked. Each row of
`FAULTS` says what the caller must see: the runner-up's answer with the failed attempt recorded
under its outcome (`Over`), an error of the documented kind and status at once (`Fail`), or,
for a stream that had begun, an error after the first tokens, never a clean end (`Broken`).
Each also checks what `/metrics` counted: `router_completions_total` by outcome and
`router_failovers_total` by cause. `tests/test_complete.py` holds the finer points (tool calls,
stream framing); this is the systematic account, one row per fault and transport."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest

from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import (
    ChatBehaviour,
    ContextLengthExceeded,
    Drop,
    ErrorIn200,
    FakeOpenRouter,
    HttpError,
    InsufficientCredits,
    MidStreamError,
    Reply,
    Reset,
    Stall,
)
from testkit.servers import ServerThread, settings_for
from tests.faults_report import REPORT, write_fault_report  # noqa: F401  (the fixture)

# The first candidate, and a runner-up with a larger context window (for the context-length row).
FIRST, RUNNER_UP = "openai/gpt-4o-mini", "google/gemini-2.5-flash"
ANSWER = "The runner-up answers this one."
RUNNER_UP_REPLY = Reply(ANSWER)
HELLO = {"role": "user", "content": "Say hello through a fault."}
CALL_TIMEOUT_S = 40
# Short attempt timeouts, so that a slow or stalled model costs a second of the test.
ATTEMPT_S = 1.0
PATIENT_S = 15.0


@dataclass(frozen=True)
class Over:
    """The runner-up answers; the first attempt is recorded as `outcome`."""

    outcome: str


@dataclass(frozen=True)
class Fail:
    """No other model is tried (unless `everywhere`): the caller gets `kind`, as gRPC `code`
    or HTTP `status`, naming the first attempt's `outcome`."""

    kind: str
    code: str
    status: int
    outcome: str
    everywhere: bool = False


@dataclass(frozen=True)
class Broken:
    """The stream had begun: the first tokens reached the caller, then an error, not an end."""

    outcome: str = "mid_stream_error"


Expect = Over | Fail | Broken


@dataclass(frozen=True)
class Fault:
    name: str
    behaviour: ChatBehaviour
    unary: Expect
    streamed: Expect
    runner_up: ChatBehaviour = RUNNER_UP_REPLY
    # Whether the fault makes the router wait out an attempt timeout: only then are the
    # timeouts short (elsewhere a slow shared machine must not turn a failure into a timeout).
    waits: bool = False


def same(name: str, behaviour: ChatBehaviour, expect: Expect, *, waits: bool = False) -> Fault:
    return Fault(name, behaviour, expect, expect, waits=waits)


UNAVAILABLE_EVERYWHERE = Fail("unavailable", "UNAVAILABLE", 503, "http_503", everywhere=True)
FAULTS = [
    same(
        "400 bad request",
        HttpError(400, "messages: invalid role"),
        Fail("refused_by_model", "INVALID_ARGUMENT", 400, "http_400"),
    ),
    same(
        "401 key refused",
        HttpError.unauthorized(),
        Fail("upstream_auth", "UNAVAILABLE", 502, "http_401"),
    ),
    same(
        "402 out of credits",
        InsufficientCredits(can_afford=10),
        Fail("out_of_credits", "RESOURCE_EXHAUSTED", 503, "http_402"),
    ),
    same(
        "403 moderation",
        HttpError.moderation(),
        Fail("moderation", "PERMISSION_DENIED", 403, "http_403"),
    ),
    same("404 no endpoints", HttpError.no_endpoints(), Over("http_404")),
    same("408 timeout", HttpError.timeout(), Over("http_408")),
    same(
        "429 with Retry-After", HttpError.upstream_rate_limited(retry_after_s=30), Over("http_429")
    ),
    same("429 without Retry-After", HttpError.upstream_rate_limited(), Over("http_429")),
    same("500 internal", HttpError.internal(), Over("http_500")),
    same("502 bad gateway", HttpError.bad_gateway(), Over("http_502")),
    same("503 unavailable", HttpError.unavailable(retry_after_s=1), Over("http_503")),
    same("524 edge timeout", HttpError.edge_timeout(), Over("http_524")),
    same("529 overloaded", HttpError.overloaded(), Over("http_529")),
    same("context length exceeded", ContextLengthExceeded(), Over("context_length")),
    Fault("error in a 200 body", ErrorIn200(), Over("error_in_200"), Over("stream_error")),
    same("empty 200", Reply(content=""), Over("empty_answer")),
    same(
        "slow first token",
        Reply("too late", first_token_delay_s=5 * ATTEMPT_S),
        Over("timeout"),
        waits=True,
    ),
    same("stalled before the first token", Stall(), Over("timeout"), waits=True),
    same("reset (RST) before the first token", Reset(), Over("connection")),
    same("connection dropped before the first token", Drop(), Over("connection")),
    Fault(
        "error mid-stream after the first token",
        MidStreamError(after_chunks=2),
        Over("error_in_200"),
        Broken(),
    ),
    Fault(
        "stalled after the first token",
        Stall(after_chunks=2),
        Over("timeout"),
        Broken(),
        waits=True,
    ),
    Fault("reset (RST) after the first token", Reset(after_chunks=2), Over("connection"), Broken()),
    Fault(
        "connection dropped after the first token",
        Drop(after_chunks=2),
        Over("connection"),
        Broken(),
    ),
    Fault(
        "503 on every candidate",
        HttpError.unavailable(),
        UNAVAILABLE_EVERYWHERE,
        UNAVAILABLE_EVERYWHERE,
        runner_up=HttpError.unavailable(),
    ),
]


@dataclass
class Seen:
    """What the caller saw: an answer (who, the attempts' outcomes, the text) or an error (its
    status, kind and message, and any text that came before it)."""

    status: str  # "OK", a gRPC status name, or the HTTP status
    model: str = ""
    attempts: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""
    kind: str = ""
    message: str = ""

    @property
    def answered(self) -> bool:
        return not self.kind


@pytest.fixture
def router(
    fake: FakeOpenRouter, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServerThread]:
    """A fresh router (clean circuits, retry budget and figures) on the freshly reset fake,
    with short timeouts for the faults that wait them out."""
    fake.reset()
    fault = request.node.callspec.params["fault"]
    timeout_s = ATTEMPT_S if fault.waits else PATIENT_S
    settings = settings_for(
        fake,
        tmp_path / "state",
        attempt_timeout_s=timeout_s,
        first_token_timeout_s=timeout_s,
        stream_idle_timeout_s=timeout_s,
        endpoint_stats_models=0,
    )
    server = ServerThread(settings)
    with server as address, grpc.insecure_channel(address) as channel:
        assert RouterStub(channel).RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        server.address = address  # type: ignore[attr-defined]
        yield server


def grpc_error(error: grpc.RpcError, text: str) -> Seen:
    trailers = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
    return Seen(
        error.code().name,  # type: ignore[attr-defined]
        text=text,
        kind=str(trailers.get("router-error-kind", "?")),
        message=error.details(),  # type: ignore[attr-defined]
    )


def answered(response: pb.CompleteResponse, text: str) -> Seen:
    return Seen("OK", response.model, [(a.model, a.outcome) for a in response.attempts], text=text)


def request() -> pb.CompleteRequest:
    message = pb.ChatMessage(role=HELLO["role"], content=HELLO["content"])
    return pb.CompleteRequest(models=[FIRST, RUNNER_UP], messages=[message])


def grpc_unary(server: ServerThread) -> Seen:
    with grpc.insecure_channel(server.address) as channel:  # type: ignore[attr-defined]
        try:
            response = RouterStub(channel).Complete(request(), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            return grpc_error(error, "")
    return answered(response, response.choices[0].message.content)


def grpc_stream(server: ServerThread) -> Seen:
    text: list[str] = []
    with grpc.insecure_channel(server.address) as channel:  # type: ignore[attr-defined]
        try:
            for chunk in RouterStub(channel).StreamComplete(request(), timeout=CALL_TIMEOUT_S):
                if chunk.WhichOneof("event") == "delta":
                    text.append(chunk.delta)
                elif chunk.WhichOneof("event") == "summary":
                    return answered(chunk.summary, "".join(text))
        except grpc.RpcError as error:
            return grpc_error(error, "".join(text))
    return Seen("OK", kind="ended without a summary", text="".join(text))


def rest_error(reply: httpx.Response) -> Seen:
    error = reply.json()["error"]
    return Seen(str(reply.status_code), kind=error["code"], message=error["message"])


def decision_attempts(http: httpx.Client, decision_id: str) -> list[tuple[str, str]]:
    record = http.get(f"/decisions/{decision_id}").json()
    return [(a["model"], a["outcome"]) for a in record["attempts"]]


def sse(raw: str) -> list[str]:
    return [e.removeprefix("data: ") for e in raw.strip().split("\n\n") if e]


def rest(path: str, streamed: bool) -> Callable[[ServerThread], Seen]:
    v1 = path.startswith("/v1")
    body: dict[str, object] = {"messages": [HELLO], "stream": streamed}
    body |= {"model": FIRST, "models": [RUNNER_UP]} if v1 else {"models": [FIRST, RUNNER_UP]}

    def call(server: ServerThread) -> Seen:
        with httpx.Client(base_url=server.http_url, timeout=CALL_TIMEOUT_S) as http:
            if not streamed:
                reply = http.post(path, json=body)
                if reply.status_code != 200:
                    return rest_error(reply)
                data = reply.json()
                text = data["choices"][0]["message"]["content"]
                if v1:
                    attempts = decision_attempts(http, reply.headers["x-router-decision-id"])
                    assert reply.headers["x-router-attempts"] == str(len(attempts))
                    return Seen("OK", reply.headers["x-router-model"], attempts, text=text)
                return Seen(
                    "OK",
                    data["model"],
                    [(a["model"], a["outcome"]) for a in data["attempts"]],
                    text=text,
                )
            with http.stream("POST", path, json=body) as reply:
                if reply.status_code != 200:
                    reply.read()
                    return rest_error(reply)
                headers, raw = reply.headers, reply.read().decode()
            events = sse(raw)
            done = events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events if e != "[DONE]"]
            if v1:
                text = "".join(
                    c["choices"][0]["delta"].get("content") or "" for c in chunks if "choices" in c
                )
            else:
                text = "".join(c["delta"] or "" for c in chunks if "delta" in c)
            last = chunks[-1]
            if last.get("error"):
                assert not done, "an error is the stream's last event"
                error = last["error"]
                return Seen("200", text=text, kind=error["code"], message=error["message"])
            if v1:
                assert done
                attempts = decision_attempts(http, headers["x-router-decision-id"])
                return Seen("OK", headers["x-router-model"], attempts, text=text)
            summary = last["summary"]
            attempts = [(a["model"], a["outcome"]) for a in summary["attempts"]]
            return Seen("OK", summary["model"], attempts, text=text)

    return call


TRANSPORTS: dict[str, tuple[Callable[[ServerThread], Seen], bool]] = {
    "gRPC Complete": (grpc_unary, False),
    "gRPC StreamComplete": (grpc_stream, True),
    "REST /complete": (rest("/complete", False), False),
    "REST /complete stream": (rest("/complete", True), True),
    "/v1/chat/completions": (rest("/v1/chat/completions", False), False),
    "/v1/chat/completions stream": (rest("/v1/chat/completions", True), True),
}

SAMPLE = re.compile(r"^(router_completions_total|router_failovers_total)\{(.*)\} (\S+)$")


def counters(server: ServerThread) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{server.http_url}/metrics", timeout=CALL_TIMEOUT_S).text
    found = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match[2]))
            found[match[1], labels] = float(match[3])
    return found


def counted(
    before: dict[tuple[str, frozenset[tuple[str, str]]], float],
    after: dict[tuple[str, frozenset[tuple[str, str]]], float],
    name: str,
    **labels: str,
) -> float:
    """How much the samples of `name` with these labels grew."""
    wanted = set(labels.items())
    return sum(
        value - before.get(key, 0.0)
        for key, value in after.items()
        if key[0] == name and wanted <= key[1]
    )


def chat_calls(fake: FakeOpenRouter) -> list[str]:
    return [str(r.json["model"]) for r in fake.requests if r.path.endswith("/chat/completions")]


def describe(seen: Seen, expect: Expect) -> str:
    if isinstance(expect, Over):
        return f"answered by the runner-up; attempts {[o for _, o in seen.attempts]}"
    if isinstance(expect, Broken):
        return f"{len(seen.text)} chars, then error {seen.status} {seen.kind} (no clean end)"
    return f"fails fast: {seen.status} {seen.kind} ({expect.outcome})"


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_each_upstream_fault_on_each_way_in(
    router: ServerThread,
    fake: FakeOpenRouter,
    fault: Fault,
    transport: str,
) -> None:
    send, streamed = TRANSPORTS[transport]
    expect = fault.streamed if streamed else fault.unary
    grpc_way = transport.startswith("gRPC")
    fake.script(FIRST, fault.behaviour)
    fake.script(RUNNER_UP, fault.runner_up)
    before = counters(router)
    seen = send(router)
    after = counters(router)
    failovers = counted(before, after, "router_failovers_total")
    if isinstance(expect, Over):
        assert seen.answered, seen
        assert (seen.model, seen.text) == (RUNNER_UP, ANSWER)
        assert seen.attempts == [(FIRST, expect.outcome), (RUNNER_UP, "ok")], seen
        assert chat_calls(fake) == [FIRST, RUNNER_UP]
        ok = counted(before, after, "router_completions_total", outcome="ok", model=RUNNER_UP)
        assert ok == 1
        assert (
            failovers == counted(before, after, "router_failovers_total", cause=expect.outcome) == 1
        )
    elif isinstance(expect, Fail):
        assert not seen.answered, seen
        assert seen.kind == expect.kind
        assert seen.status == (expect.code if grpc_way else str(expect.status))
        assert f"{FIRST}: {expect.outcome}" in seen.message
        tried = [FIRST, RUNNER_UP] if expect.everywhere else [FIRST]
        assert chat_calls(fake) == tried
        last = tried[-1]
        assert (
            counted(before, after, "router_completions_total", outcome=expect.kind, model=last) == 1
        )
        assert failovers == len(tried) - 1
    else:
        assert not seen.answered, seen
        assert seen.text, "the first tokens reached the caller"
        assert seen.kind == "unavailable"
        assert seen.status == ("UNAVAILABLE" if grpc_way else "200")
        assert "after it began" in seen.message
        assert f"{FIRST}: {expect.outcome}" in seen.message
        assert chat_calls(fake) == [FIRST]
        assert (
            counted(before, after, "router_completions_total", outcome="unavailable", model=FIRST)
            == 1
        )
        assert failovers == 0
    assert counted(before, after, "router_completions_total") == 1
    REPORT.add(
        fault.name,
        transport,
        describe(seen, expect),
        sent=1,
        answered=int(seen.answered),
        errors=int(not seen.answered),
    )
