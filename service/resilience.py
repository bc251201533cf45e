"""Failover safety: a circuit breaker per model and a retry budget.

The router tries a ranked list of candidate models and fails over down it. Two things keep an
outage from turning into a self-inflicted one:

* `CircuitBreakers` stops sending requests to a model that keeps failing, for a cooldown, then
  lets a few probe requests through to find out whether it recovered.
* `RetryBudget` caps failover attempts (retries) at a fraction of recent traffic, so a broad
  outage does not multiply the load on the models that are left.

Both are dependency-free, take an injected monotonic clock (so tests control time), hold memory
bounded by their time window, and are meant for one asyncio event loop: they never await and take
no locks, so they must not be shared between threads.

Sliding windows are kept as time buckets aligned on the clock: with `bucket = min(1 s,
window_s / 10)`, the window is the newest `n = ceil(window_s / bucket)` buckets, the current one
included. An event therefore counts for more than `n * bucket - bucket` and at most
`n * bucket` seconds (`n * bucket` is `window_s`, rounded up to whole buckets), and memory is at
most `n` buckets whatever the traffic.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]
# Cooldown ends told apart by less than this are one: clocks of replicas compared through Unix
# time drift by milliseconds.
SAME_CLOCK_S = 0.5
Clock = Callable[[], float]


class _SlidingCounts:
    """A few event counters over a sliding time window, in a bounded number of time buckets."""

    __slots__ = ("_bucket_s", "_buckets", "_n", "_totals")

    def __init__(self, window_s: float, kinds: int) -> None:
        self._bucket_s = min(1.0, window_s / 10)
        # The tolerance keeps float noise (e.g. 0.3 / 0.03 = 10.000000000000002) from adding one.
        self._n = max(1, math.ceil(window_s / self._bucket_s - 1e-9))
        # Each bucket is [bucket index, count of kind 0, count of kind 1, ...], oldest first.
        self._buckets: deque[list[int]] = deque()
        self._totals = [0] * kinds

    def __len__(self) -> int:
        """The number of buckets held (at most `ceil(window_s / bucket)`)."""
        return len(self._buckets)

    def _expire(self, index: int) -> None:
        buckets, totals = self._buckets, self._totals
        while buckets and buckets[0][0] <= index - self._n:
            old = buckets.popleft()
            for kind in range(len(totals)):
                totals[kind] -= old[kind + 1]

    def add(self, now: float, kind: int) -> None:
        index = math.floor(now / self._bucket_s)
        self._expire(index)
        buckets = self._buckets
        # A clock that steps back (it should not) adds to the newest bucket rather than reorder.
        if not buckets or buckets[-1][0] < index:
            buckets.append([index] + [0] * len(self._totals))
        buckets[-1][kind + 1] += 1
        self._totals[kind] += 1

    def count(self, now: float, kind: int) -> int:
        self._expire(math.floor(now / self._bucket_s))
        return self._totals[kind]

    def clear(self) -> None:
        self._buckets.clear()
        self._totals = [0] * len(self._totals)


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """When a model's circuit opens, and how it recovers.

    A circuit opens after `consecutive_failures` failures in a row, or when, over the last
    `window_s` seconds, more than `failure_rate` of at least `min_requests` outcomes were failures.
    It then stays open for `cooldown_s` seconds, after which it is half-open: at most
    `half_open_probes` requests at a time may try the model. A probe's success closes the circuit
    (and clears its counters); a probe's failure opens it again.

    Repeat offenders rest longer: an opening that follows a failed probe, or comes less than
    `max_cooldown_s` after the circuit last closed, doubles the previous cooldown, up to
    `max_cooldown_s`. And no more than `max_ejected_share` of the catalogue's models may be
    open at once (at least one): past that, failures are counted but open nothing, so that a
    broad outage cannot take every model out of routing (Envoy's max_ejection_percent).
    """

    consecutive_failures: int = 5
    """Failures in a row (in the closed state) that open the circuit."""
    failure_rate: float = 0.5
    """Open when failures / outcomes in the window exceeds this (strictly); 1.0 disables it."""
    min_requests: int = 10
    """The failure-rate rule applies only with at least this many outcomes in the window."""
    window_s: float = 30.0
    """Length of the sliding window for the failure rate, in seconds."""
    cooldown_s: float = 30.0
    """How long an open circuit refuses every request before it goes half-open, in seconds."""
    half_open_probes: int = 1
    """Requests a half-open circuit lets through at a time."""
    max_cooldown_s: float = 300.0
    """The longest cooldown a repeat offender gets, in seconds."""
    max_ejected_share: float = 0.2
    """The share of the catalogue's models that may have an open circuit at once."""

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1:
            raise ValueError("consecutive_failures must be at least 1")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be within [0, 1]")
        if self.min_requests < 1:
            raise ValueError("min_requests must be at least 1")
        if not self.window_s > 0.0:
            raise ValueError("window_s must be positive")
        if not self.cooldown_s >= 0.0:
            raise ValueError("cooldown_s must not be negative")
        if self.half_open_probes < 1:
            raise ValueError("half_open_probes must be at least 1")
        if not self.max_cooldown_s >= self.cooldown_s:
            raise ValueError("max_cooldown_s must be at least cooldown_s")
        if not 0.0 < self.max_ejected_share <= 1.0:
            raise ValueError("max_ejected_share must be within (0, 1]")


class _Circuit:
    """One model's breaker state."""

    __slots__ = (
        "closed_at",
        "consecutive",
        "cooldown",
        "open_until",
        "outcomes",
        "probes",
        "state",
    )

    OUTCOMES = 0  # kinds of event in `outcomes`
    FAILURES = 1

    def __init__(self, window_s: float) -> None:
        self.state: CircuitState = "closed"
        # Failures in a row and outcomes in the window, counted while closed (cleared on closing).
        self.consecutive = 0
        self.outcomes = _SlidingCounts(window_s, kinds=2)
        self.open_until = 0.0  # while open
        self.probes = 0  # probes in flight, while half-open (zeroed on entering it)
        self.cooldown = 0.0  # of the last opening here
        self.closed_at = -math.inf  # when a probe last closed it


class CircuitBreakers:
    """A circuit breaker per model id (see `CircuitPolicy` for the rules).

    Protocol for each attempt on a model: call `acquire(model_id)`; if it returns True, end the
    attempt with exactly one `record(model_id, ok)` when the model gave a verdict (`ok=False` for
    the model's or provider's failures: errors, timeouts of the model, 5xx, 429...), or one
    `release(model_id)` when the attempt ended without a verdict on the model (the caller's own
    deadline or cancellation, a client error). A half-open probe slot that is never given back
    keeps its model refusing requests, so pair them in a `try`/`finally`.

    `open_models()` is the set the scorer must exclude; half-open models are not in it, so that
    probes can reach them. `changed_since(version)` tells cheaply whether that set changed.

    Outcomes that arrive while a circuit is open, or while it is half-open with no probe in
    flight, come from attempts started before it opened and are ignored. While probes are in
    flight, any verdict counts as a probe's.
    """

    def __init__(
        self,
        policy: CircuitPolicy = CircuitPolicy(),
        clock: Clock = time.monotonic,
        *,
        models: Callable[[], int] | None = None,
        on_capped: Callable[[str], None] = lambda model_id: None,
    ):
        """`models` counts the catalogue's models (for `max_ejected_share`; without it, any
        number may be open); `on_capped` hears of each opening the share refused."""
        self._policy = policy
        self._clock = clock
        self._models = models
        self._on_capped = on_capped
        self._circuits: dict[str, _Circuit] = {}
        self._open: set[str] = set()  # ids in the open state (their cooldown may be over)
        self._version = 0

    @property
    def policy(self) -> CircuitPolicy:
        return self._policy

    @property
    def version(self) -> int:
        """Bumped on every state transition; 0 (nothing open) until the first one."""
        self._advance()
        return self._version

    def acquire(self, model_id: str) -> bool:
        """May a request try `model_id` now? True takes a probe slot if the circuit is half-open."""
        circuit = self._circuits.get(model_id)
        if circuit is None or circuit.state == "closed":
            return True
        if circuit.state == "open":
            if self._clock() < circuit.open_until:
                return False
            self._half_open(model_id, circuit)
        if circuit.probes >= self._policy.half_open_probes:
            return False
        circuit.probes += 1
        return True

    def release(self, model_id: str) -> None:
        """End an acquired attempt without a verdict on the model: frees a probe slot, no count."""
        circuit = self._circuits.get(model_id)
        if circuit is not None and circuit.state == "half_open" and circuit.probes > 0:
            circuit.probes -= 1

    def record(self, model_id: str, ok: bool) -> None:
        """End an acquired attempt with the model's verdict: success (`ok`) or failure."""
        circuit = self._circuits.get(model_id)
        if circuit is None:
            circuit = self._circuits[model_id] = _Circuit(self._policy.window_s)
        if circuit.state == "open":
            return
        if circuit.state == "half_open":
            if circuit.probes > 0:
                if ok:
                    self._close(circuit)
                else:
                    self._trip(model_id, circuit, self._cooldown(circuit, repeat=True))
            return
        now = self._clock()
        outcomes = circuit.outcomes
        outcomes.add(now, _Circuit.OUTCOMES)
        if ok:
            circuit.consecutive = 0
            return
        circuit.consecutive += 1
        outcomes.add(now, _Circuit.FAILURES)
        policy = self._policy
        total = outcomes.count(now, _Circuit.OUTCOMES)
        failures = outcomes.count(now, _Circuit.FAILURES)
        if circuit.consecutive >= policy.consecutive_failures or (
            total >= policy.min_requests and failures > policy.failure_rate * total
        ):
            if len(self._open) >= self._ejection_cap():
                self._on_capped(model_id)
                return
            repeat = now - circuit.closed_at < policy.max_cooldown_s
            self._trip(model_id, circuit, self._cooldown(circuit, repeat=repeat))

    def state(self, model_id: str) -> CircuitState:
        """The circuit's state now; an open circuit whose cooldown is over turns half-open."""
        circuit = self._circuits.get(model_id)
        if circuit is None:
            return "closed"
        if circuit.state == "open" and self._clock() >= circuit.open_until:
            self._half_open(model_id, circuit)
        return circuit.state

    def open_until(self) -> dict[str, float]:
        """The open circuits (cooldown not over) and when each cooldown ends, on the clock."""
        self._advance()
        return {model_id: self._circuits[model_id].open_until for model_id in self._open}

    def rest_left(self) -> dict[str, float]:
        """The open circuits and the seconds until each cooldown ends."""
        now = self._clock()
        return {model_id: until - now for model_id, until in self.open_until().items()}

    def opened_elsewhere(self, model_id: str, until: float) -> None:
        """Another replica opened the model's circuit until `until` (on this clock): keep it
        open as long, unless that is under `SAME_CLOCK_S` from now or from this circuit's own
        cooldown end (the same opening come back through another clock)."""
        now = self._clock()
        if until - now < SAME_CLOCK_S:
            return
        circuit = self._circuits.get(model_id)
        if circuit is None:
            circuit = self._circuits[model_id] = _Circuit(self._policy.window_s)
        elif circuit.state == "open" and until - circuit.open_until < SAME_CLOCK_S:
            return
        self._trip(model_id, circuit, until - now)

    def next_probe_in(self, models: Iterable[str] | None = None) -> float:
        """Seconds until the first open circuit (of `models`, else of all) turns half-open
        (0 when none is open)."""
        left = self.rest_left()
        waits = left.values() if models is None else [left[m] for m in models if m in left]
        return max(min(waits), 0.0) if waits else 0.0

    def open_models(self) -> set[str]:
        """The models to exclude now: open, cooldown not over (half-open ones are not in it)."""
        self._advance()
        return set(self._open)

    def changed_since(self, version: int) -> tuple[int, set[str]] | None:
        """None if no transition happened since `version`, else (current version, open models).

        Start from version 0, which has no open model.
        """
        self._advance()
        if self._version == version:
            return None
        return self._version, set(self._open)

    def _advance(self) -> None:
        """Turn half-open every open circuit whose cooldown is over."""
        if not self._open:
            return
        now = self._clock()
        circuits = self._circuits
        for model_id in [m for m in self._open if circuits[m].open_until <= now]:
            self._half_open(model_id, circuits[model_id])

    def _ejection_cap(self) -> float:
        if self._models is None:
            return math.inf
        return max(1, math.floor(self._policy.max_ejected_share * self._models()))

    def _cooldown(self, circuit: _Circuit, *, repeat: bool) -> float:
        policy = self._policy
        if not repeat or circuit.cooldown <= 0.0:
            return policy.cooldown_s
        return min(max(circuit.cooldown * 2, policy.cooldown_s), policy.max_cooldown_s)

    def _trip(self, model_id: str, circuit: _Circuit, cooldown_s: float) -> None:
        circuit.state = "open"
        circuit.cooldown = cooldown_s
        circuit.open_until = self._clock() + cooldown_s
        self._open.add(model_id)
        self._version += 1

    def _half_open(self, model_id: str, circuit: _Circuit) -> None:
        circuit.state = "half_open"
        circuit.probes = 0
        self._open.discard(model_id)
        self._version += 1

    def _close(self, circuit: _Circuit) -> None:
        circuit.state = "closed"
        circuit.closed_at = self._clock()
        circuit.consecutive = 0
        circuit.outcomes.clear()
        self._version += 1


class RetryBudget:
    """Caps retries (attempts after a request's first) at a fraction of recent traffic.

    Call `record_request()` once per incoming request and `try_spend()` before each retry; a retry
    is allowed while the retries in the last `window_s` seconds are fewer than
    `max(ratio * requests in the window, min_per_second * window_s)`. The floor lets a quiet
    router still fail over. Memory is a fixed number of time buckets (one per second for windows of
    10 s and more; see the module docstring), whatever the traffic.
    """

    _REQUESTS = 0  # kinds of event in the window
    _RETRIES = 1

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 5.0,
        window_s: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if not ratio >= 0.0:
            raise ValueError("ratio must not be negative")
        if not min_per_second >= 0.0:
            raise ValueError("min_per_second must not be negative")
        if not window_s > 0.0:
            raise ValueError("window_s must be positive")
        self._ratio = ratio
        self._floor = min_per_second * window_s
        self._clock = clock
        self._window = _SlidingCounts(window_s, kinds=2)

    def record_request(self) -> None:
        """Count an incoming request (call once per request, not per attempt)."""
        self._window.add(self._clock(), self._REQUESTS)

    def try_spend(self) -> bool:
        """Take one retry from the budget if there is one; False means: do not retry."""
        now = self._clock()
        window = self._window
        allowed = max(self._ratio * window.count(now, self._REQUESTS), self._floor)
        if window.count(now, self._RETRIES) >= allowed:
            return False
        window.add(now, self._RETRIES)
        return True
