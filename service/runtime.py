"""The router's parts wired together once, for the gRPC server, the CLI and the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from service import metrics
from service.catalogue_keeper import CatalogueKeeper, initial_catalogue
from service.completion.failover import Completer
from service.config import Settings
from service.decision_cache import DecisionCache
from service.decision_records import DecisionRecords
from service.free_counter import FreeCounter
from service.free_quota import FreeQuota
from service.live_figures import LiveFigures
from service.openrouter import OpenRouterClient
from service.redis_link import connect
from service.resilience import CircuitBreakers, RetryBudget
from service.response_cache import ResponseCache
from service.router import ModelRouter
from service.shared_state import SharedState
from service.spend import SpendLedger
from service.sticky import StickySessions


@dataclass(frozen=True)
class Runtime:
    router: ModelRouter
    keeper: CatalogueKeeper
    client: OpenRouterClient
    completer: Completer
    breakers: CircuitBreakers
    figures: LiveFigures
    free_quota: FreeQuota
    redis: Redis | None
    responses: ResponseCache
    records: DecisionRecords
    sticky: StickySessions
    decisions: DecisionCache
    shared: SharedState
    ledger: SpendLedger

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> Runtime:
        """`clock` drives circuit cooldowns, the retry budget's window and how long
        observations count; `wall_clock` (Unix seconds) the calendar of the daily spend limit
        and of the free-variant allowance. Tests pass their own."""
        catalogue, source = initial_catalogue(settings)
        router = ModelRouter(catalogue, settings)
        client = OpenRouterClient(
            settings.openrouter_base_url,
            settings.openrouter_api_key,
            timeout_s=settings.openrouter_timeout_s,
            # A connection for every completion admitted, beside the endpoint sweep's and a
            # catalogue fetch: none waits for one.
            max_connections=settings.max_concurrent_completions
            + settings.endpoint_stats_concurrency
            + 1,
        )
        breakers = CircuitBreakers(
            clock=clock,
            models=lambda: router.eligibility()[0],
            on_capped=lambda model: metrics.CIRCUITS_CAPPED.labels(model=model).inc(),
        )
        figures = LiveFigures(router, breakers, clock=clock)
        timeout_s = settings.redis_timeout_s
        prefix = settings.redis_key_prefix
        redis = connect(settings.redis_url, timeout_s=timeout_s) if settings.redis_url else None
        ledger = SpendLedger(
            settings.daily_spend_limit_usd,
            redis,
            key_prefix=prefix,
            timeout_s=timeout_s,
            clock=wall_clock,
        )
        free_quota = FreeQuota(
            router,
            client,
            FreeCounter(redis, key_prefix=prefix, timeout_s=timeout_s),
            enabled=settings.free_models,
            clock=wall_clock,
        )
        records = DecisionRecords(
            settings.redis_url,
            ttl_s=settings.decision_record_ttl_s,
            local_max=settings.decision_records_local,
            key_prefix=prefix,
            clock=wall_clock,
        )
        sticky = StickySessions(
            router,
            redis,
            enabled=settings.sticky_sessions,
            ttl_s=settings.sticky_session_ttl_s,
            timeout_s=timeout_s,
            key_prefix=prefix,
        )
        decisions = DecisionCache(router, settings)
        completer = Completer(
            router,
            client,
            figures,
            breakers,
            RetryBudget(clock=clock),
            ledger,
            free_quota,
            sticky,
            settings,
            records,
            decisions,
        )
        keeper = CatalogueKeeper(router, figures, client, settings, source, clock=wall_clock)
        shared = SharedState(
            redis,
            breakers,
            figures,
            keeper,
            interval_s=settings.shared_state_interval_s,
            timeout_s=timeout_s,
            key_prefix=prefix,
            clock=clock,
            wall_clock=wall_clock,
        )
        responses = ResponseCache(
            redis,
            by_default=settings.response_cache,
            ttl_s=settings.response_cache_ttl_s,
            max_entry_bytes=settings.response_cache_max_entry_bytes,
            memory_entries=settings.response_cache_memory_entries,
            timeout_s=timeout_s,
            key_prefix=prefix,
            clock=clock,
        )
        return cls(
            router,
            keeper,
            client,
            completer,
            breakers,
            figures,
            free_quota,
            redis,
            responses,
            records,
            sticky,
            decisions,
            shared,
            ledger,
        )

    def open_circuits(self) -> int:
        return len(self.breakers.open_models())

    def catalogue_age_s(self) -> float:
        return self.keeper.age_s()

    async def aclose(self) -> None:
        await self.shared.aclose()
        await self.free_quota.aclose()
        await self.client.aclose()
        await self.records.aclose()
        await self.decisions.aclose()
        if self.redis is not None:
            await self.redis.aclose()
