"""What the router knows of each model right now, pushed into the scorer's live stats.

Sources, most trusted first: the router's own observations of the model (an exponentially
weighted average of time to first token and throughput, forgotten `observation_ttl_s` after the
last attempt on the model so that a model that lost its traffic can win it back; with replicas
sharing Redis, the mean of every replica's average, see `service.shared_state`), OpenRouter's
endpoint figures, the catalogue's priors calibrated to the endpoint scale
(`service.latency_calibration`), and the catalogue's priors as they are (by leaving a figure
out). Stats pushed with a time to first token or a throughput go with the most trusted source
among them: "learned", "openrouter-endpoints" or "calibrated:<catalogue source>"; without one
the source is None, so the router reports the catalogue's own source (of the catalogue being
served, even after it is replaced). Open circuits remove a model outright.

Only the models whose inputs changed are recomputed on the request path (an observation, a
circuit, an expiry); new endpoint figures or a new catalogue recompute every model.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from service import metrics
from service.catalogue import ModelRecord
from service.latency_calibration import UNCALIBRATED, Calibration, calibrate, calibrated_source
from service.openrouter import EndpointFigures
from service.resilience import CircuitBreakers
from service.router import ModelRouter
from service.scorer import MAX_TTFT_S, MIN_TOKENS_PER_S, LiveStats

log = logging.getLogger(__name__)

LEARNED = "learned"
ENDPOINTS = "openrouter-endpoints"


@dataclass
class Observed:
    """What one router learned of a model: averages, and when it last tried the model."""

    ttft_s: float | None = None
    tokens_per_s: float | None = None
    last_seen: float = 0.0


@dataclass(frozen=True, slots=True)
class _Figures:
    """What is pushed for one model; a figure left None keeps the catalogue's prior."""

    ttft_s: float | None = None
    tokens_per_s: float | None = None
    latency_estimated: bool | None = None
    latency_source: str | None = None
    circuit_open: bool = False

    def stats(self, model_id: str) -> tuple[LiveStats, str | None]:
        """The scorer's stats of the model, and where its latency figures come from."""
        stats = LiveStats(
            model_id,
            ttft_s=self.ttft_s,
            tokens_per_s=self.tokens_per_s,
            circuit_open=self.circuit_open,
            latency_estimated=self.latency_estimated,
        )
        return stats, self.latency_source


PRIORS = _Figures()
"""Every figure the catalogue's: pushing it puts a model back on its priors."""


def _bounded_ttft(value: float) -> float:
    return min(max(value, 0.0), MAX_TTFT_S)


def _background(
    model: ModelRecord, measured: EndpointFigures | None, calibration: Calibration
) -> _Figures | None:
    """The model's figures before the router's own observations: OpenRouter's endpoint
    figures, else its calibrated priors; None when there are neither."""
    figures: list[float | None] = []
    sources: list[str] = []
    for endpoint, calibrated in (
        (measured.ttft_s if measured else None, calibration.ttft_s),
        (measured.tokens_per_s if measured else None, calibration.tokens_per_s),
    ):
        if endpoint is not None:
            figures.append(endpoint)
            sources.append(ENDPOINTS)
        else:
            figures.append(prior := calibrated(model))
            if prior is not None:
                sources.append(calibrated_source(model))
    if not sources:
        return None
    ttft_s, tokens_per_s = figures
    return _Figures(
        ttft_s=ttft_s,
        tokens_per_s=tokens_per_s,
        # A rescaled prior is still a prior.
        latency_estimated=model.latency_estimated and ENDPOINTS not in sources,
        latency_source=ENDPOINTS if ENDPOINTS in sources else sources[0],
    )


def _record_calibration(calibration: Calibration) -> None:
    for name, ratio in (("ttft", calibration.ttft), ("tokens_per_s", calibration.throughput)):
        metrics.LATENCY_CALIBRATION_RATIO.labels(figure=name).set(
            math.nan if ratio.value is None else ratio.value
        )
        metrics.LATENCY_CALIBRATION_MODELS.labels(figure=name).set(ratio.models)


