"""Every mode and every constraint field, through every adapter (see `tests.adapters`): each
answers as the scorer itself does for the same request, on the embedded catalogue: the chosen
model, the ranked candidates with their scores, how many models were eligible and what removed
the others.

The constraint cases are keyed by the fields of `router.v1.Constraints`, so a field added to the
proto without a case here fails. Each case takes its value from the catalogue's own figures and
must change the scorer's answer: an adapter that dropped the field, or set another in its place,
would answer otherwise.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from service import catalogue
from service.catalogue import ModelRecord
from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.scorer import MODE_WEIGHTS, Candidate, Scorer
from service.vocabulary import MODES, enum_names
from tests.adapters import (
    Adapter,
    Answer,
    Question,
    Refusal,
    scorer_ranking,
    scorers_answer,
    served_scorer,
)

TOP_K = 10
FIELDS = pb.Constraints.DESCRIPTOR.fields_by_name
MODE_CASES = [*MODES, "custom mode", "weights"]
WEIGHTS = (0.2, 0.5, 0.3)


@pytest.fixture(scope="module")
def scorer(settings: Settings) -> Scorer:
    return served_scorer(settings)


def default_weights(settings: Settings) -> tuple[float, float, float]:
    return MODE_WEIGHTS[settings.default_mode]


def plain_question(settings: Settings) -> Question:
    """The default request: the default mode, no constraints."""
    return Question(pb.RouteRequest(), {}, [], default_weights(settings))


def mode_question(name: str, settings: Settings) -> Question:
    if name in MODES:
        return Question(
            pb.RouteRequest(mode=MODES[name]), {"mode": name}, ["--mode", name], MODE_WEIGHTS[name]
        )
    if name == "custom mode":
        custom, weights = next(iter(settings.custom_modes.items()))
        return Question(
            pb.RouteRequest(custom_mode=custom),
            {"custom_mode": custom},
            ["--custom-mode", custom],
            weights.as_tuple(),
        )
    latency, cost, quality = WEIGHTS
    return Question(
        pb.RouteRequest(weights=pb.Weights(latency=latency, cost=cost, quality=quality)),
        {"weights": {"latency": latency, "cost": cost, "quality": quality}},
        ["--weights", ",".join(map(str, WEIGHTS))],
        WEIGHTS,
    )


@dataclass(frozen=True)
class Figures:
    """The default request's ranking of the whole catalogue: what the cases draw from."""

    candidates: list[Candidate]  # best first
    eligible: list[ModelRecord]  # the same models' records
    catalogue: list[ModelRecord]

    @property
    def winner(self) -> ModelRecord:
        return self.eligible[0]


@dataclass(frozen=True)
class Case:
    value: Any  # in the proto's JSON form, as REST takes it
    flag: str  # the option of `router route` that sets it (repeated for each item of a list)
    rule: str  # what the scorer names as removing the models this value removes
    keyword: str = ""  # the scorer's name of the field, where it is not the proto's


CASES: dict[str, Callable[[Figures], Case]] = {}


def case(field: str) -> Callable[[Callable[[Figures], Case]], Callable[[Figures], Case]]:
    """Register the case of one field of Constraints."""

    def register(build: Callable[[Figures], Case]) -> Callable[[Figures], Case]:
        CASES[field] = build
        return build

    return register


def commonest(values: list[str], leaving_out: tuple[str, ...]) -> str:
    counts = Counter(v for v in values if v not in leaving_out)
    return counts.most_common(1)[0][0]


@case("min_context_tokens")
def more_context_than_the_winner(f: Figures) -> Case:
    return Case(f.winner.context_length + 1, "--min-context", "context_window", "min_context")


@case("input_modalities")
def an_input_the_winner_lacks(f: Figures) -> Case:
    inputs = [x for m in f.eligible for x in m.input_modalities]
    return Case(
        [commonest(inputs, f.winner.input_modalities)], "--input-modality", "input_modalities"
    )


@case("output_modalities")
def an_output_besides_text(f: Figures) -> Case:
    outputs = [x for m in f.catalogue for x in m.output_modalities]
    return Case([commonest(outputs, ("text",))], "--output-modality", "output_modalities")


@case("required_parameters")
def a_parameter_the_winner_lacks(f: Figures) -> Case:
    parameters = [x for m in f.eligible for x in m.supported_parameters]
    return Case(
        [commonest(parameters, f.winner.supported_parameters)],
        "--require-parameter",
        "required_parameters",
    )


