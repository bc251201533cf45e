"""The router's use cases, with no transport in them: the gRPC servicer, the REST gateway and the
CLI are adapters over `RouterCore`. Requests and answers are the `router.v1` messages; every
failure is a `RouterError` of a known kind."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar

from service import metrics
from service.catalogue_keeper import CatalogueStatus
from service.completion.failover import ROUTER_STOPPING
from service.decision_records import DECISION_ID
from service.errors import ErrorKind, RouterError, as_router_error
from service.explain import explain
from service.free_quota import FreeQuotaStatus
from service.listing import list_models
from service.pb.router.v1 import router_pb2 as pb
from service.response_cache import replay, streamed_answer
from service.router import wire_weights
from service.runtime import Runtime

log = logging.getLogger(__name__)

CUT_MESSAGE = "the router shut down before the completion finished"

P = ParamSpec("P")
R = TypeVar("R")


def _known(exc: Exception, what: str) -> RouterError:
    """The router's error for `exc`; anything unexpected is logged and becomes INTERNAL."""
    known = as_router_error(exc)
    if known is not None:
        return known
    log.error("%s failed", what, exc_info=exc)
    return RouterError(ErrorKind.INTERNAL, "internal error in the router")


def _errors(method: Callable[P, R]) -> Callable[P, R]:
    """Raise only RouterError from a synchronous use case."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except RouterError:
            raise
        except Exception as exc:
            raise _known(exc, method.__name__) from exc

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def _async_errors(method: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Raise only RouterError from an asynchronous use case."""

    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except RouterError:
            raise
        except Exception as exc:
            raise _known(exc, method.__name__) from exc

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def catalogue_status(status: CatalogueStatus) -> pb.CatalogueStatus:
    return pb.CatalogueStatus(
        version=status.version,
        models=status.models,
        source=status.source,
        last_refresh_attempt=status.last_refresh_attempt,
        last_refresh_success=status.last_refresh_success,
        last_refresh_error=status.last_refresh_error,
        consecutive_refresh_failures=status.consecutive_refresh_failures,
        stale=status.stale,
        eligibility=pb.Eligibility(
            models=status.eligibility.models,
            routable=status.eligibility.routable,
            excluded_by_rule=status.eligibility.excluded_by_rule,
        ),
        latency_calibration=pb.LatencyCalibration(
            ttft_ratio=status.latency_calibration.ttft.value,
            ttft_models=status.latency_calibration.ttft.models,
            throughput_ratio=status.latency_calibration.throughput.value,
            throughput_models=status.latency_calibration.throughput.models,
        ),
    )


def free_quota_status(status: FreeQuotaStatus) -> pb.FreeQuotaStatus:
    return pb.FreeQuotaStatus(
        enabled=status.enabled,
        per_minute_limit=status.per_minute_limit,
        per_day_limit=status.per_day_limit,
        used_this_minute=status.used_this_minute,
        used_today=status.used_today,
        blocked_until=status.blocked_until,
        blocked_reason=status.blocked_reason,
        tier=status.tier,
    )