class LiveFigures:
    def __init__(
        self,
        router: ModelRouter,
        breakers: CircuitBreakers | None = None,
        *,
        alpha: float = 0.5,
        observation_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._router = router
        # The circuits whose open models the scorer leaves out (None: none ever opens).
        self._breakers = breakers
        self._circuits_version = 0
        self._alpha = alpha
        self._ttl = observation_ttl_s
        self._clock = clock
        self._observed: dict[str, Observed] = {}
        self._peers: dict[str, list[Observed]] = {}
        self._unshared: set[str] = set()
        self._measured: dict[str, EndpointFigures] = {}
        self._calibration = UNCALIBRATED
        self._background: dict[str, _Figures] = {}
        self._open: frozenset[str] = frozenset()
        self._pushed: dict[str, _Figures] = {}
        self._changed: set[str] = set()
        self._next_expiry = math.inf
        _record_calibration(self._calibration)

    @property
    def calibration(self) -> Calibration:
        """How the catalogue's latency priors are put on the endpoint scale now."""
        return self._calibration

    def observe(
        self, model_id: str, *, ttft_s: float | None = None, tokens_per_s: float | None = None
    ) -> None:
        """One attempt on the model, with what it measured when it succeeded; any attempt keeps
        the figures learned of the model for another `observation_ttl_s`."""
        seen = self._observed.setdefault(model_id, Observed())
        seen.last_seen = self._clock()
        self._changed.add(model_id)
        self._unshared.add(model_id)
        if ttft_s is not None and math.isfinite(ttft_s):
            ttft = _bounded_ttft(ttft_s)
            seen.ttft_s = ttft if seen.ttft_s is None else self._blend(seen.ttft_s, ttft)
        if tokens_per_s is not None and math.isfinite(tokens_per_s) and tokens_per_s > 0:
            rate = max(tokens_per_s, MIN_TOKENS_PER_S)
            seen.tokens_per_s = (
                rate if seen.tokens_per_s is None else self._blend(seen.tokens_per_s, rate)
            )

    def _blend(self, previous: float, latest: float) -> float:
        return self._alpha * latest + (1 - self._alpha) * previous

    @property
    def observation_ttl_s(self) -> float:
        return self._ttl

    def unshared(self) -> dict[str, Observed]:
        """This router's observations of the models tried since the last call (copies)."""
        taken = {
            model_id: dataclasses.replace(self._observed[model_id])
            for model_id in self._unshared
            if model_id in self._observed
        }
        self._unshared.clear()
        return taken

    def take_peers(self, peers: Mapping[str, list[Observed]]) -> None:
        """What the other replicas learned, by model (their `last_seen` on this clock); it
        replaces what they said before."""
        self._changed.update(
            model_id
            for model_id in peers.keys() | self._peers.keys()
            if peers.get(model_id) != self._peers.get(model_id)
        )
        self._peers = {model_id: list(seen) for model_id, seen in peers.items() if seen}

    def throughput(self, model_id: str) -> float | None:
        """The best current estimate of the model's output tokens per second, if any."""
        learned = self._learned(model_id, self._clock())
        if learned is not None and learned.tokens_per_s is not None:
            return learned.tokens_per_s
        background = self._background.get(model_id)
        return background.tokens_per_s if background is not None else None

    def learned(self, model_id: str) -> Observed | None:
        """What this router and its peers have learned of the model and not yet forgotten."""
        return self._learned(model_id, self._clock())

    def _learned(self, model_id: str, now: float) -> Observed | None:
        """The mean of this router's and its peers' fresh averages of the model, if any."""
        own = self._observed.get(model_id)
        fresh = [
            seen
            for seen in (*((own,) if own else ()), *self._peers.get(model_id, ()))
            if now - seen.last_seen <= self._ttl
        ]
        if not fresh:
            return None
        ttfts = [seen.ttft_s for seen in fresh if seen.ttft_s is not None]
        rates = [seen.tokens_per_s for seen in fresh if seen.tokens_per_s is not None]
        return Observed(
            ttft_s=sum(ttfts) / len(ttfts) if ttfts else None,
            tokens_per_s=sum(rates) / len(rates) if rates else None,
            last_seen=max(seen.last_seen for seen in fresh),
        )

    def update_endpoint_figures(self, fetched: Mapping[str, EndpointFigures | None]) -> None:
        """Endpoint figures of the models just fetched (None: the model reported none, so its
        earlier figures go); the other models keep theirs."""
        for model_id, figures in fetched.items():
            if figures is None:
                self._measured.pop(model_id, None)
            else:
                self._measured[model_id] = figures
        self.recalibrate()

    def recalibrate(self) -> None:
        """Calibrate the priors again and recompute every model's figures; after new endpoint
        figures and whenever the catalogue changes."""
        models = self._router.catalogue.models
        listed = {m.id for m in models}
        self._measured = {k: v for k, v in self._measured.items() if k in listed}
        self._pushed = {k: v for k, v in self._pushed.items() if k in listed}
        metrics.ENDPOINT_FIGURES_MODELS.set(len(self._measured))
        calibration = calibrate(models, self._measured)
        if calibration != self._calibration:
            log.info("latency priors calibrated to OpenRouter's endpoint scale: %s", calibration)
            self._calibration = calibration
            _record_calibration(calibration)
        background = {}
        for model in models:
            figures = _background(model, self._measured.get(model.id), calibration)
            if figures is not None:
                background[model.id] = figures
        self._changed.update(
            model_id
            for model_id in background.keys() | self._background.keys()
            if background.get(model_id) != self._background.get(model_id)
        )
        self._background = background
        self.sync()

    def before_routing(self) -> None:
        """Bring the scorer up to date: new observations, forgotten ones, circuits."""
        circuits = (
            None if self._breakers is None else self._breakers.changed_since(self._circuits_version)
        )
        if circuits is not None:
            self._circuits_version, now_open = circuits
            opened = frozenset(now_open)
            self._changed.update(opened ^ self._open)
            self._open = opened
        if self._changed or self._clock() >= self._next_expiry:
            self.sync()

    def _merged(self, model_id: str, now: float) -> _Figures:
        merged = self._background.get(model_id, PRIORS)
        seen = self._learned(model_id, now)
        if seen is not None:
            ttft, rate = seen.ttft_s, seen.tokens_per_s
            if ttft is not None or rate is not None:
                merged = dataclasses.replace(
                    merged,
                    ttft_s=merged.ttft_s if ttft is None else ttft,
                    tokens_per_s=merged.tokens_per_s if rate is None else rate,
                    latency_estimated=False,
                    latency_source=LEARNED,
                )
        if model_id in self._open:
            merged = dataclasses.replace(merged, circuit_open=True)
        return merged

    def sync(self) -> None:
        """Push what changed into the scorer; observations past their time are dropped."""
        now = self._clock()
        for model_id in [m for m, s in self._observed.items() if now - s.last_seen > self._ttl]:
            del self._observed[model_id]
            self._changed.add(model_id)
        for model_id, seen in list(self._peers.items()):
            fresh = [s for s in seen if now - s.last_seen <= self._ttl]
            if len(fresh) < len(seen):
                self._changed.add(model_id)
                if fresh:
                    self._peers[model_id] = fresh
                else:
                    del self._peers[model_id]
        changes: dict[str, _Figures] = {}
        for model_id in self._changed:
            merged = self._merged(model_id, now)
            previous = self._pushed.get(model_id)
            if previous != merged and (previous is not None or merged != PRIORS):
                changes[model_id] = merged
        if changes:
            self._router.update_live_stats(
                [figures.stats(model_id) for model_id, figures in changes.items()]
            )
        for model_id, merged in changes.items():
            if merged == PRIORS:
                del self._pushed[model_id]
            else:
                self._pushed[model_id] = merged
        self._changed.clear()
        peers = (seen for listed in self._peers.values() for seen in listed)
        self._next_expiry = min(
            (seen.last_seen + self._ttl for seen in (*self._observed.values(), *peers)),
            default=math.inf,
        )
