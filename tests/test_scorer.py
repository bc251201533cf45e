"""The native scorer, called the way the service calls it."""

from __future__ import annotations

import math
import threading

import pytest

from service import catalogue
from service.scorer import (
    LATENCY_SPAN,
    MODE_WEIGHTS,
    Constraints,
    InvalidCatalogue,
    InvalidRequest,
    LiveStats,
    ModelSpec,
    NoEligibleModel,
    Scorer,
)


def model(model_id: str, **overrides: object) -> ModelSpec:
    spec: dict[str, object] = {
        "id": model_id,
        "context_length": 128_000,
        "prompt_price": 1e-6,
        "completion_price": 2e-6,
        "input_modalities": ["text"],
        "output_modalities": ["text"],
        "supported_parameters": ["tools"],
        "quality": 0.5,
        "quality_estimated": False,
        "ttft_s": 0.5,
        "tokens_per_s": 100.0,
        "latency_estimated": False,
    }
    spec.update(overrides)
    return ModelSpec(**spec)  # type: ignore[arg-type]


TRIO = [
    model("fast/small", ttft_s=0.1, tokens_per_s=300.0, quality=0.3),
    model("free/model", prompt_price=0.0, completion_price=0.0, ttft_s=2.0, quality=0.2),
    model("big/frontier", prompt_price=1e-5, completion_price=5e-5, ttft_s=1.5, quality=0.9),
]


def test_mode_weights_are_the_published_ones() -> None:
    assert MODE_WEIGHTS == {
        "speed": (0.70, 0.20, 0.10),
        "cost": (0.20, 0.70, 0.10),
        "quality": (0.10, 0.20, 0.70),
        "balanced": (1 / 3, 1 / 3, 1 / 3),
    }


def test_score_matches_the_formula() -> None:
    scorer = Scorer("t", TRIO)
    prompt, output = 1000, 500
    ranking = scorer.rank((0.5, 0.3, 0.2), prompt_tokens=prompt, output_tokens=output, top_k=3)
    by_id = {m.id: m for m in TRIO}

    def log_latency(m: ModelSpec) -> float:
        return math.log(m.ttft_s + output / m.tokens_per_s)

    def cost(m: ModelSpec) -> float:
        return prompt * m.prompt_price + output * m.completion_price

    # Too few models for the fastest to count as an outlier, and less than the span apart.
    lats = sorted(log_latency(m) for m in TRIO)
    low, high = lats[0], lats[-1]
    assert high - low < math.log(LATENCY_SPAN)
    floor = min(cost(m) for m in TRIO if cost(m) > 0)
    costs = [math.log(max(cost(m), floor)) for m in TRIO]
    assert ranking.normalisation == pytest.approx(
        (math.exp(low), math.exp(high), floor, math.exp(max(costs)))
    )
    for c in ranking.candidates:
        m = by_id[c.model_id]
        lat_term = 1 - (log_latency(m) - low) / (high - low)
        cost_term = 1 - (math.log(max(cost(m), floor)) - min(costs)) / (max(costs) - min(costs))
        want = 0.5 * lat_term + 0.3 * cost_term + 0.2 * m.quality
        assert c.score == pytest.approx(want, abs=1e-12)
        assert (c.latency_term, c.cost_term) == pytest.approx((lat_term, cost_term), abs=1e-12)
        assert (c.ttft_s, c.tokens_per_s) == (m.ttft_s, m.tokens_per_s)
    scores = [c.score for c in ranking.candidates]
    assert scores == sorted(scores, reverse=True)
    assert ranking.weights == pytest.approx((0.5, 0.3, 0.2))


@pytest.mark.parametrize(
    ("mode", "best"),
    # A free model is worth no more on cost than the cheapest paid one, which fast/small is.
    [("speed", "fast/small"), ("cost", "fast/small"), ("quality", "big/frontier")],
)
def test_each_mode_picks_its_model(mode: str, best: str) -> None:
    ranking = Scorer("t", TRIO).rank(MODE_WEIGHTS[mode], prompt_tokens=1000, output_tokens=500)
    assert ranking.candidates[0].model_id == best
    assert ranking.weights == MODE_WEIGHTS[mode]


