"""What a reply costs: token counts and USD at the served endpoint's prices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
