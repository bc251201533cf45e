"""Catalogue refreshes against the fake OpenRouter: a good listing replaces the catalogue, every
kind of failure keeps the last good one, endpoint stats move the ranking, and the key stays
secret."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app as cli
from service.catalogue_keeper import CatalogueKeeper
from service.config import Settings
from service.listing import list_models
from service.live_figures import LiveFigures
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from service.runtime import Runtime
from testkit.fake_openrouter import (
    DEFAULT_KEY,
    Drop,
    FakeOpenRouter,
    HttpError,
    InvalidJson,
    ModelsReply,
    Reset,
    Stall,
    load_models,
    make_model,
)
from testkit.servers import ServerThread, settings_for

LISTED = load_models()


@pytest.fixture
def settings(fake: FakeOpenRouter, tmp_path: Path) -> Settings:
    fake.reset()
    return settings_for(
        fake,
        tmp_path / "state",
        openrouter_timeout_s=0.5,
        endpoint_stats_per_second=1_000,
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    built = Runtime.build(settings)
    yield built
    await built.aclose()


async def test_refresh_replaces_the_catalogue_and_saves_it(
    runtime: Runtime, settings: Settings, fake: FakeOpenRouter
) -> None:
    before = runtime.router.catalogue.version
    assert await runtime.keeper.refresh()
    after = runtime.router.catalogue
    assert after.version != before
    assert {m.id for m in after.models} == {str(row["id"]) for row in LISTED}
    status = runtime.keeper.status()
    assert (status.source, status.version, status.models) == ("refreshed", after.version, 42)
    assert status.last_refresh_error == ""
    ranked = runtime.router.route(pb.RouteRequest(mode=pb.MODE_QUALITY, top_k=42))
    assert ranked.catalogue_version == after.version
    assert {c.model for c in ranked.candidates} <= {m.id for m in after.models}

    saved = json.loads((settings.state_dir / "catalogue.json").read_text())
    assert saved["version"] == after.version
    restarted = Runtime.build(settings)
    assert restarted.router.catalogue.version == after.version
    assert restarted.keeper.status().source == "persisted"
    await restarted.aclose()

    assert not await runtime.keeper.refresh(), "an unchanged listing keeps the version"
    assert runtime.router.catalogue.version == after.version

    changed = [dict(row) for row in LISTED]
    changed[0]["pricing"] = {**changed[0]["pricing"], "completion": "0.000123"}
    fake.set_models(changed)
    assert await runtime.keeper.refresh()
    assert runtime.router.catalogue.version != after.version
    listing = list_models(runtime.router, pb.ListModelsRequest(query=str(changed[0]["id"])))
    model = next(m for m in listing.models if m.id == changed[0]["id"])
    assert model.completion_price_per_mtok == pytest.approx(123.0)


async def test_new_models_get_priors_and_known_ones_keep_their_figures(
    runtime: Runtime, fake: FakeOpenRouter
) -> None:
    known = {m.id: m for m in runtime.router.catalogue.models}
    fake.set_models([*LISTED, make_model("newcomer/model-1", completion="0.0000008")])
    assert await runtime.keeper.refresh()
    fresh = {m.id: m for m in runtime.router.catalogue.models}
    newcomer = fresh["newcomer/model-1"]
    assert newcomer.quality_estimated
    assert newcomer.latency_estimated
    assert newcomer.latency_source.endswith("prior")
    for model_id in fresh.keys() & known.keys():
        assert fresh[model_id].ttft_s == known[model_id].ttft_s
        assert fresh[model_id].latency_source == known[model_id].latency_source


# The HTTP client tries a GET again, once, when a kept-alive connection turns out closed, so
# connection failures are scripted for both tries.
FAILURES: list[tuple[str, tuple[Any, ...], str]] = [
    ("HTTP 500", (HttpError.internal(),), "HTTP 500"),
    ("HTTP 429", (HttpError.rate_limited(),), "HTTP 429"),
    ("bad JSON", (InvalidJson(),), "not JSON"),
    ("empty list", (ModelsReply(models=[]),), "no text model"),
    ("wrong shape", (InvalidJson(body='{"models": "nope"}'),), "no `data` array"),
    ("timeout", (Stall(),), "timed out"),
    ("connection reset", (Reset(), Reset()), "Error"),
    ("connection dropped", (Drop(), Drop()), "Error"),
]


@pytest.mark.parametrize(("name", "behaviours", "reason"), FAILURES, ids=[f[0] for f in FAILURES])
async def test_a_failed_refresh_keeps_the_last_good_catalogue(
    runtime: Runtime, fake: FakeOpenRouter, name: str, behaviours: tuple[Any, ...], reason: str
) -> None:
    assert await runtime.keeper.refresh()
    good = runtime.router.catalogue
    fake.script_models(*behaviours)
    assert not await runtime.keeper.refresh()
    assert runtime.router.catalogue is good
    status = runtime.keeper.status()
    assert status.consecutive_refresh_failures == 1
    assert reason in status.last_refresh_error
    assert runtime.router.route(pb.RouteRequest(top_k=1)).catalogue_version == good.version
    assert not await runtime.keeper.refresh(), "the next listing is good but unchanged"
    status = runtime.keeper.status()
    assert (status.last_refresh_error, status.consecutive_refresh_failures) == ("", 0)


async def test_a_drastically_shrunken_listing_is_refused(
    settings: Settings, fake: FakeOpenRouter
) -> None:
    first = Runtime.build(settings)
    assert await first.keeper.refresh()
    await first.aclose()
    runtime = Runtime.build(settings.model_copy(update={"refresh_min_share": 0.5}))
    try:
        assert runtime.keeper.status().source == "persisted"
        fake.set_models(LISTED[:10])
        assert not await runtime.keeper.refresh()
        assert len(runtime.router.catalogue.models) == 42
        assert "shrank from" in runtime.keeper.status().last_refresh_error
    finally:
        await runtime.aclose()


async def test_refreshes_that_keep_failing_mark_the_catalogue_stale(
    settings: Settings, fake: FakeOpenRouter
) -> None:
    now = [1_000_000.0]
    periodic = settings.model_copy(update={"refresh_interval_s": 600})
    runtime = Runtime.build(periodic)
    keeper = CatalogueKeeper(
        runtime.router,
        LiveFigures(runtime.router),
        runtime.client,
        periodic,
        "embedded",
        clock=lambda: now[0],
    )
    try:
        fake.script_models(HttpError.internal(), HttpError.internal())
        assert not await keeper.refresh()
        assert not keeper.status().stale, "a first failure within the interval is not stale"
        now[0] += 601
        assert not await keeper.refresh()
        assert keeper.status().stale
        assert await keeper.refresh()
        assert not keeper.status().stale
    finally:
        await runtime.aclose()


async def test_endpoint_stats_move_a_model_in_the_direction_they_should(
    runtime: Runtime, fake: FakeOpenRouter
) -> None:
    assert await runtime.keeper.refresh()
    router = runtime.router

    def speed_rank(model_id: str) -> int:
        ranked = router.top_models("speed", len(router.catalogue.models))
        return ranked.index(model_id)

    slow_then_fast = next(m for m in router.top_models("speed", 42)[10:20])
    before = speed_rank(slow_then_fast)
    for model in router.catalogue.models:
        fake.set_endpoint_stats(model.id, latency_ms=2_000, throughput=60)
    fake.set_endpoint_stats(slow_then_fast, latency_ms=40, throughput=2_000)
    assert await runtime.keeper.refresh_endpoint_stats() > 0
    faster = speed_rank(slow_then_fast)
    assert faster < before
    fake.set_endpoint_stats(slow_then_fast, latency_ms=60_000, throughput=5)
    await runtime.keeper.refresh_endpoint_stats()
    assert speed_rank(slow_then_fast) > faster
    paths = [r.path for r in fake.requests if r.path.endswith("/endpoints")]
    assert paths
    assert all("%2F" not in p for p in paths)


async def test_endpoint_stats_fetches_are_rate_limited(
    settings: Settings, fake: FakeOpenRouter
) -> None:
    paced = settings.model_copy(update={"endpoint_stats_per_second": 40.0})
    runtime = Runtime.build(paced)
    try:
        assert await runtime.keeper.refresh()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await runtime.keeper.refresh_endpoint_stats()
        elapsed = loop.time() - started
    finally:
        await runtime.aclose()
    fetched = len([r for r in fake.requests if r.path.endswith("/endpoints")])
    assert fetched >= 10
    assert elapsed >= (fetched - 1) / 40.0, "requests start no faster than the configured rate"


async def test_endpoint_stats_need_the_key(settings: Settings, fake: FakeOpenRouter) -> None:
    runtime = Runtime.build(settings.model_copy(update={"openrouter_api_key": None}))
    try:
        assert await runtime.keeper.refresh(), "the model list is public"
        assert await runtime.keeper.refresh_endpoint_stats() == 0
        assert not [r for r in fake.requests if r.path.endswith("/endpoints")]
        assert all("authorization" not in r.headers for r in fake.requests)
    finally:
        await runtime.aclose()


async def test_the_key_never_reaches_logs_or_answers(
    runtime: Runtime, settings: Settings, fake: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.script_models(HttpError.unauthorized())
    await runtime.keeper.refresh()
    assert await runtime.keeper.refresh()
    await runtime.keeper.refresh_endpoint_stats()
    sent = [r.headers.get("authorization") for r in fake.requests]
    assert f"Bearer {DEFAULT_KEY}" in sent, "the key is sent to OpenRouter"
    status = runtime.keeper.status()
    seen = [caplog.text, repr(runtime.client), repr(settings), str(status)]
    seen.append(str(settings.model_dump()))
    for text in seen:
        assert DEFAULT_KEY not in text
        assert DEFAULT_KEY[10:30] not in text


def test_refresh_through_grpc_rest_and_cli(settings: Settings, fake: FakeOpenRouter) -> None:
    server = ServerThread(settings)
    with server as address:
        with grpc.insecure_channel(address) as channel:
            reply = RouterStub(channel).RefreshCatalogue(pb.RefreshCatalogueRequest())
        assert reply.replaced
        assert reply.catalogue.source == "refreshed"
        assert reply.catalogue.models == 42

        with httpx.Client(base_url=server.http_url, timeout=30) as client:
            fake.script_models(HttpError.internal())
            answer = client.post("/admin/catalogue/refresh")
            assert answer.status_code == 200
            body = answer.json()
            assert body["replaced"] is False
            assert "HTTP 500" in body["catalogue"]["last_refresh_error"]
            health = client.get("/health").json()
            assert health["catalogue"]["consecutive_refresh_failures"] == 1
            assert (
                'router_catalogue_refreshes_total{outcome="failed"}' in client.get("/metrics").text
            )
            for text in (answer.text, client.get("/health").text):
                assert DEFAULT_KEY not in text

        runner = CliRunner()
        result = runner.invoke(cli, ["catalogue", "refresh", "--target", address])
        assert result.exit_code == 0, result.output
        assert "kept catalogue" in result.stdout
        fake.script_models(HttpError.internal())
        result = runner.invoke(cli, ["catalogue", "refresh", "--target", address, "--json"])
        assert result.exit_code == 1
        assert json.loads(result.stdout)["catalogue"]["last_refresh_error"]
        status = runner.invoke(cli, ["catalogue", "status", "--target", address])
        assert status.exit_code == 0
        assert "last refresh failed" in status.stdout


def test_the_server_refreshes_periodically(settings: Settings, fake: FakeOpenRouter) -> None:
    periodic = settings.model_copy(update={"refresh_interval_s": 0.1})
    with ServerThread(periodic) as address, grpc.insecure_channel(address) as channel:
        stub = RouterStub(channel)
        for _ in range(100):
            status = stub.GetStatus(pb.GetStatusRequest()).catalogue
            if status.source == "refreshed":
                break
            time.sleep(0.05)
        assert status.source == "refreshed"
        assert status.models == 42
        assert status.last_refresh_success > 0


def test_top_models_are_the_mode_ranking(runtime: Runtime) -> None:
    assert runtime.router.top_models("speed", 3) == [
        c.model
        for c in runtime.router.route(
            pb.RouteRequest(weights=pb.Weights(latency=0.7, cost=0.2, quality=0.1), top_k=3)
        ).candidates
    ]