class RouterCore:
    """Routing, explaining, listing the catalogue, its status and refresh, and completion with
    failover. `serving` turns false when the router starts to shut down; `cut_calls` ends the
    completions still running when its grace period is over."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.serving = True
        self._waiting: set[asyncio.Task[Any]] = set()
        self._cut = False
        self._router = runtime.router
        self._keeper = runtime.keeper
        self._completer = runtime.completer
        self._free_quota = runtime.free_quota
        self._responses = runtime.responses
        self._records = runtime.records
        self._sticky = runtime.sticky
        self._refresher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Keep the catalogue and the account's tier fresh in the background; show the
        circuits and the catalogue's age in the metrics."""
        self._refresher = asyncio.create_task(self._keeper.run(), name="catalogue-refresh")
        self._free_quota.keep_tier_fresh()
        self._records.start()
        self.runtime.shared.start()
        metrics.RUNNING.add(self.runtime)

    async def aclose(self) -> None:
        self.serving = False
        metrics.RUNNING.discard(self.runtime)
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.runtime.aclose()

    def cut_calls(self) -> int:
        """End every completion waiting for OpenRouter, now and from now on, with UNAVAILABLE;
        how many were waiting."""
        self._cut = True
        for task in self._waiting:
            task.cancel(ROUTER_STOPPING)
        return len(self._waiting)

    @contextlib.contextmanager
    def _cuttable(self) -> Iterator[None]:
        """A wait that `cut_calls` ends with UNAVAILABLE (by cancelling its task)."""
        if self._cut:
            raise RouterError(ErrorKind.UNAVAILABLE, CUT_MESSAGE)
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            yield
        except asyncio.CancelledError:
            # Cancelled by `cut_calls` alone: the call fails instead; else it stays cancelled.
            if self._cut and task.uncancel() == 0:
                raise RouterError(ErrorKind.UNAVAILABLE, CUT_MESSAGE) from None
            raise
        finally:
            self._waiting.discard(task)

    async def _until_cut(
        self, chunks: AsyncIterator[pb.CompleteChunk]
    ) -> AsyncGenerator[pb.CompleteChunk]:
        while True:
            with self._cuttable():
                chunk = await anext(chunks, None)
            if chunk is None:
                return
            yield chunk

    @_async_errors
    async def route(self, request: pb.RouteRequest) -> pb.RouteResponse:
        """The decision for `request` (from the decision cache when it holds it), led by its
        session's model (see service/sticky.py)."""
        response = await self._completer.ranked(request, self._sticky.key(request))
        self._records.decided(request, response)
        return response

    @_errors
    def explain(self, request: pb.ExplainRequest) -> pb.ExplainResponse:
        self._free_quota.before_routing()
        return explain(self._router, request)

    @_errors
    def list_models(self, request: pb.ListModelsRequest) -> pb.ListModelsResponse:
        """The catalogue, filtered and paged; ranked for `request.ranking` when it is set."""
        if request.HasField("ranking"):
            self._free_quota.before_routing()
        return list_models(self._router, request)

    @_async_errors
    async def get_decision(self, request: pb.GetDecisionRequest) -> pb.DecisionRecord:
        """A recent decision by its id, from this replica or any sharing its Redis."""
        if not DECISION_ID.fullmatch(request.decision_id):
            raise RouterError(
                ErrorKind.INVALID_REQUEST, "decision_id: expected 32 lowercase hex characters"
            )
        record = await self._records.get(request.decision_id)
        if record is None:
            raise RouterError(
                ErrorKind.NOT_FOUND, f"no decision {request.decision_id} (unknown or expired)"
            )
        return record

    @_async_errors
    async def status(self) -> pb.RouterStatus:
        return pb.RouterStatus(
            catalogue=catalogue_status(self._keeper.status()),
            free_quota=free_quota_status(await self._free_quota.status()),
            custom_modes={
                name: wire_weights(weights) for name, weights in self._router.custom_modes.items()
            },
            redis=self._records.redis_state,
        )

    @_async_errors
    async def refresh(self) -> pb.RefreshCatalogueResponse:
        """Fetch OpenRouter's catalogue now; a refused one keeps the last good one."""
        previous = self._router.catalogue.version
        replaced = await self._keeper.refresh()
        if replaced:
            await self._keeper.refresh_endpoint_stats()
        return pb.RefreshCatalogueResponse(
            replaced=replaced,
            previous_version=previous,
            catalogue=catalogue_status(self._keeper.status()),
        )

    @_async_errors
    async def complete(
        self, request: pb.CompleteRequest, timeout_s: float | None
    ) -> pb.CompleteResponse:
        """Route, call the best candidate and fail over down the ranking; `timeout_s` is what
        is left of the caller's deadline (None: the configured completion timeout). An answer
        in the response cache is given again instead (`service.response_cache`)."""
        lookup = self._responses.lookup(request, metrics.caller_label())
        if lookup is None:
            with self._cuttable():
                return await self._completer.complete(request, timeout_s)
        cached = await self._responses.get(lookup)
        if cached is not None:
            return cached
        with self._cuttable():
            answer = await self._completer.complete(request, timeout_s)
        await self._responses.put(lookup, answer)
        return answer

    async def stream(
        self, request: pb.CompleteRequest, timeout_s: float | None
    ) -> AsyncGenerator[pb.CompleteChunk]:
        """`complete`, streamed: the answer's pieces, then a summary."""
        try:
            lookup = self._responses.lookup(request, metrics.caller_label())
            cached = None if lookup is None else await self._responses.get(lookup)
            if cached is not None:
                for chunk in replay(cached):
                    yield chunk
                return
            deltas: list[str] = []
            async for chunk in self._until_cut(self._completer.stream(request, timeout_s)):
                if lookup is not None:
                    if chunk.HasField("summary"):
                        await self._responses.put(lookup, streamed_answer(deltas, chunk.summary))
                    else:
                        deltas.append(chunk.delta)
                yield chunk
        except Exception as exc:
            raise _known(exc, "stream") from exc
