"""Tolerant parsing of OpenRouter's `/models` and `/endpoints` payloads (2025 and 2026 shapes).

Unknown fields are ignored, optional fields may be missing or null, prices may be strings,
numbers or null. A row without a usable id is skipped rather than failing the whole list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.scorer import MAX_PRICE_PER_TOKEN

DYNAMIC_PRICE = -1.0
"""The price of a model priced per request (e.g. `openrouter/auto`), or of an unknown price."""

# Row suffixes that are the same model served differently: they share the base model's figures.
INHERITING_SUFFIXES = frozenset({"free", "batch", "extended"})
# Row suffixes that are not for a realtime path.
NON_REALTIME_SUFFIXES = frozenset({"batch"})

INPUT_MODALITIES = frozenset({"text", "image", "file", "audio", "video"})


class PayloadError(ValueError):
    """A payload that is not the shape OpenRouter documents at all."""


def parse_price(value: object) -> float:
    """USD per token from a string, a number or null.

    Null, booleans, unparsable text, NaN, infinities, negative values (OpenRouter's "-1" for
    dynamic routers) and values above `MAX_PRICE_PER_TOKEN` all become `DYNAMIC_PRICE`, which
    the scorer never routes to.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return DYNAMIC_PRICE
    try:
        price = float(value)
    except ValueError:
        return DYNAMIC_PRICE
    if math.isfinite(price) and 0 <= price <= MAX_PRICE_PER_TOKEN:
        return price
    return DYNAMIC_PRICE


def split_variant(model_id: str) -> tuple[str, str | None]:
    """("author/slug", "suffix") for "author/slug:suffix", else (model_id, None)."""
    base, sep, suffix = model_id.partition(":")
    return (base, suffix) if sep else (model_id, None)


def is_realtime(model_id: str) -> bool:
    """False for `:batch` rows and `~…-latest` alias rows, which are not for a realtime path."""
    return not model_id.startswith("~") and split_variant(model_id)[1] not in NON_REALTIME_SUFFIXES


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(sorted({v for v in value if isinstance(v, str)}))
    return ()


def _count(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and math.isfinite(value):
        return max(int(value), 0)
    return 0


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True, slots=True)
class ListedModel:
    """What OpenRouter's model list says of one model."""

    id: str
    name: str
    author: str
    created: int
    context_length: int
    max_output_tokens: int
    prompt_price: float
    completion_price: float
    input_modalities: tuple[str, ...]
    output_modalities: tuple[str, ...]
    supported_parameters: tuple[str, ...]
    intelligence_index: float | None
    alias_target: str | None

    @property
    def base_id(self) -> str | None:
        """The row whose figures this one shares: an alias's target, or the base model of a
        `:free`, `:batch` or `:extended` row."""
        if self.id.startswith("~"):
            return self.alias_target
        base, suffix = split_variant(self.id)
        return base if suffix in INHERITING_SUFFIXES else None

    @property
    def realtime(self) -> bool:
        return is_realtime(self.id)

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> ListedModel | None:
        model_id = raw.get("id")
        if not isinstance(model_id, str) or "/" not in model_id.strip("/"):
            return None
        arch = _mapping(raw.get("architecture"))
        pricing = _mapping(raw.get("pricing"))
        top = _mapping(raw.get("top_provider"))
        index = _number(
            _mapping(_mapping(raw.get("benchmarks")).get("artificial_analysis")).get(
                "intelligence_index"
            )
        )
        target = _mapping(raw.get("alias_target")).get("slug")
        name = raw.get("name")
        return cls(
            id=model_id,
            name=name if isinstance(name, str) and name else model_id,
            author=model_id.removeprefix("~").split("/", 1)[0],
            created=_count(raw.get("created")),
            context_length=_count(raw.get("context_length")) or _count(top.get("context_length")),
            max_output_tokens=_count(top.get("max_completion_tokens")),
            prompt_price=parse_price(pricing.get("prompt")),
            completion_price=parse_price(pricing.get("completion")),
            input_modalities=tuple(
                m for m in _strings(arch.get("input_modalities")) if m in INPUT_MODALITIES
            )
            or ("text",),
            output_modalities=_strings(arch.get("output_modalities")) or ("text",),
            supported_parameters=_strings(raw.get("supported_parameters")),
            intelligence_index=index,
            alias_target=target if isinstance(target, str) else None,
        )


def parse_models(payload: object) -> list[ListedModel]:
    """The models of a `GET /models` response; rows without a usable id are skipped."""
    data = _mapping(payload).get("data")
    if not isinstance(data, list):
        raise PayloadError("the model list has no `data` array")
    models = (ListedModel.from_json(row) for row in data if isinstance(row, Mapping))
    unique: dict[str, ListedModel] = {}
    for model in models:
        if model is not None:
            unique.setdefault(model.id, model)
    return list(unique.values())


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """One provider endpoint of a model: recent time to first token, throughput and uptime."""

    provider: str
    ttft_p50_s: float | None
    tokens_per_s_p50: float | None
    uptime: float | None  # fraction of successful requests over the last 30 minutes
    status: int
    free: bool  # prompt and completion cost nothing: an endpoint of the model's `:free` variant


def parse_endpoints(payload: object) -> list[EndpointStats]:
    """The endpoints of a `GET /models/{author}/{slug}/endpoints` response.

    Latency percentiles are milliseconds on the wire; this returns seconds.
    """
    endpoints = _mapping(_mapping(payload).get("data")).get("endpoints")
    if not isinstance(endpoints, list):
        raise PayloadError("the endpoint list has no `data.endpoints` array")
    parsed = []
    for row in endpoints:
        if not isinstance(row, Mapping):
            continue
        ttft_ms = _number(_mapping(row.get("latency_last_30m")).get("p50"))
        throughput = _number(_mapping(row.get("throughput_last_30m")).get("p50"))
        uptime = _number(row.get("uptime_last_30m"))
        status = row.get("status")
        provider = row.get("provider_name") or row.get("tag") or "unknown"
        pricing = _mapping(row.get("pricing"))
        prices = (parse_price(pricing.get("prompt")), parse_price(pricing.get("completion")))
        parsed.append(
            EndpointStats(
                provider=str(provider),
                ttft_p50_s=ttft_ms / 1000 if ttft_ms is not None and ttft_ms >= 0 else None,
                tokens_per_s_p50=throughput if throughput is not None and throughput > 0 else None,
                uptime=min(max(uptime / 100, 0.0), 1.0) if uptime is not None else None,
                status=status if isinstance(status, int) and not isinstance(status, bool) else 0,
                free=prices == (0.0, 0.0),
            )
        )
    return parsed
