"""How a CompleteRequest becomes OpenRouter's chat body and a routing request."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from service.completion.json_text import dump_json
from service.completion.request import prepare
from service.pb.router.v1 import router_pb2 as pb
from service.scorer import InvalidRequest


def test_the_profile_is_derived_when_not_given() -> None:
    text = "x" * 400
    image = pb.ContentPart(image_url=pb.ImageUrl(url="https://example.com/a.png", detail="low"))
    request = pb.CompleteRequest(
        messages=[
            pb.ChatMessage(role="system", content=text),
            pb.ChatMessage(role="user", parts=[pb.ContentPart(text=text), image]),
        ],
        params=pb.GenerationParams(max_tokens=300),
    )
    prepared = prepare(request, default_output_tokens=500)
    assert prepared.route.profile.prompt_tokens == 100 + 100 + 85 + 2 * 4
    assert prepared.route.profile.output_tokens == 300
    assert list(prepared.route.constraints.input_modalities) == [pb.MODALITY_IMAGE]
    assert prepared.body["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/a.png", "detail": "low"},
    }
    assert prepared.body["max_tokens"] == 300


def test_a_given_profile_is_kept() -> None:
    request = pb.CompleteRequest(
        routing=pb.RouteRequest(profile=pb.RequestProfile(prompt_tokens=7, output_tokens=9)),
        messages=[pb.ChatMessage(role="user", content="hello")],
    )
    profile = prepare(request, default_output_tokens=500).route.profile
    assert (profile.prompt_tokens, profile.output_tokens) == (7, 9)


def test_parameters_become_constraints_and_unknown_fields_pass_through() -> None:
    params = pb.GenerationParams(
        temperature=0.3,
        seed=7,
        stop=["END"],
        tools_json='[{"type": "function", "function": {"name": "f"}}]',
        response_format_json='{"type": "json_object"}',
        tool_choice_json='"auto"',
        extra_json='{"logprobs": true, "top_k": 40}',
    )
    request = pb.CompleteRequest(
        messages=[pb.ChatMessage(role="user", content="hi")], params=params
    )
    prepared = prepare(request, default_output_tokens=500)
    assert sorted(prepared.route.constraints.required_parameters) == ["response_format", "tools"]
    body = prepared.body
    assert (body["temperature"], body["seed"], body["stop"]) == (0.3, 7, ["END"])
    assert (body["tool_choice"], body["logprobs"], body["top_k"]) == ("auto", True, 40)
    assert type(body["top_k"]) is int
    assert body["response_format"] == {"type": "json_object"}
    assert "model" not in body


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.CompleteRequest(), "messages must not be empty"),
        (pb.CompleteRequest(messages=[pb.ChatMessage(role="root", content="x")]), "role"),
        (
            pb.CompleteRequest(
                messages=[
                    pb.ChatMessage(role="user", content="x", parts=[pb.ContentPart(text="y")])
                ]
            ),
            "not both",
        ),
    ],
)
def test_bad_requests_are_refused(request_: pb.CompleteRequest, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        prepare(request_, default_output_tokens=500)


def test_extra_may_not_take_the_routers_fields() -> None:
    params = pb.GenerationParams(extra_json='{"model": "a/b", "stream": true}')
    request = pb.CompleteRequest(messages=[pb.ChatMessage(role="user", content="x")], params=params)
    with pytest.raises(InvalidRequest, match=r"^params\.extra_json may not set model, stream"):
        prepare(request, default_output_tokens=500)


def with_params(**fields: Any) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        messages=[pb.ChatMessage(role="user", content="x")], params=pb.GenerationParams(**fields)
    )


def test_json_text_keeps_integers_and_floats_apart() -> None:
    schema = '{"type": "object", "properties": {"n": {"maximum": 40, "multipleOf": 0.5}}}'
    body = prepare(with_params(response_format_json=schema), default_output_tokens=500).body
    n = body["response_format"]["properties"]["n"]
    assert (type(n["maximum"]), type(n["multipleOf"])) == (int, float)


def test_json_text_at_the_limits_is_accepted() -> None:
    # 64 levels (an array, then 63 objects) and more brackets than that, so the tree is walked.
    deepest = "[{}, " + '{"a": ' * 62 + "{}" + "}" * 62 + "]"
    limits = '{"hi": 9007199254740991, "lo": -9007199254740991, "s": "\\ud83d\\ude00"}'
    body = prepare(with_params(tools_json=deepest, extra_json=limits), 500).body
    assert (body["hi"], body["lo"], body["s"]) == (2**53 - 1, 1 - 2**53, "\U0001f600")
    assert prepare(with_params(tools_json="[]"), 500).body["tools"] == []
    with pytest.raises(InvalidRequest, match="nested deeper than 64 levels"):
        prepare(with_params(tools_json=deepest.replace("{}}", '{"a": {}}}', 1)), 500)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"extra_json": '{"n": 9007199254740992}'}, "integer 9007199254740992 is beyond"),
        ({"extra_json": '{"n": -' + "9" * 5000 + "}"}, "integer -9999"),
        ({"extra_json": '{"n": 1e400}'}, "number 1e400 is out of range"),
        ({"extra_json": '{"n": Infinity}'}, "not valid JSON: Infinity"),
        ({"extra_json": '{"s": "\\ud800"}'}, "a string holds a lone surrogate"),
        ({"extra_json": '{"\\udfff": 1}'}, "a string holds a lone surrogate"),
        ({"extra_json": '{"n": 1, "n": 2}'}, "duplicate key 'n'"),
        ({"extra_json": "[" * 100_000 + "]" * 100_000}, "nested deeper than 64 levels"),
        ({"extra_json": "{}  {}"}, "not valid JSON: Extra data"),
        ({"extra_json": " "}, "not valid JSON"),
        ({"response_format_json": "null"}, "must be a JSON object, not null"),
        ({"tools_json": '{"type": "function"}'}, "must be a JSON array of objects, not an object"),
        ({"tools_json": '[{}, "f"]'}, r"must be a JSON array of objects; \[1\] is a string"),
        ({"tool_choice_json": "auto"}, "not valid JSON"),
        ({"tool_choice_json": "[]"}, "must be a JSON string or object, not an array"),
    ],
)
def test_json_text_is_read_strictly(fields: dict[str, str], message: str) -> None:
    (field,) = fields
    with pytest.raises(InvalidRequest, match=f"^params.{field}: {message}"):
        prepare(with_params(**fields), default_output_tokens=500)


def test_a_messages_tool_calls_are_json_text() -> None:
    calls = '[{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]'
    request = pb.CompleteRequest(
        messages=[
            pb.ChatMessage(role="user", content="x"),
            pb.ChatMessage(role="assistant", tool_calls_json=calls),
        ]
    )
    assert prepare(request, 500).body["messages"][1]["tool_calls"] == json.loads(calls)
    request.messages[1].tool_calls_json = calls[1:-1]
    with pytest.raises(
        InvalidRequest, match=r"^messages\[1\].tool_calls_json: must be a JSON array"
    ):
        prepare(request, 500)


def test_answers_are_written_as_strict_json() -> None:
    """What an upstream reply may hold and strict JSON cannot is made expressible."""
    assert dump_json([{"a": "é", "n": 40}]) == '[{"a": "é", "n": 40}]'
    assert dump_json([{"n": float("nan"), "m": [float("inf")]}]) == '[{"n": null, "m": [null]}]'
    assert dump_json([{"s": "\ud800"}]) == '[{"s": "\\ud800"}]'


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_tokens": 0}, "params.max_tokens must be at least 1"),
        ({"temperature": math.nan}, "params.temperature must be from 0 to 2, got nan"),
        ({"temperature": math.inf}, "params.temperature must be from 0 to 2, got inf"),
        ({"temperature": -0.1}, "params.temperature must be from 0 to 2"),
        ({"temperature": 2.5}, "params.temperature must be from 0 to 2"),
        ({"top_p": -math.inf}, "params.top_p must be from 0 to 1, got -inf"),
        ({"top_p": 1.01}, "params.top_p must be from 0 to 1"),
    ],
)
def test_numbers_out_of_range_are_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidRequest, match=f"^{message}"):
        prepare(with_params(**fields), default_output_tokens=500)


def test_numbers_at_their_limits_pass() -> None:
    params = {"max_tokens": 1, "temperature": 2.0, "top_p": 0.0, "seed": -(2**63)}
    body = prepare(with_params(**params), default_output_tokens=500).body
    assert {name: body[name] for name in params} == params


def test_an_image_part_needs_a_url() -> None:
    part = pb.ContentPart(image_url=pb.ImageUrl(detail="low"))
    request = pb.CompleteRequest(messages=[pb.ChatMessage(role="user", parts=[part])])
    with pytest.raises(InvalidRequest, match=r"^messages\[0\]: an image_url part needs a url"):
        prepare(request, 500)