@case("max_prompt_price_per_mtok")
def the_median_prompt_price(f: Figures) -> Case:
    price = statistics.median_low(m.prompt_price * 1e6 for m in f.eligible)
    return Case(price, "--max-prompt-price", "max_prompt_price")


@case("max_completion_price_per_mtok")
def the_median_completion_price(f: Figures) -> Case:
    price = statistics.median_low(m.completion_price * 1e6 for m in f.eligible)
    return Case(price, "--max-completion-price", "max_completion_price")


@case("max_request_cost_usd")
def the_median_expected_cost(f: Figures) -> Case:
    cost = statistics.median_low(c.expected_cost_usd for c in f.candidates)
    return Case(cost, "--max-request-cost", "max_request_cost")


@case("max_ttft_seconds")
def the_median_time_to_first_token(f: Figures) -> Case:
    ttft = statistics.median_low(c.ttft_s for c in f.candidates)
    return Case(ttft, "--max-ttft", "max_ttft", "max_ttft_s")


@case("allow_models")
def two_runners_up(f: Figures) -> Case:
    return Case([f.eligible[2].id, f.eligible[4].id], "--allow-model", "allow_models")


@case("deny_models")
def the_winner(f: Figures) -> Case:
    return Case([f.winner.id], "--deny-model", "deny_models")


@case("allow_providers")
def an_author_but_the_winners(f: Figures) -> Case:
    author = next(m.author for m in f.eligible if m.author != f.winner.author)
    return Case([author], "--allow-provider", "allow_providers")


@case("deny_providers")
def the_winners_author(f: Figures) -> Case:
    return Case([f.winner.author], "--deny-provider", "deny_providers")


@case("free")
def free_models_only(f: Figures) -> Case:
    # The test server leaves free models out (free_models is off), so this leaves no model:
    # each adapter must refuse as the scorer does.
    return Case("only", "--free", "free_only")


@pytest.fixture(scope="module")
def figures(scorer: Scorer, settings: Settings) -> Figures:
    return figures_of(scorer, settings)


def figures_of(scorer: Scorer, settings: Settings) -> Figures:
    ranking = scorer_ranking(scorer, settings, plain_question(settings), len(scorer))
    models = {m.id: m for m in catalogue.load().models}
    return Figures(
        candidates=ranking.candidates,
        eligible=[models[c.model_id] for c in ranking.candidates],
        catalogue=list(models.values()),
    )


def constraint_question(field: str, c: Case, settings: Settings) -> Question:
    """The request with this one constraint, under the default mode."""
    descriptor = FIELDS[field]
    value = c.value
    if descriptor.enum_type is not None:
        numbers = enum_names(descriptor.enum_type)
        value = [numbers[v] for v in value] if isinstance(value, list) else numbers[value]
    values = c.value if isinstance(c.value, list) else [c.value]
    return Question(
        pb.RouteRequest(constraints=pb.Constraints(**{field: value})),
        {"constraints": {field: c.value}},
        [arg for v in values for arg in (c.flag, str(v))],
        default_weights(settings),
        {c.keyword or field: c.value},
    )


def test_every_constraint_field_has_a_case() -> None:
    assert set(CASES) == set(FIELDS)


@pytest.mark.parametrize("field", list(FIELDS))
def test_each_case_changes_the_scorers_answer(
    field: str, figures: Figures, scorer: Scorer, settings: Settings
) -> None:
    c = CASES[field](figures)
    plain = scorers_answer(scorer, settings, plain_question(settings), TOP_K)
    constrained = scorers_answer(scorer, settings, constraint_question(field, c, settings), TOP_K)
    assert isinstance(plain, Answer)
    assert constrained != plain
    if isinstance(constrained, Refusal):
        assert c.rule in constrained.message
    else:
        assert dict(constrained.removed).get(c.rule, 0) > dict(plain.removed).get(c.rule, 0)


@pytest.mark.parametrize("field", list(FIELDS))
def test_each_constraint_field_through_each_adapter(
    field: str, adapter: Adapter, figures: Figures, scorer: Scorer, settings: Settings
) -> None:
    question = constraint_question(field, CASES[field](figures), settings)
    assert adapter.route(question, TOP_K) == scorers_answer(scorer, settings, question, TOP_K)


@pytest.mark.parametrize("mode", MODE_CASES)
def test_each_mode_through_each_adapter(
    mode: str, adapter: Adapter, scorer: Scorer, settings: Settings
) -> None:
    question = mode_question(mode, settings)
    assert adapter.route(question, TOP_K) == scorers_answer(scorer, settings, question, TOP_K)
