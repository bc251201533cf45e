"""The JSON text fields of the wire contract: read strictly, written as strict JSON.

Tools, tool calls, `response_format` and pass-through parameters travel as JSON text rather than
`google.protobuf.Struct`, which would turn every integer into a double.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from service.errors import shown
from service.scorer import InvalidRequest

# Nesting allowed, and the integers every JSON reader holds exactly (I-JSON, RFC 7493).
MAX_JSON_DEPTH = 64
MAX_JSON_INT = 2**53 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


class _Refused(ValueError):
    """JSON text the router does not accept; the message says why."""


def _constant(name: str) -> Any:
    raise _Refused(f"not valid JSON: {name} is not a JSON value")


def _int(text: str) -> int:
    # A long digit string is out of range before int() pays for it (or refuses it itself).
    value = int(text) if len(text) <= 20 else None
    if value is None or abs(value) > MAX_JSON_INT:
        raise _Refused(f"integer {text[:24]} is beyond ±(2^53 - 1)")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:24]} is out of range")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        keys = [k for k, _ in pairs]
        duplicate = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise _Refused(f"duplicate key {shown(duplicate)}")
    return value


def _walk(value: Any) -> None:
    """Nesting within MAX_JSON_DEPTH, and no lone surrogate in any key or string."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _Refused(f"nested deeper than {MAX_JSON_DEPTH} levels")
            items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            stack.extend((item, depth + 1) for item in items)
        elif isinstance(node, str) and _SURROGATE.search(node):
            raise _Refused("a string holds a lone surrogate")


def _kind(value: Any) -> str:
    return "null" if value is None else _KINDS.get(type(value), "a number")


@dataclass(frozen=True)
class Shape:
    """What a field's top-level value must be."""

    description: str
    types: tuple[type, ...]
    items: type | None = None  # for an array: what each item must be


OBJECT = Shape("a JSON object", (dict,))
ARRAY_OF_OBJECTS = Shape("a JSON array of objects", (list,), items=dict)
STRING_OR_OBJECT = Shape("a JSON string or object", (str, dict))


def parse_json(field: str, text: str, shape: Shape) -> Any:
    """One JSON text field, parsed strictly; a refusal is InvalidRequest naming `field`."""
    try:
        value = json.loads(
            text,
            parse_constant=_constant,
            parse_int=_int,
            parse_float=_float,
            object_pairs_hook=_object,
        )
        # The text is valid UTF-8, so only a \u escape makes a lone surrogate, and it takes
        # more brackets than the limit to nest beyond it: most documents need no walk.
        if "\\u" in text or text.count("[") + text.count("{") > MAX_JSON_DEPTH:
            _walk(value)
    except _Refused as refused:
        raise InvalidRequest(f"{field}: {refused}") from None
    except json.JSONDecodeError as error:
        raise InvalidRequest(f"{field}: not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidRequest(f"{field}: nested deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(value, shape.types):
        raise InvalidRequest(f"{field}: must be {shape.description}, not {_kind(value)}")
    if shape.items is not None and isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, shape.items):
                message = f"must be {shape.description}; [{i}] is {_kind(item)}"
                raise InvalidRequest(f"{field}: {message}")
    return value


def _finite(value: Any) -> Any:
    """`value` with each non-finite number (which a lenient JSON reader lets in) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dump_json(value: Any) -> str:
    """Strict JSON text of a value read from JSON, non-ASCII kept as is. An upstream reply may
    hold what strict JSON cannot: a non-finite number becomes null, and a lone surrogate (which
    protobuf strings refuse) stays escaped."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return dump_json(_finite(value))
    return json.dumps(value, allow_nan=False) if _SURROGATE.search(text) else text