def test_constraints_filter_and_are_counted() -> None:
    scorer = Scorer(
        "t",
        [*TRIO, model("openrouter/auto", prompt_price=-1.0, completion_price=-1.0)],
    )
    ranking = scorer.rank(
        MODE_WEIGHTS["cost"],
        prompt_tokens=1000,
        output_tokens=500,
        constraints=Constraints(free="exclude", deny_models=["fast/*"]),
    )
    assert [c.model_id for c in ranking.candidates] == ["big/frontier"]
    assert ranking.eligible == 1
    assert ranking.removed == {"dynamic_price": 1, "deny_models": 1, "exclude_free": 1}


def test_plain_routes_are_chat_routes_and_requests_widen_them() -> None:
    scorer = Scorer(
        "t",
        [
            *TRIO,
            model("paint/pictures", output_modalities=["image", "text"]),
            model("openrouter/free", prompt_price=0.0, completion_price=0.0, kind="meta_router"),
            model("meta/llama-guard", kind="guard"),
        ],
    )

    def route(**constraints: object) -> list[str]:
        ranking = scorer.rank(
            MODE_WEIGHTS["cost"],
            prompt_tokens=1000,
            output_tokens=500,
            top_k=10,
            constraints=Constraints(**constraints),  # type: ignore[arg-type]
        )
        return sorted(c.model_id for c in ranking.candidates)

    assert route() == ["big/frontier", "fast/small", "free/model"]
    assert route(output_modalities=["image"]) == ["paint/pictures"]
    assert route(allow_models=["openrouter/free", "meta/*"]) == ["openrouter/free"]
    assert scorer.eligibility() == (
        6,
        3,
        [("output_modalities", 1), ("meta_router", 1), ("guard_model", 1)],
    )
    with pytest.raises(InvalidRequest, match="output modality"):
        route(output_modalities=["smell"])
    with pytest.raises(InvalidCatalogue, match="kind"):
        model("odd/kind", kind="oracle")


def test_a_spent_free_allowance_removes_free_variants_until_it_returns() -> None:
    scorer = Scorer(
        "t", [*TRIO, model("big/frontier:free", prompt_price=0.0, completion_price=0.0)]
    )

    def route() -> tuple[list[str], dict[str, int]]:
        ranking = scorer.rank(MODE_WEIGHTS["cost"], prompt_tokens=10, output_tokens=10, top_k=4)
        return sorted(c.model_id for c in ranking.candidates), ranking.removed

    everyone = ["big/frontier", "big/frontier:free", "fast/small", "free/model"]
    assert route() == (everyone, {})
    # Only `:free` variants share OpenRouter's allowance; free/model is merely priced at 0.
    scorer.set_free_available(False)
    assert route() == (["big/frontier", "fast/small", "free/model"], {"free_quota": 1})
    scorer.replace_catalogue("t2", [*TRIO, model("big/frontier:free")])
    assert route()[1] == {"free_quota": 1}
    scorer.set_free_available(True)
    assert route()[1] == {}


def test_explain_places_a_model_beside_the_winner() -> None:
    scorer = Scorer("t", TRIO)
    weights = MODE_WEIGHTS["quality"]
    full = scorer.rank(weights, prompt_tokens=1000, output_tokens=500, top_k=3).candidates
    e = scorer.explain(weights, "free/model", prompt_tokens=1000, output_tokens=500)
    position = [c.model_id for c in full].index("free/model")
    assert (e.rank, e.excluded_by, e.eligible) == (position + 1, None, 3)
    assert e.winner.model_id == full[0].model_id
    assert e.subject is not None
    assert e.subject.score == full[position].score
    removed = scorer.explain(
        weights,
        "free/model",
        prompt_tokens=1000,
        output_tokens=500,
        constraints=Constraints(free="exclude"),
    )
    assert (removed.rank, removed.subject, removed.excluded_by) == (0, None, "exclude_free")
    with pytest.raises(InvalidRequest, match="no model"):
        scorer.explain(weights, "no/such", prompt_tokens=1, output_tokens=1)


