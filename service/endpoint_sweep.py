"""A rolling sweep of OpenRouter's endpoint stats over every model a default route may use.

A round visits each such model once (the scorer's ranking for the default request, so its rules
decide what is routable), the current top `endpoint_stats_models` of each mode first, then the
rest in ranking order; a slice that finds every model of the round visited starts the next
round. Each periodic refresh takes one slice: as many models as
`endpoint_stats_per_second x refresh_interval_s` requests allow (at least one model), so that a
cycle's fetches fit in one refresh interval at the configured pace (with the defaults, 3,000
requests: every routable model each cycle); without periodic refreshes (`refresh_interval_s` 0)
a slice is the rest of the round. An on-demand refresh fetches only the top models, at once.
Request starts are at least 1 / `endpoint_stats_per_second` apart across all fetches, with at
most `endpoint_stats_concurrency` in flight.

A variant id that shares its base model's figures (`:free`, `:extended`) is looked up as it is;
OpenRouter answers 404 for `:free` ids, and then its base model's endpoints are used. A model's
list holds the endpoints of its `:free` variant too, those that cost nothing: a `:free` id takes
its figures from those, any other id from the rest (each from all of them when it has none of
its own). A variant id counts as two requests in a slice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterable

from service import metrics
from service.config import Settings
from service.openrouter import (
    EndpointFigures,
    EndpointStats,
    OpenRouterClient,
    OpenRouterError,
    model_figures,
    variant_endpoints,
)
from service.openrouter.models import INHERITING_SUFFIXES, split_variant
from service.router import ModelRouter
from service.scorer import MODE_WEIGHTS, NoEligibleModel

log = logging.getLogger(__name__)

NOT_FOUND = 404
FREE = "free"


class Pacer:
    """Spaces the moments its callers go on at least 1 / `per_second` apart."""

    def __init__(self, per_second: float) -> None:
        self._spacing = 1.0 / per_second
        self._next = -math.inf

    async def wait(self) -> None:
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + self._spacing
        await asyncio.sleep(slot - now)


def requests_for(model_id: str) -> int:
    """The most requests the model's endpoint stats can take."""
    return 2 if split_variant(model_id)[1] in INHERITING_SUFFIXES else 1


class EndpointSweep:
    def __init__(self, router: ModelRouter, client: OpenRouterClient, settings: Settings) -> None:
        self._router = router
        self._client = client
        self._settings = settings
        self._visited: set[str] = set()
        self._pacer = Pacer(settings.endpoint_stats_per_second)
        self._gate = asyncio.Semaphore(settings.endpoint_stats_concurrency)

    @property
    def requests_per_slice(self) -> int | None:
        """At most this many requests per slice; None: the rest of the round."""
        interval = self._settings.refresh_interval_s
        if interval <= 0:
            return None
        return max(1, math.floor(self._settings.endpoint_stats_per_second * interval))

    def _ranked(self, modes: Iterable[str], count: int) -> list[str]:
        chosen: dict[str, None] = {}
        with contextlib.suppress(NoEligibleModel):  # nothing is routable now
            for mode in modes:
                chosen.update(dict.fromkeys(self._router.top_models(mode, count)))
        return list(chosen)

    def top(self) -> list[str]:
        """The models that decide routing: the top `endpoint_stats_models` of each mode."""
        return self._ranked(MODE_WEIGHTS, self._settings.endpoint_stats_models)

    def order(self) -> list[str]:
        """Every model a default route may use, the top models of each mode first."""
        everything = self._ranked([self._settings.default_mode], len(self._router.catalogue.models))
        return list(dict.fromkeys([*self.top(), *everything]))

    def next_slice(self) -> list[str]:
        """The models to fetch now: the next ones of the round the request budget allows."""
        order = self.order()
        pending = [m for m in order if m not in self._visited]
        if not pending:
            self._visited.clear()
            pending = order
        budget = self.requests_per_slice
        chosen: list[str] = []
        spent = 0
        for model_id in pending:
            cost = requests_for(model_id)
            if chosen and budget is not None and spent + cost > budget:
                break
            chosen.append(model_id)
            spent += cost
        self._visited.update(chosen)
        return chosen

    async def sweep(self) -> dict[str, EndpointFigures | None]:
        """Fetch the next slice of the round."""
        return await self.fetch(self.next_slice())

    async def sweep_top(self) -> dict[str, EndpointFigures | None]:
        """Fetch the top models now (e.g. after the catalogue changed), outside the order of
        the round; they count as visited in it."""
        chosen = self.top()
        self._visited.update(chosen)
        return await self.fetch(chosen)

    async def fetch(self, chosen: list[str]) -> dict[str, EndpointFigures | None]:
        """Each model fetched maps to its figures (None when it reports none); a model whose
        fetch failed is left out."""
        fetched = await asyncio.gather(*(self._endpoints(m) for m in chosen))
        return {
            model_id: model_figures(endpoints)
            for model_id, endpoints in zip(chosen, fetched, strict=True)
            if endpoints is not None
        }

    async def _get(self, model_id: str) -> list[EndpointStats]:
        await self._pacer.wait()
        return await self._client.endpoints(model_id)

    async def _lookup(self, model_id: str) -> list[EndpointStats]:
        """The endpoints serving the model: its id as it is, else (404 for a variant) its base
        model's."""
        base, suffix = split_variant(model_id)
        try:
            endpoints = await self._get(model_id)
        except OpenRouterError as exc:
            if exc.status != NOT_FOUND or suffix not in INHERITING_SUFFIXES:
                raise
            endpoints = await self._get(base)
        return variant_endpoints(endpoints, free=suffix == FREE)

    async def _endpoints(self, model_id: str) -> list[EndpointStats] | None:
        async with self._gate:
            try:
                endpoints = await self._lookup(model_id)
            except OpenRouterError as exc:
                metrics.ENDPOINT_STATS_FETCHES.labels(outcome="failed").inc()
                log.info("no endpoint stats for %s: %s", model_id, exc)
                return None
        metrics.ENDPOINT_STATS_FETCHES.labels(outcome="ok").inc()
        return endpoints
