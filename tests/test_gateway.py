"""The REST gateway, both beside the router's core and in front of its gRPC port."""

from __future__ import annotations

import httpx
import pytest

from service import catalogue
from service.config import Settings
from testkit.servers import GatewayThread

CATALOGUE_IDS = {m.id for m in catalogue.load().models}


def test_route_speed(gateway: httpx.Client) -> None:
    reply = gateway.post("/route", json={"mode": "speed"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] in CATALOGUE_IDS
    assert body["model"] == body["candidates"][0]["model"]
    assert body["weights"] == {"latency": 0.7, "cost": 0.2, "quality": 0.1}
    assert set(body["candidates"][0]["terms"]) == {"latency", "cost", "quality"}
    assert body["profile"] == {"prompt_tokens": 1000, "output_tokens": 500}
    best = body["candidates"][0]
    figures = best["ttft_seconds"] + 500 / best["tokens_per_second"]
    assert best["expected_latency_seconds"] == pytest.approx(figures)
    assert body["normalisation"]["latency_min_seconds"] <= best["expected_latency_seconds"]


def test_route_with_weights_constraints_and_profile(gateway: httpx.Client) -> None:
    reply = gateway.post(
        "/route",
        json={
            "weights": {"latency": 0, "cost": 1, "quality": 3},
            "constraints": {"max_request_cost_usd": 0.0001},
            "profile": {"prompt_tokens": 2000, "output_tokens": 100},
            "top_k": 2,
        },
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert len(body["candidates"]) == 2
    assert all(0 < c["expected_cost_usd"] <= 0.0001 for c in body["candidates"])
    assert body["removed_by_constraint"]["max_request_cost"] > 0
    assert body["weights"] == pytest.approx({"latency": 0, "cost": 0.25, "quality": 0.75})


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"mode": "fastest"}, 400, "mode"),
        ({"weights": {"latency": -1, "cost": 1, "quality": 1}}, 400, "non-negative"),
        ({"weights": {"latency": 0, "cost": 0, "quality": 0}}, 400, "all be zero"),
        ({"top_k": "five"}, 400, "top_k"),
        ({"mode": 3}, 400, "mode"),
        ({"weights": {"latency": "fast"}}, 400, "weights.latency"),
        ({"mode": "speed", "colour": "blue"}, 400, "colour"),
        ({"mode": "speed", "weights": {"cost": 1}}, 400, "at most one"),
        ({"custom_mode": "nope"}, 400, "unknown custom mode"),
        ({"constraints": {"input_modalities": ["smell"]}}, 400, "input_modalities"),
        ({"constraints": {"min_context_tokens": 4_000_000_000}}, 422, "no model satisfies"),
        ({"profile": {"prompt_tokens": 2**32}}, 400, "profile.prompt_tokens"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    gateway: httpx.Client, body: dict[str, object], status: int, fragment: str
) -> None:
    reply = gateway.post("/route", json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert fragment in error["message"]
    assert error["code"]


def test_malformed_json_is_400(gateway: httpx.Client) -> None:
    reply = gateway.post(
        "/route", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_request"


def test_models(gateway: httpx.Client) -> None:
    reply = gateway.get("/models", params={"author": "anthropic", "limit": 3})
    assert reply.status_code == 200
    body = reply.json()
    assert len(body["models"]) == 3
    assert body["total"] >= 3
    assert all(m["author"] == "anthropic" for m in body["models"])
    assert gateway.get("/models", params={"limit": -1}).status_code == 400
    assert gateway.get("/models", params={"offset": 2**40}).status_code == 400


def test_health(gateway: httpx.Client) -> None:
    reply = gateway.get("/health")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "SERVING"
    assert body["catalogue"]["version"] == catalogue.load().version
    assert body["catalogue"]["source"] == "embedded"
    assert body["catalogue"]["stale"] is False


def test_metrics_are_prometheus_text(gateway: httpx.Client) -> None:
    reply = gateway.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert "router_catalogue_models " in reply.text


def test_health_when_the_router_is_down(settings: Settings) -> None:
    with GatewayThread("127.0.0.1:1", settings) as url, httpx.Client(base_url=url) as client:
        reply = client.get("/health")
    assert reply.status_code == 503
    assert reply.json()["status"].startswith("UNREACHABLE")


def test_route_when_the_router_is_down(settings: Settings) -> None:
    with GatewayThread("127.0.0.1:1", settings) as url, httpx.Client(base_url=url) as client:
        reply = client.post("/route", json={"mode": "cost"})
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "unavailable"


def test_docs_and_openapi(gateway: httpx.Client) -> None:
    assert gateway.get("/docs").status_code == 200
    paths = gateway.get("/openapi.json").json()["paths"]
    assert {"/route", "/models", "/health"} <= set(paths)


def test_unknown_path_is_json_404(gateway: httpx.Client) -> None:
    reply = gateway.get("/nowhere")
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"
