"""What a catalogue refresh would change, before it is made: the models OpenRouter lists now
that the router does not serve, those it would drop, and the listed facts that moved."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from service.catalogue_keeper import initial_catalogue, listed_catalogue, operated
from service.config import Settings
from service.listing import model_fields
from service.openrouter import OpenRouterClient
from service.pb.router.v1 import router_pb2 as pb

# What OpenRouter's listing says of a model; the figures the router adds (quality, latency)
# are carried over by a refresh, not replaced.
COMPARED = (
    "name",
    "context_length",
    "max_output_tokens",
    "prompt_price_per_mtok",
    "completion_price_per_mtok",
    "input_modalities",
    "output_modalities",
    "supported_parameters",
)


@dataclass(frozen=True, slots=True)
class Change:
    kind: Literal["added", "removed", "changed"]
    model: str
    field: str = ""
    before: str = ""
    after: str = ""


def diff(before: Iterable[pb.ModelInfo], after: Iterable[pb.ModelInfo]) -> list[Change]:
    """Added and removed models by id, then each changed field of the models in both."""
    old = {m.id: m for m in before}
    new = {m.id: m for m in after}
    changes = [Change("added", model) for model in sorted(new.keys() - old.keys())]
    changes += [Change("removed", model) for model in sorted(old.keys() - new.keys())]
    for model in sorted(old.keys() & new.keys()):
        for field in COMPARED:
            was, now = _shown(getattr(old[model], field)), _shown(getattr(new[model], field))
            if was != now:
                changes.append(Change("changed", model, field, was, now))
    return changes


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str | int):
        return str(value)
    return ", ".join(value)  # a repeated string field


async def listed_now(settings: Settings) -> list[pb.ModelInfo]:
    """OpenRouter's listing as a refresh by a router of `settings` would serve it now (raises
    `OpenRouterError` when it cannot be fetched)."""
    current, _ = initial_catalogue(settings)
    client = OpenRouterClient(
        settings.openrouter_base_url,
        settings.openrouter_api_key,
        timeout_s=settings.openrouter_timeout_s,
    )
    try:
        listed = await client.list_models()
    finally:
        await client.aclose()
    fresh = operated(listed_catalogue(listed, current, time.time()), settings)
    return [pb.ModelInfo(**model_fields(m)) for m in fresh.models]
