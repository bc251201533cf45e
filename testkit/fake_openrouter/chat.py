"""`POST /api/v1/chat/completions`: validation, `model` then `models[]` fallback, provider routing.

Each attempt on a model first passes the fake's own checks (endpoints left after the `provider`
preferences, context window, 402 pre-authorisation, the `:free` allowance), then consumes one
scripted behaviour of that model. Errors fall back to the next model, except 401 and 402, which
concern the account.
"""

from __future__ import annotations

import json
import math
import time
from decimal import Decimal

from starlette.requests import Request
from starlette.responses import Response

from .accounts import authenticate
from .behaviours import ContextLengthExceeded, HttpError, InsufficientCredits
from .catalogue import billable, context_window, max_output, price
from .errors import (
    ErrorResult,
    context_length_exceeded,
    error,
    insufficient_credits,
    out_of_credits,
    render_http_error,
)
from .exchange import Ask, Served
from .providers import ProviderPreferences, route
from .replies import Replier
from .state import FakeState, new_generation_id, user_id_for
from .tokens import count_tokens, message_text

MAX_FALLBACK_MODELS = 3
DEFAULT_MODEL = "openrouter/auto"


class ChatApi:
    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.replier = Replier(state)

    async def completions(self, request: Request) -> Response:
        key = authenticate(self.state, request)
        if isinstance(key, ErrorResult):
            return key.response()
        generation_id = new_generation_id()
        headers = {"X-Generation-Id": generation_id}
        ask = self._parse(await request.body(), key, generation_id)
        if isinstance(ask, ErrorResult):
            return ask.response(headers)
        answer = self._serve(ask)
        return answer.response(headers) if isinstance(answer, ErrorResult) else answer

    def _parse(self, raw: bytes, key: str, generation_id: str) -> Ask | ErrorResult:
        user_id = user_id_for(key)

        def invalid(message: str) -> ErrorResult:
            return error(400, message, user_id=user_id)

        try:
            body = json.loads(raw)
        except ValueError:
            return invalid("Invalid JSON in request body")
        if not isinstance(body, dict):
            return invalid("Invalid JSON in request body")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return invalid('Input required: specify "prompt" or "messages"')
        if not all(isinstance(message, dict) for message in messages):
            return invalid("Each message must be an object")
        fallbacks = body.get("models", [])
        if not isinstance(fallbacks, list):
            return invalid("models must be an array of model IDs")
        if len(fallbacks) > MAX_FALLBACK_MODELS:
            return invalid("models array must have 3 items or fewer")
        model = body.get("model")
        requested = [*([model] if model is not None else []), *fallbacks] or [DEFAULT_MODEL]
        candidates = []
        for candidate in dict.fromkeys(map(str, requested)):
            resolution = self.state.catalogue.resolve(candidate)
            if resolution is None:
                return invalid(f"{candidate} is not a valid model ID")
            candidates.append(resolution)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            return invalid("max_tokens must be a positive integer")
        try:
            prefs = ProviderPreferences.parse(body.get("provider"))
        except ValueError as exc:
            return invalid(str(exc))
        return Ask(
            key=key,
            user_id=user_id,
            generation_id=generation_id,
            created=int(time.time()),
            candidates=tuple(candidates),
            prefs=prefs,
            prompt_tokens=sum(count_tokens(message_text(message)) for message in messages),
            max_tokens=max_tokens,
            stream=bool(body.get("stream")),
            tools=bool(body.get("tools")),
        )

    def _serve(self, ask: Ask) -> Response | ErrorResult:
        last: ErrorResult | None = None
        for resolution in ask.candidates:
            requested = resolution.requested
            endpoints = route(
                self.state.endpoints(resolution.served), ask.prefs, resolution.sort_hint
            )
            if not endpoints:
                last = render_http_error(
                    HttpError.no_endpoints(), model=requested, user_id=ask.user_id
                )
                continue
            served = Served(ask, resolution, endpoints[0])
            window = context_window(served.row)
            if window and ask.prompt_tokens + (ask.max_tokens or 0) > window:
                last = context_length_exceeded(
                    window, ask.prompt_tokens, ask.max_tokens or 0, user_id=ask.user_id
                )
                continue
            refusal = self._preauthorise(served)
            if refusal is not None:
                return refusal
            limited = self._free_allowance(served)
            if limited is not None:
                last = limited
                continue
            behaviour = self.state.next_behaviour(str(resolution.row["id"]))
            if isinstance(behaviour, HttpError):
                last = render_http_error(
                    behaviour,
                    model=requested,
                    provider=served.endpoint.provider_name,
                    user_id=ask.user_id,
                    now=self.state.now(),
                )
            elif isinstance(behaviour, InsufficientCredits):
                requested_tokens = ask.max_tokens or max_output(served.row) or 0
                last = insufficient_credits(behaviour, requested_tokens, user_id=ask.user_id)
            elif isinstance(behaviour, ContextLengthExceeded):
                last = context_length_exceeded(
                    window or 0, ask.prompt_tokens, ask.max_tokens or 0, user_id=ask.user_id
                )
            else:
                return self.replier.respond(served, behaviour)
            if last.status in {401, 402}:
                return last
        assert last is not None  # there is always at least one candidate
        return last

    def _free_allowance(self, served: Served) -> ErrorResult | None:
        """OpenRouter's own 429 once the account's `:free` allowance is spent; else the call
        counts against it."""
        if not served.model.endswith(":free"):
            return None
        config, now = self.state.config, self.state.now()
        spent = self.state.free_allowance.take(
            now, config.free_models_per_minute, config.free_per_day
        )
        if spent is None:
            return None
        refusal = HttpError.rate_limited(per=spent.per, limit=spent.limit)
        return render_http_error(
            refusal, model=served.resolution.requested, user_id=served.ask.user_id, now=now
        )

    def _preauthorise(self, served: Served) -> ErrorResult | None:
        """OpenRouter reserves `max_tokens` (default: the model's maximum output) at the
        completion price, plus the prompt, before calling the provider."""
        ask = served.ask
        remaining, by_key_limit = self.state.remaining(ask.key)
        if remaining <= 0:
            return out_of_credits(user_id=ask.user_id)
        completion_price = price(served.endpoint.pricing.get("completion"))
        if completion_price <= 0:
            return None
        prompt_cost = ask.prompt_tokens * billable(served.endpoint.pricing.get("prompt"))
        affordable = math.floor((Decimal(str(remaining)) - prompt_cost) / completion_price)
        requested = ask.max_tokens or max_output(served.row) or 0
        if requested <= affordable:
            return None
        refusal = InsufficientCredits(max(affordable, 0), key_limit=by_key_limit)
        return insufficient_credits(refusal, requested, user_id=ask.user_id)
