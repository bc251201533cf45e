"""`/v1/chat/completions` routes as the scorer ranks: every mode and every constraint field of
`tests.test_adapters`, sent as an OpenAI request (`model` "router/<mode>", or "router" with the
policy and constraints in the `router` field), answers with the model the scorer ranks first
for the same request, or refuses with the scorer's own words.

The router serves the embedded catalogue, as the other adapters' server does; the fake
OpenRouter lists the same models, so that whichever one the router picks answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service import catalogue
from service.config import Settings
from service.scorer import Scorer
from testkit.fake_openrouter import FakeOpenRouter, make_model
from testkit.servers import ServerThread, settings_for
from tests.adapters import Answer, Question, Refusal, refusal, scorers_answer, served_scorer
from tests.test_adapters import (
    CASES,
    MODE_CASES,
    Figures,
    constraint_question,
    figures_of,
    mode_question,
)

HELLO = [{"role": "user", "content": "Say hello to the router."}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenRouter]:
    rows = [
        make_model(m.id, context_length=m.context_length, prompt="0.000001")
        for m in catalogue.load().models
    ]
    with FakeOpenRouter(rows) as server:
        yield server


@pytest.fixture(scope="module")
def v1_settings(
    fake: FakeOpenRouter, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """The session server's routing settings, completing against the fake, never refreshing
    the embedded catalogue from it."""
    routing = settings.model_dump(include={"custom_modes", "free_models", "default_mode"})
    return settings_for(fake, tmp_path_factory.mktemp("v1-state"), **routing)


@pytest.fixture
def v1_url(v1_settings: Settings) -> Iterator[str]:
    """A router of its own for each test: what it learns from one completion (the fake answers
    at once) would change the next test's ranking."""
    server = ServerThread(v1_settings)
    with server:
        yield server.http_url


@pytest.fixture(scope="module")
def scorer(settings: Settings) -> Scorer:
    return served_scorer(settings)


@pytest.fixture(scope="module")
def figures(scorer: Scorer, settings: Settings) -> Figures:
    return figures_of(scorer, settings)


def v1_body(question: Question, settings: Settings) -> dict[str, Any]:
    """The question as an OpenAI request: the mode in `model` when it has one, the rest in
    `router`, with the profile the scorer is asked for (not one estimated from the messages)."""
    routing = dict(question.body)
    mode = routing.pop("mode", None)
    routing["profile"] = {
        "prompt_tokens": settings.default_prompt_tokens,
        "output_tokens": settings.default_output_tokens,
    }
    model = f"router/{mode}" if mode else "router"
    return {"model": model, "messages": HELLO, "router": routing}


def v1_answer(url: str, question: Question, settings: Settings) -> str | Refusal:
    reply = httpx.post(f"{url}/v1/chat/completions", json=v1_body(question, settings), timeout=30)
    if reply.status_code != 200:
        return refusal(reply.json()["error"]["message"])
    assert reply.headers["x-router-attempts"] == "1", reply.headers
    model: str = reply.json()["model"]
    assert reply.headers["x-router-model"] == model
    return model


def expected(scorer: Scorer, settings: Settings, question: Question) -> str | Refusal:
    answer = scorers_answer(scorer, settings, question, 1)
    return answer.model if isinstance(answer, Answer) else answer


@pytest.mark.parametrize("field", sorted(CASES))
def test_each_constraint_field_through_v1(
    field: str, v1_url: str, figures: Figures, scorer: Scorer, settings: Settings
) -> None:
    question = constraint_question(field, CASES[field](figures), settings)
    assert v1_answer(v1_url, question, settings) == expected(scorer, settings, question)


@pytest.mark.parametrize("mode", MODE_CASES)
def test_each_mode_through_v1(mode: str, v1_url: str, scorer: Scorer, settings: Settings) -> None:
    question = mode_question(mode, settings)
    assert v1_answer(v1_url, question, settings) == expected(scorer, settings, question)
