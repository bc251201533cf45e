"""What a reply costs, and the `/generation` record it leaves."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .catalogue import billable
from .exchange import Served
from .tokens import count_tokens


@dataclass(frozen=True)
class Outcome:
    """What a reply says and what it costs."""

    content: str
    reasoning: str | None
    tool_calls: tuple[Mapping[str, Any], ...]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    prompt_cost: float
    completion_cost: float

    @property
    def cost(self) -> float:
        return self.prompt_cost + self.completion_cost

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cost": self.cost,
            "is_byok": False,
            "prompt_tokens_details": {
                "cached_tokens": 0,
                "cache_write_tokens": 0,
                "audio_tokens": 0,
                "video_tokens": 0,
            },
            "cost_details": {
                "upstream_inference_cost": self.cost,
                "upstream_inference_prompt_cost": self.prompt_cost,
                "upstream_inference_completions_cost": self.completion_cost,
            },
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "image_tokens": 0,
            },
        }


def settle(
    served: Served,
    content: str,
    finish_reason: str,
    *,
    reasoning: str | None = None,
    tool_calls: tuple[Mapping[str, Any], ...] = (),
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> Outcome:
    """Token counts and cost (USD) at the served endpoint's prices (`"-1"` counts as 0)."""
    reasoning_tokens = count_tokens(reasoning or "")
    if prompt_tokens is None:
        prompt_tokens = served.ask.prompt_tokens
    if completion_tokens is None:
        calls = "".join(c["function"]["name"] + c["function"]["arguments"] for c in tool_calls)
        completion_tokens = count_tokens(content) + reasoning_tokens + count_tokens(calls)
    pricing = served.endpoint.pricing
    return Outcome(
        content=content,
        reasoning=reasoning,
        tool_calls=tool_calls,
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        reasoning_tokens=reasoning_tokens,
        prompt_cost=float(prompt_tokens * billable(pricing.get("prompt"))),
        completion_cost=float(completion_tokens * billable(pricing.get("completion"))),
    )


def generation_record(
    served: Served, outcome: Outcome, *, streamed: bool, first_token_at: float
) -> dict[str, Any]:
    """The `/generation` record of a completion (2026 fields)."""
    ask = served.ask
    now = time.monotonic()
    data: dict[str, Any] = {
        "id": ask.generation_id,
        "upstream_id": "chatcmpl-" + secrets.token_hex(12),
        "total_cost": outcome.cost,
        "cache_discount": None,
        "upstream_inference_cost": outcome.cost,
        "created_at": datetime.fromtimestamp(ask.created, UTC).isoformat(),
        "model": served.model,
        "app_id": None,
        "streamed": streamed,
        "cancelled": False,
        "provider_name": served.endpoint.provider_name,
        "latency": round((now - ask.started) * 1000),
        "moderation_latency": None,
        "generation_time": round((now - first_token_at) * 1000),
        "finish_reason": outcome.finish_reason,
        "native_finish_reason": outcome.finish_reason,
        "service_tier": None,
        "tokens_prompt": outcome.prompt_tokens,
        "tokens_completion": outcome.completion_tokens,
        "native_tokens_prompt": outcome.prompt_tokens,
        "native_tokens_completion": outcome.completion_tokens,
        "native_tokens_completion_images": 0,
        "native_tokens_reasoning": outcome.reasoning_tokens,
        "native_tokens_cached": 0,
        "num_media_prompt": 0,
        "num_input_audio_prompt": 0,
        "num_media_completion": 0,
        "num_search_results": 0,
        "num_fetches": 0,
        "web_search_engine": None,
        "origin": ask.headers.get("http-referer", ""),
        "usage": outcome.cost,
        "is_byok": False,
        "external_user": ask.body.get("user"),
        "api_type": "completions",
        "preset_id": None,
        "router": served.resolution.routed_by,
        "provider_responses": [*served.failed, served.provider_response(200)],
        "user_agent": ask.headers.get("user-agent"),
        "http_referer": ask.headers.get("http-referer"),
        "data_region": "global",
        "workspace_id": None,
    }
    session = ask.body.get("session_id") or ask.headers.get("x-session-id")
    if session:
        data["session_id"] = session
    return data
