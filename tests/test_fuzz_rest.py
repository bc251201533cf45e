"""Hostile requests to the REST gateway, in process and in front of a router over gRPC: every
operation of its OpenAPI schema fuzzed by schemathesis (an endpoint added later is fuzzed with
no change here), and hand-written hostile bodies on one keep-alive connection. No answer is a
5xx, every 4xx is the JSON error body, no answer shows a traceback, the connection stays
usable, and the router logs no error. Completions reach the fake OpenRouter."""

from __future__ import annotations

import contextlib
import http.client
import json
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import schemathesis
from hypothesis import given, settings
from schemathesis import Case, GenerationMode
from schemathesis.schemas import BaseSchema

from testkit.servers import GatewayThread, ServerThread
from tests.fuzzing import CALL_TIMEOUT_S, CUSTOM_MODE, FUZZ, assert_no_leak, describe, errors_logged

SCHEMA_EXAMPLES = 80


@pytest.fixture(scope="module", params=["in-process", "remote"])
def base_url(request: pytest.FixtureRequest, fake_router: ServerThread) -> Iterator[str]:
    if request.param == "in-process":
        yield fake_router.http_url
        return
    target = f"127.0.0.1:{fake_router.running.port}"
    with GatewayThread(target, fake_router.settings) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(base_url: str) -> BaseSchema:
    """The gateway's own schema: every path it serves, whichever exist when the test runs."""
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")


@pytest.fixture
def connection(base_url: str) -> Iterator[http.client.HTTPConnection]:
    """One keep-alive connection to the gateway."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=CALL_TIMEOUT_S)
    with contextlib.closing(connection):
        yield connection


def check_answer(status: int, body: bytes) -> None:
    """No 5xx, no traceback, and a 4xx is `{"error": {"code", "message"}}`."""
    text = body.decode("utf-8", "replace")
    assert status < 500, f"{status}: {text[:500]}"
    assert_no_leak(text)
    if status >= 400:
        error = json.loads(body)["error"]
        assert isinstance(error["code"], str), text
        assert isinstance(error["message"], str), text
        assert error["message"], text


def test_every_operation(api_schema: BaseSchema) -> None:
    """Positive and negative examples of each operation in the schema."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {"/route", "/complete", "/models"} <= {op.path for op in operations}
    for operation in operations:
        cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @settings(FUZZ, max_examples=SCHEMA_EXAMPLES)
        @given(cases)
        def one(case: Case) -> None:
            with errors_logged() as logged:
                response = case.call(timeout=CALL_TIMEOUT_S)
            check_answer(response.status_code, response.content)
            assert not logged, describe(logged)

        one()


HELLO = [{"role": "user", "content": "Hello"}]
DEEP = 100_000
TEN_MB = b'{"custom_mode": "' + b"x" * (10 * 2**20) + b'"}'
JSON = {"content-type": "application/json"}
CHUNKED = {**JSON, "transfer-encoding": "chunked"}
TOOL_CALL_NAN = '[{"role": "assistant", "tool_calls": [{"id": NaN}]}]'
TOOL_CALLS_DEEP = '[{"role": "assistant", "tool_calls": ' + "[" * DEEP + "]" * DEEP + "}]"
IMAGE_WITHOUT_URL = '[{"role": "user", "content": [{"type": "image_url"}]}]'
MINUS_ZERO = b'{"top_k": -0, "weights": {"latency": -0.0, "cost": 1, "quality": -0}}'


def complete(params: str = "{}", messages: str = json.dumps(HELLO)) -> bytes:
    """A /complete body with `params` and `messages` as given (JSON text, hostile or not)."""
    return f'{{"messages": {messages}, "params": {params}}}'.encode()


def weights(latency: str, cost: str = "1", quality: str = "1") -> bytes:
    return f'{{"weights": {{"latency": {latency}, "cost": {cost}, "quality": {quality}}}}}'.encode()


