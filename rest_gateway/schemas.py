"""Request bodies of the REST API. The routing fields are the proto's `RouteRequest` (see
`proto_models`); messages and generation parameters take OpenAI's shapes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from rest_gateway.proto_models import Text, request_model, to_message
from service.completion.json_text import MAX_JSON_DEPTH
from service.completion.request import ROLES
from service.errors import ErrorKind, RouterError
from service.pb.router.v1 import router_pb2 as pb

UINT32_MAX = 2**32 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

if TYPE_CHECKING:
    RouteFields = BaseModel
    CacheFields = BaseModel
    Role = str
else:
    RouteFields = request_model(pb.RouteRequest.DESCRIPTOR)
    CacheFields = request_model(pb.CacheOptions.DESCRIPTOR)
    # The roles the router accepts, listed in the API's schema.
    Role = Literal[tuple(sorted(ROLES))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RouteBody(RouteFields):
    """Give at most one of `mode`, `custom_mode` and `weights`; none means the default mode.
    `top_k` and the profile's token counts: 0 means the router's default."""

    def to_pb(self) -> pb.RouteRequest:
        return to_message(self, pb.RouteRequest)


class CacheBody(CacheFields):
    """Reuse of an earlier identical answer: `enabled` looks it up and stores this one for
    `ttl_seconds` (0: the router's default); `force` also caches a request whose answer may
    vary (a temperature other than 0, or tools)."""

    def to_pb(self) -> pb.CacheOptions:
        return to_message(self, pb.CacheOptions)


class ExplainBody(RouteBody):
    """The fields of `/route` (`top_k` is ignored), plus the model to explain."""

    model: Text = Field(default="", description="a catalogue model id; empty: the winner alone")

    def to_explain_pb(self) -> pb.ExplainRequest:
        routing = pb.RouteRequest(**self.model_dump(exclude_none=True, exclude={"model"}))
        return pb.ExplainRequest(routing=routing, model=self.model)


def _json_text(value: Any) -> str:
    """A parameter's JSON as the text of its `*_json` field. ASCII, so that a lone surrogate
    (a REST body may escape one) stays escaped; NaN is written as such. The router refuses both
    and names the field, as it does JSON nested deeper than it accepts; here, a document nested
    too deep to write is refused the same way."""
    try:
        return json.dumps(value)
    except RecursionError:
        message = f"a JSON value in the body is nested deeper than {MAX_JSON_DEPTH} levels"
        raise RouterError(ErrorKind.INVALID_REQUEST, message) from None


class ImageUrlBody(Strict):
    url: Text
    detail: Text = ""


class TextPart(Strict):
    type: Literal["text"]
    text: Text

    def to_pb(self) -> pb.ContentPart:
        return pb.ContentPart(text=self.text)


class ImagePart(Strict):
    type: Literal["image_url"]
    image_url: ImageUrlBody

    def to_pb(self) -> pb.ContentPart:
        return pb.ContentPart(
            image_url=pb.ImageUrl(url=self.image_url.url, detail=self.image_url.detail)
        )


PartBody = Annotated[TextPart | ImagePart, Field(discriminator="type")]


def _content_kind(content: Any) -> str:
    return "parts" if isinstance(content, list) else "text"


# Text, or a list of parts: the discriminator keeps the errors of the other kind out of a
# refusal's message.
Content = Annotated[
    Annotated[Text, Tag("text")] | Annotated[list[PartBody], Tag("parts")],
    Discriminator(_content_kind),
]


class MessageBody(Strict):
    role: Role
    # null: no text, as in an assistant's message that only makes tool calls
    content: Content | None = ""
    name: Text = ""
    tool_call_id: Text = ""
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
    stop: list[Text] | Text | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Text | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)

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
    cache: CacheBody | None = None

    def to_complete_pb(self) -> pb.CompleteRequest:
        own = {"messages", "params", "models", "stream", "cache"}
        request = pb.CompleteRequest(
            routing=pb.RouteRequest(**self.model_dump(exclude_none=True, exclude=own)),
            messages=[m.to_pb() for m in self.messages],
            params=self.params.to_pb(),
            models=self.models,
        )
        if self.cache is not None:
            request.cache.CopyFrom(self.cache.to_pb())
        return request


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
