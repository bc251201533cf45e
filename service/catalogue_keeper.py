"""Keeps the router's catalogue current: periodic and on-demand refreshes from OpenRouter,
the last good catalogue kept on any failure, persistence for the next start, and a rolling
sweep of endpoint stats (`service.endpoint_sweep`) folded into the scorer's live figures."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from service import catalogue as catalogue_files
from service import metrics
from service.catalogue import Catalogue
from service.config import Settings
from service.endpoint_sweep import EndpointSweep
from service.latency_calibration import Calibration
from service.live_figures import LiveFigures
from service.openrouter import EndpointFigures, ListedModel, OpenRouterClient, OpenRouterError
from service.priors import catalogue_from_listing
from service.router import ModelRouter

log = logging.getLogger(__name__)

PERSISTED_NAME = "catalogue.json"
HISTORY = 20  # refreshes kept in `CatalogueKeeper.history`


@dataclass(frozen=True, slots=True)
class Eligibility:
    """How many models of the catalogue a default chat route may consider, and why the rest
    may not (rule -> models it keeps out)."""

    models: int
    routable: int
    excluded_by_rule: Mapping[str, int]

    def __str__(self) -> str:
        excluded = ", ".join(f"{rule} {n}" for rule, n in sorted(self.excluded_by_rule.items()))
        return f"{self.routable} of {self.models} models routable" + (
            f"; excluded: {excluded}" if excluded else ""
        )


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
    eligibility: Eligibility
    latency_calibration: Calibration


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
    return operated(loaded, settings), source


def listed_catalogue(listed: list[ListedModel], current: Catalogue, now: float) -> Catalogue:
    """OpenRouter's listing as a catalogue dated `now` (Unix seconds), its models' figures
    carried over from `current` where known (`service.priors`)."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()
    return catalogue_from_listing(listed, current, today)


def operated(listing: Catalogue, settings: Settings) -> Catalogue:
    """The catalogue with the operator's overrides and extra models."""
    return listing.with_operator_changes(settings.model_overrides, settings.extra_models)


def _day_start(date: str) -> float | None:
    """The Unix time a `YYYY-MM-DD` day starts, in UTC; None for anything else."""
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        return None
    return dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()


@dataclass(frozen=True, slots=True)
class Refreshed:
    """OpenRouter's listing as a refresh turned it into a catalogue, before the operator's
    changes (each replica applies its own), and when it was fetched (Unix seconds)."""

    listing: Catalogue
    fetched_at: float


@dataclass(frozen=True, slots=True)
class RefreshEvent:
    """One refresh: when (Unix seconds), its outcome as `router_catalogue_refreshes_total`
    counts it, the catalogue served after it, and why it failed or was refused."""

    at: float
    outcome: str
    version: str
    reason: str = ""


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
        self._snapshot_taken = _day_start(router.catalogue.snapshot_date) or self._loaded_at
        self._last_attempt = 0.0
        self._last_success = 0.0
        self._last_error = ""
        self._failures = 0
        self.history: deque[RefreshEvent] = deque(maxlen=HISTORY)
        """The latest refreshes, oldest first."""
        self.refreshed: Refreshed | None = None
        """The latest catalogue this replica fetched or adopted from another."""
        self._lock = asyncio.Lock()
        self._sweep = EndpointSweep(router, client, settings) if client is not None else None
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
            eligibility=Eligibility(*self._router.eligibility()),
            latency_calibration=self._figures.calibration,
        )

    def age_s(self) -> float:
        """Seconds since the catalogue being served was fetched from OpenRouter or found
        unchanged there; before any refresh, since its snapshot date."""
        return self._clock() - (self._last_success or self._snapshot_taken)

    def _fail(self, outcome: str, reason: str) -> bool:
        self._failures += 1
        self._last_error = reason
        self._counted(outcome, reason)
        log.warning(
            "catalogue refresh %s, keeping %s: %s", outcome, self._router.catalogue.version, reason
        )
        self.status()
        return False

    def _counted(self, outcome: str, reason: str = "") -> None:
        metrics.CATALOGUE_REFRESHES.labels(outcome=outcome).inc()
        self.history.append(
            RefreshEvent(self._clock(), outcome, self._router.catalogue.version, reason)
        )

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
            current = self._router.catalogue
            listing = listed_catalogue(listed, current, self._clock())
            fresh = operated(listing, self._settings)
            reason = self._implausible(fresh)
            if reason is not None:
                return self._fail("refused", reason)
            self._failures = 0
            self._last_error = ""
            self._last_success = self._clock()
            metrics.CATALOGUE_LAST_SUCCESS.set(self._last_success)
            if [m.to_json() for m in fresh.models] == [m.to_json() for m in current.models]:
                self._counted("unchanged")
                self.status()
                return False
            self.refreshed = Refreshed(listing, self._last_success)
            self._replace(fresh, "refreshed")
            self._counted("replaced")
            return True

    def adopt(self, shared: Refreshed) -> bool:
        """Serve a catalogue another replica refreshed, when it was fetched after the one being
        served; True when it replaced it."""
        if shared.fetched_at <= max(self._last_success, self._snapshot_taken):
            return False
        self._last_success = shared.fetched_at
        self._failures = 0
        self._last_error = ""
        metrics.CATALOGUE_LAST_SUCCESS.set(shared.fetched_at)
        fresh = operated(shared.listing, self._settings)
        if fresh.version == self._router.catalogue.version:
            return False
        self.refreshed = shared
        self._replace(fresh, "shared")
        self._counted("shared")
        return True

    def _replace(self, fresh: Catalogue, source: str) -> None:
        current = self._router.catalogue
        self._router.replace_catalogue(fresh)
        self._figures.recalibrate()
        self._source = source
        try:
            catalogue_files.save(fresh, self.persisted_path)
        except OSError as exc:
            log.warning("could not save the catalogue to %s: %s", self.persisted_path, exc)
        metrics.CATALOGUE_MODELS.set(len(fresh.models))
        log.info(
            "catalogue %s replaced by %s (%s): %s",
            current.version,
            fresh.version,
            source,
            self.status().eligibility,
        )

    def _endpoint_sweep(self) -> EndpointSweep | None:
        """The sweep, when endpoint stats are fetched at all (they need the API key)."""
        if self._client is None or not self._client.has_key:
            return None
        return self._sweep if self._settings.endpoint_stats_models > 0 else None

    def _take(self, fetched: Mapping[str, EndpointFigures | None]) -> int:
        self._figures.update_endpoint_figures(fetched)
        return sum(figures is not None for figures in fetched.values())

    async def refresh_endpoint_stats(self) -> int:
        """Endpoint stats of the models that decide routing (the top of each mode) into the live
        figures now, as after an on-demand refresh; returns how many models got figures."""
        sweep = self._endpoint_sweep()
        return 0 if sweep is None else self._take(await sweep.sweep_top())

    async def sweep_endpoint_stats(self) -> int:
        """The next slice of the rolling sweep over every routable model into the live figures
        (each periodic refresh); returns how many models got figures."""
        sweep = self._endpoint_sweep()
        return 0 if sweep is None else self._take(await sweep.sweep())

    async def run(self) -> None:
        """Refresh every `refresh_interval_s` until cancelled."""
        interval = self._settings.refresh_interval_s
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            await self.refresh()
            await self.sweep_endpoint_stats()
