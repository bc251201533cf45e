"""The rolling sweep of endpoint stats against the fake OpenRouter: it reaches every routable
model over a few cycles, the top models of each mode first, within each cycle's request budget,
and `:free` ids get their free endpoints' figures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.config import Settings
from service.pb.router.v1 import router_pb2 as pb
from service.router import ModelRouter
from service.runtime import Runtime
from service.scorer import MODE_WEIGHTS
from testkit.fake_openrouter import FakeOpenRouter, RecordedRequest, load_models
from testkit.servers import settings_for

ENDPOINTS_PREFIX, ENDPOINTS_SUFFIX = "/api/v1/models/", "/endpoints"
# 100 requests a second with a refresh every 0.08 s: 8 requests per cycle.
RATE, INTERVAL, BUDGET = 100.0, 0.08, 8
OUTPUT_TOKENS = 500


def routable_rows() -> set[str]:
    """The fake's models a default chat route may use, from their listing alone: served in
    real time, text out and nothing else, a fixed price, not one of OpenRouter's own routers."""
    return {
        str(row["id"])
        for row in load_models()
        if not str(row["id"]).startswith(("~", "openrouter/"))
        and not str(row["id"]).endswith(":batch")
        and row["architecture"]["output_modalities"] == ["text"]
        and float(row["pricing"]["prompt"]) >= 0
    }


def asked(requests: list[RecordedRequest]) -> list[str]:
    """The model ids of the endpoint-stats requests, in order."""
    return [
        r.path.removeprefix(ENDPOINTS_PREFIX).removesuffix(ENDPOINTS_SUFFIX)
        for r in requests
        if r.path.endswith(ENDPOINTS_SUFFIX)
    ]


def expected_latency(router: ModelRouter, model_id: str) -> float:
    """What the scorer expects of the model for 500 output tokens: ttft + 500 / throughput."""
    ranked = router.route(
        pb.RouteRequest(
            mode=pb.MODE_SPEED,
            top_k=1,
            profile=pb.RequestProfile(output_tokens=OUTPUT_TOKENS),
            constraints=pb.Constraints(allow_models=[model_id]),
        )
    )
    return ranked.candidates[0].expected_latency_seconds


@pytest.fixture
def settings(fake: FakeOpenRouter, tmp_path: Path) -> Settings:
    fake.reset()
    # Only sizes the slices: nothing here starts the periodic refresh.
    return settings_for(
        fake,
        tmp_path / "state",
        endpoint_stats_per_second=RATE,
        endpoint_stats_models=1,
        free_models=True,  # off by default; `:free` lookups are under test
    ).model_copy(update={"refresh_interval_s": INTERVAL})


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    built = Runtime.build(settings)
    try:
        assert await built.keeper.refresh()
        yield built
    finally:
        await built.aclose()


async def test_the_sweep_reaches_every_routable_model_within_each_cycles_budget(
    runtime: Runtime, fake: FakeOpenRouter
) -> None:
    router = runtime.router
    routable = routable_rows()
    models, eligible, _ = router.eligibility()
    assert (models, eligible) == (len(load_models()), len(routable))

    def head() -> set[str]:
        return {m for mode in MODE_WEIGHTS for m in router.top_models(mode, 1)}

    first = head()
    slices: list[list[str]] = []

    def measured() -> set[str]:
        return {m for m in routable if router.latency_source(m) == "openrouter-endpoints"}

    for _ in range(20):
        before = len(fake.requests)
        await runtime.keeper.sweep_endpoint_stats()
        slices.append(asked(fake.requests[before:]))
        if measured() == routable:
            break
    assert measured() == routable, "every routable model has endpoint figures"
    assert all(0 < len(ids) <= BUDGET for ids in slices), "no cycle exceeds rate x interval"
    assert len(slices) > 2, "the sweep takes several cycles at this rate"
    assert first <= set(slices[0]), "the top model of each mode comes first"
    bases = {m.removesuffix(":free") for m in routable}
    assert set(asked(fake.requests)) <= routable | bases, "nothing else is asked for"

    now_first, before = head(), len(fake.requests)
    await runtime.keeper.sweep_endpoint_stats()
    assert now_first <= set(asked(fake.requests[before:])), "the next round starts at the top"


async def test_free_ids_take_their_figures_from_the_free_endpoints(
    settings: Settings, fake: FakeOpenRouter
) -> None:
    fake.set_endpoint_stats("z-ai/glm-5.2:free", latency_ms=3_000, throughput=12)
    fake.set_endpoint_stats("z-ai/glm-5.2", latency_ms=500, throughput=250)
    whole_rounds = settings.model_copy(update={"refresh_interval_s": 0})
    runtime = Runtime.build(whole_rounds)
    try:
        assert await runtime.keeper.refresh()
        assert await runtime.keeper.sweep_endpoint_stats() > 0
        router = runtime.router
        assert expected_latency(router, "z-ai/glm-5.2:free") == pytest.approx(
            3.0 + OUTPUT_TOKENS / 12
        )
        assert expected_latency(router, "z-ai/glm-5.2") == pytest.approx(0.5 + OUTPUT_TOKENS / 250)
        for model_id in ("z-ai/glm-5.2:free", "z-ai/glm-5.2"):
            assert router.latency_source(model_id) == "openrouter-endpoints"
        free_ids = [m for m in routable_rows() if m.endswith(":free")]
        assert free_ids
        for model_id in free_ids:
            assert router.latency_source(model_id) == "openrouter-endpoints"
        ids = asked(fake.requests)
        assert ids.count("z-ai/glm-5.2:free") == 1, "asked for as it is (and answered 404)"
        assert ids.count("z-ai/glm-5.2") == 2, "then its base, besides the base's own turn"
    finally:
        await runtime.aclose()


async def test_an_on_demand_refresh_fetches_the_top_models_at_once(
    runtime: Runtime, fake: FakeOpenRouter
) -> None:
    router = runtime.router
    top = {m for mode in MODE_WEIGHTS for m in router.top_models(mode, 1)}
    assert await runtime.keeper.refresh_endpoint_stats() == len(top)
    on_demand = asked(fake.requests)
    assert set(on_demand) - top <= {m.removesuffix(":free") for m in top}, "bases of :free ids"
    before = len(fake.requests)
    await runtime.keeper.sweep_endpoint_stats()
    swept = set(asked(fake.requests[before:]))
    swept -= {m.removesuffix(":free") for m in swept if m.endswith(":free")}
    assert not top & swept, "the round skips what was just fetched"
