"""The catalogue's offline latency priors, put on the scale of OpenRouter's endpoint figures.

The measured priors come from Artificial Analysis (time to first *answer* token at maximum
reasoning effort, and output speed); OpenRouter's endpoint stats are medians of time to first
token and throughput over the last 30 minutes. On models with both they differ by a factor of
about two at the median and up to 14 for reasoning models, so a model known only by its prior
would be compared with measured ones on another scale. The calibration is, for time to first
token and separately for throughput, the median ratio endpoint figure / prior over the models
whose prior is measured (not itself estimated) and that have the endpoint figure; with fewer than
`MIN_MODELS` of them there is none. It multiplies the priors of models without that endpoint
figure, estimated priors included; an operator's figures are never calibrated.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from service.catalogue import ModelRecord
from service.openrouter import EndpointFigures
from service.scorer import MAX_TTFT_S, MIN_TOKENS_PER_S

MIN_MODELS = 5
OPERATOR = "operator"
CALIBRATED = "calibrated:"


@dataclass(frozen=True, slots=True)
class Ratio:
    """Median endpoint figure / prior over `models` models; None below `MIN_MODELS`."""

    value: float | None
    models: int

    def __str__(self) -> str:
        if self.value is None:
            return f"none ({self.models} of {MIN_MODELS} models needed)"
        return f"x{self.value:.3g} over {self.models} models"


def _ratio(ratios: list[float]) -> Ratio:
    if len(ratios) < MIN_MODELS:
        return Ratio(None, len(ratios))
    return Ratio(statistics.median(ratios), len(ratios))


@dataclass(frozen=True, slots=True)
class Calibration:
    ttft: Ratio
    throughput: Ratio

    def __str__(self) -> str:
        return f"time to first token {self.ttft}, throughput {self.throughput}"

    def ttft_s(self, model: ModelRecord) -> float | None:
        """The model's prior time to first token on the endpoint scale, if calibrated."""
        if self.ttft.value is None or model.latency_source == OPERATOR:
            return None
        return min(model.ttft_s * self.ttft.value, MAX_TTFT_S)

    def tokens_per_s(self, model: ModelRecord) -> float | None:
        """The model's prior throughput on the endpoint scale, if calibrated."""
        if self.throughput.value is None or model.latency_source == OPERATOR:
            return None
        return max(model.tokens_per_s * self.throughput.value, MIN_TOKENS_PER_S)


UNCALIBRATED = Calibration(Ratio(None, 0), Ratio(None, 0))


def calibrate(
    models: Iterable[ModelRecord], measured: Mapping[str, EndpointFigures]
) -> Calibration:
    """The ratios over the models that have both a measured prior and an endpoint figure."""
    ttft: list[float] = []
    throughput: list[float] = []
    for model in models:
        figures = measured.get(model.id)
        if figures is None or model.latency_estimated or model.latency_source == OPERATOR:
            continue
        if figures.ttft_s is not None and figures.ttft_s > 0 and model.ttft_s > 0:
            ttft.append(figures.ttft_s / model.ttft_s)
        if figures.tokens_per_s is not None and model.tokens_per_s > 0:
            throughput.append(figures.tokens_per_s / model.tokens_per_s)
    return Calibration(_ratio(ttft), _ratio(throughput))


def calibrated_source(model: ModelRecord) -> str:
    """How a calibrated prior names its origin: `calibrated:<catalogue source>`."""
    return CALIBRATED + model.latency_source
