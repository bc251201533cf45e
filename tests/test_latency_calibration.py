"""One latency scale, against the fake OpenRouter: endpoint figures are primary, the catalogue's
priors are calibrated onto their scale (given enough models with both), the router's own
observations win over both, and every model's figure names its source."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from rest_gateway.proto_models import to_json
from service.catalogue_keeper import CatalogueKeeper, initial_catalogue
from service.config import ModelOverride, Settings
from service.core import catalogue_status
from service.live_figures import LiveFigures
from service.openrouter import OpenRouterClient
from service.pb.router.v1 import router_pb2 as pb
from service.router import ModelRouter
from testkit.fake_openrouter import FakeOpenRouter
from testkit.servers import settings_for
from tests.test_endpoint_sweep import OUTPUT_TOKENS, expected_latency

# The endpoint scale the fake is given: a quarter of each prior's time to first token, three
# times its throughput.
TTFT_RATIO, THROUGHPUT_RATIO = 0.25, 3.0
FAMILY_PRIOR_ONLY = "x-ai/grok-4.6"  # the catalogue's figure is a family prior
MEASURED_PRIOR_ONLY = "openai/gpt-4o-mini"  # the catalogue's figure is Artificial Analysis'
TTFT_ONLY = "qwen/qwen3-coder"  # OpenRouter reports its time to first token, no throughput
MEASURED = "deepseek/deepseek-v4-flash"  # OpenRouter reports both, off the common scale
OPERATOR = "openai/gpt-5"  # the operator's figures


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Router:
    router: ModelRouter
    figures: LiveFigures
    keeper: CatalogueKeeper
    clock: Clock

    def latency(self, model_id: str) -> tuple[object, str]:
        """The expected seconds for 500 output tokens, and where the figures come from."""
        return expected_latency(self.router, model_id), self.router.latency_source(model_id)

    def estimated(self, model_id: str) -> bool:
        """Whether routes flag the model's latency as an estimate."""
        only = pb.Constraints(allow_models=[model_id])
        ranked = self.router.route(pb.RouteRequest(top_k=1, constraints=only))
        return ranked.candidates[0].latency_estimated

    def calibrated(self, model_id: str, source: str) -> tuple[object, str]:
        prior = self.router.model(model_id)
        assert prior is not None
        return (
            pytest.approx(
                prior.ttft_s * TTFT_RATIO + OUTPUT_TOKENS / (prior.tokens_per_s * THROUGHPUT_RATIO)
            ),
            f"calibrated:{source}",
        )


def on_the_wire(wired: Router) -> dict[str, Any]:
    """The calibration as GetStatus sends it and the gateway's /health shows it."""
    status = catalogue_status(wired.keeper.status())
    calibration: dict[str, Any] = to_json(status)["latency_calibration"]
    return calibration


@pytest.fixture
def settings(fake: FakeOpenRouter, tmp_path: Path) -> Settings:
    fake.reset()
    return settings_for(
        fake,
        tmp_path / "state",
        endpoint_stats_per_second=1_000,
        model_overrides={OPERATOR: ModelOverride(ttft_s=2.0, tokens_per_s=50.0)},
    )


@pytest.fixture
async def wired(settings: Settings) -> AsyncIterator[Router]:
    """The router's parts on the fake's catalogue, the live figures on a clock of the test's."""
    catalogue, source = initial_catalogue(settings)
    router = ModelRouter(catalogue, settings)
    client = OpenRouterClient(settings.openrouter_base_url, settings.openrouter_api_key)
    clock = Clock()
    figures = LiveFigures(router, clock=clock)
    keeper = CatalogueKeeper(router, figures, client, settings, source)
    try:
        assert await keeper.refresh()
        yield Router(router, figures, keeper, clock)
    finally:
        await client.aclose()


def on_the_endpoint_scale(fake: FakeOpenRouter, router: ModelRouter) -> None:
    """Every model's endpoints report its prior on the endpoint scale, but for the models
    whose figures the tests look at."""
    for model in router.catalogue.models:
        if not model.id.startswith("~"):
            fake.set_endpoint_stats(
                model.id,
                latency_ms=model.ttft_s * 1000 * TTFT_RATIO,
                throughput=model.tokens_per_s * THROUGHPUT_RATIO,
            )
    for model_id in (FAMILY_PRIOR_ONLY, MEASURED_PRIOR_ONLY, OPERATOR):
        fake.set_endpoint_stats(model_id, latency_ms=None, throughput=None)
    fake.set_endpoint_stats(TTFT_ONLY, latency_ms=700, throughput=None)
    fake.set_endpoint_stats(MEASURED, latency_ms=4_000, throughput=40)


