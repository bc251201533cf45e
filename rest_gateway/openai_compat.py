"""OpenAI's chat-completion shapes over the router's messages: the body of
`POST /v1/chat/completions` as a `CompleteRequest`; the answer as a `chat.completion`, a stream's
chunks as `chat.completion.chunk`s; the routing choices and the catalogue as a model list.

`model` carries the routing choice: `router/<mode>` (speed, cost, quality, balanced, or a
custom mode of the router's configuration) ranks the catalogue; bare `router` takes its policy
from the `router` field (the fields of `/route`), else the router's default mode; a catalogue
model id is called as named, failing over only to the ids of `models` (OpenRouter's field), in
their order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from rest_gateway.proto_models import Text
from rest_gateway.schemas import (
    UINT32_MAX,
    CacheBody,
    MessageBody,
    ParamsBody,
    RouteBody,
    Strict,
)
from service.errors import ErrorKind, RouterError
from service.pb.router.v1 import router_pb2 as pb
from service.vocabulary import enum_names

ROUTER = "router"
ROUTER_PREFIX = ROUTER + "/"
MODES = enum_names(pb.Mode.DESCRIPTOR)
OWNER = "model-router"
# The values of the `x-router-cache` request header, as the `cache` field they stand for.
CACHE_HEADER = {
    "true": pb.CacheOptions(enabled=True),
    "false": pb.CacheOptions(enabled=False),
    "force": pb.CacheOptions(enabled=True, force=True),
}


def _invalid(message: str) -> RouterError:
    return RouterError(ErrorKind.INVALID_REQUEST, message)


class ChatMessageBody(MessageBody):
    """OpenAI's message. An assistant's, sent back as OpenAI's client holds it, carries fields
    only answers have: they are not passed on, and must be empty where they would matter."""

    refusal: str | None = None
    annotations: list[dict[str, Any]] | None = None
    parsed: Any = None  # set by OpenAI's client library for structured outputs
    audio: None = None
    function_call: None = None

    @field_validator("tool_calls")
    @classmethod
    def _api_fields_only(cls, calls: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        """OpenAI's client keeps a streamed call's `index` and the `parsed_arguments` of its
        function on the message; the API knows neither."""
        if calls is None:
            return None
        cleaned = []
        for call in calls:
            call = {k: v for k, v in call.items() if k != "index"}
            function = call.get("function")
            if isinstance(function, dict):
                call["function"] = {k: v for k, v in function.items() if k != "parsed_arguments"}
            cleaned.append(call)
        return cleaned


class StreamOptions(Strict):
    include_usage: bool = False


class ChatCompletionBody(ParamsBody):
    """OpenAI's chat completion request; fields OpenAI or OpenRouter define beyond these are
    passed to the model unchanged."""

    model: Text = Field(
        description="router/<mode>, router, or a catalogue model id called as named"
    )
    messages: list[ChatMessageBody]
    models: list[Text] = Field(
        default_factory=list, description="with a model id: the only ids to fail over to"
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    router: RouteBody | None = Field(
        default=None, description="with router/<mode> or router: the routing fields of /route"
    )
    cache: CacheBody | None = Field(
        default=None, description="the response cache; the x-router-cache header is shorter"
    )

    def to_complete_pb(
        self, cache_header: str | None = None, session: str | None = None
    ) -> pb.CompleteRequest:
        """The request; `cache_header` (true, false or force) stands for a `cache` not given;
        `session` (the `x-router-session` header) is the sticky session's key when
        `router.session` gives none, else OpenAI's `user`."""
        request = pb.CompleteRequest(
            messages=[m.to_pb() for m in self.messages], params=self._params()
        )
        if self.cache is not None:
            request.cache.CopyFrom(self.cache.to_pb())
        elif cache_header is not None:
            options = CACHE_HEADER.get(cache_header.strip().lower())
            if options is None:
                raise _invalid("x-router-cache: give true, false or force")
            request.cache.CopyFrom(options)
        if self.model == ROUTER or self.model.startswith(ROUTER_PREFIX):
            request.routing.CopyFrom(self._routing())
            if not request.routing.session:
                user = (self.model_extra or {}).get("user")
                request.routing.session = session or (user if isinstance(user, str) else "")
        else:
            if self.router is not None:
                raise _invalid(
                    "router: routing fields apply to router/<mode> and router only; "
                    f"{self.model} is called as named"
                )
            request.models.extend([self.model, *self.models])
        return request

    def _params(self) -> pb.GenerationParams:
        params = self.to_pb()
        chosen = self.max_completion_tokens
        if chosen is not None:
            if self.max_tokens is not None and self.max_tokens != chosen:
                raise _invalid("give max_tokens or max_completion_tokens, not both")
            params.max_tokens = chosen
        return params

    def _routing(self) -> pb.RouteRequest:
        if self.models:
            raise _invalid(
                f"models lists the fallbacks of a model id; {self.model} ranks the catalogue "
                "(router.constraints.allow_models limits it)"
            )
        routing = self.router.to_pb() if self.router is not None else pb.RouteRequest()
        if self.model == ROUTER:
            return routing
        if routing.WhichOneof("policy") is not None:
            raise _invalid(
                f"{self.model} names the mode: give router.mode, router.custom_mode or "
                "router.weights only with the model router"
            )
        name = self.model.removeprefix(ROUTER_PREFIX)
        if name in MODES:
            routing.mode = pb.Mode.Value(f"MODE_{name.upper()}")
        else:
            routing.custom_mode = name
        return routing