def test_no_eligible_model_names_the_constraint() -> None:
    with pytest.raises(NoEligibleModel, match="context_window: 3"):
        Scorer("t", TRIO).rank((1, 1, 1), prompt_tokens=200_000, output_tokens=1)


@pytest.mark.parametrize(
    "weights", [(-1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (math.nan, 1.0, 1.0), (math.inf, 0.0, 0.0)]
)
def test_bad_weights_are_refused(weights: tuple[float, float, float]) -> None:
    with pytest.raises(InvalidRequest, match="weight"):
        Scorer("t", TRIO).rank(weights, prompt_tokens=1, output_tokens=1)


def test_bad_catalogue_is_refused() -> None:
    scorer = Scorer("t", TRIO)
    with pytest.raises(InvalidCatalogue, match="twice"):
        Scorer("t", [model("a/a"), model("a/a")])
    with pytest.raises(InvalidCatalogue, match="twice"):
        scorer.replace_catalogue("u", [model("a/a"), model("a/a")])
    assert (scorer.version, len(scorer)) == ("t", 3)
    with pytest.raises(TypeError):
        Scorer("t", [{"id": "a/a"}])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id": "noslash"}, "author/name"),
        ({"quality": 2.0}, "quality"),
        ({"prompt_price": math.nan}, "prompt price"),
        ({"completion_price": 2.0}, "completion price"),
        ({"ttft_s": -1.0}, "time to first token"),
        ({"tokens_per_s": 0.0}, "throughput"),
        ({"input_modalities": ["text", "smell"]}, "input modality"),
        ({"kind": "oracle"}, "kind"),
    ],
)
def test_a_malformed_model_is_refused_when_made(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidCatalogue, match=message):
        model("a/a", **overrides)


def test_specs_and_stats_read_back() -> None:
    spec = model("meta/llama-guard", kind="guard", realtime=False)
    assert (spec.id, spec.kind, spec.realtime, spec.context_length) == (
        "meta/llama-guard",
        "guard",
        False,
        128_000,
    )
    assert (spec.input_modalities, spec.supported_parameters) == (["text"], ["tools"])
    assert model("a/a").kind == "chat"
    stats = LiveStats("a/a", tokens_per_s=80.0)
    assert (stats.id, stats.ttft_s, stats.tokens_per_s) == ("a/a", None, 80.0)
    assert (stats.circuit_open, stats.latency_estimated) == (False, None)


def test_replace_catalogue_swaps_everything() -> None:
    scorer = Scorer("one", TRIO)
    scorer.replace_catalogue("two", [model("only/model")])
    ranking = scorer.rank((1, 0, 0), prompt_tokens=10, output_tokens=10)
    assert (scorer.version, len(scorer), ranking.catalogue_version) == ("two", 1, "two")
    assert [c.model_id for c in ranking.candidates] == ["only/model"]


def test_embedded_catalogue_loads_into_the_scorer() -> None:
    snapshot = catalogue.load()
    scorer = snapshot.scorer()
    assert len(scorer) == len(snapshot.models) >= 400
    ranking = scorer.rank(MODE_WEIGHTS["speed"], prompt_tokens=1000, output_tokens=500, top_k=5)
    assert len(ranking.candidates) == 5
    assert ranking.candidates[0].model_id in set(scorer.model_ids())
    for record in snapshot.models:
        spec = record.spec()
        assert (spec.id, spec.kind, spec.realtime, spec.ttft_s) == (
            record.id,
            record.kind,
            record.realtime,
            record.ttft_s,
        )
        assert tuple(spec.supported_parameters) == record.supported_parameters


def test_live_stats_override_priors() -> None:
    scorer = Scorer("t", TRIO)
    scorer.update_stats([LiveStats("big/frontier", ttft_s=0.01, tokens_per_s=1000.0)])
    ranking = scorer.rank(MODE_WEIGHTS["speed"], prompt_tokens=1000, output_tokens=500, top_k=3)
    assert ranking.best == "big/frontier"
    by_id = {c.model_id: c for c in ranking.candidates}
    assert by_id["big/frontier"].expected_latency_s == pytest.approx(0.01 + 500 / 1000.0)
    assert by_id["fast/small"].latency_estimated is False


