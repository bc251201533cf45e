"""Keeps the router's catalogue current: periodic and on-demand refreshes from OpenRouter,
the last good catalogue kept on any failure, persistence for the next start, and endpoint
stats folded into the scorer's live figures."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service import catalogue as catalogue_files
from service import metrics
from service.catalogue import Catalogue
from service.config import Settings
from service.live_figures import LiveFigures
from service.openrouter import EndpointStats, OpenRouterClient, OpenRouterError
from service.priors import catalogue_from_listing
from service.router import ModelRouter
from service.scorer import MAX_TTFT_S, MIN_TOKENS_PER_S, MODE_WEIGHTS

log = logging.getLogger(__name__)

PERSISTED_NAME = "catalogue.json"


@dataclass(frozen=True, slots=True)
class CatalogueStatus:
    version: str
    models: int
    source: str
    last_refresh_attempt: float
    last_refresh_success: float
    last_refresh_error: str
    consecutive_refresh_failures: int
    stale: bool


def initial_catalogue(settings: Settings) -> tuple[Catalogue, str]:
    """The configured catalogue file, else the one the last good refresh saved, else the
    embedded snapshot; with where it came from. Operator changes are applied."""
    persisted = settings.state_dir / PERSISTED_NAME
    if settings.catalogue_path is not None:
        loaded, source = catalogue_files.load(settings.catalogue_path), "configured"
    elif persisted.is_file():
        try:
            loaded, source = catalogue_files.load(persisted), "persisted"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable saved catalogue %s: %s", persisted, exc)
            loaded, source = catalogue_files.load(), "embedded"
    else:
        loaded, source = catalogue_files.load(), "embedded"
    return loaded.with_operator_changes(settings.model_overrides, settings.extra_models), source


class CatalogueKeeper:
    def __init__(
        self,
        router: ModelRouter,
        figures: LiveFigures,
        client: OpenRouterClient | None,
        settings: Settings,
        source: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._router = router
        self._figures = figures
        self._client = client
        self._settings = settings
        self._clock = clock
        self._source = source
        self._loaded_at = clock()
        self._last_attempt = 0.0
        self._last_success = 0.0
        self._last_error = ""
        self._failures = 0
        self._lock = asyncio.Lock()
        metrics.CATALOGUE_MODELS.set(len(router.catalogue.models))

    @property
    def persisted_path(self) -> Path:
        return self._settings.state_dir / PERSISTED_NAME

    def status(self) -> CatalogueStatus:
        interval = self._settings.refresh_interval_s
        fresh_since = max(self._last_success, self._loaded_at)
        stale = self._failures > 0 and interval > 0 and self._clock() - fresh_since > interval
        metrics.CATALOGUE_STALE.set(1 if stale else 0)
        return CatalogueStatus(
            version=self._router.catalogue.version,
            models=len(self._router.catalogue.models),
            source=self._source,
            last_refresh_attempt=self._last_attempt,
            last_refresh_success=self._last_success,
            last_refresh_error=self._last_error,
            consecutive_refresh_failures=self._failures,
            stale=stale,
        )

    def _fail(self, outcome: str, reason: str) -> bool:
        self._failures += 1
        self._last_error = reason
        metrics.CATALOGUE_REFRESHES.labels(outcome=outcome).inc()
        log.warning(
            "catalogue refresh %s, keeping %s: %s", outcome, self._router.catalogue.version, reason
        )
        self.status()
        return False

    def _implausible(self, fresh: Catalogue) -> str | None:
        routable = [m for m in fresh.models if "text" in m.output_modalities]
        current = sum("text" in m.output_modalities for m in self._router.catalogue.models)
        if not routable:
            return "the listing has no text model"
        floor = self._settings.refresh_min_share * current
        if len(routable) < floor:
            return (
                f"the listing shrank from {current} to {len(routable)} text models "
                f"(below {self._settings.refresh_min_share:.0%})"
            )
        return None

    async def refresh(self) -> bool:
        """Fetch OpenRouter's catalogue; True when it replaced the one being served."""
        if self._client is None:
            return self._fail("failed", "no OpenRouter client is configured")
        async with self._lock:
            self._last_attempt = self._clock()
            try:
                listed = await self._client.list_models()
            except OpenRouterError as exc:
                return self._fail("failed", str(exc))
            today = dt.datetime.fromtimestamp(self._clock(), dt.UTC).date().isoformat()
            current = self._router.catalogue
            fresh = catalogue_from_listing(listed, current, today).with_operator_changes(
                self._settings.model_overrides, self._settings.extra_models
            )
            reason = self._implausible(fresh)
            if reason is not None:
                return self._fail("refused", reason)
            self._failures = 0
            self._last_error = ""
            self._last_success = self._clock()
            metrics.CATALOGUE_LAST_SUCCESS.set(self._last_success)
            if [m.to_json() for m in fresh.models] == [m.to_json() for m in current.models]:
                metrics.CATALOGUE_REFRESHES.labels(outcome="unchanged").inc()
                self.status()
                return False
            self._router.replace_catalogue(fresh)
            self._source = "refreshed"
            try:
                catalogue_files.save(fresh, self.persisted_path)
            except OSError as exc:
                log.warning("could not save the catalogue to %s: %s", self.persisted_path, exc)
            metrics.CATALOGUE_REFRESHES.labels(outcome="replaced").inc()
            metrics.CATALOGUE_MODELS.set(len(fresh.models))
            log.info(
                "catalogue %s replaced by %s (%d models)",
                current.version,
                fresh.version,
                len(fresh.models),
            )
            self.status()
            return True

    def _models_that_matter(self) -> list[str]:
        """The top candidates of every named mode, the models whose figures decide routing."""
        count = self._settings.endpoint_stats_models
        chosen: dict[str, None] = {}
        for name in MODE_WEIGHTS:
            for model_id in self._router.top_models(name, count):
                chosen[model_id] = None
        return list(chosen)

    async def refresh_endpoint_stats(self) -> int:
        """Fold OpenRouter's recent endpoint figures into the scorer; returns models updated."""
        client = self._client
        if client is None or not client.has_key or self._settings.endpoint_stats_models == 0:
            return 0
        gate = asyncio.Semaphore(self._settings.endpoint_stats_concurrency)
        spacing = 1.0 / self._settings.endpoint_stats_per_second
        start = asyncio.get_running_loop().time()

        async def fetch(position: int, model_id: str) -> tuple[str, list[EndpointStats]]:
            await asyncio.sleep(
                max(0.0, start + position * spacing - asyncio.get_running_loop().time())
            )
            async with gate:
                try:
                    endpoints = await client.endpoints(model_id)
                except OpenRouterError as exc:
                    metrics.ENDPOINT_STATS_FETCHES.labels(outcome="failed").inc()
                    log.info("no endpoint stats for %s: %s", model_id, exc)
                    return model_id, []
            metrics.ENDPOINT_STATS_FETCHES.labels(outcome="ok").inc()
            return model_id, endpoints

        fetched = await asyncio.gather(
            *(fetch(i, model_id) for i, model_id in enumerate(self._models_that_matter()))
        )
        updates = [
            folded for model_id, endpoints in fetched if (folded := fold(model_id, endpoints))
        ]
        self._figures.set_endpoint_figures(updates)
        return len(updates)

    async def run(self) -> None:
        """Refresh every `refresh_interval_s` until cancelled."""
        interval = self._settings.refresh_interval_s
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            await self.refresh()
            await self.refresh_endpoint_stats()


def fold(model_id: str, endpoints: list[EndpointStats]) -> dict[str, object] | None:
    """One model's live figures from its endpoints: medians over the healthy endpoints that
    report them, and the share of failed requests."""
    healthy = [e for e in endpoints if e.status == 0]
    ttft = [e.ttft_p50_s for e in healthy if e.ttft_p50_s is not None]
    throughput = [e.tokens_per_s_p50 for e in healthy if e.tokens_per_s_p50 is not None]
    uptime = [e.uptime for e in healthy if e.uptime is not None]
    if not ttft and not throughput:
        return None
    return {
        "id": model_id,
        "ttft_s": min(statistics.median(ttft), MAX_TTFT_S) if ttft else None,
        "tokens_per_s": max(statistics.median(throughput), MIN_TOKENS_PER_S)
        if throughput
        else None,
        "error_rate": 1.0 - statistics.fmean(uptime) if uptime else None,
    }
