"""The fake OpenRouter's allowance for `:free` variants, over real loopback HTTP."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.fake_openrouter import DEFAULT_KEY, FakeConfig, FakeOpenRouter, HttpError, Reply

FREE = "z-ai/glm-5.2:free"
OTHER_FREE = "openai/gpt-oss-20b:free"
PAID = "z-ai/glm-5.2"
OTHER_KEY = "sk-or-v1-" + "ab" * 32
HELLO = [{"role": "user", "content": "Hello there, how are you?"}]
NOON = calendar.timegm((2026, 8, 14, 12, 0, 0))
PER_MINUTE = "Rate limit exceeded: free-models-per-min. "
PER_DAY = (
    "Rate limit exceeded: free-models-per-day. "
    "Add 10 credits to unlock 1000 free model requests per day"
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenRouter]:
    with FakeOpenRouter(api_keys=(DEFAULT_KEY, OTHER_KEY)) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake: FakeOpenRouter) -> None:
    """A fresh fake whose calendar shows about noon UTC, so no test crosses a day by chance."""
    fake.reset()
    fake.config.clock_offset_s = NOON - time.time()


def client_for(fake: FakeOpenRouter, key: str = DEFAULT_KEY) -> httpx.Client:
    return httpx.Client(
        base_url=fake.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=5
    )


@pytest.fixture
def client(fake: FakeOpenRouter) -> Iterator[httpx.Client]:
    with client_for(fake) as made:
        yield made


def chat(client: httpx.Client, model: str = FREE, **body: Any) -> httpx.Response:
    return client.post("/chat/completions", json={"model": model, "messages": HELLO, **body})


def fake_now(fake: FakeOpenRouter) -> float:
    return time.time() + fake.config.clock_offset_s


def end_of_minute_ms(now: float) -> int:
    return (int(now) // 60 + 1) * 60_000


def end_of_day_ms(now: float) -> int:
    return (int(now) // 86_400 + 1) * 86_400_000


def assert_free_429(response: httpx.Response, message: str, limit: int, resets: set[int]) -> None:
    """OpenRouter's own 429: the body's `metadata.headers` and the real headers agree."""
    assert response.status_code == 429
    body = response.json()
    error = body["error"]
    assert (error["code"], error["message"]) == (429, message)
    assert body["user_id"].startswith("user_")
    echoed = error["metadata"]["headers"]
    assert echoed["X-RateLimit-Limit"] == response.headers["x-ratelimit-limit"] == str(limit)
    assert echoed["X-RateLimit-Remaining"] == response.headers["x-ratelimit-remaining"] == "0"
    assert echoed["X-RateLimit-Reset"] == response.headers["x-ratelimit-reset"]
    assert int(echoed["X-RateLimit-Reset"]) in resets
    assert error["metadata"]["provider_name"] is None


def test_the_daily_limit_follows_the_tier() -> None:
    assert FakeConfig().free_per_day == 1000
    assert FakeConfig(is_free_tier=True).free_per_day == 50
    assert FakeConfig(is_free_tier=True, free_models_per_day=7).free_per_day == 7


def test_free_variants_share_a_per_minute_allowance(
    fake: FakeOpenRouter, client: httpx.Client
) -> None:
    fake.config.free_models_per_minute = 3
    for model in (FREE, OTHER_FREE, FREE):
        assert chat(client, model).status_code == 200
    before = fake_now(fake)
    refused = chat(client, OTHER_FREE)
    after = fake_now(fake)
    assert_free_429(refused, PER_MINUTE, 3, {end_of_minute_ms(before), end_of_minute_ms(after)})
    assert chat(client, PAID).status_code == 200, "paid models have no such allowance"

    fake.config.clock_offset_s += 60
    assert chat(client, FREE).status_code == 200, "a new minute, a new allowance"


def test_the_free_tier_gets_fifty_a_day_for_every_key(fake: FakeOpenRouter) -> None:
    fake.config.is_free_tier = True
    fake.config.free_models_per_minute = 1000
    with client_for(fake) as mine, client_for(fake, OTHER_KEY) as other:
        for i in range(50):
            assert chat(mine if i % 2 else other).status_code == 200, f"call {i + 1}"
        before = fake_now(fake)
        refused = chat(mine, OTHER_FREE)
        after = fake_now(fake)
        assert_free_429(refused, PER_DAY, 50, {end_of_day_ms(before), end_of_day_ms(after)})
        assert chat(other).status_code == 429, "the allowance is the account's, not the key's"

        fake.config.clock_offset_s += 86_400
        assert chat(mine).status_code == 200, "the next UTC day starts afresh"


def test_refused_calls_do_not_count_and_models_fall_back(
    fake: FakeOpenRouter, client: httpx.Client
) -> None:
    fake.config.free_models_per_minute = 1
    fake.script(FREE, Reply("first"), Reply("second"))
    assert chat(client).json()["choices"][0]["message"]["content"] == "first"
    assert chat(client).status_code == 429
    assert chat(client).status_code == 429, "a refusal is not counted, and stays a refusal"

    fallback = chat(client, models=[PAID])
    assert fallback.status_code == 200
    assert fallback.json()["model"] == PAID

    fake.config.clock_offset_s += 60
    answer = chat(client)
    assert answer.json()["choices"][0]["message"]["content"] == "second", (
        "refused calls never reached the model's script"
    )


def test_scripted_free_limits_follow_the_fake_clock_and_drop_the_advice_past_1000(
    fake: FakeOpenRouter, client: httpx.Client
) -> None:
    fake.script(FREE, HttpError.rate_limited(per="day", limit=1000))
    before = fake_now(fake)
    refused = chat(client)
    after = fake_now(fake)
    assert_free_429(
        refused,
        "Rate limit exceeded: free-models-per-day. ",
        1000,
        {end_of_day_ms(before), end_of_day_ms(after)},
    )
