"""Tolerant parsing of OpenRouter payloads, 2025 and 2026 shapes alike."""

from __future__ import annotations

import math

import pytest

from service.openrouter import DYNAMIC_PRICE, parse_endpoints, parse_models, parse_price
from service.openrouter.models import PayloadError


@pytest.mark.parametrize(
    ("raw", "price"),
    [
        ("0.000003", 3e-6),
        (" 0.0000015 ", 1.5e-6),
        (3.4e-7, 3.4e-7),
        (0, 0.0),
        ("0", 0.0),
        ("-1", DYNAMIC_PRICE),
        (-1, DYNAMIC_PRICE),
        (None, DYNAMIC_PRICE),
        (True, DYNAMIC_PRICE),
        ("free", DYNAMIC_PRICE),
        ("nan", DYNAMIC_PRICE),
        (math.inf, DYNAMIC_PRICE),
        ("2", DYNAMIC_PRICE),  # above 1 USD per token: nonsense
        ({"value": 1}, DYNAMIC_PRICE),
    ],
)
def test_prices_parse_defensively(raw: object, price: float) -> None:
    assert parse_price(raw) == price


SHAPE_2025 = {
    "id": "openai/gpt-4o-mini",
    "name": "OpenAI: GPT-4o-mini",
    "created": 1721260800,
    "context_length": 128000,
    "architecture": {
        "modality": "text+image->text",
        "input_modalities": ["text", "image", "file"],
        "output_modalities": ["text"],
        "tokenizer": "GPT",
        "instruct_type": None,
    },
    "pricing": {"prompt": "0.00000015", "completion": 0.0000006, "input_cache_write": None},
    "top_provider": {"context_length": 128000, "max_completion_tokens": 16384},
    "per_request_limits": None,
    "supported_parameters": ["max_tokens", "tools", "response_format"],
}

SHAPE_2026 = {
    **SHAPE_2025,
    "id": "anthropic/claude-sonnet-4",
    "context_length": None,
    "top_provider": {"context_length": 200000, "max_completion_tokens": None, "is_moderated": 1},
    "benchmarks": {"artificial_analysis": {"intelligence_index": 44.2, "coding_index": None}},
    "links": {"details": "/api/v1/models/anthropic/claude-sonnet-4/endpoints"},
    "reasoning": {"mandatory": False},
    "a_field_from_the_future": {"nested": [1, 2, 3]},
}


def test_models_of_both_shapes() -> None:
    payload = {
        "data": [
            SHAPE_2025,
            SHAPE_2026,
            {"id": "~anthropic/claude-sonnet-latest", "alias_target": {"slug": "x/y"}},
            {"id": "mistral/x:batch", "pricing": None, "architecture": None},
            {"id": "no-slash"},
            {"name": "no id at all"},
            "not a row",
            SHAPE_2025,  # listed twice: the first row wins
        ],
        "total_count": 8,
        "links": {"next": None},
    }
    models = {m.id: m for m in parse_models(payload)}
    assert list(models) == [
        "openai/gpt-4o-mini",
        "anthropic/claude-sonnet-4",
        "~anthropic/claude-sonnet-latest",
        "mistral/x:batch",
    ]
    old = models["openai/gpt-4o-mini"]
    assert (old.prompt_price, old.completion_price) == (1.5e-7, 6e-7)
    assert old.input_modalities == ("file", "image", "text")
    assert (old.context_length, old.max_output_tokens) == (128000, 16384)
    assert old.intelligence_index is None
    assert old.realtime
    new = models["anthropic/claude-sonnet-4"]
    assert new.context_length == 200000, "falls back to the top provider's window"
    assert new.intelligence_index == 44.2
    alias = models["~anthropic/claude-sonnet-latest"]
    assert (alias.realtime, alias.base_id, alias.author) == (False, "x/y", "anthropic")
    batch = models["mistral/x:batch"]
    assert (batch.realtime, batch.base_id, batch.prompt_price) == (False, "mistral/x", -1.0)
    assert batch.output_modalities == ("text",)


@pytest.mark.parametrize("payload", [None, [], {"models": []}, {"data": "x"}, "text"])
def test_a_payload_without_a_model_list_is_refused(payload: object) -> None:
    with pytest.raises(PayloadError):
        parse_models(payload)


def test_endpoints_of_both_shapes() -> None:
    payload = {
        "data": {
            "id": "deepseek/deepseek-v4.1-flash",
            "endpoints": [
                {
                    "provider_name": "Morph",
                    "tag": "morph/fp8",
                    "status": 0,
                    "uptime_last_30m": 99.5,
                    "latency_last_30m": {"p50": 636, "p75": 745, "p90": 1022, "p99": 3045},
                    "throughput_last_30m": {"p50": 73, "p75": 92, "p90": 120, "p99": 167},
                },
                {"provider_name": "Old", "status": -2, "uptime_last_30m": None},
                {"tag": "no-figures", "latency_last_30m": None, "throughput_last_30m": None},
                "not an endpoint",
            ],
        }
    }
    morph, old, bare = parse_endpoints(payload)
    assert (morph.provider, morph.ttft_p50_s, morph.tokens_per_s_p50) == ("Morph", 0.636, 73)
    assert morph.uptime == pytest.approx(0.995)
    assert (old.status, old.uptime, old.ttft_p50_s) == (-2, None, None)
    assert (bare.provider, bare.tokens_per_s_p50) == ("no-figures", None)
    with pytest.raises(PayloadError):
        parse_endpoints({"data": {"id": "x"}})


def test_an_endpoint_that_costs_nothing_is_free() -> None:
    priced = {"prompt": "0.000001", "completion": "0.000002"}
    payload = {
        "data": {
            "endpoints": [
                {"provider_name": "Paid", "pricing": priced},
                {"provider_name": "Free", "pricing": {"prompt": "0", "completion": 0}},
                {"provider_name": "Half", "pricing": {"prompt": "0", "completion": "0.000002"}},
                {"provider_name": "Unpriced"},
            ]
        }
    }
    assert [e.free for e in parse_endpoints(payload)] == [False, True, False, False]
