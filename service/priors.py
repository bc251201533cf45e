"""Quality and latency for models the catalogue has no figure for, and catalogues from listings.

A model OpenRouter lists keeps the figures the current catalogue has for it (or for its base
model, for variants such as `:free`), and takes OpenRouter's own benchmark figure for quality
when the listing carries one. A model new to the router gets the median figures of measured
models in the same completion-price band, marked estimated.
"""

from __future__ import annotations

import bisect
import dataclasses
import statistics
from collections.abc import Iterable

from service.catalogue import Catalogue, ModelRecord
from service.openrouter.models import ListedModel

# Completion prices (USD per million tokens) that separate the price bands of the tier prior.
PRICE_BAND_EDGES = (0.0, 0.5, 2.0, 8.0, 30.0)
INDEX_CEILING = 70.0


def quality_from_index(index: float) -> float:
    """The Artificial Analysis intelligence index mapped onto [0, 1]."""
    return round(min(max(index / INDEX_CEILING, 0.0), 1.0), 6)


def price_band(completion_price_per_token: float) -> int:
    return bisect.bisect_right(PRICE_BAND_EDGES, completion_price_per_token * 1e6)


@dataclasses.dataclass(frozen=True)
class TierPrior:
    quality: float
    ttft_s: float
    tokens_per_s: float


def tier_priors(models: Iterable[ModelRecord]) -> dict[int, TierPrior]:
    """Per price band, the medians of the measured figures (overall medians fill empty bands)."""
    models = list(models)

    def medians(group: list[ModelRecord]) -> TierPrior | None:
        quality = [m.quality for m in group if not m.quality_estimated]
        latency = [m for m in group if not m.latency_estimated]
        if not quality or not latency:
            return None
        return TierPrior(
            quality=statistics.median(quality),
            ttft_s=statistics.median(m.ttft_s for m in latency),
            tokens_per_s=statistics.median(m.tokens_per_s for m in latency),
        )

    overall = medians(models) or TierPrior(quality=0.4, ttft_s=1.0, tokens_per_s=60.0)
    bands = {}
    for band in range(len(PRICE_BAND_EDGES) + 1):
        group = [m for m in models if price_band(m.completion_price) == band]
        bands[band] = medians(group) or overall
    return bands


def catalogue_from_listing(
    listed: list[ListedModel], previous: Catalogue, snapshot_date: str
) -> Catalogue:
    known = {m.id: m for m in previous.models}
    priors = tier_priors(previous.models)
    records = []
    for model in listed:
        before = known.get(model.id) or known.get(model.base_id)
        prior = priors[price_band(model.completion_price)]
        if model.intelligence_index is not None:
            quality = (quality_from_index(model.intelligence_index), False, "openrouter-benchmarks")
        elif before is not None:
            quality = (before.quality, before.quality_estimated, before.quality_source)
        else:
            quality = (prior.quality, True, "price-tier-prior")
        if before is not None:
            latency = (
                before.ttft_s,
                before.tokens_per_s,
                before.latency_estimated,
                before.latency_source,
            )
        else:
            latency = (prior.ttft_s, prior.tokens_per_s, True, "price-tier-prior")
        records.append(
            ModelRecord(
                id=model.id,
                name=model.name,
                author=model.author,
                context_length=model.context_length,
                max_output_tokens=model.max_output_tokens,
                prompt_price=model.prompt_price,
                completion_price=model.completion_price,
                input_modalities=model.input_modalities,
                output_modalities=model.output_modalities,
                supported_parameters=model.supported_parameters,
                quality=quality[0],
                quality_estimated=quality[1],
                quality_source=quality[2],
                ttft_s=latency[0],
                tokens_per_s=latency[1],
                latency_estimated=latency[2],
                latency_source=latency[3],
                realtime=model.realtime,
            )
        )
    return Catalogue.of(snapshot_date, records)
