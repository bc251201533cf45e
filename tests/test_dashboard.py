"""The dashboard (`/dashboard`, its figures at `/dashboard/data`) against a router with traffic
from the fake OpenRouter: completions, failovers and an open circuit. Its figures must be those
of `/metrics`; with caller keys on it needs one; in front of a remote router it says what it
cannot show; and in a real headless Chromium the page draws the same figures and ranks a
request with its explanations. The registry is the process's, shared with every other test:
each comparison reads `/dashboard/data` and `/metrics` with no traffic between them."""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from service.dashboard import quantile
from service.resilience import CircuitPolicy
from testkit.fake_openrouter import FakeOpenRouter, HttpError
from testkit.servers import GatewayThread, ServerThread, settings_for
from tests.test_metrics import Samples, scrape, value

KEY = "dashboard-key-0123456789abcdef"
AUTH = {"authorization": f"Bearer {KEY}"}
HELLO = {"mode": "quality", "messages": [{"role": "user", "content": "Hello, dashboard."}]}
CHROMIUM = shutil.which("chromium")


@dataclass
class Traffic:
    failed: str
    """The model that failed every attempt until its circuit opened."""
    answering: str
    """The model that answered instead."""


@dataclass
class Router:
    server: ServerThread
    http: httpx.Client
    traffic: Traffic
    open_before: float
    """`router_circuits_open` before the traffic: the gauge sums every router of the process."""


def by_label(samples: Samples, name: str, label: str, **where: str) -> dict[str, float]:
    sums: Counter[str] = Counter()
    for (sample, labels), number in samples.items():
        named = dict(labels)
        if sample == name and label in named and all(named.get(k) == v for k, v in where.items()):
            sums[named[label]] += number
    return dict(sums)


def total(samples: Samples, name: str) -> float:
    return sum(number for (sample, _), number in samples.items() if sample == name)


def send_traffic(http: httpx.Client, fake: FakeOpenRouter) -> Traffic:
    """Routes in two modes, then completions whose first candidate fails with 503 until its
    circuit opens, each answered by the runner-up after a failover; then one more, and one
    streamed, that the runner-up answers at once."""
    for mode in ("speed", "cost"):
        assert http.post("/route", json={"mode": mode}).status_code == 200
    ranked = http.post("/route", json={"mode": "quality", "top_k": 2}).json()["candidates"]
    failed, answering = ranked[0]["model"], ranked[1]["model"]
    fake.set_behaviour(failed, HttpError.unavailable())
    for _ in range(CircuitPolicy().consecutive_failures):
        reply = http.post("/complete", json=HELLO)
        assert reply.status_code == 200, reply.text
        assert [a["model"] for a in reply.json()["attempts"]] == [failed, answering]
    reply = http.post("/complete", json=HELLO)
    assert [a["model"] for a in reply.json()["attempts"]] == [answering], "the circuit is open"
    streamed = http.post("/complete", json={**HELLO, "stream": True})
    assert streamed.status_code == 200, streamed.text
    return Traffic(failed, answering)


def serve(fake: FakeOpenRouter, state_dir: Path, **settings: Any) -> Iterator[Router]:
    fake.reset()
    server = ServerThread(settings_for(fake, state_dir, endpoint_stats_models=0, **settings))
    headers = AUTH if "api_keys" in settings else {}
    with server, httpx.Client(base_url=server.http_url, timeout=30, headers=headers) as http:
        assert http.post("/admin/catalogue/refresh").json()["replaced"]
        open_before = value(scrape(http), "router_circuits_open")
        yield Router(server, http, send_traffic(http, fake), open_before)


@pytest.fixture
def router(fake: FakeOpenRouter, tmp_path: Path) -> Iterator[Router]:
    yield from serve(fake, tmp_path / "state")


@pytest.fixture
def keyed(fake: FakeOpenRouter, tmp_path: Path) -> Iterator[Router]:
    yield from serve(fake, tmp_path / "state", api_keys={"operator": SecretStr(KEY)})


