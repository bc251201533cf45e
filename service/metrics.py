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
