"""The completion path: rank the candidates (or take the ones the caller named), then try them
in order within one deadline.

Each candidate passes its circuit breaker, a slot of the free-variant allowance (free models
only), the retry budget (after the first attempt) and a spend reservation before it is called.
Retryable failures move on to the next candidate; a context-length error moves on to a
candidate with a larger window; bad requests, a bad key, missing credits and moderation fail at
once. Every attempt is recorded, measured and fed back into the scorer's live figures and the
model's circuit, except OpenRouter's refusal of a free variant for the account's allowance:
that is no verdict on the model, and the model's paid sibling is tried next.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field

from service import metrics
from service.catalogue import ModelRecord
from service.completion.json_text import dump_json
from service.completion.request import Prepared, prepare
from service.config import Settings
from service.decision_cache import DecisionCache
from service.decision_records import DecisionRecords
from service.errors import ErrorKind, RouterError, unroutable
from service.free_quota import FreeQuota
from service.live_figures import LiveFigures
from service.openrouter import OpenRouterClient
from service.openrouter.chat import (
    ChatResult,
    Failure,
    MidStreamError,
    StreamDelta,
    StreamEnd,
    UpstreamError,
    Usage,
)
from service.pb.router.v1 import router_pb2 as pb
from service.resilience import CircuitBreakers, RetryBudget
from service.router import ModelRouter, mode_label
from service.scorer import NoEligibleModel
from service.spend import MAX_AMOUNT_USD, Reservation, SpendLedger
from service.sticky import StickySessions

FAIL_FAST = {
    Failure.BAD_REQUEST: (ErrorKind.REFUSED_BY_MODEL, "the model refused the request"),
    Failure.AUTH: (ErrorKind.UPSTREAM_AUTH, "OpenRouter refused the router's API key"),
    Failure.CREDITS: (ErrorKind.OUT_OF_CREDITS, "the OpenRouter account is out of credits"),
    Failure.MODERATION: (ErrorKind.MODERATION, "moderation refused the request"),
    Failure.MISCONFIGURED: (ErrorKind.MISCONFIGURED, "the router is misconfigured"),
}
# Outcomes of candidates skipped without a call (a call refused by OpenRouter has a status).
NOT_CALLED = frozenset({"circuit_open", "free_quota"})
FREE_SUFFIX = ":free"
# The router's deadline ends this much before the caller's (at most), so that the router's own
# timeout, not the caller's, ends a late attempt: it is then counted against the model, and the
# caller hears which attempts ran out of time.
DEADLINE_MARGIN_S = 0.25
DEADLINE_MARGIN_SHARE = 0.05
# The message of the cancellation with which the router ends the calls still running when it
# shuts down: no verdict on the models called.
ROUTER_STOPPING = "the router is stopping"
# Without the caller's max_tokens, a completion's spend is held for this many times the output
# the request's profile expects (at most the model's maximum output): a model's maximum would
# refuse most requests under a small daily limit, and a long answer settles at its real cost.
OUTPUT_HELD_FACTOR = 4


def _causes(attempts: list[pb.Attempt]) -> str:
    return "; ".join(
        f"{a.model}: {a.outcome} ({a.error})" if a.error else f"{a.model}: {a.outcome}"
        for a in attempts
    )


def _add_tool_calls(message: pb.ChatMessage, calls: object) -> None:
    """OpenAI-style tool calls (a list of objects) onto a message as JSON text; anything else
    is ignored."""
    objects = (
        [dict(c) for c in calls if isinstance(c, Mapping)]
        if isinstance(calls, list | tuple)
        else []
    )
    if objects:
        message.tool_calls_json = dump_json(objects)


def _head(call: _Call, model_id: str, meta: tuple[str, str, str]) -> pb.StreamHead:
    """Who answers a stream, as its first output arrives; `meta` is (id, model, provider)."""
    return pb.StreamHead(
        id=meta[0],
        model=meta[1] or model_id,
        provider=meta[2],
        decision_id=call.decision.decision_id,
        catalogue_version=call.decision.catalogue_version,
        attempts=len(call.attempts) + 1,
    )


def _called(call: _Call) -> list[pb.Attempt]:
    """Attempts that called a model (a candidate skipped for its open circuit or for the
    free-variant allowance is not one)."""
    return [a for a in call.attempts if a.http_status > 0 or a.outcome not in NOT_CALLED]


@dataclass
class _Call:
    """One completion in flight: its candidates, deadline and what happened so far."""

    prepared: Prepared
    decision: pb.RouteResponse
    deadline: float
    # The models to try, in order: the ranking, with a paid sibling moved up after its free
    # variant was refused; `position` is the one under way.
    candidates: list[str]
    position: int = 0
    attempts: list[pb.Attempt] = field(default_factory=list)
    # Models must have a larger window than this after a context-length error.
    min_context: int = 0
    # Whether the attempt under way is on the last candidate, and whether the next turn
    # tries the same model again (after waiting out its Retry-After).
    last: bool = False
    again: bool = False
    # The caller named the candidates (`CompleteRequest.models`): no other model is tried.
    named: bool = False
    # Where the request's sticky session is kept (None: no session).
    session: str | None = None

    def expected_s(self, model_id: str, *, first_token: bool) -> float | None:
        """What the decision expects the model to take: to its first token, or to the end."""
        for c in self.decision.candidates:
            if c.model == model_id:
                expected = c.ttft_seconds if first_token else c.expected_latency_seconds
                return expected if expected > 0 else None
        return None


class Completer:
    def __init__(
        self,
        router: ModelRouter,
        client: OpenRouterClient,
        figures: LiveFigures,
        breakers: CircuitBreakers,
        retries: RetryBudget,
        ledger: SpendLedger,
        free_quota: FreeQuota,
        sticky: StickySessions,
        settings: Settings,
        records: DecisionRecords,
        decisions: DecisionCache,
    ) -> None:
        self._router = router
        self._decisions = decisions
        self._client = client
        self._figures = figures
        self._breakers = breakers
        self._retries = retries
        self._ledger = ledger
        self._free = free_quota
        self._sticky = sticky
        self._settings = settings
        self._records = records
        # Deadlines and measurements run on real time, whatever clock drives the circuits.
        self._clock = time.monotonic

    async def _economise(self, route: pb.RouteRequest) -> None:
        """Near the daily limit under the `cheaper` policy: lean the weights halfway toward
        cost and cap the request's expected cost at what is left of the budget."""
        limit = self._settings.daily_spend_limit_usd
        if self._settings.spend_policy != "cheaper" or limit is None:
            return
        status = await self._ledger.status()
        used = status.spent_usd + status.reserved_usd
        if used < self._settings.cheaper_from_share * limit:
            return
        latency, cost, quality = self._router.weights(route)
        total = latency + cost + quality
        route.weights.CopyFrom(
            pb.Weights(
                latency=latency / total / 2,
                cost=cost / total / 2 + 0.5,
                quality=quality / total / 2,
            )
        )
        left = max(limit - used, 0.0)
        if not route.constraints.HasField("max_request_cost_usd") or (
            route.constraints.max_request_cost_usd > left
        ):
            route.constraints.max_request_cost_usd = left

    async def _begin(self, request: pb.CompleteRequest, timeout_s: float | None) -> _Call:
        prepared = prepare(request, self._settings.default_output_tokens)
        if not self._client.has_key:
            raise RouterError(
                ErrorKind.MISCONFIGURED,
                "the router has no OpenRouter API key: set OPENROUTER_API_KEY to complete",
            )
        self._retries.record_request()
        named = list(dict.fromkeys(request.models))
        # The session of the caller's policy, before economising turns it into weights.
        session = None if named else self._sticky.key(prepared.route)
        decision = await self._decide(prepared.route, named, session)
        self._records.decided(request.routing, decision, completion=True)
        if timeout_s is None:
            budget = self._settings.completion_timeout_s
        else:
            budget = timeout_s - min(DEADLINE_MARGIN_S, timeout_s * DEADLINE_MARGIN_SHARE)
        candidates = [c.model for c in decision.candidates]
        return _Call(
            prepared,
            decision,
            self._clock() + budget,
            candidates,
            named=bool(named),
            session=session,
        )

    async def _decide(
        self, route: pb.RouteRequest, named: list[str], session: str | None
    ) -> pb.RouteResponse:
        """The candidates: the models the caller named, else the ranking, led by the
        session's model."""
        if named:
            unknown = [m for m in named if self._router.model(m) is None]
            if unknown:
                raise RouterError(
                    ErrorKind.NOT_FOUND, f"not in the catalogue: {', '.join(map(repr, unknown))}"
                )
            return self._router.named(route, named)
        route.top_k = max(route.top_k, self._settings.max_attempts)
        mode = mode_label(route)  # the caller's, before economising turns it into weights
        await self._economise(route)
        return await self.ranked(route, session, mode)

    async def ranked(
        self, route: pb.RouteRequest, session: str | None, mode: str | None = None
    ) -> pb.RouteResponse:
        """The decision for `route` on the figures, circuits and free allowance of now (from
        the decision cache when it holds it), led by the session's model; counted under
        `mode` (by default the request's own)."""
        self._figures.before_routing()
        self._free.before_routing()
        try:
            decision = await self._decisions.route(route, mode)
        except NoEligibleModel as exc:
            raise unroutable(exc, self._breakers) from None
        return await self._sticky.route(route, session, decision)

    def _record(self, call: _Call, model: str, outcome: str, **fields: object) -> pb.Attempt:
        attempt = pb.Attempt(model=model, outcome=outcome, **fields)  # type: ignore[arg-type]
        call.attempts.append(attempt)
        return attempt

    def _fail(
        self, call: _Call, kind: ErrorKind, message: str, *, retry_after_s: float | None = None
    ) -> RouterError:
        """The error that ends the call, counted as the completion's outcome."""
        called = _called(call)
        model = called[-1].model if called else call.decision.model
        metrics.failed(model, kind.value)
        self._records.finished(call.decision.decision_id, call.attempts, "")
        return RouterError(
            kind,
            f"{message}; attempts: {_causes(call.attempts)}",
            call.attempts,
            retry_after_s=retry_after_s,
        )

    def _exhausted(self, call: _Call) -> RouterError:
        """The error when no candidate is left: the deadline's, if the last one used it up.
        When every candidate was resting (circuit open), it says when the first may be tried
        again, as a route with every fitting model resting does."""
        if self._clock() >= call.deadline:
            return self._fail(call, ErrorKind.DEADLINE, "the deadline passed")
        resting = [a.model for a in call.attempts if a.outcome == "circuit_open"]
        if resting and len(resting) == len(call.attempts):
            wait_s = self._breakers.next_probe_in(resting)
            if wait_s > 0:
                return self._fail(
                    call,
                    ErrorKind.UNAVAILABLE,
                    f"every candidate rests after failures (circuit open); the first may be "
                    f"tried again in {wait_s:.1f} s",
                    retry_after_s=wait_s,
                )
        return self._fail(call, ErrorKind.UNAVAILABLE, "every candidate failed")

    def _held(self, call: _Call, model: ModelRecord) -> tuple[float, int, int]:
        """What to hold of the daily limit for the attempt: (USD, prompt tokens, output
        tokens), for the caller's max_tokens, else OUTPUT_HELD_FACTOR times the expected
        output."""
        # The request's own profile: the decision's may be rounded (see DecisionCache).
        profile = self._router.profile(call.prepared.route)
        output = call.prepared.max_output_tokens or OUTPUT_HELD_FACTOR * profile.output_tokens
        if model.max_output_tokens:
            output = min(output, model.max_output_tokens)
        usd = profile.prompt_tokens * max(model.prompt_price, 0.0) + output * max(
            model.completion_price, 0.0
        )
        return usd, profile.prompt_tokens, output

    def _cost(self, model: ModelRecord, usage: Usage | None) -> float:
        if usage is None:
            return 0.0
        if usage.cost_usd is not None:
            billed = usage.cost_usd
        else:
            billed = usage.prompt_tokens * model.prompt_price + usage.completion_tokens * (
                model.completion_price
            )
        return min(max(billed, 0.0), MAX_AMOUNT_USD) if math.isfinite(billed) else 0.0

    async def _admit(self, call: _Call, index: int, model_id: str) -> Reservation | None:
        """Checks before calling a candidate; None when it must be skipped."""
        model = self._router.model(model_id)
        if model is None or model.context_length <= call.min_context:
            return None
        if not self._breakers.acquire(model_id):
            self._record(call, model_id, "circuit_open")
            return None
        if model.free_variant and not await self._free.take():
            self._breakers.release(model_id)
            self._record(call, model_id, "free_quota", error=self._free.why_not())
            return None
        if index > 0 and not self._retries.try_spend():
            self._breakers.release(model_id)
            raise self._fail(
                call, ErrorKind.UNAVAILABLE, "the retry budget is spent: not failing over"
            )
        held, prompt, output = self._held(call, model)
        reservation = await self._ledger.reserve(held)
        if reservation is None:
            self._breakers.release(model_id)
            status = await self._ledger.status()
            raise self._fail(
                call,
                ErrorKind.SPEND_LIMIT,
                f"daily spend limit reached: {status.spent_usd:.4f} USD spent today and "
                f"{status.reserved_usd:.4f} held by calls in flight, of {status.limit_usd} USD; "
                f"this call could cost up to {held:.4f} USD on {model_id} ({prompt} prompt "
                f"tokens, up to {output} output tokens: set max_tokens to hold less)",
            )
        return reservation

    async def _turns(self, call: _Call) -> AsyncGenerator[tuple[str, Reservation]]:
        """The candidates in order, each admitted and holding its spend reservation; a
        candidate comes again when its failure asked for that (`call.again`)."""
        while call.position < len(call.candidates):
            model_id = call.candidates[call.position]
            called = _called(call)
            reservation = await self._admit(call, len(called), model_id)
            if reservation is None:
                call.position += 1
                continue
            if called:
                metrics.FAILOVERS.labels(cause=called[-1].outcome).inc()
            call.last, call.again = call.position == len(call.candidates) - 1, False
            yield model_id, reservation
            if not call.again:
                call.position += 1

    async def _abandon(self, model_id: str, reservation: Reservation) -> None:
        """The attempt ended without a verdict on the model (cancelled, or the router failed)."""
        self._breakers.release(model_id)
        await self._ledger.release(reservation)

    async def _cancelled(
        self,
        call: _Call,
        model_id: str,
        reservation: Reservation,
        waited_s: float,
        cancelled: asyncio.CancelledError,
        *,
        first_token: bool = False,
    ) -> None:
        """The caller went away (its deadline, or it hung up) while the model was called. Once
        the model is later than it was expected to be, that is a timeout whoever's clock ran
        out, and it counts against the model; before that, or when the router itself is
        stopping, it is no verdict."""
        expected = call.expected_s(model_id, first_token=first_token)
        if ROUTER_STOPPING in cancelled.args or expected is None or waited_s < expected:
            await self._abandon(model_id, reservation)
            return
        await self._ledger.release(reservation)
        self._breakers.record(model_id, False)
        self._figures.observe(model_id)
        self._record(
            call, model_id, "timeout", error="the caller gave up first", total_seconds=waited_s
        )
        metrics.failed(model_id, "timeout")
        self._records.finished(call.decision.decision_id, call.attempts, "")

    def _attempt_timeout(self, call: _Call, cap_s: float, *, first_token: bool) -> float:
        """What the attempt under way may take, at most `cap_s`: what is left of the deadline,
        less twice what each later candidate is expected to take (so that a healthy one still
        has its turn after hanging ones), but never less than half of what is left; and all
        of it when what would be kept could not serve the next candidate."""
        left = self._left(call)
        later = [
            call.expected_s(model_id, first_token=first_token)
            for model_id in call.candidates[call.position + 1 :]
        ]
        kept = min(sum(2 * expected for expected in later if expected is not None), left / 2)
        if later and later[0] is not None and kept < later[0]:
            kept = 0.0
        return min(left - kept, cap_s)

    async def _failed(
        self,
        call: _Call,
        model_id: str,
        reservation: Reservation,
        error: UpstreamError,
        started: float,
    ) -> None:
        """Account for a failed attempt and decide the next turn; raises when the call must
        stop."""
        await self._ledger.release(reservation)
        model = self._router.model(model_id)
        refused_free = error.free_limit if model is not None and model.free_variant else None
        self._record(
            call,
            model_id,
            "free_quota" if refused_free else error.outcome,
            http_status=error.status,
            error=str(error),
            total_seconds=self._clock() - started,
        )
        if refused_free is not None:  # the account's allowance, not the model, refused it
            self._breakers.release(model_id)
            await self._free.refused(refused_free)
            self._paid_sibling_next(call, model_id)
            return
        if error.kind is Failure.RETRYABLE:
            self._breakers.record(model_id, False)
            self._figures.observe(model_id)
        else:
            self._breakers.release(model_id)
        if error.kind in FAIL_FAST:
            kind, message = FAIL_FAST[error.kind]
            raise self._fail(call, kind, f"{message}: {error}")
        if error.kind is Failure.CONTEXT_LENGTH:
            call.min_context = max(call.min_context, model.context_length if model else 0)
        call.again = await self._wait_retry_after(call, error)

    def _paid_sibling_next(self, call: _Call, model_id: str) -> None:
        """Move the paid sibling of a refused free variant (its id without `:free`) to the next
        turn, when the router chose the candidates, the catalogue has it, the request's
        constraints allow it and it has not had its turn yet."""
        sibling = model_id.removesuffix(FREE_SUFFIX)
        if call.named or sibling == model_id or sibling in call.candidates[: call.position + 1]:
            return
        if self._router.model(sibling) is None or not self._allows(call, sibling):
            return
        if sibling in call.candidates:
            call.candidates.remove(sibling)
        call.candidates.insert(call.position + 1, sibling)

    def _allows(self, call: _Call, model_id: str) -> bool:
        """Whether the request's constraints (as the scorer reads them) let `model_id` through."""
        try:
            found, _ = self._router.explain_ranking(call.prepared.route, model_id)
        except NoEligibleModel:
            return False
        return found.excluded_by is None

    def _left(self, call: _Call) -> float:
        left = call.deadline - self._clock()
        if left <= 0:
            raise self._fail(call, ErrorKind.DEADLINE, "the deadline passed")
        return left

    async def _wait_retry_after(self, call: _Call, error: UpstreamError) -> bool:
        """After a 429 or 503 on the last candidate, wait out a Retry-After that fits."""
        wait = error.retry_after_s
        if not call.last or wait is None or wait >= call.deadline - self._clock():
            return False
        await asyncio.sleep(wait)
        return True

    async def complete(
        self, request: pb.CompleteRequest, timeout_s: float | None
    ) -> pb.CompleteResponse:
        call = await self._begin(request, timeout_s)
        async with contextlib.aclosing(self._turns(call)) as turns:
            async for model_id, reservation in turns:
                started = self._clock()
                try:
                    timeout_s = self._attempt_timeout(
                        call, self._settings.attempt_timeout_s, first_token=False
                    )
                    result = await self._client.chat(
                        {**call.prepared.body, "model": model_id}, timeout_s=timeout_s
                    )
                except UpstreamError as error:
                    await self._failed(call, model_id, reservation, error, started)
                    continue
                except asyncio.CancelledError as cancelled:
                    waited_s = self._clock() - started
                    await self._cancelled(call, model_id, reservation, waited_s, cancelled)
                    raise
                except BaseException:
                    await self._abandon(model_id, reservation)
                    raise
                return await self._succeeded(call, model_id, reservation, result, started)
        raise self._exhausted(call)

    async def _answered(
        self,
        call: _Call,
        model_id: str,
        reservation: Reservation,
        usage: Usage | None,
        started: float,
        first: float | None,
        meta: tuple[str, str, str],
    ) -> pb.CompleteResponse:
        """Account for the attempt that answered and build the response around it.

        `first` is when the first token arrived (streams); without it, time to first token
        is estimated from the model's known throughput. `meta` is (id, model, provider)."""
        total = self._clock() - started
        await self._sticky.answered(call.session, call.decision.model, model_id)
        model = self._router.model(model_id)
        cost = self._cost(model, usage) if model else 0.0
        await self._ledger.settle(reservation, cost)
        self._breakers.record(model_id, True)
        counted = usage or Usage(0, 0, 0, None)
        if first is not None:
            ttft: float | None = first - started
            generating = total - (first - started)
            rate = counted.completion_tokens / generating if generating > 0 else None
        else:
            known = self._figures.throughput(model_id) or (model.tokens_per_s if model else None)
            ttft = max(total - counted.completion_tokens / known, 0.0) if known else None
            rate = None
        self._figures.observe(model_id, ttft_s=ttft, tokens_per_s=rate or None)
        self._record(
            call,
            model_id,
            "ok",
            http_status=200,
            ttft_seconds=ttft or 0.0,
            total_seconds=total,
            prompt_tokens=counted.prompt_tokens,
            completion_tokens=counted.completion_tokens,
            cost_usd=cost,
        )
        self._records.finished(call.decision.decision_id, call.attempts, meta[1] or model_id)
        metrics.answered(
            model_id,
            ttft_s=None if first is None else ttft,
            total_s=total,
            prompt_tokens=counted.prompt_tokens,
            completion_tokens=counted.completion_tokens,
            cost_usd=cost,
        )
        return pb.CompleteResponse(
            id=meta[0],
            model=meta[1] or model_id,
            provider=meta[2],
            usage=pb.Usage(
                prompt_tokens=counted.prompt_tokens,
                completion_tokens=counted.completion_tokens,
                total_tokens=counted.total_tokens,
                cost_usd=cost,
            ),
            attempts=call.attempts,
            decision_id=call.decision.decision_id,
            catalogue_version=call.decision.catalogue_version,
        )

    async def _succeeded(
        self,
        call: _Call,
        model_id: str,
        reservation: Reservation,
        result: ChatResult,
        started: float,
    ) -> pb.CompleteResponse:
        response = await self._answered(
            call,
            model_id,
            reservation,
            result.usage,
            started,
            None,
            (result.id, result.model, result.provider),
        )
        for i, choice in enumerate(result.choices):
            message = choice.get("message") or {}
            out = response.choices.add(
                index=int(choice.get("index", i)),
                finish_reason=str(choice.get("finish_reason") or ""),
            )
            out.message.role = str(message.get("role") or "assistant")
            out.message.content = str(message.get("content") or "")
            _add_tool_calls(out.message, message.get("tool_calls"))
        return response

    async def stream(
        self, request: pb.CompleteRequest, timeout_s: float | None
    ) -> AsyncIterator[pb.CompleteChunk]:
        call = await self._begin(request, timeout_s)
        async with contextlib.aclosing(self._turns(call)) as turns:
            async for model_id, reservation in turns:
                started = self._clock()
                first: float | None = None
                meta = ("", model_id, "")
                try:
                    events = self._client.chat_stream(
                        {**call.prepared.body, "model": model_id},
                        first_token_timeout_s=self._attempt_timeout(
                            call, self._settings.first_token_timeout_s, first_token=True
                        ),
                        idle_timeout_s=self._settings.stream_idle_timeout_s,
                    )
                    async for event in events:
                        if isinstance(event, StreamDelta):
                            chunk = pb.CompleteChunk(delta=event.text)
                            if first is None:
                                first = self._clock()
                                chunk.head.CopyFrom(_head(call, model_id, meta))
                            yield chunk
                        elif isinstance(event, StreamEnd):
                            head = _head(call, model_id, meta) if first is None else None
                            summary = await self._answered(
                                call, model_id, reservation, event.usage, started, first, meta
                            )
                            choice = summary.choices.add(index=0, finish_reason=event.finish_reason)
                            if event.tool_calls:
                                choice.message.role = "assistant"
                                _add_tool_calls(choice.message, event.tool_calls)
                            yield pb.CompleteChunk(summary=summary, head=head)
                            return
                        else:
                            meta = (event.id, event.model, event.provider)
                except UpstreamError as error:
                    await self._failed(call, model_id, reservation, error, started)
                    continue
                except MidStreamError as error:
                    await self._ledger.settle(reservation, 0.0)
                    self._breakers.record(model_id, False)
                    self._figures.observe(model_id)
                    self._record(
                        call,
                        model_id,
                        "mid_stream_error",
                        http_status=200,
                        error=str(error),
                        ttft_seconds=(first - started) if first else 0.0,
                        total_seconds=self._clock() - started,
                    )
                    raise self._fail(
                        call,
                        ErrorKind.UNAVAILABLE,
                        f"the stream failed after it began: {error}",
                    ) from None
                except asyncio.CancelledError as cancelled:
                    if first is not None:  # the model was answering: no verdict on it
                        await self._abandon(model_id, reservation)
                        raise
                    waited_s = self._clock() - started
                    await self._cancelled(
                        call, model_id, reservation, waited_s, cancelled, first_token=True
                    )
                    raise
                except BaseException:
                    await self._abandon(model_id, reservation)
                    raise
        raise self._exhausted(call)
