"""Priors: the figures a model gets when nothing measured it, and catalogues from listings.

Shared by the build script of the embedded catalogue and by the catalogue refresh, so a model
gets the same kind of figure whichever way it arrives (see service/data/PROVENANCE.md):
quality maps the Artificial Analysis intelligence index onto [0, 1] with fixed bounds;
unmeasured models get the median measured figures of their family, else of their
completion-price tier, else of every measured model, marked estimated. An estimated quality is
then pulled halfway toward a conservative value (the lower quartile of measured quality) and
never raised, so a guess does not outrank a measurement on equal footing.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Generic, TypeVar

from service.catalogue import Catalogue, ModelRecord
from service.openrouter.models import ListedModel, split_variant

T = TypeVar("T")

# Fixed bounds of the index -> quality min-max (see PROVENANCE.md for the choice).
INDEX_FLOOR = 5.0
INDEX_CEILING = 65.0

# Completion-price tiers, upper bounds in USD per million output tokens (free is in the first).
PRICE_TIERS: tuple[tuple[float, str], ...] = (
    (0.5, "0-0.5"),
    (2.0, "0.5-2"),
    (8.0, "2-8"),
    (30.0, "8-30"),
    (math.inf, "30+"),
)

OPENROUTER_BENCHMARKS = "openrouter-benchmarks"
FAMILY_PRIOR = "family-prior"
PRICE_TIER_PRIOR = "price-tier-prior"
GLOBAL_PRIOR = "global-prior"

# When nothing at all is measured: a middling model.
FALLBACK_QUALITY = (0.4,)

# An estimated quality moves this share of the way toward the conservative value.
QUALITY_SHRINK = 0.5
FALLBACK_LATENCY = (1.0, 60.0)

# Name-stem tokens dropped whole: versions (3, 4.5, v2, 4o), sizes (70b, a3b, 8x22b is kept as
# "xb"), dates (2512, 20260420), and release-stage or packaging words.
_DROPPED_TOKEN = re.compile(
    r"^(v?\d+(\.\d+)*[a-z]?|a?\d+(\.\d+)?[bmkt]|e\d+b|\d{4,8}"
    r"|latest|preview|exp|instruct|it|chat)$"
)


def quality_from_index(index: float) -> float:
    """Monotone map of the AA intelligence index onto [0, 1]: min-max against fixed bounds."""
    scaled = (index - INDEX_FLOOR) / (INDEX_CEILING - INDEX_FLOOR)
    return round(min(max(scaled, 0.0), 1.0), 6)


def price_tier_of(completion_price: float) -> str | None:
    """The completion-price tier, or None for dynamic pricing."""
    if completion_price < 0:
        return None
    per_million = completion_price * 1e6
    return next(label for bound, label in PRICE_TIERS if per_million <= bound)


def family_of(model_id: str) -> str:
    """Family key `author/stem`: the slug without suffix, versions, sizes, dates, stage words."""
    author, _, slug = model_id.lstrip("~").partition("/")
    slug = split_variant(slug)[0].lower()
    words = []
    for token in re.split(r"[-_]", slug):
        if _DROPPED_TOKEN.match(token):
            continue
        word = re.sub(r"[\d.]+", "", token)
        if word:
            words.append(word)
    return f"{author}/{'-'.join(words) or slug}"


@dataclass(frozen=True)
class Figure(Generic[T]):
    value: T
    source: str
    estimated: bool


class Priors:
    """Medians of measured figures per family, per price tier and overall.

    `pool` holds (family, price tier, figures) once per distinct measured model.
    """

    def __init__(
        self,
        pool: list[tuple[str, str | None, tuple[float, ...]]],
        digits: int | None,
        fallback: tuple[float, ...],
    ) -> None:
        self.digits = digits
        family: dict[str, list[tuple[float, ...]]] = defaultdict(list)
        tier: dict[str, list[tuple[float, ...]]] = defaultdict(list)
        for fam, price_tier, value in pool:
            family[fam].append(value)
            if price_tier is not None:
                tier[price_tier].append(value)
        self.family = {k: self._combine(v) for k, v in sorted(family.items())}
        self.tier = {k: self._combine(v) for k, v in sorted(tier.items())}
        self.overall = self._combine([v for _, _, v in pool]) if pool else fallback

    def _combine(self, values: list[tuple[float, ...]]) -> tuple[float, ...]:
        medians = tuple(
            float(statistics.median(v[i] for v in values)) for i in range(len(values[0]))
        )
        return medians if self.digits is None else tuple(round(m, self.digits) for m in medians)

    def figure(self, family: str, price_tier: str | None) -> Figure[tuple[float, ...]]:
        if family in self.family:
            return Figure(self.family[family], FAMILY_PRIOR, True)
        if price_tier in self.tier:
            return Figure(self.tier[price_tier], PRICE_TIER_PRIOR, True)
        return Figure(self.overall, GLOBAL_PRIOR, True)


class QualityPriors(Priors):
    """Quality priors, each shrunk toward the lower quartile of measured quality."""

    def __init__(self, pool: list[tuple[str, str | None, tuple[float, ...]]]) -> None:
        super().__init__(pool, 6, FALLBACK_QUALITY)
        values = sorted(v[0] for _, _, v in pool)
        self.conservative = (
            round(statistics.quantiles(values, n=4)[0], 6)
            if len(values) >= 2
            else FALLBACK_QUALITY[0]
        )

    def figure(self, family: str, price_tier: str | None) -> Figure[tuple[float, ...]]:
        found = super().figure(family, price_tier)
        return Figure((self.shrunk(found.value[0]),), found.source, True)

    def shrunk(self, prior: float) -> float:
        pulled = self.conservative + QUALITY_SHRINK * (prior - self.conservative)
        return round(min(prior, pulled), 6)


def _pool(
    models: list[ModelRecord], estimated: str, figures: str
) -> list[tuple[str, str | None, tuple[float, ...]]]:
    return [
        (
            family_of(m.id),
            price_tier_of(m.completion_price),
            tuple(getattr(m, f) for f in figures.split()),
        )
        for m in models
        if not getattr(m, estimated) and split_variant(m.id)[1] is None and not m.id.startswith("~")
    ]


def catalogue_from_listing(
    listed: list[ListedModel], previous: Catalogue, snapshot_date: str
) -> Catalogue:
    """The catalogue a fresh listing makes. Each model keeps the figures the previous
    catalogue had for it (or for the row it shares figures with); quality takes the index the
    listing carries, if any; a new model gets the priors of the previous catalogue's measured
    models."""
    known = {m.id: m for m in previous.models}
    quality_priors = QualityPriors(_pool(list(previous.models), "quality_estimated", "quality"))
    latency_priors = Priors(
        _pool(list(previous.models), "latency_estimated", "ttft_s tokens_per_s"),
        None,
        FALLBACK_LATENCY,
    )
    records = []
    for model in listed:
        before = known.get(model.id) or (known.get(model.base_id) if model.base_id else None)
        family, tier = family_of(model.id), price_tier_of(model.completion_price)
        quality: Figure[tuple[float, ...]]
        latency: Figure[tuple[float, ...]]
        if model.intelligence_index is not None:
            quality = Figure(
                (quality_from_index(model.intelligence_index),), OPENROUTER_BENCHMARKS, False
            )
        elif before is not None:
            quality = Figure((before.quality,), before.quality_source, before.quality_estimated)
        else:
            quality = quality_priors.figure(family, tier)
        if before is not None:
            latency = Figure(
                (before.ttft_s, before.tokens_per_s),
                before.latency_source,
                before.latency_estimated,
            )
        else:
            latency = latency_priors.figure(family, tier)
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
                quality=quality.value[0],
                quality_estimated=quality.estimated,
                quality_source=quality.source,
                ttft_s=latency.value[0],
                tokens_per_s=latency.value[1],
                latency_estimated=latency.estimated,
                latency_source=latency.source,
                realtime=model.realtime,
                created=model.created,
            )
        )
    return Catalogue.of(snapshot_date, records)
