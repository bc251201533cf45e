"""Prometheus metrics of the router, in the process-wide default registry (routing decisions
and the decision cache have theirs in `service.decision_metrics`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.callers import current_caller

CATALOGUE_REFRESHES = Counter(
    "router_catalogue_refreshes",
    "Catalogue refreshes by outcome: replaced, unchanged, refused (implausible), failed, or "
    "shared (another replica's refresh, adopted).",
    ["outcome"],
)
CATALOGUE_MODELS = Gauge("router_catalogue_models", "Models in the catalogue being served.")
CATALOGUE_LAST_SUCCESS = Gauge(
    "router_catalogue_last_refresh_success_timestamp_seconds",
    "When a catalogue refresh last succeeded (unix seconds; 0 if never).",
)
CATALOGUE_STALE = Gauge(
    "router_catalogue_stale",
    "1 while refreshes fail and the catalogue is older than the refresh interval.",
)
ENDPOINT_STATS_FETCHES = Counter(
    "router_endpoint_stats_fetches",
    "Fetches of a model's endpoint stats from OpenRouter, by outcome.",
    ["outcome"],
)
LATENCY_CALIBRATION_RATIO = Gauge(
    "router_latency_calibration_ratio",
    "Factor putting the catalogue's latency priors on OpenRouter's endpoint scale (median "
    "endpoint figure / prior), by figure (ttft, tokens_per_s); NaN while there is none.",
    ["figure"],
)
LATENCY_CALIBRATION_MODELS = Gauge(
    "router_latency_calibration_models",
    "Models with both a measured latency prior and an endpoint figure, by figure.",
    ["figure"],
)
ENDPOINT_FIGURES_MODELS = Gauge(
    "router_endpoint_figures_models",
    "Models the router holds OpenRouter endpoint figures for.",
)

# Requests. Labels take bounded values only: `model` is a catalogue model id, the rest the
# router's own words; never request ids or what a caller typed (a custom mode's name, weights).
COMPLETIONS = Counter(
    "router_completions",
    "Completions that got a routing decision and ended, by model (the one that answered; for "
    "a failure, the last one called, else the decision's choice), outcome (ok, or the "
    "router's error code) and caller (the name of the caller's API key; anonymous without keys).",
    ["model", "outcome", "caller"],
)
_STICKY = Counter(
    "router_sticky_sessions",
    "Turns of sticky sessions by outcome: hit (the session's model kept), miss (a new or "
    "expired session: a new decision) or move (the session's model was not eligible, or failed "
    "in a completion: the session moves to the new model).",
    ["outcome"],
)
STICKY_SESSIONS = {outcome: _STICKY.labels(outcome=outcome) for outcome in ("hit", "miss", "move")}
FAILOVERS = Counter(
    "router_failovers",
    "Attempts after a failed one within a completion, by the failed attempt's outcome.",
    ["cause"],
)
CIRCUITS_CAPPED = Counter(
    "router_circuit_openings_capped",
    "Circuits that would have opened but did not, because the most models that may have an "
    "open circuit at once already had one, by model.",
    ["model"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    "router_time_to_first_token_seconds",
    "Time to the first token of the attempts that answered a streamed completion, by model.",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
)
COMPLETION_SECONDS = Histogram(
    "router_completion_duration_seconds",
    "Duration of the attempts that answered a completion, by model.",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
TOKENS = Counter(
    "router_tokens",
    "Tokens of the answered completions, by model, type (prompt, completion) and caller.",
    ["model", "type", "caller"],
)
SPEND = Counter(
    "router_spend_usd",
    "What the answered completions cost, in USD, by model and caller.",
    ["model", "caller"],
)
RESPONSE_CACHE_LOOKUPS = Counter(
    "router_response_cache_lookups",
    "Response-cache lookups by level (memory, then redis when memory misses) and result "
    "(hit, miss).",
    ["level", "result"],
)
RESPONSE_CACHE_SAVED = Counter(
    "router_response_cache_saved_usd",
    "What the answers served from the response cache cost when first asked, in USD, by caller.",
    ["caller"],
)
_SHARED_STATE = Counter(
    "router_shared_state_exchanges",
    "Exchanges of circuits, learned latency and catalogue with the other replicas through Redis, "
    "by outcome (ok, failed: Redis did not answer in time).",
    ["outcome"],
)
SHARED_STATE = {outcome: _SHARED_STATE.labels(outcome=outcome) for outcome in ("ok", "failed")}
_SHED = Counter(
    "router_shed_requests",
    "Requests refused at once because the router was at capacity (see service/shedding.py), "
    "by transport (grpc, http) and load (calls, completions).",
    ["transport", "load"],
)
# Every series from the start, at 0: an alert on its rate has a series to read.
SHED = {
    (transport, load): _SHED.labels(transport=transport, load=load)
    for transport in ("grpc", "http")
    for load in ("calls", "completions")
}
ANONYMOUS = "anonymous"


def answered(
    model: str,
    *,
    ttft_s: float | None,
    total_s: float,
    prompt_tokens: int,
    completion_tokens: int,
    cost_usd: float,
) -> None:
    """Account for the attempt that answered a completion; `ttft_s` only when it was seen."""
    caller = caller_label()
    COMPLETIONS.labels(model=model, outcome="ok", caller=caller).inc()
    if ttft_s is not None:
        TIME_TO_FIRST_TOKEN.labels(model=model).observe(ttft_s)
    COMPLETION_SECONDS.labels(model=model).observe(total_s)
    TOKENS.labels(model=model, type="prompt", caller=caller).inc(prompt_tokens)
    TOKENS.labels(model=model, type="completion", caller=caller).inc(completion_tokens)
    SPEND.labels(model=model, caller=caller).inc(cost_usd)


def failed(model: str, outcome: str) -> None:
    """Account for a completion that ended in an error."""
    COMPLETIONS.labels(model=model, outcome=outcome, caller=caller_label()).inc()


def response_cache_lookup(level: str, *, hit: bool) -> None:
    RESPONSE_CACHE_LOOKUPS.labels(level=level, result="hit" if hit else "miss").inc()


def caller_label() -> str:
    """The name of the calling key (configured names only: a bounded set), else anonymous."""
    return current_caller.get() or ANONYMOUS


class Running(Protocol):
    """A router running in this process, as the scrape-time gauges read it."""

    def open_circuits(self) -> int: ...

    def catalogue_age_s(self) -> float: ...


_CIRCUITS_OPEN = (
    "router_circuits_open",
    "Models whose circuit is open: left out of routing until their cooldown is over.",
)
_CATALOGUE_AGE = (
    "router_catalogue_age_seconds",
    "Seconds since the catalogue being served was fetched from OpenRouter or found unchanged "
    "there; before any refresh, since its snapshot date.",
)


class _RunningRouters(Collector):
    """Gauges computed at scrape time from the routers running in this process (one, but for
    tests): open circuits summed, the oldest catalogue's age. None while no router runs here
    (a gateway in front of a remote router). Read by the thread rendering /metrics, which is
    the routers' event loop."""

    def __init__(self) -> None:
        self._routers: list[Running] = []

    def add(self, router: Running) -> None:
        self._routers.append(router)

    def discard(self, router: Running) -> None:
        self._routers = [r for r in self._routers if r is not router]

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(*_CIRCUITS_OPEN)
        yield GaugeMetricFamily(*_CATALOGUE_AGE)

    def collect(self) -> Iterator[Metric]:
        routers = list(self._routers)
        if not routers:
            return
        circuits = sum(r.open_circuits() for r in routers)
        yield GaugeMetricFamily(*_CIRCUITS_OPEN, value=circuits)
        yield GaugeMetricFamily(*_CATALOGUE_AGE, value=max(r.catalogue_age_s() for r in routers))


RUNNING = _RunningRouters()
REGISTRY.register(RUNNING)
