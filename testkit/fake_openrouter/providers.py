"""Per-model provider endpoints (synthesised deterministically) and provider routing.

Each model gets two or three endpoints. The first charges the model's listed price (the listing
shows the cheapest provider's); the others charge 25 % and 50 % more, so default routing, which
picks the cheapest, bills exactly the listed price.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .catalogue import Model, context_window, max_output, price

Percentiles = Mapping[str, float]

FIRST_PARTY: Mapping[str, Sequence[tuple[str, str]]] = {
    "openai": (("OpenAI", "openai"), ("Azure", "azure")),
    "anthropic": (("Anthropic", "anthropic"), ("Amazon Bedrock", "amazon-bedrock")),
    "google": (("Google AI Studio", "google-ai-studio"), ("Google", "google-vertex")),
    "x-ai": (("xAI", "xai"),),
    "mistralai": (("Mistral", "mistral"),),
    "deepseek": (("DeepSeek", "deepseek"),),
}
HOSTS: Sequence[tuple[str, str]] = (
    ("DeepInfra", "deepinfra"),
    ("Together", "together"),
    ("Fireworks", "fireworks"),
    ("Groq", "groq"),
    ("Novita", "novita"),
    ("Parasail", "parasail"),
    ("Chutes", "chutes"),
    ("SambaNova", "sambanova"),
)
QUANTIZATIONS = ("fp8", "bf16", "fp4", "int8")
PRICE_STEPS = (Decimal(1), Decimal("1.25"), Decimal("1.5"))


@dataclass(frozen=True)
class Endpoint:
    provider_name: str
    tag: str
    quantization: str | None
    pricing: Mapping[str, Any]
    latency_ms: Percentiles | None
    throughput: Percentiles | None
    uptime: float | None

    def matches(self, name: str) -> bool:
        """`provider.order/only/ignore` entries: a tag, its base slug, or the display name."""
        wanted = name.strip().lower()
        display = self.provider_name.lower()
        return wanted in {self.tag, self.tag.split("/")[0], display, display.replace(" ", "-")}

    def price_per_m(self, key: str) -> Decimal:
        return price(self.pricing.get(key)) * 1_000_000


def percentiles(p50: float, spread: Sequence[float]) -> dict[str, float]:
    """p50..p99 from a p50 and three multipliers, rounded like live data (2 decimals)."""
    values = [p50, *(p50 * factor for factor in spread)]
    return {
        name: round(value, 2)
        for name, value in zip(("p50", "p75", "p90", "p99"), values, strict=True)
    }


def latency_percentiles(p50_ms: float) -> dict[str, float]:
    return percentiles(p50_ms, (1.17, 1.6, 4.8))


def throughput_percentiles(p50_tps: float) -> dict[str, float]:
    return percentiles(p50_tps, (1.26, 1.64, 2.29))


def _scaled(pricing: Mapping[str, Any], step: Decimal) -> dict[str, Any]:
    scaled: dict[str, Any] = {}
    for key, value in pricing.items():
        if key == "overrides" and step != 1:
            continue
        if key in {"discount", "overrides"} or value is None or price(value) <= 0:
            scaled[key] = value
        else:
            scaled[key] = format((price(value) * step).normalize(), "f")
    return scaled


def synthesise(row: Model) -> list[Endpoint]:
    """The model's endpoints with default figures; the same row always gives the same endpoints."""
    model_id = str(row["id"])
    seed = zlib.crc32(model_id.encode())
    author = model_id.lstrip("~").split("/", 1)[0]
    hosts = [*FIRST_PARTY.get(author, ()), *HOSTS[seed % len(HOSTS) :], *HOSTS[: seed % len(HOSTS)]]
    endpoints = []
    for index, (name, slug) in enumerate(hosts[: 2 + seed % 2]):
        figure = zlib.crc32(f"{model_id}|{slug}".encode())
        first_party = index < len(FIRST_PARTY.get(author, ()))
        quantization = "unknown" if first_party else QUANTIZATIONS[figure % len(QUANTIZATIONS)]
        tag = f"{slug}/{quantization}" if quantization in {"fp8", "fp4"} else slug
        endpoints.append(
            Endpoint(
                provider_name=name,
                tag=tag,
                quantization=quantization,
                pricing=_scaled(row.get("pricing") or {}, PRICE_STEPS[index]),
                latency_ms=latency_percentiles(250 + figure % 1750),
                throughput=throughput_percentiles(20 + figure % 180),
                uptime=round(95 + (figure % 500) / 100, 2),
            )
        )
    return endpoints


