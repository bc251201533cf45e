"""What the dashboard shows of a router running in this process, computed only when the
dashboard asks: the figures are read from the Prometheus registry that `/metrics` renders and
from the state of the router's parts, never counted a second time, so the dashboard adds
nothing to a Route or a completion."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import asdict
from typing import Any

from prometheus_client import REGISTRY

from service.core import RouterCore, catalogue_status, free_quota_status
from service.pb.router.v1 import router_pb2 as pb

QUANTILES = (0.5, 0.9, 0.99)
Labels = frozenset[tuple[str, str]]


class Samples:
    """One reading of every `router_*` sample of the registry `/metrics` renders, by name and
    labels."""

    def __init__(self) -> None:
        self._values: dict[str, dict[Labels, float]] = defaultdict(dict)
        for family in REGISTRY.collect():
            for sample in family.samples:
                if sample.name.startswith("router_"):
                    self._values[sample.name][frozenset(sample.labels.items())] = sample.value

    def total(self, name: str) -> float:
        return sum(self._values.get(name, {}).values())

    def by(self, name: str, label: str, **where: str) -> dict[str, float]:
        """`name` summed by the values of `label`, over the samples whose labels match `where`."""
        sums: dict[str, float] = defaultdict(float)
        for labels, value in self._values.get(name, {}).items():
            named = dict(labels)
            if label in named and all(named.get(k) == v for k, v in where.items()):
                sums[named[label]] += value
        return dict(sorted(sums.items(), key=lambda item: (-item[1], item[0])))

    def histogram(self, name: str) -> dict[str, Any]:
        """A histogram summed over its labels: its count and quantiles in seconds."""
        buckets = self.by(f"{name}_bucket", "le")
        cumulative = sorted((float(le), count) for le, count in buckets.items())
        return {
            "count": self.total(f"{name}_count"),
            **{f"p{round(q * 100)}_s": quantile(q, cumulative) for q in QUANTILES},
        }


def quantile(q: float, cumulative: list[tuple[float, float]]) -> float | None:
    """The q-quantile of a histogram's cumulative buckets (upper bound, count), interpolated
    within its bucket as Prometheus's `histogram_quantile` does; None without observations."""
    if not cumulative or cumulative[-1][1] == 0:
        return None
    rank = q * cumulative[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _rates(hits: float, misses: float) -> dict[str, float | None]:
    looked = hits + misses
    return {"hits": hits, "misses": misses, "hit_rate": hits / looked if looked else None}


def _lookups(
    samples: Samples, name: str, result: str, levels: tuple[str, ...]
) -> dict[str, dict[str, float | None]]:
    """A cache's hits, misses and hit rate by level, from its lookups counter."""
    rates = {}
    for level in levels:
        counted = samples.by(name, result, level=level)
        rates[level] = _rates(counted.get("hit", 0.0), counted.get("miss", 0.0))
    return rates


def traffic(samples: Samples) -> dict[str, Any]:
    return {
        "decisions": samples.total("router_decisions_total"),
        "decisions_by_mode": samples.by("router_decisions_total", "mode"),
        "decisions_by_model": samples.by("router_decisions_total", "model"),
        "completions": samples.total("router_completions_total"),
        "completions_by_outcome": samples.by("router_completions_total", "outcome"),
        "answered_by_model": samples.by("router_completions_total", "model", outcome="ok"),
        "failovers": samples.total("router_failovers_total"),
        "failovers_by_cause": samples.by("router_failovers_total", "cause"),
        "shed_requests": samples.total("router_shed_requests_total"),
    }


def latency(samples: Samples) -> dict[str, Any]:
    return {
        "decision": samples.histogram("router_decision_latency_seconds"),
        "ranking": samples.histogram("router_decision_duration_seconds"),
        "completion": samples.histogram("router_completion_duration_seconds"),
        "time_to_first_token": samples.histogram("router_time_to_first_token_seconds"),
    }


def caches(samples: Samples) -> dict[str, Any]:
    sticky = samples.by("router_sticky_sessions_total", "outcome")
    turns = sum(sticky.values())
    return {
        "decision_cache": _lookups(
            samples, "router_decision_cache_lookups_total", "outcome", ("l1", "l2")
        ),
        "response_cache": _lookups(
            samples, "router_response_cache_lookups_total", "result", ("memory", "redis")
        ),
        "response_cache_saved_usd": samples.total("router_response_cache_saved_usd_total"),
        "sticky_sessions": {
            "hits": sticky.get("hit", 0.0),
            "misses": sticky.get("miss", 0.0),
            "moves": sticky.get("move", 0.0),
            "hit_rate": sticky.get("hit", 0.0) / turns if turns else None,
        },
    }


def catalogue(
    status: pb.CatalogueStatus, samples: Samples | None, age_s: float | None
) -> dict[str, Any]:
    """The catalogue's status; with `samples`, its refreshes by outcome."""
    shown: dict[str, Any] = {
        "version": status.version,
        "models": status.models,
        "source": status.source,
        "age_s": age_s,
        "last_refresh_attempt": status.last_refresh_attempt,
        "last_refresh_success": status.last_refresh_success,
        "last_refresh_error": status.last_refresh_error,
        "consecutive_refresh_failures": status.consecutive_refresh_failures,
        "stale": status.stale,
        "routable": status.eligibility.routable,
        "excluded_by_rule": dict(status.eligibility.excluded_by_rule),
    }
    if samples is not None:
        shown["refreshes_by_outcome"] = samples.by("router_catalogue_refreshes_total", "outcome")
    return shown


def free_quota(status: pb.FreeQuotaStatus) -> dict[str, Any]:
    """The free variants' allowance, and what is left of it: the least of what the minute's
    and the day's limits leave (None: no limit known; 0 while free variants may not be called)."""
    limits = (
        (status.per_minute_limit, status.used_this_minute),
        (status.per_day_limit, status.used_today),
    )
    left: int | None = min((limit - used for limit, used in limits if limit > 0), default=None)
    if not status.enabled or status.blocked_until > time.time():
        left = 0
    return {
        **{field.name: getattr(status, field.name) for field in status.DESCRIPTOR.fields},
        "left": None if left is None else max(left, 0),
    }


def models(core: RouterCore, samples: Samples, free_left: int | None) -> list[dict[str, Any]]:
    """Every model of the catalogue: its circuit, what the router learned of its latency against
    the catalogue's figures, its traffic, and for a free variant what is left of the allowance."""
    runtime = core.runtime
    breakers, figures, router = runtime.breakers, runtime.figures, runtime.router
    now = time.time()
    resting = breakers.rest_left()
    decided = samples.by("router_decisions_total", "model")
    answered = samples.by("router_completions_total", "model", outcome="ok")
    shown = []
    for model in router.catalogue.models:
        learned = figures.learned(model.id)
        left = resting.get(model.id)
        shown.append(
            {
                "id": model.id,
                "circuit": breakers.state(model.id),
                "open_until": None if left is None else now + left,
                "learned_ttft_s": None if learned is None else learned.ttft_s,
                "learned_tokens_per_s": None if learned is None else learned.tokens_per_s,
                "catalogue_ttft_s": model.ttft_s,
                "catalogue_tokens_per_s": model.tokens_per_s,
                "catalogue_source": model.latency_source,
                "latency_source": router.latency_source(model.id),
                "decisions": decided.get(model.id, 0.0),
                "answered": answered.get(model.id, 0.0),
                "free_left": free_left if model.id.endswith(":free") else None,
            }
        )
    return shown


async def snapshot(core: RouterCore) -> dict[str, Any]:
    """Everything the dashboard shows of the router `core` runs."""
    runtime = core.runtime
    samples = Samples()
    spend = await runtime.ledger.status()
    quota = free_quota(free_quota_status(await runtime.free_quota.status()))
    return {
        "local": True,
        "generated_at": time.time(),
        "traffic": traffic(samples),
        "latency": latency(samples),
        "caches": caches(samples),
        "spend": {
            "day": spend.day.isoformat(),
            "spent_usd": spend.spent_usd,
            "reserved_usd": spend.reserved_usd,
            "limit_usd": spend.limit_usd,
            "since_start_usd": samples.total("router_spend_usd_total"),
        },
        "free_quota": quota,
        "catalogue": {
            **catalogue(catalogue_status(runtime.keeper.status()), samples, runtime.keeper.age_s()),
            "history": [asdict(event) for event in reversed(runtime.keeper.history)],
        },
        "models": models(core, samples, quota["left"]),
        "redis": runtime.records.redis_state,
    }


def remote(status: pb.RouterStatus) -> dict[str, Any]:
    """What a gateway in front of a remote router can show: the router's status. Its traffic,
    latency, caches, spend and models are in the router's own process."""
    success = status.catalogue.last_refresh_success
    return {
        "local": False,
        "unavailable": (
            "this gateway is in front of a router in another process (router gateway "
            "--target): that router's traffic, latency, caches, spend and models are counted "
            "there; see the dashboard of the gateway that runs beside it (router serve)"
        ),
        "generated_at": time.time(),
        "catalogue": catalogue(status.catalogue, None, time.time() - success if success else None),
        "free_quota": free_quota(status.free_quota),
        "redis": status.redis,
    }
