"""How a CompleteRequest becomes OpenRouter's chat body and a routing request."""

from __future__ import annotations

import pytest

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
    params = pb.GenerationParams(temperature=0.3, seed=7, stop=["END"])
    params.tools.append({"type": "function", "function": {"name": "f"}})
    params.response_format.update({"type": "json_object"})
    params.tool_choice.string_value = "auto"
    params.extra.update({"logprobs": True, "top_k": 40})
    request = pb.CompleteRequest(
        messages=[pb.ChatMessage(role="user", content="hi")], params=params
    )
    prepared = prepare(request, default_output_tokens=500)
    assert sorted(prepared.route.constraints.required_parameters) == ["response_format", "tools"]
    body = prepared.body
    assert (body["temperature"], body["seed"], body["stop"]) == (0.3, 7, ["END"])
    assert (body["tool_choice"], body["logprobs"], body["top_k"]) == ("auto", True, 40)
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
    params = pb.GenerationParams()
    params.extra.update({"model": "a/b", "stream": True})
    request = pb.CompleteRequest(messages=[pb.ChatMessage(role="user", content="x")], params=params)
    with pytest.raises(InvalidRequest, match="model, stream"):
        prepare(request, default_output_tokens=500)
