"""Would a user who asked for speed, cost or quality agree with the pick? Judged on the embedded
catalogue against its own figures, with free variants on and off, for the default request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service import catalogue
from service.catalogue import ModelRecord
from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.router import ModelRouter
from service.scorer import LiveStats

MODES = {
    "speed": pb.MODE_SPEED,
    "cost": pb.MODE_COST,
    "quality": pb.MODE_QUALITY,
    "balanced": pb.MODE_BALANCED,
}


@pytest.fixture(scope="module", params=[True, False], ids=["free-on", "free-off"])
def router(request: pytest.FixtureRequest) -> Iterator[ModelRouter]:
    return ModelRouter(catalogue.load(), Settings(free_models=request.param))


def ranking(router: ModelRouter, mode: str, top_k: int) -> list[pb.Candidate]:
    return list(router.route(pb.RouteRequest(mode=MODES[mode], top_k=top_k)).candidates)


def everyone(router: ModelRouter) -> list[pb.Candidate]:
    """Every model a default chat route considers, with the figures the scorer used."""
    return ranking(router, "balanced", 1000)


def record(router: ModelRouter, model_id: str) -> ModelRecord:
    found = router.model(model_id)
    assert found is not None
    return found


def quantile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


def test_speed_picks_a_model_near_the_fastest(router: ModelRouter) -> None:
    latencies = [c.expected_latency_seconds for c in everyone(router)]
    fastest, decile = min(latencies), quantile(latencies, 0.10)
    top = ranking(router, "speed", 5)
    assert top[0].expected_latency_seconds <= 1.5 * fastest, top[0]
    for c in top:
        assert c.expected_latency_seconds <= decile, (c.model, decile)


def test_quality_picks_measured_models_from_the_best(router: ModelRouter) -> None:
    measured = [c.terms.quality for c in everyone(router) if not c.quality_estimated]
    best = quantile(measured, 0.85)
    for c in ranking(router, "quality", 5):
        assert not c.quality_estimated, c.model
        assert c.terms.quality >= best, (c.model, c.terms.quality, best)


def test_cost_picks_from_the_cheapest_tenth(router: ModelRouter) -> None:
    costs = [c.expected_cost_usd for c in everyone(router)]
    cheap = quantile(costs, 0.10)
    for c in ranking(router, "cost", 10):
        assert c.expected_cost_usd <= cheap, (c.model, c.expected_cost_usd)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_offers_text_chat_models_only(router: ModelRouter, mode: str) -> None:
    for c in ranking(router, mode, 10):
        model = record(router, c.model)
        assert model.output_modalities == ("text",), c.model
        assert model.kind == "chat", c.model


def test_the_modes_do_not_all_pick_the_same_model(router: ModelRouter) -> None:
    picks = {mode: ranking(router, mode, 1)[0].model for mode in MODES}
    assert len(set(picks.values())) >= 3, picks


def test_free_variants_win_on_their_other_terms_only(router: ModelRouter) -> None:
    ranked = everyone(router)
    paid = min((c for c in ranked if c.expected_cost_usd > 0), key=lambda c: c.expected_cost_usd)
    assert paid.terms.cost == 1.0
    for c in ranked:
        if c.expected_cost_usd == 0:
            assert c.terms.cost == 1.0, c.model


def test_an_estimate_never_outranks_a_measurement_of_equal_footing(router: ModelRouter) -> None:
    """A quality prior sits below the measured models its own median came from."""
    ranked = everyone(router)
    measured = sorted(c.terms.quality for c in ranked if not c.quality_estimated)
    for c in ranked:
        if c.quality_estimated:
            assert c.terms.quality <= quantile(measured, 0.85), c.model


def test_each_figure_says_where_it_comes_from(router: ModelRouter) -> None:
    for c in ranking(router, "quality", 10):
        model = record(router, c.model)
        assert (c.quality_source, c.latency_source) == (model.quality_source, model.latency_source)
        assert (c.ttft_seconds, c.tokens_per_second) == (model.ttft_s, model.tokens_per_s)
        assert c.expected_latency_seconds == model.ttft_s + 500 / model.tokens_per_s
        assert c.quality_source
        assert c.latency_source


def test_a_price_tier_guess_stays_below_a_measured_frontier_model(router: ModelRouter) -> None:
    guess, measured = (
        record(router, i) for i in ("cohere/command-r-plus-08-2024", "anthropic/claude-opus-4.5")
    )
    assert guess.quality_estimated
    assert not measured.quality_estimated
    assert guess.quality < measured.quality


@pytest.mark.parametrize("on", [True, False])
def test_free_variants_are_routed_to_only_when_turned_on(on: bool) -> None:
    router = ModelRouter(catalogue.load(), Settings(free_models=on))
    free = [c.model for c in everyone(router) if record(router, c.model).free_variant]
    assert bool(free) is on, free


def test_free_variants_are_off_by_default() -> None:
    assert not Settings().free_models
    default = ModelRouter(catalogue.load(), Settings())
    default.set_free_available(True)
    assert default.eligibility()[2]["free_quota"] == 17


def test_an_implausibly_fast_figure_does_not_squeeze_the_rest() -> None:
    """One model measured absurdly fast (say, a one-chunk answer read as huge throughput)
    ranks first, and the others keep their order: it does not push them all to the bottom."""
    router = ModelRouter(catalogue.load(), Settings())
    before = [c.model for c in ranking(router, "speed", 5)]
    outlier = everyone(router)[100].model
    router.update_live_stats([(LiveStats(outlier, ttft_s=0.01, tokens_per_s=100_000.0), None)])
    after = [c.model for c in ranking(router, "speed", 6)]
    assert after[0] == outlier
    assert after[1:] == before


def test_live_stats_carry_where_their_latency_comes_from() -> None:
    router = ModelRouter(catalogue.load(), Settings())
    model_id = everyone(router)[0].model
    own = record(router, model_id).latency_source
    gone = LiveStats("gone/model", ttft_s=0.2)  # no longer in the catalogue: skipped
    router.update_live_stats([(LiveStats(model_id, ttft_s=0.2), "learned"), (gone, "learned")])
    assert router.latency_source(model_id) == "learned"
    router.update_live_stats([(LiveStats(model_id), None)])
    assert router.latency_source(model_id) == own
