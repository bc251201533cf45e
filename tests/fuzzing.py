"""Hostile input for the fuzz tests: hypothesis strategies for any `router.v1` message, built
from its descriptor; what an answer must never show; a watch on the router's error log; and a
router whose completions reach the fake OpenRouter."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from service.config import ModeWeights
from testkit.fake_openrouter import FakeOpenRouter
from testkit.servers import ServerThread, settings_for

# Fixed examples, no example database, and no wall-clock deadline per example: the budget is
# set per test by max_examples.
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CALL_TIMEOUT_S = 10
# A Python traceback, exception class or repr anywhere in an answer is a leak.
LEAK = re.compile(r"Traceback|File \"|<class |\w*(Error|Exception)\(|\b\w+(Error|Exception): ")

# The router on the fake has this custom mode.
CUSTOM_MODE = "mine"
HUGE = 16 * 1024
ODD_STRINGS = (
    "",
    " ",
    "\x00",
    "\n\r\t",
    "é" * 300,
    "🦀" * 100,
    "\u202e\u200b\ufeff",
    "x" * HUGE,
    "/" * 3,
    "*",
    "openai/*",
    "/*",
    "%s%n{0}",
    "\\u0000",
)
# Words the router knows, so that some examples get past validation and reach a model.
KNOWN_WORDS = (
    "user",
    "assistant",
    "system",
    "tool",
    "developer",
    "tools",
    "response_format",
    "openai",
    "anthropic",
    "openai/gpt-4o-mini",
    "google/gemini-2.5-flash",
    "frugal-genius",
    CUSTOM_MODE,
    "low",
    "auto",
)
EXTREME_FLOATS = (
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    5e-324,
    1e-300,
    1e308,
    -1e308,
    0.5,
    1.0,
    2.0,
)
DEEP = 100_000
HOSTILE_JSON = (
    "NaN",
    '{"a": NaN}',
    '{"a": Infinity}',
    "[-Infinity]",
    '{"a": 1e400}',
    '{"a": -1e400}',
    '{"a": 123456789012345678901234567890}',
    '{"a": -0}',
    '"\\ud800"',
    '{"\\udfff": 1}',
    '{"a": 1, "a": 2}',
    "[" * DEEP + "]" * DEEP,
    '{"a":' * DEEP + "1" + "}" * DEEP,
    "[" * 65 + "]" * 65,
    "not json",
    "{",
    "[]",
    "{}",
    "null",
    '"auto"',
    '{"model": "x", "stream": true}',
    '{"type": "json_object"}',
    '[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]',
    '[{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]',
)
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
MAX_REPEATED = 4
MAX_DEPTH = 4


def json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**53) + 1, 2**53 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=10,
    )


def json_texts() -> st.SearchStrategy[str]:
    """Text for a `*_json` field: hostile documents, valid ones, and none."""
    return st.one_of(
        st.just(""),
        st.sampled_from(HOSTILE_JSON),
        json_values().map(json.dumps),
    )


def strings() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(KNOWN_WORDS), st.sampled_from(ODD_STRINGS), st.text())


def _scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return messages(field.message_type, depth + 1)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.sampled_from(known) | st.integers(*INT_RANGES[FieldDescriptor.TYPE_INT32])
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        width = 64 if kind == FieldDescriptor.TYPE_DOUBLE else 32
        return st.sampled_from(EXTREME_FLOATS) | st.floats(width=width)
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        return st.sampled_from(sorted({low, high, 0, 1, min(high, 500)})) | st.integers(low, high)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.name.endswith("_json"):
        return json_texts()
    return strings()


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        key, value = message.fields_by_name["key"], message.fields_by_name["value"]
        return st.dictionaries(_scalar(key, depth), _scalar(value, depth), max_size=MAX_REPEATED)
    if field.is_repeated:
        return st.lists(_scalar(field, depth), max_size=MAX_REPEATED)
    return _scalar(field, depth)


@cache
def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of the type: each field absent or any value its type allows (NaN, the ends
    of each integer range, unknown enum numbers, huge and odd strings, hostile JSON text), at
    most one field of each oneof."""
    cls = GetMessageClass(descriptor)
    if depth > MAX_DEPTH:
        return st.just(cls())
    in_oneof = {f.name for o in descriptor.oneofs if not o.name.startswith("_") for f in o.fields}
    plain = {f.name: _value(f, depth) for f in descriptor.fields if f.name not in in_oneof}
    chosen = [
        st.one_of(
            st.just({}),
            *(_value(f, depth).map(lambda v, name=f.name: {name: v}) for f in o.fields),
        )
        for o in descriptor.oneofs
        if not o.name.startswith("_")
    ]

    def build(values: tuple[dict[str, Any], list[dict[str, Any]]]) -> Message:
        fields, oneofs = values
        for one in oneofs:
            fields.update(one)
        return cls(**fields)

    return st.tuples(st.fixed_dictionaries({}, optional=plain), st.tuples(*chosen).map(list)).map(
        build
    )