def read(http: httpx.Client) -> tuple[dict[str, Any], Samples]:
    reply = http.get("/dashboard/data")
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    return reply.json(), scrape(http)


def test_figures_are_those_of_metrics(router: Router) -> None:
    data, samples = read(router.http)
    assert data["local"] is True
    traffic = data["traffic"]
    assert traffic["decisions"] == total(samples, "router_decisions_total")
    for key, label in [("decisions_by_mode", "mode"), ("decisions_by_model", "model")]:
        assert traffic[key] == by_label(samples, "router_decisions_total", label)
    assert traffic["completions"] == total(samples, "router_completions_total")
    assert traffic["completions_by_outcome"] == by_label(
        samples, "router_completions_total", "outcome"
    )
    assert traffic["failovers"] == total(samples, "router_failovers_total")
    assert traffic["failovers_by_cause"] == by_label(samples, "router_failovers_total", "cause")
    assert traffic["failovers_by_cause"]["http_503"] >= CircuitPolicy().consecutive_failures

    latency = data["latency"]
    for key, name in [
        ("decision", "router_decision_latency_seconds"),
        ("completion", "router_completion_duration_seconds"),
        ("time_to_first_token", "router_time_to_first_token_seconds"),
    ]:
        assert latency[key]["count"] == total(samples, f"{name}_count") > 0
        assert 0 < latency[key]["p50_s"] <= latency[key]["p90_s"] <= latency[key]["p99_s"]

    caches = data["caches"]
    for level in ("l1", "l2"):
        looked = by_label(samples, "router_decision_cache_lookups_total", "outcome", level=level)
        assert caches["decision_cache"][level]["hits"] == looked.get("hit", 0)
        assert caches["decision_cache"][level]["misses"] == looked.get("miss", 0)
    sticky = by_label(samples, "router_sticky_sessions_total", "outcome")
    assert caches["sticky_sessions"]["hits"] == sticky["hit"]

    spend = data["spend"]
    assert spend["since_start_usd"] == pytest.approx(total(samples, "router_spend_usd_total"))
    assert spend["spent_usd"] > 0  # this router's ledger: its own seven completions
    assert spend["limit_usd"] is None

    models = {m["id"]: m for m in data["models"]}
    failed, answering = models[router.traffic.failed], models[router.traffic.answering]
    assert failed["circuit"] == "open"
    assert failed["open_until"] > time.time()
    opened = value(samples, "router_circuits_open") - router.open_before
    assert sum(m["circuit"] == "open" for m in models.values()) == opened == 1
    assert answering["latency_source"] == "learned"
    assert answering["learned_ttft_s"] is not None
    assert answering["learned_tokens_per_s"] is not None  # from the stream
    answered = by_label(samples, "router_completions_total", "model", outcome="ok")
    assert answering["answered"] == answered[answering["id"]]

    catalogue = data["catalogue"]
    health = router.http.get("/health").json()["catalogue"]
    assert catalogue["version"] == health["version"]
    assert catalogue["excluded_by_rule"] == health["eligibility"]["excluded_by_rule"]
    assert catalogue["refreshes_by_outcome"] == by_label(
        samples, "router_catalogue_refreshes_total", "outcome"
    )
    assert [(e["outcome"], e["version"]) for e in catalogue["history"]] == [
        ("replaced", health["version"])
    ]


