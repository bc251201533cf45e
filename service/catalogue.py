"""The catalogue snapshot the router serves: loading, operator changes, saving."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from service.config import ExtraModel, ModelOverride
from service.eligibility import Kind, model_kind
from service.scorer import ModelSpec, Scorer


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
    realtime: bool = True
    quality_source: str = ""
    latency_source: str = ""
    created: int = 0  # when OpenRouter listed it, Unix seconds

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
            realtime=bool(raw.get("realtime", True)),
            quality_source=str(raw.get("quality_source", "")),
            latency_source=str(raw.get("latency_source", "")),
            created=int(raw.get("created", 0)),
        )

    def to_json(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        for key, value in raw.items():
            if isinstance(value, tuple):
                raw[key] = list(value)
        return raw

    @property
    def kind(self) -> Kind:
        return model_kind(self.id)

    @property
    def free(self) -> bool:
        return self.prompt_price == 0 and self.completion_price == 0

    @property
    def free_variant(self) -> bool:
        """One of OpenRouter's `:free` variants, which share a small allowance per account."""
        return self.id.endswith(":free")

    def spec(self) -> ModelSpec:
        """The model as the scorer takes it; raises InvalidCatalogue when it is malformed."""
        return ModelSpec(
            id=self.id,
            context_length=self.context_length,
            prompt_price=self.prompt_price,
            completion_price=self.completion_price,
            input_modalities=self.input_modalities,
            output_modalities=self.output_modalities,
            kind=self.kind,
            realtime=self.realtime,
            supported_parameters=self.supported_parameters,
            quality=self.quality,
            quality_estimated=self.quality_estimated,
            ttft_s=self.ttft_s,
            tokens_per_s=self.tokens_per_s,
            latency_estimated=self.latency_estimated,
        )


def content_version(snapshot_date: str, models: list[dict[str, Any]]) -> str:
    """`<date>.<12 hex>`: the hash covers every model's figures, so any change shows."""
    digest = hashlib.sha256(json.dumps(models, sort_keys=True).encode()).hexdigest()[:12]
    return f"{snapshot_date}.{digest}"


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: str
    snapshot_date: str
    models: tuple[ModelRecord, ...]

    @classmethod
    def of(cls, snapshot_date: str, models: list[ModelRecord]) -> Catalogue:
        ordered = sorted(models, key=lambda m: m.id)
        version = content_version(snapshot_date, [m.to_json() for m in ordered])
        return cls(version=version, snapshot_date=snapshot_date, models=tuple(ordered))

    def scorer(self) -> Scorer:
        return Scorer(self.version, [m.spec() for m in self.models])

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "snapshot_date": self.snapshot_date,
            "models": [m.to_json() for m in self.models],
        }

    def with_operator_changes(
        self, overrides: dict[str, ModelOverride], extras: list[ExtraModel]
    ) -> Catalogue:
        """The catalogue with the operator's figures and models; unchanged when there are none."""
        if not overrides and not extras:
            return self
        models = {m.id: m for m in self.models}
        for extra in extras:
            models[extra.id] = _extra_record(extra)
        for model_id, override in overrides.items():
            if model_id in models:
                models[model_id] = _overridden(models[model_id], override)
        return Catalogue.of(self.snapshot_date, list(models.values()))


def _overridden(model: ModelRecord, override: ModelOverride) -> ModelRecord:
    record = model
    if override.quality is not None:
        record = dataclasses.replace(
            record, quality=override.quality, quality_estimated=False, quality_source="operator"
        )
    if override.ttft_s is not None or override.tokens_per_s is not None:
        record = dataclasses.replace(
            record,
            ttft_s=override.ttft_s if override.ttft_s is not None else record.ttft_s,
            tokens_per_s=(
                override.tokens_per_s if override.tokens_per_s is not None else record.tokens_per_s
            ),
            latency_estimated=False,
            latency_source="operator",
        )
    return record


def _extra_record(extra: ExtraModel) -> ModelRecord:
    return ModelRecord(
        id=extra.id,
        name=extra.name or extra.id,
        author=extra.id.split("/", 1)[0],
        context_length=extra.context_length,
        max_output_tokens=extra.max_output_tokens,
        prompt_price=extra.prompt_price_per_mtok / 1e6,
        completion_price=extra.completion_price_per_mtok / 1e6,
        input_modalities=tuple(sorted(set(extra.input_modalities))),
        output_modalities=("text",),
        supported_parameters=tuple(sorted(set(extra.supported_parameters))),
        quality=extra.quality,
        quality_estimated=False,
        ttft_s=extra.ttft_s,
        tokens_per_s=extra.tokens_per_s,
        latency_estimated=False,
        quality_source="operator",
        latency_source="operator",
    )


def parse(text: str) -> Catalogue:
    raw = json.loads(text)
    return Catalogue(
        version=raw["version"],
        snapshot_date=raw["snapshot_date"],
        models=tuple(ModelRecord.from_json(m) for m in raw["models"]),
    )


def load(path: Path | None = None) -> Catalogue:
    """The snapshot at `path`, or the one shipped inside the package."""
    if path is None:
        return parse(resources.files("service").joinpath("data/catalogue.json").read_text("utf-8"))
    return parse(path.read_text("utf-8"))


def save(catalogue: Catalogue, path: Path) -> None:
    """Write atomically: a reader (or the next start) sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(catalogue.to_json(), indent=1, sort_keys=True) + "\n", "utf-8")
    os.replace(tmp, path)
