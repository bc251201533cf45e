"""Request bodies of the REST API. The routing fields are the proto's `RouteRequest` (see
`proto_models`); messages and generation parameters take OpenAI's shapes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rest_gateway.proto_models import Text, request_model, to_message
from service.pb.router.v1 import router_pb2 as pb

UINT32_MAX = 2**32 - 1

if TYPE_CHECKING:
    RouteFields = BaseModel
else:
    RouteFields = request_model(pb.RouteRequest.DESCRIPTOR)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RouteBody(RouteFields):
    """Give at most one of `mode`, `custom_mode` and `weights`; none means the default mode.
    `top_k` and the profile's token counts: 0 means the router's default."""

    def to_pb(self) -> pb.RouteRequest:
        return to_message(self, pb.RouteRequest)


class ExplainBody(RouteBody):
    """The fields of `/route` (`top_k` is ignored), plus the model to explain."""

    model: str = Field(default="", description="a catalogue model id; empty: the winner alone")

    def to_explain_pb(self) -> pb.ExplainRequest:
        routing = pb.RouteRequest(**self.model_dump(exclude_none=True, exclude={"model"}))
        return pb.ExplainRequest(routing=routing, model=self.model)


def _json_text(value: Any) -> str:
    """A parameter's JSON as the text of its `*_json` field. ASCII, so that a lone surrogate
    (a REST body may escape one) stays escaped; NaN is written as such. The router refuses both
    and names the field."""
    return json.dumps(value)


class ImageUrlBody(Strict):
    url: str
    detail: str = ""


class PartBody(Strict):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrlBody | None = None

    def to_pb(self) -> pb.ContentPart:
        if self.type == "text":
            return pb.ContentPart(text=self.text or "")
        if self.image_url is None:
            raise ValueError("an image_url part needs image_url")
        return pb.ContentPart(
            image_url=pb.ImageUrl(url=self.image_url.url, detail=self.image_url.detail)
        )


class MessageBody(Strict):
    role: str
    # null: no text, as in an assistant's message that only makes tool calls
    content: str | list[PartBody] | None = ""
    name: str = ""
    tool_call_id: str = ""
    tool_calls: list[dict[str, Any]] | None = None

    def to_pb(self) -> pb.ChatMessage:
        message = pb.ChatMessage(role=self.role, name=self.name, tool_call_id=self.tool_call_id)
        if isinstance(self.content, list):
            message.parts.extend(p.to_pb() for p in self.content)
        else:
            message.content = self.content or ""
        if self.tool_calls is not None:
            message.tool_calls_json = _json_text(self.tool_calls)
        return message


class ParamsBody(BaseModel):
    """OpenAI-style generation parameters; any other field is passed to the model unchanged."""

    model_config = ConfigDict(extra="allow")

    max_tokens: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None

    def to_pb(self) -> pb.GenerationParams:
        params = pb.GenerationParams()
        for name in ("max_tokens", "temperature", "top_p", "seed"):
            value = getattr(self, name)
            if value is not None:
                setattr(params, name, value)
        if self.stop is not None:
            params.stop.extend([self.stop] if isinstance(self.stop, str) else self.stop)
        for name in ("tools", "tool_choice", "response_format"):
            value = getattr(self, name)
            if value is not None:
                setattr(params, f"{name}_json", _json_text(value))
        if self.model_extra:
            params.extra_json = _json_text(self.model_extra)
        return params


class CompleteBody(RouteBody):
    """The routing fields of `/route`, plus OpenAI-style messages and parameters; `models`
    names the models to call, in order, instead of ranking the catalogue; `stream` answers
    with Server-Sent Events."""

    messages: list[MessageBody]
    params: ParamsBody = Field(default_factory=ParamsBody)
    models: list[Text] = Field(default_factory=list)
    stream: bool = False

    def to_complete_pb(self) -> pb.CompleteRequest:
        own = {"messages", "params", "models", "stream"}
        return pb.CompleteRequest(
            routing=pb.RouteRequest(**self.model_dump(exclude_none=True, exclude=own)),
            messages=[m.to_pb() for m in self.messages],
            params=self.params.to_pb(),
            models=self.models,
        )


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
