"""The options that make a routing request (its mode or weights, its profile and its hard
constraints), declared once for every command that routes: `@routing_options` gives a command
these options and hands it the request they make as its `routing` parameter.

The names and types follow the proto: a mode, modality or free filter is one of its enum's
names, and each constraint option sets the field of `router.v1.Constraints` it names in
`CONSTRAINT_OPTIONS`, with that field's type.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, TypeVar, cast

import typer
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor

from cli.common import fail
from service.pb.router.v1 import router_pb2 as pb
from service.vocabulary import MODES, enum_names, parse_weights

R = TypeVar("R")
UINT32_MAX = 2**32 - 1
POLICY_PANEL = "Routing"
CONSTRAINTS_PANEL = "Constraints"
FIELDS = pb.Constraints.DESCRIPTOR.fields_by_name

# option (the parameter; the flag is --option-with-dashes): (the field of pb.Constraints, help)
CONSTRAINT_OPTIONS = {
    "min_context": (
        "min_context_tokens",
        "Context window the model needs, in tokens (at least prompt + output tokens).",
    ),
    "input_modality": (
        "input_modalities",
        "An input the model must accept; repeat for more.",
    ),
    "output_modality": (
        "output_modalities",
        "An output the model must produce; repeat for more. None: text (a chat route).",
    ),
    "require_parameter": (
        "required_parameters",
        "An OpenRouter parameter the model must support, e.g. tools; repeat for more.",
    ),
    "max_prompt_price": (
        "max_prompt_price_per_mtok",
        "Highest prompt price, USD per million tokens.",
    ),
    "max_completion_price": (
        "max_completion_price_per_mtok",
        "Highest completion price, USD per million tokens.",
    ),
    "max_request_cost": (
        "max_request_cost_usd",
        "Highest expected cost of the request, USD.",
    ),
    "max_ttft": ("max_ttft_seconds", "Longest expected time to first token, seconds."),
    "allow_model": (
        "allow_models",
        "A model id, or author/* for all of an author's, the route may use; repeat for more.",
    ),
    "deny_model": (
        "deny_models",
        "A model id, or author/*, the route must not use; repeat for more.",
    ),
    "allow_provider": (
        "allow_providers",
        "An author (the id before the slash) the route may use; repeat for more.",
    ),
    "deny_provider": ("deny_providers", "An author the route must not use; repeat for more."),
    "free": ("free", "Free models (prompt and completion at 0): any, only or exclude them."),
}


def _option(name: str, kind: Any, help: str, panel: str, **limits: Any) -> inspect.Parameter:
    """The keyword parameter of an option `--name` that is None unless given."""
    option = typer.Option(help=help, rich_help_panel=panel, **limits)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[kind | None, option],
    )


def _choices(enum: EnumDescriptor) -> type[StrEnum]:
    """The short names of a proto enum's values, as choices of an option."""
    return cast(type[StrEnum], StrEnum(enum.name, list(enum_names(enum))))


def _enum(field: FieldDescriptor) -> EnumDescriptor:
    enum = field.enum_type
    assert enum is not None, field.full_name
    return enum


def _constraint_option(name: str, field: FieldDescriptor, help: str) -> inspect.Parameter:
    """The option of a field of Constraints, of the field's type."""
    kind: Any
    limits: dict[str, Any] = {}
    if field.type == FieldDescriptor.TYPE_ENUM:
        kind = _choices(_enum(field))
    elif field.type == FieldDescriptor.TYPE_DOUBLE:
        kind, limits = float, {"min": 0}
    elif field.type == FieldDescriptor.TYPE_UINT32:
        kind, limits = int, {"min": 0, "max": UINT32_MAX}
    elif field.type == FieldDescriptor.TYPE_STRING:
        kind = str
    else:
        raise TypeError(f"no option type for {field.full_name}")
    if field.is_repeated:
        kind = list[kind]
    return _option(name, kind, help, CONSTRAINTS_PANEL, **limits)


PARAMETERS = [
    _option("mode", _choices(pb.Mode.DESCRIPTOR), "A named mode.", POLICY_PANEL),
    _option("custom_mode", str, "A named mode from the router's configuration.", POLICY_PANEL),
    _option(
        "weights",
        str,
        "Explicit weights latency,cost,quality, e.g. 0.5,0.3,0.2 (scaled to sum to 1).",
        POLICY_PANEL,
    ),
    _option(
        "prompt_tokens",
        int,
        "Expected prompt tokens (default: the router's).",
        POLICY_PANEL,
        min=0,
        max=UINT32_MAX,
    ),
    _option(
        "output_tokens",
        int,
        "Expected output tokens (default: the router's).",
        POLICY_PANEL,
        min=0,
        max=UINT32_MAX,
    ),
    *(
        _constraint_option(name, FIELDS[field], help)
        for name, (field, help) in CONSTRAINT_OPTIONS.items()
    ),
]


def _constraints(given: dict[str, Any]) -> pb.Constraints | None:
    fields: dict[str, Any] = {}
    for name, (field_name, _) in CONSTRAINT_OPTIONS.items():
        value, field = given[name], FIELDS[field_name]
        if value is None or (field.is_repeated and not value):
            continue
        if field.type == FieldDescriptor.TYPE_ENUM:
            numbers = enum_names(_enum(field))
            value = [numbers[v] for v in value] if field.is_repeated else numbers[value]
        fields[field_name] = value
    return pb.Constraints(**fields) if fields else None


def routing_request(given: dict[str, Any]) -> pb.RouteRequest:
    """The request the routing options make; an empty one when none is given."""
    mode, custom_mode, weights = given["mode"], given["custom_mode"], given["weights"]
    if sum(x is not None for x in (mode, custom_mode, weights)) > 1:
        raise fail("give at most one of --mode, --custom-mode, --weights")
    request = pb.RouteRequest()
    if mode is not None:
        request.mode = MODES[mode]
    elif custom_mode is not None:
        request.custom_mode = custom_mode
    elif weights is not None:
        try:
            request.weights.CopyFrom(parse_weights(weights))
        except ValueError as exc:
            raise fail(f"--weights: {exc}") from None
    if given["prompt_tokens"] is not None or given["output_tokens"] is not None:
        request.profile.prompt_tokens = given["prompt_tokens"] or 0
        request.profile.output_tokens = given["output_tokens"] or 0
    constraints = _constraints(given)
    if constraints is not None:
        request.constraints.CopyFrom(constraints)
    return request


def routing_options(command: Callable[..., R]) -> Callable[..., R]:
    """`command` with the routing options in place of its `routing` parameter, which receives
    the request they make."""
    signature = inspect.signature(command, eval_str=True)
    own = list(signature.parameters.values())
    at = [p.name for p in own].index("routing")

    @functools.wraps(command)
    def with_routing(**given: Any) -> R:
        options = {p.name: given.pop(p.name) for p in PARAMETERS}
        return command(**given, routing=routing_request(options))

    with_routing.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*own[:at], *PARAMETERS, *own[at + 1 :]]
    )
    return with_routing