def test_live_stats_mark_latency_measured() -> None:
    scorer = Scorer("t", [model("a/a", latency_estimated=True), model("b/b")])
    ranking = scorer.rank((1, 0, 0), prompt_tokens=10, output_tokens=10, top_k=2)
    assert {c.model_id: c.latency_estimated for c in ranking.candidates}["a/a"] is True
    scorer.update_stats([LiveStats("a/a", tokens_per_s=80.0)])
    ranking = scorer.rank((1, 0, 0), prompt_tokens=10, output_tokens=10, top_k=2)
    assert {c.model_id: c.latency_estimated for c in ranking.candidates}["a/a"] is False


def test_open_circuit_removes_the_model() -> None:
    scorer = Scorer("t", TRIO)
    scorer.update_stats([LiveStats("fast/small", circuit_open=True)])
    ranking = scorer.rank(MODE_WEIGHTS["speed"], prompt_tokens=1000, output_tokens=500)
    assert "fast/small" not in [c.model_id for c in ranking.candidates]
    assert ranking.removed == {"circuit_open": 1}
    scorer.update_stats([LiveStats("fast/small", circuit_open=False)])
    ranking = scorer.rank(MODE_WEIGHTS["speed"], prompt_tokens=1000, output_tokens=500)
    assert ranking.best == "fast/small"


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([{"id": "fast/small", "ttft_s": 1.0}, {"id": "no/such"}], "no such model"),
        ([{"id": "fast/small", "tokens_per_s": 0.0}], "throughput"),
        ([{"id": "fast/small", "ttft_s": -1.0}], "time to first token"),
        ([{"id": "fast/small", "ttft_s": math.nan}], "time to first token"),
    ],
)
def test_bad_stats_apply_nothing(batch: list[dict[str, object]], message: str) -> None:
    """An unknown id refuses the batch; an out-of-range figure refuses the stats when made."""
    scorer = Scorer("t", TRIO)
    before = scorer.rank((1, 0, 0), prompt_tokens=1000, output_tokens=500, top_k=3)
    with pytest.raises(InvalidRequest, match=message):
        scorer.update_stats([LiveStats(**entry) for entry in batch])  # type: ignore[arg-type]
    after = scorer.rank((1, 0, 0), prompt_tokens=1000, output_tokens=500, top_k=3)
    assert [c.expected_latency_s for c in after.candidates] == [
        c.expected_latency_s for c in before.candidates
    ]


def test_stats_survive_a_catalogue_replacement() -> None:
    scorer = Scorer("one", TRIO)
    scorer.update_stats([LiveStats("free/model", circuit_open=True)])
    scorer.replace_catalogue("two", [*TRIO, model("new/model")])
    ranking = scorer.rank((1, 1, 1), prompt_tokens=10, output_tokens=10, top_k=10)
    assert ranking.removed == {"circuit_open": 1}
    assert ranking.eligible == 3


def test_readers_never_see_half_a_stats_update() -> None:
    """Rank on one thread while another swaps every model's stats between two whole sets."""
    size = 3_000  # above the size at which ranking releases the GIL, so the threads overlap
    models = [model(f"m{i % 7}/n{i}", tokens_per_s=100.0) for i in range(size)]
    scorer = Scorer("t", models)
    batches = [[LiveStats(m.id, ttft_s=ttft) for m in models] for ttft in (1.0, 2.0)]
    done = threading.Event()

    def swap() -> None:
        for k in range(200):
            scorer.update_stats(batches[k % 2])
        done.set()

    writer = threading.Thread(target=swap)
    writer.start()
    seen = set()
    reads = 0
    while reads < 2_000 and not (done.is_set() and reads > 100):
        ranking = scorer.rank((1, 0, 0), prompt_tokens=10, output_tokens=100, top_k=size)
        ttfts = {round(c.expected_latency_s - 1.0, 9) for c in ranking.candidates}
        assert len(ttfts) == 1, f"a ranking mixed two stats batches: {sorted(ttfts)}"
        seen |= ttfts
        reads += 1
    writer.join(timeout=30)
    assert done.is_set()
    assert seen <= {0.5, 1.0, 2.0}  # the prior, then either whole batch
    assert seen & {1.0, 2.0}