def endpoint_json(row: Model, endpoint: Endpoint, *, authenticated: bool) -> dict[str, Any]:
    """A 2026 `PublicEndpoint`; latency and throughput are null without an Authorization header."""
    permaslug = row.get("canonical_slug") or row["id"]
    return {
        "name": f"{endpoint.provider_name} | {permaslug}",
        "model_id": permaslug,
        "model_name": row.get("name", row["id"]),
        "context_length": context_window(row),
        "pricing": dict(endpoint.pricing),
        "provider_name": endpoint.provider_name,
        "tag": endpoint.tag,
        "quantization": endpoint.quantization,
        "max_completion_tokens": max_output(row),
        "max_prompt_tokens": None,
        "supported_parameters": list(row.get("supported_parameters") or []),
        "status": 0,
        "uptime_last_5m": None if endpoint.uptime is None else min(100.0, endpoint.uptime + 1),
        "uptime_last_30m": endpoint.uptime,
        "uptime_last_1d": None if endpoint.uptime is None else round(endpoint.uptime * 0.998, 2),
        "latency_last_30m": dict(endpoint.latency_ms)
        if authenticated and endpoint.latency_ms
        else None,
        "throughput_last_30m": (
            dict(endpoint.throughput) if authenticated and endpoint.throughput else None
        ),
        "supports_implicit_caching": "input_cache_read" in (row.get("pricing") or {}),
    }


@dataclass(frozen=True)
class ProviderPreferences:
    """The parts of the request's `provider` object the fake honours."""

    order: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    allow_fallbacks: bool = True
    sort: str | None = None
    max_prompt_per_m: Decimal | None = None
    max_completion_per_m: Decimal | None = None
    quantizations: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: object) -> ProviderPreferences:
        """Raises ValueError on a malformed object; unknown keys are ignored."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError("provider must be an object")
        sort = raw.get("sort")
        if isinstance(sort, dict):
            sort = sort.get("by")
        if sort is not None and sort not in {"price", "throughput", "latency", "exacto"}:
            raise ValueError(f"unknown provider.sort {sort!r}")
        max_price = raw.get("max_price") or {}
        return cls(
            order=_names(raw.get("order")),
            only=_names(raw.get("only")),
            ignore=_names(raw.get("ignore")),
            allow_fallbacks=bool(raw.get("allow_fallbacks", True)),
            sort=sort,
            max_prompt_per_m=_limit(max_price.get("prompt")),
            max_completion_per_m=_limit(max_price.get("completion")),
            quantizations=_names(raw.get("quantizations")),
        )


def _names(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("provider lists must be arrays of strings")
    return tuple(value)


def _limit(value: object) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("max_price values must be numbers")
    return price(value)


def _sort_key(sort: str | None, endpoint: Endpoint) -> float:
    if sort == "throughput":
        return -endpoint.throughput["p50"] if endpoint.throughput else float("inf")
    if sort == "latency":
        return endpoint.latency_ms["p50"] if endpoint.latency_ms else float("inf")
    return float(endpoint.price_per_m("prompt") + endpoint.price_per_m("completion"))


def route(
    endpoints: Sequence[Endpoint], prefs: ProviderPreferences, sort_hint: str | None = None
) -> list[Endpoint]:
    """Endpoints in the order the fake tries them; empty when the preferences exclude all.

    Without `sort` or `order` the cheapest comes first (the real router weights by 1/price²;
    the fake is deterministic).
    """

    def allowed(endpoint: Endpoint) -> bool:
        return (
            (not prefs.only or any(endpoint.matches(name) for name in prefs.only))
            and not any(endpoint.matches(name) for name in prefs.ignore)
            and (not prefs.quantizations or endpoint.quantization in prefs.quantizations)
            and (
                prefs.max_prompt_per_m is None
                or endpoint.price_per_m("prompt") <= prefs.max_prompt_per_m
            )
            and (
                prefs.max_completion_per_m is None
                or endpoint.price_per_m("completion") <= prefs.max_completion_per_m
            )
        )

    sort = prefs.sort or sort_hint
    candidates = sorted(filter(allowed, endpoints), key=lambda e: _sort_key(sort, e))
    if not prefs.order:
        return candidates
    ordered: list[Endpoint] = []
    for name in prefs.order:
        ordered += [e for e in candidates if e.matches(name) and e not in ordered]
    if not prefs.allow_fallbacks:
        return ordered
    return ordered + [e for e in candidates if e not in ordered]
