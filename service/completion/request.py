"""A CompleteRequest as OpenRouter's chat body, and what routing it needs to know."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from service.completion.json_text import (
    ARRAY_OF_OBJECTS,
    OBJECT,
    STRING_OR_OBJECT,
    Shape,
    parse_json,
)
from service.pb.router.v1 import router_pb2 as pb
from service.scorer import InvalidRequest

# The router decides these; a caller's `extra_json` may not set them.
RESERVED = frozenset({"model", "models", "messages", "stream", "provider", "route"})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
CHARS_PER_TOKEN = 4
TOKENS_PER_IMAGE = 85
TOKENS_PER_MESSAGE = 4
# GenerationParams' JSON text fields besides extra_json: body key (the field is `<key>_json`).
JSON_PARAMS: tuple[tuple[str, Shape], ...] = (
    ("tools", ARRAY_OF_OBJECTS),
    ("tool_choice", STRING_OR_OBJECT),
    ("response_format", OBJECT),
)
# The sampling parameters' ranges (inclusive) in OpenRouter's API.
SAMPLING_RANGES: tuple[tuple[Literal["temperature", "top_p"], float, float], ...] = (
    ("temperature", 0.0, 2.0),
    ("top_p", 0.0, 1.0),
)


@dataclass(frozen=True)
class Prepared:
    body: dict[str, Any]  # the chat body without `model`
    route: pb.RouteRequest  # the routing request, with a derived profile and constraints
    max_output_tokens: int | None


def _message(m: pb.ChatMessage, index: int) -> dict[str, Any]:
    if m.role not in ROLES:
        raise InvalidRequest(f"messages[{index}].role must be one of {', '.join(sorted(ROLES))}")
    if m.content and len(m.parts):
        raise InvalidRequest(f"messages[{index}]: give content or parts, not both")
    out: dict[str, Any] = {"role": m.role}
    if len(m.parts):
        parts: list[dict[str, Any]] = []
        for p in m.parts:
            kind = p.WhichOneof("part")
            if kind == "text":
                parts.append({"type": "text", "text": p.text})
            elif kind == "image_url":
                if not p.image_url.url:
                    raise InvalidRequest(f"messages[{index}]: an image_url part needs a url")
                image: dict[str, str] = {"url": p.image_url.url}
                if p.image_url.detail:
                    image["detail"] = p.image_url.detail
                parts.append({"type": "image_url", "image_url": image})
            else:
                raise InvalidRequest(f"messages[{index}]: a part must be text or image_url")
        out["content"] = parts
    else:
        out["content"] = m.content
    if m.name:
        out["name"] = m.name
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    if m.tool_calls_json:
        out["tool_calls"] = parse_json(
            f"messages[{index}].tool_calls_json", m.tool_calls_json, ARRAY_OF_OBJECTS
        )
    return out


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A deliberately simple estimate: four characters a token, a flat cost per image."""
    chars = 0
    images = 0
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            chars += len(content)
        else:
            chars += sum(len(p.get("text", "")) for p in content)
            images += sum(p["type"] == "image_url" for p in content)
    return (
        math.ceil(chars / CHARS_PER_TOKEN)
        + images * TOKENS_PER_IMAGE
        + (TOKENS_PER_MESSAGE * len(messages))
    )


def _check_numbers(params: pb.GenerationParams) -> None:
    if params.HasField("max_tokens") and params.max_tokens < 1:
        raise InvalidRequest("params.max_tokens must be at least 1; leave it out for no cap")
    for name, low, high in SAMPLING_RANGES:
        value = getattr(params, name)
        if params.HasField(name) and not low <= value <= high:
            raise InvalidRequest(f"params.{name} must be from {low:g} to {high:g}, got {value}")


def prepare(request: pb.CompleteRequest, default_output_tokens: int) -> Prepared:
    if not len(request.messages):
        raise InvalidRequest("messages must not be empty")
    messages = [_message(m, i) for i, m in enumerate(request.messages)]
    body: dict[str, Any] = {"messages": messages}
    params = request.params
    if params.extra_json:
        extra = parse_json("params.extra_json", params.extra_json, OBJECT)
        clash = sorted(RESERVED & extra.keys())
        if clash:
            raise InvalidRequest(
                f"params.extra_json may not set {', '.join(clash)}: the router does"
            )
        body.update(extra)
    _check_numbers(params)
    for name in ("max_tokens", "temperature", "top_p", "seed"):
        if params.HasField(name):
            body[name] = getattr(params, name)
    if len(params.stop):
        body["stop"] = list(params.stop)
    for name, shape in JSON_PARAMS:
        text = getattr(params, f"{name}_json")
        if text:
            body[name] = parse_json(f"params.{name}_json", text, shape)

    route = pb.RouteRequest()
    route.CopyFrom(request.routing)
    max_tokens = params.max_tokens if params.HasField("max_tokens") else None
    if not route.profile.prompt_tokens:
        route.profile.prompt_tokens = _prompt_tokens(messages)
    if not route.profile.output_tokens:
        route.profile.output_tokens = max_tokens or default_output_tokens
    needs = route.constraints
    if "tools" in body and "tools" not in needs.required_parameters:
        needs.required_parameters.append("tools")
    if "response_format" in body and "response_format" not in needs.required_parameters:
        needs.required_parameters.append("response_format")
    has_image = any(
        isinstance(m["content"], list) and any(p["type"] == "image_url" for p in m["content"])
        for m in messages
    )
    if has_image and pb.MODALITY_IMAGE not in needs.input_modalities:
        needs.input_modalities.append(pb.MODALITY_IMAGE)
    return Prepared(body=body, route=route, max_output_tokens=max_tokens)