Path = tuple[FieldDescriptor, ...]


@cache
def _paths(descriptor: Descriptor, depth: int = 0) -> tuple[Path, ...]:
    """Every field reachable from the type, as the fields leading to it."""
    out: list[Path] = []
    for f in descriptor.fields:
        out.append((f,))
        message = f.message_type
        if message is not None and not message.GetOptions().map_entry and depth < MAX_DEPTH:
            out.extend((f, *rest) for rest in _paths(message, depth + 1))
    return tuple(out)


def _set(message: Message, path: Path, value: Any, index: int) -> None:
    """Set the field at `path` to `value`; through a repeated message, in element `index`
    (modulo their number; a new one when there is none)."""
    *parents, leaf = path
    for f in parents:
        if f.is_repeated:
            items = getattr(message, f.name)
            message = items[index % len(items)] if len(items) else items.add()
        else:
            message = getattr(message, f.name)
    if leaf.is_repeated:
        message.ClearField(leaf.name)
        target = getattr(message, leaf.name)
        if isinstance(value, dict):
            target.update(value)
        else:
            target.extend(value)
    elif leaf.message_type is not None:
        getattr(message, leaf.name).CopyFrom(value)
    else:
        setattr(message, leaf.name, value)


def mutations(seeds: list[Message]) -> st.SearchStrategy[Message]:
    """A seed (a valid request) with one to three of its fields, at any depth, set to any value
    their type allows: most of the request stays valid, so the hostile part gets deep."""
    paths = _paths(seeds[0].DESCRIPTOR)
    if not paths:
        return st.sampled_from(seeds)
    change = st.sampled_from(paths).flatmap(
        lambda path: st.tuples(st.just(path), _value(path[-1], 0), st.integers(0, 3))
    )

    def apply(drawn: tuple[Message, list[tuple[Path, Any, int]]]) -> Message:
        seed, changes = drawn
        message = type(seed)()
        message.CopyFrom(seed)
        for path, value, index in changes:
            _set(message, path, value, index)
        return message

    return st.tuples(st.sampled_from(seeds), st.lists(change, min_size=1, max_size=3)).map(apply)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@cache
def bad_utf8(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[bytes] | None:
    """A message of the type with invalid UTF-8 in one of its strings (nested or not); None
    when it has no string field."""
    options: list[st.SearchStrategy[bytes]] = []
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_STRING:
            bad = st.sampled_from([b"\xff", b"\xc3", b"ok\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
            options.append(bad.map(lambda b, n=f.number: _length_delimited(n, b)))
        elif f.type == FieldDescriptor.TYPE_MESSAGE and depth < MAX_DEPTH:
            assert f.message_type is not None
            inner = bad_utf8(f.message_type, depth + 1)
            if inner is not None:
                options.append(inner.map(lambda b, n=f.number: _length_delimited(n, b)))
    return st.one_of(*options) if options else None


def raw_requests(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Bytes for a method taking the type: random ones, valid messages cut short, and messages
    with invalid UTF-8 in a string."""
    encoded = messages(descriptor).map(lambda m: m.SerializeToString())
    cut = st.tuples(encoded, st.integers(min_value=1)).map(lambda t: t[0][: -t[1]])
    options = [st.binary(max_size=256), cut]
    bad = bad_utf8(descriptor)
    if bad is not None:
        options.append(bad)
    return st.one_of(*options)


def assert_no_leak(text: str) -> None:
    match = LEAK.search(text)
    assert match is None, f"an answer shows {match.group()!r}: {text[:500]}"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# uvicorn's loggers do not propagate to the root logger.
WATCHED_LOGGERS = ("", "uvicorn")


@contextmanager
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    """The ERROR records logged anywhere while the block runs (any thread)."""
    handler = _Records()
    for name in WATCHED_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    try:
        yield handler.records
    finally:
        for name in WATCHED_LOGGERS:
            logging.getLogger(name).removeHandler(handler)


def describe(records: list[logging.LogRecord]) -> str:
    return "\n".join(
        f"{r.name}: {r.getMessage()} {r.exc_info and r.exc_info[1]!r}" for r in records
    )


@pytest.fixture(scope="module")
def fake_router(
    fake: FakeOpenRouter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """A router whose completions reach the fake OpenRouter, serving the fake's catalogue."""
    fake.reset()
    state = tmp_path_factory.mktemp("fuzz") / "state"
    modes = {CUSTOM_MODE: ModeWeights(latency=1, cost=1, quality=0)}
    server = ServerThread(settings_for(fake, state, endpoint_stats_models=0, custom_modes=modes))
    with server:
        assert server.loops.run(server.core.refresh()).replaced
        yield server