def _completion_id(completion_id: str, decision_id: str) -> str:
    return completion_id or f"chatcmpl-{decision_id}"


def _tool_calls(message: pb.ChatMessage) -> list[dict[str, Any]]:
    calls = json.loads(message.tool_calls_json) if message.tool_calls_json else []
    return [dict(c) for c in calls]


def _usage(usage: pb.Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cost": usage.cost_usd,
    }


def completion(response: pb.CompleteResponse, created: int) -> dict[str, Any]:
    """The answer as OpenAI's `chat.completion`."""
    choices = []
    for choice in response.choices:
        calls = _tool_calls(choice.message)
        message: dict[str, Any] = {
            "role": choice.message.role or "assistant",
            "content": choice.message.content or (None if calls else ""),
        }
        if calls:
            message["tool_calls"] = calls
        choices.append(
            {
                "index": choice.index,
                "message": message,
                "finish_reason": choice.finish_reason or None,
                "logprobs": None,
            }
        )
    return {
        "id": _completion_id(response.id, response.decision_id),
        "object": "chat.completion",
        "created": created,
        "model": response.model,
        "provider": response.provider,
        "choices": choices,
        "usage": _usage(response.usage),
    }


class ChatCompletionChunks:
    """A stream's chunks as OpenAI's `chat.completion.chunk`s, ending with `[DONE]`: the text
    as it comes, then the tool calls whole, the finish reason, and the usage when the caller
    asked for it (`stream_options.include_usage`)."""

    end = b"data: [DONE]\n\n"

    def __init__(self, created: int, include_usage: bool) -> None:
        self._created = created
        self._include_usage = include_usage
        self._head = pb.StreamHead()
        self._started = False

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": _completion_id(self._head.id, self._head.decision_id),
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._head.model,
            "choices": choices,
            **extra,
        }

    def _delta(self, delta: Mapping[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        if not self._started:
            delta = {"role": "assistant", **delta}
            self._started = True
        choice = {"index": 0, "delta": dict(delta), "finish_reason": finish_reason}
        return self._chunk([choice])

    def render(self, chunk: pb.CompleteChunk) -> list[dict[str, Any]]:
        if chunk.HasField("head"):
            self._head = chunk.head
        if chunk.WhichOneof("event") == "delta":
            return [self._delta({"content": chunk.delta})]
        summary = chunk.summary
        choice = summary.choices[0] if summary.choices else pb.Choice(finish_reason="stop")
        calls = _tool_calls(choice.message)
        out = []
        if calls:
            indexed = [{"index": i, **call} for i, call in enumerate(calls)]
            out.append(self._delta({"content": None, "tool_calls": indexed}))
        out.append(self._delta({}, choice.finish_reason or None))
        if self._include_usage:
            out.append(self._chunk([], usage=_usage(summary.usage)))
        return out


def model_list(custom_modes: Mapping[str, object], models: list[pb.ModelInfo]) -> dict[str, Any]:
    """The routing choices, then every catalogue model, as OpenAI's model list."""
    choices = [*MODES, *sorted(custom_modes)]
    data = [
        {"id": ROUTER_PREFIX + name, "object": "model", "created": 0, "owned_by": OWNER}
        for name in choices
    ]
    data += [
        {"id": m.id, "object": "model", "created": m.created, "owned_by": m.author} for m in models
    ]
    return {"object": "list", "data": data}
