"""A faithful fake of OpenRouter's HTTP API (2026 shapes), served over real loopback HTTP.

It follows section 9 of `/work/shared/docs/openrouter-api.md` for the routes the router calls:
`GET /models` (filters, paging), `/models/{author}/{slug}/endpoints`, `POST /chat/completions`
(JSON and SSE, `models[]` fallback, `provider` routing, usage and cost, 402 pre-authorisation,
the `:free` allowance) and `GET /key`, with OpenRouter's error bodies and headers. The routes the
router never calls (`/generation`, `/credits`, `/auth/key`, `/models/count`, `/model/{…}`) are
not served: they answer 404 like any unknown path.

Usage::

    from testkit.fake_openrouter import DEFAULT_KEY, FakeOpenRouter, HttpError, Reply, Stall

    with FakeOpenRouter() as fake:                      # uvicorn on 127.0.0.1:<free port>
        client = httpx.Client(base_url=fake.base_url,    # "http://127.0.0.1:<port>/api/v1"
                              headers={"Authorization": f"Bearer {DEFAULT_KEY}"})
        fake.script("openai/gpt-4o-mini", HttpError.rate_limited(retry_after_s=3), Reply("hi"))
        client.post("/chat/completions", json={...})    # 429, then the next call answers "hi"
        fake.set_behaviour("z-ai/glm-5.2", Stall(after_chunks=2))   # every call, until unset
        fake.requests[-1].json                          # what the router sent

The server runs in its own thread and event loop, so it serves sync and async tests alike;
leaving the `with` block stops it within about a second, even with stalled streams open.
`python -m testkit.fake_openrouter --port 8089` serves it by hand.

`FakeOpenRouter(models=None, api_keys=(DEFAULT_KEY,), balance_usd=100.0, config=FakeConfig(...))`:
`models` is any list of model dicts (default: 42 real rows from
`testkit/fixtures/openrouter/models.json`; `load_models(path)` reads a saved `/models` response,
`make_model(id, ...)` builds a synthetic row).

Test controls:
    `script(model_id, *behaviours)` queues behaviours, one per attempt on that model (`ANY_MODEL`:
    any model without its own queue); `set_behaviour(model_id, b)` sets a standing one;
    `script_models(*b)` scripts the next `GET /models` calls (`HttpError`, `InvalidJson`,
    `ModelsReply(models=[])`, `ModelsReply(delay_s=…)`, `Stall`, `Reset`, `Drop`);
    `set_models(rows)`; `set_endpoint_stats(model_id, provider=…, latency_ms=…, throughput=…,
    uptime=…)`; `set_balance(usd)`; `config` (live `FakeConfig`: usage-chunk style, processing
    comments, per-key limit, free tier, the `:free` allowance and a clock offset); `requests`,
    `cut_short` (requests whose connection closed before their response was complete),
    `spent_usd`, `models`; `reset()`.

The `:free` allowance (`free_limits.py`): calls to `:free` variants count per minute and per
UTC day for the account (all keys); past `config.free_models_per_minute` (20) or
`config.free_per_day` (`free_models_per_day`, else 50 when `is_free_tier`, else 1,000) they get
OpenRouter's own 429, reset at the window's end. `config.clock_offset_s` moves the fake's
calendar forward, so tests reach the next minute or day without waiting.

Chat behaviours, one call per failure mode:
    `Reply(content, reasoning, tool_calls, first_token_delay_s, chunk_delay_s, …)`;
    `Reply(content="")` (empty 200); `HttpError.rate_limited(retry_after_s, per="minute"|"day")`
    (OpenRouter's free-tier 429, scripted; `limit=` sets its X-RateLimit-Limit),
    `.upstream_rate_limited(retry_after_s)`, `.timeout()` (408),
    `.internal()` (500), `.bad_gateway()` (502), `.unavailable(retry_after_s)` (503),
    `.edge_timeout()` (524), `.overloaded()` (529), `.no_endpoints()` (404), `.moderation()`
    (403), `.unauthorized()` (401), or any `HttpError(status, message, metadata)`;
    `InsufficientCredits(can_afford)` (402); `ContextLengthExceeded()` (400); `ErrorIn200()`;
    `MidStreamError(after_chunks)`; `Stall(after_chunks)`; `Reset(after_chunks)` (TCP RST);
    `Drop(after_chunks)` (closed mid-response).

Tokens are counted as one per four characters of message text (`count_tokens`); cost is
prompt_tokens * prompt price + completion_tokens * completion price of the endpoint served,
which is the model's listed price unless `provider` preferences pick a dearer endpoint.
"""

from .behaviours import (
    ChatBehaviour,
    ContextLengthExceeded,
    Drop,
    ErrorIn200,
    HttpError,
    InsufficientCredits,
    InvalidJson,
    MidStreamError,
    ModelsBehaviour,
    ModelsReply,
    RateLimitHeaders,
    Reply,
    Reset,
    Stall,
    ToolCall,
)
from .catalogue import FIXTURE_PATH, load_models, make_model
from .server import FakeOpenRouter
from .state import ANY_MODEL, DEFAULT_KEY, KEEP, FakeConfig, RecordedRequest
from .tokens import count_tokens

__all__ = [
    "ANY_MODEL",
    "DEFAULT_KEY",
    "FIXTURE_PATH",
    "KEEP",
    "ChatBehaviour",
    "ContextLengthExceeded",
    "Drop",
    "ErrorIn200",
    "FakeConfig",
    "FakeOpenRouter",
    "HttpError",
    "InsufficientCredits",
    "InvalidJson",
    "MidStreamError",
    "ModelsBehaviour",
    "ModelsReply",
    "RateLimitHeaders",
    "RecordedRequest",
    "Reply",
    "Reset",
    "Stall",
    "ToolCall",
    "count_tokens",
    "load_models",
    "make_model",
]
