"""What the router knows of each model right now, pushed into the scorer's live stats.

Three sources, most trusted first: the router's own observations of the model (an
exponentially weighted average of time to first token and throughput, and a recent p95, each
forgotten `observation_ttl_s` after the last observation so that a model that lost its traffic
can win it back), OpenRouter's endpoint figures, and the catalogue's priors (by leaving a
figure out). Open circuits remove a model outright.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from service.router import ModelRouter
from service.scorer import MAX_TTFT_S, MIN_TOKENS_PER_S

RECENT = 50  # observations kept per model for the p95


@dataclass
class _Observed:
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    ttfts: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=RECENT))
    last_seen: float = 0.0


def _p95(values: Collection[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _bounded_ttft(value: float) -> float:
    return min(max(value, 0.0), MAX_TTFT_S)


class LiveFigures:
    def __init__(
        self,
        router: ModelRouter,
        *,
        alpha: float = 0.5,
        observation_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._router = router
        self._alpha = alpha
        self._ttl = observation_ttl_s
        self._clock = clock
        self._observed: dict[str, _Observed] = {}
        self._endpoint: dict[str, dict[str, object]] = {}
        self._open: frozenset[str] = frozenset()
        self._pushed: dict[str, dict[str, object]] = {}
        self._dirty = False
        self._next_expiry = math.inf

    def observe(
        self,
        model_id: str,
        *,
        ok: bool,
        ttft_s: float | None = None,
        tokens_per_s: float | None = None,
    ) -> None:
        """One attempt on the model: whether it succeeded, and what it measured when it did."""
        seen = self._observed.setdefault(model_id, _Observed())
        seen.last_seen = self._clock()
        self._dirty = True
        seen.outcomes.append(ok)
        if ttft_s is not None and math.isfinite(ttft_s):
            ttft = _bounded_ttft(ttft_s)
            seen.ttfts.append(ttft)
            seen.ttft_s = ttft if seen.ttft_s is None else self._blend(seen.ttft_s, ttft)
        if tokens_per_s is not None and math.isfinite(tokens_per_s) and tokens_per_s > 0:
            rate = max(tokens_per_s, MIN_TOKENS_PER_S)
            seen.tokens_per_s = (
                rate if seen.tokens_per_s is None else self._blend(seen.tokens_per_s, rate)
            )

    def _blend(self, previous: float, latest: float) -> float:
        return self._alpha * latest + (1 - self._alpha) * previous

    def throughput(self, model_id: str) -> float | None:
        """The best current estimate of the model's output tokens per second, if any."""
        seen = self._observed.get(model_id)
        if seen is not None and seen.tokens_per_s is not None:
            return seen.tokens_per_s
        rate = self._endpoint.get(model_id, {}).get("tokens_per_s")
        return rate if isinstance(rate, float) else None

    def set_endpoint_figures(self, figures: list[dict[str, object]]) -> None:
        self._endpoint = {str(f["id"]): f for f in figures}
        self.sync()

    def before_routing(self, open_circuits: Collection[str]) -> None:
        """Bring the scorer up to date: new observations, forgotten ones, circuits."""
        if frozenset(open_circuits) != self._open:
            self._open = frozenset(open_circuits)
            self._dirty = True
        if self._dirty or self._clock() >= self._next_expiry:
            self.sync()

    def _merged(self, model_id: str, now: float) -> dict[str, object]:
        merged: dict[str, object] = {"id": model_id}
        endpoint = self._endpoint.get(model_id)
        if endpoint is not None:
            merged.update({k: v for k, v in endpoint.items() if k != "id" and v is not None})
        seen = self._observed.get(model_id)
        if seen is not None and now - seen.last_seen <= self._ttl:
            if seen.ttft_s is not None:
                merged["ttft_s"] = seen.ttft_s
                merged["ttft_p95_s"] = _p95(seen.ttfts)
            if seen.tokens_per_s is not None:
                merged["tokens_per_s"] = seen.tokens_per_s
            if seen.outcomes:
                merged["error_rate"] = seen.outcomes.count(False) / len(seen.outcomes)
        if model_id in self._open:
            merged["circuit_open"] = True
        return merged

    def sync(self) -> None:
        """Push what changed into the scorer; observations past their time are dropped."""
        now = self._clock()
        for model_id in [m for m, s in self._observed.items() if now - s.last_seen > self._ttl]:
            del self._observed[model_id]
        models = self._observed.keys() | self._endpoint.keys() | self._open | self._pushed.keys()
        changes = []
        pushed = {}
        for model_id in models:
            merged = self._merged(model_id, now)
            if len(merged) > 1:
                pushed[model_id] = merged
            if self._pushed.get(model_id, {"id": model_id}) != merged:
                changes.append(merged)
        if changes:
            self._router.update_live_stats(changes)
        self._pushed = pushed
        self._dirty = False
        self._next_expiry = min(
            (seen.last_seen + self._ttl for seen in self._observed.values()), default=math.inf
        )
