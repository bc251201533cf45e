"""The router's words, derived from the `router.v1` proto, which is the contract: the names of
the modes, modalities and free filters as the REST API, the CLI, the config and the scorer
write them (`MODE_SPEED` is "speed")."""

from __future__ import annotations

import re
from functools import cache
from typing import cast

from google.protobuf.descriptor import EnumDescriptor

from service.pb.router.v1 import router_pb2 as pb


def enum_prefix(enum: EnumDescriptor) -> str:
    """`FreeFilter` values start with `FREE_FILTER_`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def short_name(enum: EnumDescriptor, value_name: str) -> str:
    """`MODE_SPEED` of `Mode` is "speed"."""
    return value_name.removeprefix(enum_prefix(enum)).lower()


def enum_names(enum: EnumDescriptor) -> dict[str, int]:
    """The short lower-case names of an enum's values (UNSPECIFIED left out) and their numbers."""
    return {
        short_name(enum, v.name): v.number
        for v in enum.values
        if not v.name.endswith("_UNSPECIFIED")
    }


@cache
def value_names(enum: EnumDescriptor) -> dict[int, str]:
    """`enum_names` the other way round: the short name of each number."""
    return {number: name for name, number in enum_names(enum).items()}


def kind_of_value(enum: EnumDescriptor) -> str:
    """What one value of the enum is, in words: `FreeFilter` gives "free filter"."""
    return enum_prefix(enum).rstrip("_").lower().replace("_", " ")


MODES = cast(dict[str, pb.Mode.ValueType], enum_names(pb.Mode.DESCRIPTOR))
MODE_NAMES = value_names(pb.Mode.DESCRIPTOR)
MODALITIES = enum_names(pb.Modality.DESCRIPTOR)
MODALITY_NAMES = value_names(pb.Modality.DESCRIPTOR)
FREE_FILTERS = enum_names(pb.FreeFilter.DESCRIPTOR)


def parse_weights(text: str) -> pb.Weights:
    """Weights written as `latency,cost,quality`, e.g. "0.5,0.3,0.2"; ValueError otherwise."""
    try:
        latency, cost, quality = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"expected latency,cost,quality (three numbers), got {text!r}") from None
    return pb.Weights(latency=latency, cost=cost, quality=quality)