def test_quantiles_are_interpolated_within_their_bucket_as_prometheus_does() -> None:
    buckets = [(0.1, 0.0), (0.5, 10.0), (1.0, 20.0), (math.inf, 20.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.5)
    assert quantile(0.25, buckets) == pytest.approx(0.3)
    assert quantile(0.99, buckets) == pytest.approx(0.99)
    assert quantile(0.5, [(0.1, 0.0), (math.inf, 4.0)]) == 0.1  # in +Inf: its lower bound
    assert quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None


def test_keys_on_guard_the_figures_and_the_page_holds_none(keyed: Router) -> None:
    with httpx.Client(base_url=keyed.server.http_url, timeout=30) as anonymous:
        refused = anonymous.get("/dashboard/data")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        page = anonymous.get("/dashboard")
        script = anonymous.get("/dashboard/dashboard.js")
    assert page.status_code == script.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for text in (page.text, script.text):
        assert KEY not in text
        assert keyed.traffic.failed not in text
    assert keyed.http.get("/dashboard/data").status_code == 200


def test_remote_gateway_shows_the_status_and_says_what_it_cannot(router: Router) -> None:
    address = f"127.0.0.1:{router.server.running.port}"
    with (
        GatewayThread(address, router.server.settings) as url,
        httpx.Client(base_url=url, timeout=30) as remote,
    ):
        reply = remote.get("/dashboard/data")
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["local"] is False
    assert "another process" in data["unavailable"]
    assert not {"traffic", "latency", "caches", "spend", "models"} & data.keys()
    assert data["catalogue"]["version"] == router.http.get("/health").json()["catalogue"]["version"]
    assert data["free_quota"]["enabled"] is False


def test_free_variants_show_what_their_allowance_leaves(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.reset()
    server = ServerThread(
        settings_for(fake, tmp_path / "state", endpoint_stats_models=0, free_models=True)
    )
    with server, httpx.Client(base_url=server.http_url, timeout=30) as http:
        assert http.post("/admin/catalogue/refresh").json()["replaced"]
        free = http.post("/route", json={"constraints": {"free": "only"}}).json()["model"]
        data = http.get("/dashboard/data").json()
        health = http.get("/health").json()["free_quota"]
    quota = data["free_quota"]
    assert quota["enabled"] is True
    assert quota["per_day_limit"] == health["per_day_limit"] > 0
    assert quota["left"] == min(
        quota["per_minute_limit"] - quota["used_this_minute"],
        quota["per_day_limit"] - quota["used_today"],
    )
    models = {m["id"]: m for m in data["models"]}
    assert models[free]["free_left"] == quota["left"]
    assert all(m["free_left"] is None for m in models.values() if not m["id"].endswith(":free"))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps)")
def test_the_page_in_chromium_shows_the_figures_and_ranks_a_request(
    keyed: Router, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            script_errors: list[str] = []
            page.on("pageerror", lambda error: script_errors.append(str(error)))
            page.goto(f"{keyed.server.http_url}/dashboard")
            expect(page.locator("#status")).to_contain_text("needs an API key")
            page.fill("#api-key", KEY)
            page.click("#key-form button")
            expect(page.locator("#status")).to_contain_text("router in this process")

            samples = scrape(keyed.http)
            completions = total(samples, "router_completions_total")
            expect(page.locator("#completions-total")).to_have_text(str(round(completions)))
            failovers = by_label(samples, "router_failovers_total", "cause")
            for cause, count in failovers.items():
                row = page.locator(f'#failovers-by-cause tr[data-key="{cause}"]')
                expect(row.locator('[data-field="value"]')).to_have_text(str(round(count)))
            failed = page.locator(f'#models tr[data-key="{keyed.traffic.failed}"]')
            expect(failed.locator('[data-field="circuit"]')).to_have_text("open")
            answering = page.locator(f'#models tr[data-key="{keyed.traffic.answering}"]')
            expect(answering.locator('[data-field="latency_source"]')).to_have_text("learned")

            page.select_option('#decision-form select[name="mode"]', "speed")
            page.fill('#decision-form input[name="top_k"]', "3")
            page.click("#decision-form button")
            candidates = page.locator("#ranking tr.candidate")
            expect(candidates).to_have_count(3)
            best = keyed.http.post("/route", json={"mode": "speed", "top_k": 3}).json()
            expected = [c["model"] for c in best["candidates"]]
            assert [candidates.nth(i).get_attribute("data-model") for i in range(3)] == expected
            expect(page.locator("#ranking .explanation").nth(1)).to_contain_text("latency")
            page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 0
    assert script_errors == []
