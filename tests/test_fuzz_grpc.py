"""Hostile requests to every method of the Router service over a real gRPC channel: messages of
each method's request type with any field values, and raw bytes (random, cut short, invalid
UTF-8). No answer is UNKNOWN or INTERNAL, no answer shows a traceback, and the router logs no
error. Completions reach the fake OpenRouter, so they are real."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.grpc_server import SERVICE, SERVICE_NAME
from service.pb.router.v1 import router_pb2 as pb
from testkit.servers import ServerThread
from tests.fuzzing import (
    CALL_TIMEOUT_S,
    FUZZ,
    HUGE,
    assert_no_leak,
    describe,
    errors_logged,
    messages,
    mutations,
    raw_requests,
)
from tests.known_decision import KNOWN_DECISION_ID, plant_decision

METHODS = list(SERVICE.methods)
# Methods that call OpenRouter go to the router on the fake; the others to the session's router,
# which serves the whole embedded catalogue.
ON_FAKE = frozenset({"Complete", "StreamComplete", "RefreshCatalogue"})
ROUTING = pb.RouteRequest(
    mode=pb.MODE_SPEED,
    constraints=pb.Constraints(
        deny_providers=["nobody"], max_prompt_price_per_mtok=100, free=pb.FREE_FILTER_EXCLUDE
    ),
    profile=pb.RequestProfile(prompt_tokens=200, output_tokens=100),
    top_k=3,
)
HELLO = pb.CompleteRequest(messages=[pb.ChatMessage(role="user", content="Hello")])
CHAT = pb.CompleteRequest(
    routing=ROUTING,
    messages=[
        pb.ChatMessage(role="system", content="Be brief."),
        pb.ChatMessage(
            role="user",
            parts=[
                pb.ContentPart(text="What is this?"),
                pb.ContentPart(
                    image_url=pb.ImageUrl(url="https://example.com/a.png", detail="low")
                ),
            ],
        ),
        pb.ChatMessage(
            role="assistant",
            tool_calls_json='[{"id": "call_1", "type": "function", '
            '"function": {"name": "look", "arguments": "{}"}}]',
        ),
        pb.ChatMessage(role="tool", tool_call_id="call_1", content="a cat"),
    ],
    params=pb.GenerationParams(
        max_tokens=50,
        temperature=0.5,
        top_p=0.9,
        stop=["END"],
        seed=7,
        tools_json='[{"type": "function", "function": {"name": "look", "parameters": {}}}]',
        tool_choice_json='"auto"',
        extra_json='{"logprobs": false}',
    ),
)
# Valid requests of each method: the first is answered OK; the fuzz mutates them all.
SEEDS: dict[str, list[Message]] = {
    "Route": [pb.RouteRequest(), ROUTING],
    "Explain": [
        pb.ExplainRequest(),
        pb.ExplainRequest(routing=ROUTING, model="openai/gpt-4o-mini"),
    ],
    "ListModels": [pb.ListModelsRequest(query="gpt", author="openai", limit=5, offset=1)],
    "GetStatus": [pb.GetStatusRequest()],
    "GetDecision": [pb.GetDecisionRequest(decision_id=KNOWN_DECISION_ID)],
    "RefreshCatalogue": [pb.RefreshCatalogueRequest()],
    "Complete": [HELLO, CHAT],
    "StreamComplete": [HELLO, CHAT],
}
EXAMPLES = {"Complete": 120, "StreamComplete": 120}
DEFAULT_EXAMPLES = 150
RAW_EXAMPLES = 100
# Status details quote at most a little of what the caller sent.
MAX_DETAILS_CHARS = 300
NEVER = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})


@pytest.fixture(scope="module")
def channels(
    grpc_address: str, router_server: ServerThread, fake_router: ServerThread
) -> Iterator[dict[bool, grpc.Channel]]:
    """By whether the method is one of ON_FAKE."""
    plant_decision(router_server)
    on_fake = f"127.0.0.1:{fake_router.running.port}"
    with grpc.insecure_channel(grpc_address) as session, grpc.insecure_channel(on_fake) as fake:
        yield {False: session, True: fake}


def status_of(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    assert isinstance(error, grpc.Call)
    return error.code(), error.details() or ""


def send(
    channel: grpc.Channel, method: MethodDescriptor, payload: bytes
) -> tuple[grpc.StatusCode, str]:
    """Call `method` with `payload` as its serialised request (read every streamed answer);
    the status and its details, checked for what they must never be."""
    path = f"/{SERVICE_NAME}/{method.name}"
    code, details = grpc.StatusCode.OK, ""
    with errors_logged() as logged:
        try:
            if method.server_streaming:
                for _ in channel.unary_stream(path)(payload, timeout=CALL_TIMEOUT_S):
                    pass
            else:
                channel.unary_unary(path)(payload, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            code, details = status_of(error)
    assert code not in NEVER, f"{method.name}: {code.name}: {details}"
    assert_no_leak(details)
    assert not logged, describe(logged)
    return code, details


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_any_message(channels: dict[bool, grpc.Channel], method: MethodDescriptor) -> None:
    channel = channels[method.name in ON_FAKE]
    codes: Counter[grpc.StatusCode] = Counter()

    @settings(FUZZ, max_examples=EXAMPLES.get(method.name, DEFAULT_EXAMPLES))
    @given(st.one_of(messages(method.input_type), mutations(SEEDS[method.name])))
    @example(SEEDS[method.name][0])
    def one(request: Message) -> None:
        codes[send(channel, method, request.SerializeToString())[0]] += 1

    one()
    assert codes[grpc.StatusCode.OK] > 0, codes


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_raw_bytes(channels: dict[bool, grpc.Channel], method: MethodDescriptor) -> None:
    channel = channels[method.name in ON_FAKE]

    @settings(FUZZ, max_examples=RAW_EXAMPLES)
    @given(raw_requests(method.input_type))
    def one(payload: bytes) -> None:
        send(channel, method, payload)

    one()


def test_undecodable_bytes_are_invalid_argument(channels: dict[bool, grpc.Channel]) -> None:
    """grpc itself would answer UNKNOWN, naming the exception."""
    route = SERVICE.methods_by_name["Route"]
    valid = pb.RouteRequest(custom_mode="é").SerializeToString()
    for payload in (b"\xff\xff\xff", valid[:-1], valid.replace("é".encode(), b"\xff\xfe")):
        code, details = send(channels[False], route, payload)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("undecodable: Error parsing message with type")


def test_an_unknown_method_is_unimplemented(channels: dict[bool, grpc.Channel]) -> None:
    call = channels[False].unary_unary(f"/{SERVICE_NAME}/Nothing")
    with pytest.raises(grpc.RpcError) as raised:
        call(b"", timeout=CALL_TIMEOUT_S)
    assert isinstance(raised.value, grpc.Call)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def asking(
    params: pb.GenerationParams | None = None, message: pb.ChatMessage | None = None
) -> pb.CompleteRequest:
    return pb.CompleteRequest(messages=[message or HELLO.messages[0]], params=params)


def parts(*given: pb.ContentPart) -> pb.ChatMessage:
    return pb.ChatMessage(role="user", parts=given)


DEEP = 100_000
# (what, method, request, the start of the status details); each is INVALID_ARGUMENT.
HOSTILE = [
    (
        "weights whose sum overflows",
        "Route",
        pb.RouteRequest(weights=pb.Weights(latency=1e308, cost=1e308, quality=1e308)),
        "weights must sum to a finite number",
    ),
    ("a 16 KB custom mode", "Route", pb.RouteRequest(custom_mode="x" * HUGE), "unknown custom"),
    (
        "a 16 KB model pattern",
        "Route",
        pb.RouteRequest(constraints=pb.Constraints(deny_models=["*" * HUGE])),
        "deny_models: ",
    ),
    ("a 16 KB model", "Explain", pb.ExplainRequest(model="m" * HUGE), "model 'mmm"),
    (
        "a NaN temperature",
        "Complete",
        asking(pb.GenerationParams(temperature=math.nan)),
        "params.temperature must be from 0 to 2, got nan",
    ),
    (
        "an infinite top_p",
        "StreamComplete",
        asking(pb.GenerationParams(top_p=math.inf)),
        "params.top_p must be from 0 to 1, got inf",
    ),
    (
        "max_tokens 0",
        "Complete",
        asking(pb.GenerationParams(max_tokens=0)),
        "params.max_tokens must be at least 1",
    ),
    (
        "NaN passed through",
        "Complete",
        asking(pb.GenerationParams(extra_json='{"n": NaN}')),
        "params.extra_json: not valid JSON: NaN",
    ),
    (
        "100k-deep nesting passed through",
        "StreamComplete",
        asking(pb.GenerationParams(extra_json="[" * DEEP + "]" * DEEP)),
        "params.extra_json: nested deeper than 64 levels",
    ),
    (
        "NaN in a tool call",
        "Complete",
        asking(message=pb.ChatMessage(role="assistant", tool_calls_json='[{"id": NaN}]')),
        "messages[0].tool_calls_json: not valid JSON: NaN",
    ),
    (
        "an image part without a url",
        "Complete",
        asking(message=parts(pb.ContentPart(image_url=pb.ImageUrl(detail="low")))),
        "messages[0]: an image_url part needs a url",
    ),
    (
        "an empty part",
        "StreamComplete",
        asking(message=parts(pb.ContentPart())),
        "messages[0]: a part must be text or image_url",
    ),
]


@pytest.mark.parametrize(
    ("what", "method", "request_", "details"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_hostile_requests_are_invalid_arguments(
    channels: dict[bool, grpc.Channel], what: str, method: str, request_: Message, details: str
) -> None:
    """With a clear message, which quotes at most a little of the request."""
    channel = channels[method in ON_FAKE]
    code, said = send(channel, SERVICE.methods_by_name[method], request_.SerializeToString())
    assert (code, said[: len(details)]) == (grpc.StatusCode.INVALID_ARGUMENT, details)
    assert len(said) < MAX_DETAILS_CHARS
