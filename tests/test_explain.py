"""`Explain` through gRPC, the REST gateway and `router explain`, against the real server on
127.0.0.1:0 and the embedded catalogue."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from service import catalogue
from service.catalogue import ModelRecord
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub

MODELS = {m.id: m for m in catalogue.load().models}
runner = CliRunner()


def a_chat_model(outputs: tuple[str, ...], completion_price_above: float = 0.0) -> ModelRecord:
    """A realtime chat model priced per token with these outputs, so that nothing else keeps it
    out of a route."""
    return next(
        m
        for m in MODELS.values()
        if m.realtime
        and m.kind == "chat"
        and m.prompt_price > 0
        and m.completion_price * 1e6 > completion_price_above
        and m.output_modalities == outputs
    )


@pytest.fixture
def stub(grpc_address: str) -> Iterator[RouterStub]:
    with grpc.insecure_channel(grpc_address) as channel:
        yield RouterStub(channel)


def nth_for_speed(stub: RouterStub, rank: int) -> tuple[pb.RouteResponse, str]:
    ranking = stub.Route(pb.RouteRequest(mode=pb.MODE_SPEED, top_k=rank))
    return ranking, ranking.candidates[rank - 1].model


def assert_adds_up(m: pb.ModelExplanation, weights: pb.Weights) -> None:
    c, t = m.contributions, m.terms
    assert c.latency + c.cost + c.quality == pytest.approx(m.score)
    assert (c.latency, c.cost, c.quality) == pytest.approx(
        (weights.latency * t.latency, weights.cost * t.cost, weights.quality * t.quality)
    )


def assert_sources_are_the_catalogues(m: pb.ModelExplanation) -> None:
    """The test server has no OpenRouter key and serves no completions: no live figures, so
    every figure comes from the catalogue record."""
    record = MODELS[m.model]
    assert (m.quality.source, m.quality.estimated) == (
        record.quality_source,
        record.quality_estimated,
    )
    for figure in (m.ttft_seconds, m.tokens_per_second):
        assert (figure.source, figure.estimated) == (
            record.latency_source,
            record.latency_estimated,
        )
    assert m.ttft_seconds.value == pytest.approx(record.ttft_s)
    assert m.tokens_per_second.value == pytest.approx(record.tokens_per_s)
    assert m.completion_price_per_mtok == pytest.approx(record.completion_price * 1e6)
    assert m.free == record.free


def test_a_runner_up_is_explained_term_by_term_against_the_winner(stub: RouterStub) -> None:
    ranking, model = nth_for_speed(stub, 7)
    found = stub.Explain(
        pb.ExplainRequest(routing=pb.RouteRequest(mode=pb.MODE_SPEED), model=model)
    )
    assert (found.subject.model, found.subject.rank) == (model, 7)
    assert found.subject.score == pytest.approx(ranking.candidates[6].score)
    assert (found.winner.model, found.winner.rank) == (ranking.model, 1)
    assert found.excluded_by == ""
    assert found.eligible_models == ranking.eligible_models
    n = found.normalisation
    assert 0 < n.latency_min_seconds <= found.subject.expected_latency_seconds
    assert n.cost_floor_usd <= n.cost_max_usd
    for m in (found.subject, found.winner):
        assert_adds_up(m, found.weights)
        assert_sources_are_the_catalogues(m)
    *terms, total = found.summary
    speed = (("latency", "0.70"), ("cost", "0.20"), ("quality", "0.10"))
    for line, (name, weight) in zip(terms, speed, strict=True):
        assert line.startswith(f"{name}: ")
        assert f"\N{MULTIPLICATION SIGN} {weight} = " in line
    behind = found.winner.score - found.subject.score
    assert total.startswith(f"ranked 7 of {ranking.eligible_models}, {behind:.2f} behind")
    assert ranking.model in total


def test_without_a_model_the_winner_is_explained_alone(stub: RouterStub) -> None:
    routing = pb.RouteRequest(weights=pb.Weights(latency=0, cost=1, quality=1))
    found = stub.Explain(pb.ExplainRequest(routing=routing))
    assert found.winner.model == stub.Route(routing).model
    assert found.subject == found.winner
    assert found.winner.rank == 1
    assert_adds_up(found.winner, found.weights)
    assert found.summary[-1] == (
        f"ranked 1 of {found.eligible_models}, score {found.winner.score:.2f}"
    )


def test_a_model_that_does_not_answer_in_text_is_excluded_from_a_chat_route(
    stub: RouterStub,
) -> None:
    image = a_chat_model(("image", "text"))
    found = stub.Explain(pb.ExplainRequest(routing=pb.RouteRequest(), model=image.id))
    assert found.excluded_by == "output_modalities"
    assert found.subject.rank == 0
    assert found.winner.rank == 1
    assert_sources_are_the_catalogues(found.subject)
    assert found.summary[0].startswith("excluded by output_modalities: it produces ")
    assert "text only" in found.summary[0]


def test_a_model_removed_by_the_requests_constraint_says_which(stub: RouterStub) -> None:
    chat = [m for m in MODELS.values() if m.output_modalities == ("text",) and m.kind == "chat"]
    small = min(
        (m for m in chat if m.realtime and m.prompt_price >= 0), key=lambda m: m.context_length
    )
    routing = pb.RouteRequest(
        profile=pb.RequestProfile(prompt_tokens=small.context_length, output_tokens=100)
    )
    found = stub.Explain(pb.ExplainRequest(routing=routing, model=small.id))
    assert found.excluded_by == "context_window"
    needed = small.context_length + 100
    because = "(prompt + output tokens, or min_context_tokens if more)"
    assert found.summary[0] == (
        f"excluded by context_window: its context window ({small.context_length:,} tokens) is"
        f" smaller than the {needed:,} this request needs {because}"
    )
    # The window must hold the larger of the two, not their sum.
    routing.constraints.min_context_tokens = small.context_length + 1
    found = stub.Explain(pb.ExplainRequest(routing=routing, model=small.id))
    assert f"smaller than the {small.context_length + 100:,} this" in found.summary[0]
    routing.constraints.min_context_tokens = small.context_length + 500
    found = stub.Explain(pb.ExplainRequest(routing=routing, model=small.id))
    assert f"smaller than the {small.context_length + 500:,} this" in found.summary[0]


def test_a_free_variant_left_out_says_why_in_words(stub: RouterStub) -> None:
    """The shared server runs with the defaults: free variants off."""
    found = stub.Explain(pb.ExplainRequest(model="z-ai/glm-5.2:free"))
    assert found.excluded_by == "free_quota"
    assert "settings turn them off (free_models)" in found.summary[0]


def test_an_unknown_model_is_invalid_argument(stub: RouterStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Explain(pb.ExplainRequest(model="nobody/nothing"))
    call = caught.value
    assert isinstance(call, grpc.Call)
    assert call.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nobody/nothing" in (call.details() or "")


def test_rest_explain(gateway: httpx.Client, stub: RouterStub) -> None:
    ranking, model = nth_for_speed(stub, 3)
    reply = gateway.post("/explain", json={"mode": "speed", "model": model})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["subject"]["model"] == model
    assert body["subject"]["rank"] == 3
    assert body["winner"]["model"] == ranking.model
    assert body["subject"]["quality"]["source"] == MODELS[model].quality_source
    assert body["summary"][-1].startswith(f"ranked 3 of {ranking.eligible_models}")
    assert "/explain" in gateway.get("/openapi.json").json()["paths"]


def test_rest_explain_names_the_constraint_that_removed_the_model(gateway: httpx.Client) -> None:
    model = a_chat_model(("text",), completion_price_above=10).id
    reply = gateway.post(
        "/explain",
        json={"model": model, "constraints": {"max_completion_price_per_mtok": 10}},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["excluded_by"] == "max_completion_price"
    assert body["subject"]["rank"] == 0
    price = MODELS[model].completion_price * 1e6
    assert body["summary"][0] == (
        f"excluded by max_completion_price: its completion price (${price:.3f}/M tokens) is"
        " above max_completion_price_per_mtok (10)"
    )
    assert body["winner"]["completion_price_per_mtok"] <= 10


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"model": "nobody/nothing"}, 400, "nobody/nothing"),
        ({"model": 3}, 400, "model"),
        ({"weights": {"latency": 0, "cost": 0, "quality": 0}}, 400, "all be zero"),
        ({"constraints": {"min_context_tokens": 4_000_000_000}}, 422, "no model satisfies"),
    ],
)
def test_rest_explain_errors(
    gateway: httpx.Client, body: dict[str, object], status: int, fragment: str
) -> None:
    reply = gateway.post("/explain", json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert fragment in error["message"]
    assert error["code"]


def invoke(*args: str) -> str:
    result = runner.invoke(app, ["explain", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_shows_both_models_their_sources_and_the_summary(stub: RouterStub) -> None:
    ranking, model = nth_for_speed(stub, 4)
    text = invoke(model, "--mode", "speed")
    found = json.loads(invoke(model, "--mode", "speed", "--json"))
    assert f"best: {ranking.model}" in text
    for m in (found["subject"], found["winner"]):
        assert m["model"] in text
        assert f"({m['quality']['source']})" in text
        assert f"({m['ttft_seconds']['source']})" in text
    for line in found["summary"]:
        assert line in text
    assert "normalised over latency" in text


def test_cli_through_grpc(grpc_address: str) -> None:
    image = a_chat_model(("image", "text"))
    found = json.loads(invoke(image.id, "--target", grpc_address, "--json"))
    assert found["excluded_by"] == "output_modalities"
    assert found["subject"]["rank"] == 0


def test_cli_unknown_model_exits_2() -> None:
    result = runner.invoke(app, ["explain", "nobody/nothing"])
    assert result.exit_code == 2
    assert "nobody/nothing" in result.stderr
