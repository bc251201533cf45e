"""The model catalogue the fake serves: loading, id resolution and the `/models` filters."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

FIXTURE_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "openrouter" / "models.json"

# Suffixes that route differently but are not catalogue rows; the value is the provider sort.
VIRTUAL_SUFFIXES: Mapping[str, str | None] = {
    "nitro": "throughput",
    "floor": "price",
    "online": None,
    "exacto": None,
}

Model = dict[str, Any]


def load_models(source: str | Path | None = None) -> list[Model]:
    """Rows of a saved `/models` response (`{"data": [...]}`) or of a bare JSON list.

    Without `source`: the 42 real rows committed under `testkit/fixtures/openrouter/`.
    """
    loaded = json.loads(Path(source or FIXTURE_PATH).read_text(encoding="utf-8"))
    rows = loaded["data"] if isinstance(loaded, dict) else loaded
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{source}: expected a /models response or a list of model objects")
    return rows


def make_model(
    model_id: str,
    *,
    prompt: str = "0.000001",
    completion: str = "0.000002",
    context_length: int = 128_000,
    **fields: Any,
) -> Model:
    """A complete 2026-shaped model row; prices are USD per token as strings, like the API's."""
    author = model_id.split("/", 1)[0]
    row: Model = {
        "id": model_id,
        "canonical_slug": model_id,
        "hugging_face_id": None,
        "name": f"{author.title()}: {model_id.split('/', 1)[-1]}",
        "created": 1_767_225_600,
        "description": f"Synthetic test model {model_id}.",
        "context_length": context_length,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {"prompt": prompt, "completion": completion},
        "top_provider": {
            "context_length": context_length,
            "max_completion_tokens": 16_384,
            "is_moderated": False,
        },
        "per_request_limits": None,
        "supported_parameters": ["max_tokens", "temperature", "tools", "tool_choice"],
        "default_parameters": None,
        "supported_voices": None,
        "knowledge_cutoff": None,
        "expiration_date": None,
        "links": {"details": f"/api/v1/models/{model_id}/endpoints"},
    }
    row.update(fields)
    return row


def price(value: object) -> Decimal:
    """A price field as the API sends it (string, number or null); unparseable counts as 0."""
    if value is None or isinstance(value, bool):
        return Decimal(0)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def billable(value: object) -> Decimal:
    """A price as charged: the `"-1"` of dynamic routers counts as 0."""
    return max(price(value), Decimal(0))


def is_router(row: Mapping[str, Any]) -> bool:
    return str(row["id"]).startswith("openrouter/")


def output_modalities(row: Mapping[str, Any]) -> list[str]:
    return list(row.get("architecture", {}).get("output_modalities") or ["text"])


def input_modalities(row: Mapping[str, Any]) -> list[str]:
    return list(row.get("architecture", {}).get("input_modalities") or ["text"])


def max_output(row: Mapping[str, Any]) -> int | None:
    top = row.get("top_provider") or {}
    value = top.get("max_completion_tokens")
    return int(value) if value else None


def context_window(row: Mapping[str, Any]) -> int | None:
    top = row.get("top_provider") or {}
    value = row.get("context_length") or top.get("context_length")
    return int(value) if value else None


@dataclass(frozen=True)
class Resolution:
    """A requested model id, the row it names and the row that actually serves it."""

    requested: str
    row: Model
    served: Model
    sort_hint: str | None


class Catalogue:
    """An immutable list of model rows with the lookups the endpoints need."""

    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.rows: list[Model] = [copy.deepcopy(dict(row)) for row in rows]
        self._by_id = {str(row["id"]): row for row in self.rows}

    def get(self, model_id: str) -> Model | None:
        return self._by_id.get(model_id)

    def resolve(self, requested: str) -> Resolution | None:
        """The row for `author/slug[:variant]`; virtual suffixes (`:nitro`…) name their base row."""
        row, hint = self.get(requested), None
        base, _, suffix = requested.rpartition(":")
        if row is None and base and suffix in VIRTUAL_SUFFIXES:
            row, hint = self.get(base), VIRTUAL_SUFFIXES[suffix]
        if row is None:
            return None
        return Resolution(requested, row, self._served(row), hint)

    def for_endpoints(self, slug: str) -> Model | None:
        """The row `/models/{slug}/endpoints` describes: by id, then by permanent slug."""
        resolved = self.resolve(slug)
        if resolved is not None:
            return resolved.row
        same = [row for row in self.rows if row.get("canonical_slug") == slug]
        plain = [row for row in same if ":" not in str(row["id"])]
        return next(iter(plain or same), None)

    def _served(self, row: Model) -> Model:
        target = (row.get("alias_target") or {}).get("slug")
        if target is not None and target in self._by_id:
            return self._by_id[target]
        if not is_router(row):
            return row
        if row["id"] == "openrouter/free":
            free = [r for r in self.rows if str(r["id"]).endswith(":free")]
            return free[0] if free else row
        concrete = [r for r in self.rows if self._plain_paid(r)]
        return concrete[0] if concrete else row

    @staticmethod
    def _plain_paid(row: Model) -> bool:
        pricing = row.get("pricing") or {}
        return (
            not is_router(row)
            and ":" not in str(row["id"])
            and not str(row["id"]).startswith("~")
            and price(pricing.get("prompt")) > 0
            and "text" in output_modalities(row)
        )

    def select(
        self,
        *,
        supported_parameters: Sequence[str] = (),
        output: Sequence[str] | None = ("text",),
        input_: Sequence[str] = (),
    ) -> list[Model]:
        """`/models` filtering: every listed parameter (AND), any listed output modality (None:
        all), every listed input modality."""
        return [
            row
            for row in self.rows
            if set(supported_parameters) <= set(row.get("supported_parameters") or [])
            and (output is None or set(output) & set(output_modalities(row)))
            and set(input_) <= set(input_modalities(row))
        ]