def in_chunks(body: bytes, size: int = 2**20) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def post(
    connection: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    """The answer's status and body, checked by `check_answer`."""
    chunked = headers is CHUNKED
    connection.request(
        "POST", path, in_chunks(body) if chunked else body, headers, encode_chunked=chunked
    )
    answer = connection.getresponse()
    content = answer.read()
    check_answer(answer.status, content)
    return answer.status, content


# (what, path, body, headers, expected status); a body is sent in chunks under CHUNKED.
HOSTILE: list[tuple[str, str, bytes, dict[str, str], int]] = [
    ("raw bytes", "/route", bytes(range(256)), JSON, 400),
    ("invalid UTF-8", "/route", b'{"custom_mode": "\xff\xfe"}', JSON, 400),
    ("a cut-off body", "/complete", complete()[:-7], JSON, 400),
    (
        "100k-deep params",
        "/complete",
        complete('{"x": ' + "[" * DEEP + "]" * DEEP + "}"),
        JSON,
        400,
    ),
    ("100k-deep tool calls", "/complete", complete(messages=TOOL_CALLS_DEEP), JSON, 400),
    ("a weight of 1e400", "/route", weights("1e400"), JSON, 400),
    ("weights whose sum overflows", "/route", weights("1e308", "1e308", "1e308"), JSON, 400),
    (
        "a TTFT limit of -1e400",
        "/route",
        b'{"constraints": {"max_ttft_seconds": -1e400}}',
        JSON,
        400,
    ),
    ("temperature 1e400", "/complete", complete('{"temperature": 1e400}'), JSON, 400),
    ("temperature NaN", "/complete", complete('{"temperature": NaN}'), JSON, 400),
    ("top_p -Infinity", "/complete", complete('{"top_p": -Infinity}'), JSON, 400),
    ("Infinity passed through", "/complete", complete('{"x": {"y": [Infinity]}}'), JSON, 400),
    ("NaN in a tool", "/complete", complete('{"tools": [{"n": NaN}]}'), JSON, 400),
    ("NaN in a tool call", "/complete", complete(messages=TOOL_CALL_NAN), JSON, 400),
    (
        "1e400 in response_format",
        "/complete",
        complete('{"response_format": {"n": 1e400}}'),
        JSON,
        400,
    ),
    ("2^130 passed through", "/complete", complete(f'{{"x": {2**130}}}'), JSON, 400),
    ("seed 2^63", "/complete", complete(f'{{"seed": {2**63}}}'), JSON, 400),
    ("seed -2^63 - 1", "/complete", complete(f'{{"seed": {-(2**63) - 1}}}'), JSON, 400),
    ("seed of 400 digits", "/complete", complete('{"seed": ' + "9" * 400 + "}"), JSON, 400),
    ("seed 2^63 - 1", "/complete", complete(f'{{"seed": {2**63 - 1}}}'), JSON, 200),
    ("-0 everywhere", "/route", MINUS_ZERO, JSON, 200),
    ("max_tokens 0", "/complete", complete('{"max_tokens": 0}'), JSON, 400),
    (
        "an image_url part without image_url",
        "/complete",
        complete(messages=IMAGE_WITHOUT_URL),
        JSON,
        400,
    ),
    ("a 16 KB custom mode", "/route", json.dumps({"custom_mode": "x" * 16384}).encode(), JSON, 400),
    (
        "a 16 KB model to explain",
        "/explain",
        json.dumps({"model": "m" * 16384}).encode(),
        JSON,
        400,
    ),
    (
        "a 16 KB model pattern",
        "/route",
        json.dumps({"constraints": {"deny_models": ["*" * 16384]}}).encode(),
        JSON,
        400,
    ),
    ("a 16 KB unknown field", "/route", json.dumps({"k" * 16384: 1}).encode(), JSON, 400),
    ("text/plain", "/route", b"{}", {"content-type": "text/plain"}, 400),
    (
        "a form",
        "/complete",
        b"messages=hi",
        {"content-type": "application/x-www-form-urlencoded"},
        400,
    ),
    ("no content type", "/route", b"{}", {}, 400),
    ("an empty body", "/route", b"", JSON, 400),
    ("a JSON array", "/complete", b"[]", JSON, 400),
    ("a 10 MB body", "/route", TEN_MB, JSON, 413),
    ("a 10 MB body in chunks", "/route", TEN_MB, CHUNKED, 413),
    ("a valid route", "/route", b"{}", JSON, 200),
    ("a valid completion", "/complete", complete(), JSON, 200),
]
# JSON nested about as deep as Python's recursion limit: read, but too deep to write again.
HOSTILE += [
    (
        f"{depth}-deep params",
        "/complete",
        complete('{"x": ' + "[" * depth + "]" * depth + "}"),
        JSON,
        400,
    )
    for depth in range(sys.getrecursionlimit() - 100, sys.getrecursionlimit())
]
# Error messages quote at most a little of what the caller sent.
MAX_MESSAGE_CHARS = 300


def test_hostile_requests_on_one_connection(connection: http.client.HTTPConnection) -> None:
    """Each answered as expected, and the connection still serves the next request."""
    with errors_logged() as logged:
        for what, path, body, headers, expected in HOSTILE:
            status, content = post(connection, path, body, headers)
            assert status == expected, f"{what}: {status} {content[:300]!r}"
            if status >= 400:
                assert len(json.loads(content)["error"]["message"]) < MAX_MESSAGE_CHARS, what
            socket = connection.sock
            connection.request("GET", "/health")
            assert connection.getresponse().read(), what
            assert connection.sock is socket, f"{what}: the connection was closed"
    assert not logged, describe(logged)


TOOL = {"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
# A body of each endpoint with a string in every place one may stand.
EVERY_STRING: dict[str, dict[str, Any]] = {
    "/route": {
        "custom_mode": CUSTOM_MODE,
        "constraints": {
            "required_parameters": ["tools"],
            "allow_models": ["openai/*"],
            "deny_models": ["x/y"],
            "allow_providers": ["openai"],
            "deny_providers": ["z"],
            "input_modalities": ["text"],
            "free": "exclude",
        },
    },
    "/explain": {"mode": "speed", "model": "openai/gpt-4o-mini"},
    "/complete": {
        "messages": [
            {"role": "system", "content": "Be brief.", "name": "rules"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://a.b/c.png", "detail": "low"},
                    },
                ],
            },
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            {"role": "tool", "content": "a cat", "tool_call_id": "call_1"},
        ],
        "params": {
            "stop": ["END"],
            "tools": [TOOL],
            "tool_choice": "auto",
            "response_format": {"type": "json_object"},
            "user": "someone",
        },
    },
}


def with_a_lone_surrogate(value: Any) -> Iterator[Any]:
    """`value` once for each string in it (keys too), with that string a lone surrogate."""
    if isinstance(value, str):
        yield "\ud800"
    elif isinstance(value, dict):
        for key, item in value.items():
            rest = {k: v for k, v in value.items() if k != key}
            yield {**rest, "\udfff": item}
            yield from ({**value, key: variant} for variant in with_a_lone_surrogate(item))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from ([*value[:i], v, *value[i + 1 :]] for v in with_a_lone_surrogate(item))


def test_a_lone_surrogate_in_any_string_is_refused(
    connection: http.client.HTTPConnection,
) -> None:
    with errors_logged() as logged:
        for path, body in EVERY_STRING.items():
            assert post(connection, path, json.dumps(body).encode(), JSON)[0] == 200, path
            for variant in with_a_lone_surrogate(body):
                # Escaped as \ud800: the only way JSON text can hold a lone surrogate.
                status, content = post(connection, path, json.dumps(variant).encode(), JSON)
                assert status == 400, f"{path} {variant}: {content[:300]!r}"
    assert not logged, describe(logged)
