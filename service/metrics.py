"""Prometheus metrics of the router, in the process-wide default registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CATALOGUE_REFRESHES = Counter(
    "router_catalogue_refreshes",
    "Catalogue refreshes by outcome: replaced, unchanged, refused (implausible) or failed.",
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