async def test_priors_are_calibrated_onto_the_endpoint_scale(
    wired: Router, fake: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.live_figures")
    assert wired.latency(FAMILY_PRIOR_ONLY)[1] == "family-prior", "nothing measured yet"
    on_the_endpoint_scale(fake, wired.router)
    assert await wired.keeper.sweep_endpoint_stats() > 0

    calibration = wired.keeper.status().latency_calibration
    assert calibration.ttft.value == pytest.approx(TTFT_RATIO, rel=1e-3)
    assert calibration.throughput.value == pytest.approx(THROUGHPUT_RATIO, rel=1e-3)
    assert calibration.ttft.models >= 5
    wire = on_the_wire(wired)
    assert (wire["ttft_ratio"], wire["ttft_models"]) == (
        calibration.ttft.value,
        calibration.ttft.models,
    )
    assert wire["throughput_ratio"] == calibration.throughput.value
    assert wired.latency(FAMILY_PRIOR_ONLY) == wired.calibrated(FAMILY_PRIOR_ONLY, "family-prior")
    # A rescaled guess is still a guess; OpenRouter's own figures are measurements.
    assert wired.estimated(FAMILY_PRIOR_ONLY)
    assert not wired.estimated(TTFT_ONLY)
    assert wired.latency(MEASURED_PRIOR_ONLY) == wired.calibrated(
        MEASURED_PRIOR_ONLY, "aa-leaderboard"
    )
    prior = wired.router.model(TTFT_ONLY)
    assert prior is not None
    assert wired.latency(TTFT_ONLY) == (
        pytest.approx(0.7 + OUTPUT_TOKENS / (prior.tokens_per_s * THROUGHPUT_RATIO)),
        "openrouter-endpoints",
    )
    assert wired.latency(MEASURED) == (
        pytest.approx(4.0 + OUTPUT_TOKENS / 40),
        "openrouter-endpoints",
    )
    assert wired.latency(OPERATOR) == (pytest.approx(2.0 + OUTPUT_TOKENS / 50), "operator")

    ratio = REGISTRY.get_sample_value("router_latency_calibration_ratio", {"figure": "ttft"})
    assert ratio == pytest.approx(TTFT_RATIO, rel=1e-3)
    assert "x0.25 over" in caplog.text


async def test_learned_figures_win_until_they_are_forgotten(
    wired: Router, fake: FakeOpenRouter
) -> None:
    on_the_endpoint_scale(fake, wired.router)
    await wired.keeper.sweep_endpoint_stats()
    for model_id in (FAMILY_PRIOR_ONLY, MEASURED):
        before = wired.latency(model_id)
        wired.figures.observe(model_id, ttft_s=0.2, tokens_per_s=400.0)
        wired.figures.before_routing()
        assert wired.latency(model_id) == (pytest.approx(0.2 + OUTPUT_TOKENS / 400), "learned")
        wired.clock.now += 61
        wired.figures.before_routing()
        assert wired.latency(model_id) == before


async def test_too_few_models_with_both_figures_leave_the_priors_as_they_are(
    wired: Router, fake: FakeOpenRouter
) -> None:
    measured = [
        m for m in wired.router.catalogue.models if not m.latency_estimated and ":" not in m.id
    ]
    for model in wired.router.catalogue.models:
        if not model.id.startswith("~"):
            fake.set_endpoint_stats(model.id, latency_ms=None, throughput=None)
    for model in measured[:4]:
        fake.set_endpoint_stats(model.id, latency_ms=300, throughput=90)
    await wired.keeper.sweep_endpoint_stats()

    calibration = wired.keeper.status().latency_calibration
    assert (calibration.ttft.value, calibration.ttft.models) == (None, 4)
    assert calibration.throughput.value is None
    wire = on_the_wire(wired)
    assert (wire["ttft_ratio"], wire["ttft_models"], wire["throughput_ratio"]) == (None, 4, None)
    prior = wired.router.model(FAMILY_PRIOR_ONLY)
    assert prior is not None
    assert wired.latency(FAMILY_PRIOR_ONLY) == (
        pytest.approx(prior.ttft_s + OUTPUT_TOKENS / prior.tokens_per_s),
        "family-prior",
    )
    assert wired.latency(measured[0].id) == (
        pytest.approx(0.3 + OUTPUT_TOKENS / 90),
        "openrouter-endpoints",
    )
