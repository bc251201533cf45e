"""The REST API's bodies, derived from the `router.v1` messages: the proto is the contract.

A message's JSON form on REST is its proto JSON with the proto's field names, enum values by
their short lower-case names (`MODE_SPEED` is "speed"), every field present, and an unset
optional field or message as null. Request models are strict (no unknown fields, no strings for
numbers, no NaN, no lone surrogates) and turn into the message with `to_message`; responses
leave as JSON through `to_json`, several times faster than `json_format.MessageToDict`;
non-finite numbers become null when the JSON is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, TypeVar, cast

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    create_model,
    model_validator,
)

from service.vocabulary import enum_names, enum_prefix, short_name

JSON_SUFFIX = "_json"
INT_RANGES = {
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
}
FLOATS = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})


def _encodable(text: str) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("not valid Unicode (a lone surrogate)") from None
    return text


Text = Annotated[str, AfterValidator(_encodable)]


def _enum_type(enum: EnumDescriptor) -> Any:
    prefix = enum_prefix(enum)
    names = tuple(enum_names(enum))
    # A response's schema shows an unset enum's default (None) through the serializer too.
    return Annotated[
        Literal[names],
        PlainSerializer(
            lambda short: None if short is None else prefix + short.upper(),
            return_type=str | None,
        ),
    ]


def _scalar_type(field: FieldDescriptor, *, request: bool) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_type(_enum_of(field))
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        message = _message_of(field)
        if _is_well_known(message):
            return Any
        return (request_model if request else response_model)(message)
    if field.type in FLOATS:
        return Annotated[float, Field(allow_inf_nan=False)] if request else float
    if field.type in INT_RANGES:
        low, high = INT_RANGES[field.type]
        return Annotated[int, Field(ge=low, le=high)] if request else int
    if field.type == FieldDescriptor.TYPE_BOOL:
        return bool
    return Text if request else str


def _message_of(field: FieldDescriptor) -> Descriptor:
    message = field.message_type
    assert message is not None, field.full_name
    return message


def _enum_of(field: FieldDescriptor) -> EnumDescriptor:
    enum = field.enum_type
    assert enum is not None, field.full_name
    return enum


def _is_well_known(message: Descriptor) -> bool:
    """google.protobuf's own messages (Struct, Value, …), JSON of any shape."""
    return bool(message.file.package == "google.protobuf")


def _is_json_text(field: FieldDescriptor) -> bool:
    """A `*_json` text field holds a JSON document; REST shows the document itself, under the
    name without `_json` (null when the text is empty)."""
    return field.type == FieldDescriptor.TYPE_STRING and field.name.endswith(JSON_SUFFIX)


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and bool(
        _message_of(field).GetOptions().map_entry
    )


def _field(field: FieldDescriptor, *, request: bool) -> tuple[Any, Any]:
    """A pydantic field (type, default) for a proto field."""
    if _is_map(field):
        value = _scalar_type(_message_of(field).fields_by_name["value"], request=request)
        key = Text if request else str
        return dict[key, value], Field(default_factory=dict)  # type: ignore[valid-type]
    kind = _scalar_type(field, request=request)
    if field.is_repeated:
        return list[kind], Field(default_factory=list)  # type: ignore[valid-type]
    if field.has_presence:
        return kind | None, None
    if field.type == FieldDescriptor.TYPE_ENUM:
        return kind, Field(default=None, validate_default=False)
    return kind, field.default_value


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    # The fields of each oneof of the message (set on each derived class).
    __oneofs__: ClassVar[list[tuple[str, ...]]] = []

    @model_validator(mode="after")
    def _one_of_each_oneof(self) -> _Request:
        for group in self.__oneofs__:
            given = [name for name in group if getattr(self, name) is not None]
            if len(given) > 1:
                raise ValueError(f"give at most one of {', '.join(group)} (got {given})")
        return self


def request_fields(descriptor: Descriptor) -> dict[str, tuple[Any, Any]]:
    """The message's fields as pydantic fields (type, default) of a request, by name."""
    return {f.name: _field(f, request=True) for f in descriptor.fields}


@cache
def request_model(descriptor: Descriptor) -> type[BaseModel]:
    """A strict pydantic model of a request message, for validation and the OpenAPI schema."""
    fields = request_fields(descriptor)
    model: type[_Request] = create_model(  # type: ignore[call-overload]
        f"{descriptor.name}Body", __base__=_Request, **fields
    )
    # proto3 `optional` fields sit in synthetic oneofs of their own, named `_<field>`.
    model.__oneofs__ = [
        tuple(f.name for f in o.fields) for o in descriptor.oneofs if not o.name.startswith("_")
    ]
    return model


@cache
def response_model(descriptor: Descriptor) -> type[BaseModel]:
    """A pydantic model of an answer's JSON form, for the OpenAPI schema only."""
    fields = {
        f.name.removesuffix(JSON_SUFFIX) if _is_json_text(f) else f.name: (
            (Any, None) if _is_json_text(f) else _field(f, request=False)
        )
        for f in descriptor.fields
    }
    model: type[BaseModel] = create_model(descriptor.name, **fields)  # type: ignore[call-overload]
    return model


def to_message(body: BaseModel, message: type[M]) -> M:
    """A validated request body as its message."""
    return message(**body.model_dump(exclude_none=True))


M = TypeVar("M", bound=Message)
Converter = Callable[[Any], Any]


def _value_converter(field: FieldDescriptor) -> Converter | None:
    """How one value of a field becomes JSON; None when it already is."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum = _enum_of(field)
        short = {v.number: short_name(enum, v.name) for v in enum.values}
        return lambda number: short.get(number, number)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        message = _message_of(field)
        return MessageToDict if _is_well_known(message) else _converter(message)
    return None


@cache
def _converter(descriptor: Descriptor) -> Converter:
    plan: list[tuple[str, Converter | None, str, bool]] = []
    for field in descriptor.fields:
        if _is_map(field):
            value = _value_converter(_message_of(field).fields_by_name["value"])
            shape = "map"
        else:
            value = _value_converter(field)
            shape = "list" if field.is_repeated else "one"
            if _is_json_text(field):
                shape = "json"
        plan.append((field.name, value, shape, field.has_presence))

    def convert(message: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value, shape, presence in plan:
            raw = getattr(message, name)
            if shape == "json":
                out[name.removesuffix(JSON_SUFFIX)] = json.loads(raw) if raw else None
            elif shape == "one":
                if presence and not message.HasField(name):
                    out[name] = None
                else:
                    out[name] = raw if value is None else value(raw)
            elif shape == "list":
                out[name] = list(raw) if value is None else [value(v) for v in raw]
            else:
                out[name] = dict(raw) if value is None else {k: value(v) for k, v in raw.items()}
        return out

    return convert


def to_json(message: Message) -> dict[str, Any]:
    """A message's JSON form on REST (see the module's docstring)."""
    return cast(dict[str, Any], _converter(message.DESCRIPTOR)(message))
