"""The catalogue snapshot the router serves, and its conversion for the scorer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from service.scorer import Scorer


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One model of the catalogue. Prices are USD per token; negative means dynamic pricing."""

    id: str
    name: str
    author: str
    context_length: int
    max_output_tokens: int
    prompt_price: float
    completion_price: float
    input_modalities: tuple[str, ...]
    output_modalities: tuple[str, ...]
    supported_parameters: tuple[str, ...]
    quality: float
    quality_estimated: bool
    ttft_s: float
    tokens_per_s: float
    latency_estimated: bool

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelRecord:
        return cls(
            id=raw["id"],
            name=raw["name"],
            author=raw["author"],
            context_length=int(raw["context_length"]),
            max_output_tokens=int(raw["max_output_tokens"]),
            prompt_price=float(raw["prompt_price"]),
            completion_price=float(raw["completion_price"]),
            input_modalities=tuple(raw["input_modalities"]),
            output_modalities=tuple(raw["output_modalities"]),
            supported_parameters=tuple(raw["supported_parameters"]),
            quality=float(raw["quality"]),
            quality_estimated=bool(raw["quality_estimated"]),
            ttft_s=float(raw["ttft_s"]),
            tokens_per_s=float(raw["tokens_per_s"]),
            latency_estimated=bool(raw["latency_estimated"]),
        )

    def spec(self) -> dict[str, object]:
        return {
            "id": self.id,
            "context_length": self.context_length,
            "prompt_price": self.prompt_price,
            "completion_price": self.completion_price,
            "input_modalities": self.input_modalities,
            "text_output": "text" in self.output_modalities,
            "supported_parameters": self.supported_parameters,
            "quality": self.quality,
            "quality_estimated": self.quality_estimated,
            "ttft_s": self.ttft_s,
            "tokens_per_s": self.tokens_per_s,
            "latency_estimated": self.latency_estimated,
        }


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: str
    snapshot_date: str
    models: tuple[ModelRecord, ...]

    def scorer(self) -> Scorer:
        return Scorer(self.version, [m.spec() for m in self.models])


def load(path: Path | None = None) -> Catalogue:
    """The snapshot at `path`, or the one shipped inside the package."""
    if path is None:
        text = resources.files("service").joinpath("data/catalogue.json").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    raw = json.loads(text)
    return Catalogue(
        version=raw["version"],
        snapshot_date=raw["snapshot_date"],
        models=tuple(ModelRecord.from_json(m) for m in raw["models"]),
    )
