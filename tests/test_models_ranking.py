"""ListModels ranks the catalogue when asked (gRPC ListModels with `ranking`, `GET /models` with
routing parameters, `router models --mode …`): every model the request may use, best first,
each with its place in the whole ranking and its scores, paged and filtered, as the scorer
ranks them."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from service import catalogue
from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.scorer import MODE_WEIGHTS, NoEligibleModel, Scorer
from tests.adapters import (
    Adapter,
    Question,
    Ranked,
    refusal,
    scorer_ranking,
    served_scorer,
)
from tests.cli_output import table_rows

AUTHORS = {m.id: m.author for m in catalogue.load().models}
SPEED = Question(
    pb.RouteRequest(mode=pb.MODE_SPEED),
    {"mode": "speed"},
    ["--mode", "speed"],
    MODE_WEIGHTS["speed"],
)
CHEAP_AND_NOT_OPENAI = Question(
    pb.RouteRequest(
        mode=pb.MODE_COST,
        constraints=pb.Constraints(deny_providers=["openai"], max_ttft_seconds=2.0),
        profile=pb.RequestProfile(prompt_tokens=4000, output_tokens=100),
    ),
    {
        "mode": "cost",
        "constraints": {"deny_providers": ["openai"], "max_ttft_seconds": 2.0},
        "profile": {"prompt_tokens": 4000, "output_tokens": 100},
    },
    [
        "--mode",
        "cost",
        "--deny-provider",
        "openai",
        "--max-ttft",
        "2.0",
        "--prompt-tokens",
        "4000",
        "--output-tokens",
        "100",
    ],
    MODE_WEIGHTS["cost"],
    {"deny_providers": ["openai"], "max_ttft_s": 2.0},
)
NOTHING_LEFT = Question(
    pb.RouteRequest(constraints=pb.Constraints(allow_providers=["nobody"])),
    {"constraints": {"allow_providers": ["nobody"]}},
    ["--allow-provider", "nobody"],
    MODE_WEIGHTS["balanced"],
    {"allow_providers": ["nobody"]},
)
runner = CliRunner()


@pytest.fixture(scope="module")
def scorer(settings: Settings) -> Scorer:
    return served_scorer(settings)


def scorers_listing(
    scorer: Scorer, settings: Settings, question: Question, *, author: str, limit: int, offset: int
) -> Ranked:
    """The scorer's whole ranking, filtered by author and paged, each model keeping its place."""
    ranking = scorer_ranking(scorer, settings, question, len(scorer))
    matching = [
        (place, c.model_id, c.score)
        for place, c in enumerate(ranking.candidates, start=1)
        if not author or AUTHORS[c.model_id] == author
    ]
    return Ranked(
        models=tuple(matching[offset : offset + limit]),
        total=len(matching),
        eligible=ranking.eligible,
        removed=tuple(sorted(ranking.removed.items())),
    )


@pytest.mark.parametrize(
    ("question", "author", "limit", "offset"),
    [
        (SPEED, "", 7, 0),
        (SPEED, "", 5, 20),
        (SPEED, "google", 4, 1),
        (CHEAP_AND_NOT_OPENAI, "", 6, 3),
    ],
    ids=["speed first page", "speed page 5", "speed google", "constrained"],
)
def test_each_adapter_ranks_as_the_scorer(
    adapter: Adapter,
    scorer: Scorer,
    settings: Settings,
    question: Question,
    author: str,
    limit: int,
    offset: int,
) -> None:
    listed = adapter.rank_models(question, author=author, limit=limit, offset=offset)
    expected = scorers_listing(
        scorer, settings, question, author=author, limit=limit, offset=offset
    )
    assert listed == expected
    assert len(expected.models) == limit


def test_each_adapter_refuses_as_the_scorer(
    adapter: Adapter, scorer: Scorer, settings: Settings
) -> None:
    with pytest.raises(NoEligibleModel) as refused:
        scorer_ranking(scorer, settings, NOTHING_LEFT, len(scorer))
    listed = adapter.rank_models(NOTHING_LEFT, author="", limit=0, offset=0)
    assert listed == refusal(str(refused.value))


@pytest.fixture
def stub(grpc_address: str) -> Iterator[RouterStub]:
    with grpc.insecure_channel(grpc_address) as channel:
        yield RouterStub(channel)


def test_a_ranked_page_carries_the_candidates_of_route(stub: RouterStub) -> None:
    """The same candidates, figures and sources as Route gives, and what the ranking was made
    with."""
    routing = CHEAP_AND_NOT_OPENAI.message
    routed = stub.Route(pb.RouteRequest(top_k=4, **{f.name: v for f, v in routing.ListFields()}))
    listed = stub.ListModels(pb.ListModelsRequest(ranking=routing, limit=4))
    assert [m.candidate for m in listed.models] == list(routed.candidates)
    assert [m.rank for m in listed.models] == [1, 2, 3, 4]
    for field in (
        "weights",
        "eligible_models",
        "removed_by_constraint",
        "profile",
        "normalisation",
        "catalogue_version",
    ):
        assert getattr(listed, field) == getattr(routed, field), field


def test_a_plain_listing_is_not_ranked(gateway: httpx.Client) -> None:
    body = gateway.get("/models", params={"limit": 2}).json()
    assert [m["rank"] for m in body["models"]] == [0, 0]
    assert [m["candidate"] for m in body["models"]] == [None, None]
    assert body["weights"] is None
    assert body["total"] == len(AUTHORS)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"mode": "fastest"}, "mode"),
        ({"weights": "1,2"}, "latency,cost,quality"),
        ({"weights": "-1,1,1"}, "non-negative"),
        ({"mode": "speed", "weights": "1,1,1"}, "at most one"),
        ({"custom_mode": "nope"}, "unknown custom mode"),
        ({"input_modalities": "smell"}, "input_modalities"),
        ({"max_ttft_seconds": "soon"}, "max_ttft_seconds"),
        ({"max_ttft_seconds": "nan"}, "max_ttft_seconds"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_ranking_parameters_are_400(
    gateway: httpx.Client, query: dict[str, str], fragment: str
) -> None:
    reply = gateway.get("/models", params=query)
    assert reply.status_code == 400, reply.text
    assert fragment in reply.json()["error"]["message"]


def test_an_unsatisfiable_ranking_is_422(gateway: httpx.Client) -> None:
    reply = gateway.get("/models", params={"allow_providers": "nobody"})
    assert reply.status_code == 422
    assert "allow_providers" in reply.json()["error"]["message"]


def test_the_cli_table_shows_the_places_and_the_bounds() -> None:
    args = ["models", "--mode", "quality", "--limit", "3", "--offset", "2"]
    result = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "eligible models, ranked" in result.stdout
    assert "normalised over latency" in result.stdout
    assert [row["rank"] for row in table_rows(result.stdout)] == ["3", "4", "5"]
