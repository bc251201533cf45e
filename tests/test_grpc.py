"""The gRPC API, against a real server on 127.0.0.1:0."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service import catalogue
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub

CATALOGUE_IDS = {m.id for m in catalogue.load().models}


@pytest.fixture
def stub(grpc_address: str) -> Iterator[RouterStub]:
    with grpc.insecure_channel(grpc_address) as channel:
        yield RouterStub(channel)


def status_of(call: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    assert isinstance(call, grpc.Call)
    return call.code(), call.details() or ""


@pytest.mark.parametrize("mode", [pb.MODE_SPEED, pb.MODE_COST, pb.MODE_QUALITY, pb.MODE_BALANCED])
def test_route_returns_a_catalogue_model(stub: RouterStub, mode: pb.Mode.ValueType) -> None:
    response = stub.Route(pb.RouteRequest(mode=mode, top_k=3))
    assert response.model in CATALOGUE_IDS
    assert response.model == response.candidates[0].model
    assert len(response.candidates) == 3
    assert response.catalogue_version == catalogue.load().version
    assert len(response.decision_id) == 32
    scores = [c.score for c in response.candidates]
    assert scores == sorted(scores, reverse=True)
    w = response.weights
    assert w.latency + w.cost + w.quality == pytest.approx(1.0)


def test_route_defaults(stub: RouterStub, grpc_address: str) -> None:
    response = stub.Route(pb.RouteRequest())
    assert len(response.candidates) == 5
    assert (response.profile.prompt_tokens, response.profile.output_tokens) == (1000, 500)
    w = response.weights
    assert (w.latency, w.cost, w.quality) == pytest.approx((1 / 3, 1 / 3, 1 / 3))


def test_explicit_weights_are_scaled(stub: RouterStub) -> None:
    response = stub.Route(pb.RouteRequest(weights=pb.Weights(latency=2, cost=1, quality=1)))
    w = response.weights
    assert (w.latency, w.cost, w.quality) == pytest.approx((0.5, 0.25, 0.25))


def test_custom_mode_from_config(stub: RouterStub) -> None:
    response = stub.Route(pb.RouteRequest(custom_mode="frugal-genius"))
    w = response.weights
    assert (w.latency, w.cost, w.quality) == pytest.approx((0.0, 0.5, 0.5))


def test_constraints_are_applied(stub: RouterStub) -> None:
    response = stub.Route(
        pb.RouteRequest(
            mode=pb.MODE_QUALITY,
            top_k=50,
            constraints=pb.Constraints(
                allow_providers=["openai", "anthropic"],
                input_modalities=[pb.MODALITY_IMAGE],
                required_parameters=["tools"],
                free=pb.FREE_FILTER_EXCLUDE,
            ),
        )
    )
    by_id = {m.id: m for m in catalogue.load().models}
    assert response.candidates
    for c in response.candidates:
        m = by_id[c.model]
        assert m.author in {"openai", "anthropic"}
        assert "image" in m.input_modalities
        assert "tools" in m.supported_parameters
        assert m.prompt_price > 0 or m.completion_price > 0
    assert response.removed_by_constraint["allow_providers"] > 0


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.RouteRequest(mode=99), "unknown mode 99"),  # type: ignore[arg-type]
        (pb.RouteRequest(weights=pb.Weights(latency=-1, cost=1)), "non-negative"),
        (pb.RouteRequest(weights=pb.Weights()), "all be zero"),
        (pb.RouteRequest(custom_mode="nope"), "unknown custom mode 'nope'"),
        (
            pb.RouteRequest(constraints=pb.Constraints(max_request_cost_usd=-2)),
            "max_request_cost_usd",
        ),
        (pb.RouteRequest(constraints=pb.Constraints(allow_models=["*"])), "allow_models"),
        (
            pb.RouteRequest(constraints=pb.Constraints(input_modalities=[pb.MODALITY_UNSPECIFIED])),
            "unknown modality 0",
        ),
    ],
)
def test_bad_input_is_invalid_argument(
    stub: RouterStub, request_: pb.RouteRequest, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Route(request_)
    code, details = status_of(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in details


def test_unsatisfiable_constraints_fail_precondition(stub: RouterStub) -> None:
    request = pb.RouteRequest(constraints=pb.Constraints(min_context_tokens=4_000_000_000))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Route(request)
    code, details = status_of(caught.value)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "context_window" in details


def test_complete_needs_an_openrouter_key(stub: RouterStub) -> None:
    request = pb.CompleteRequest(messages=[pb.ChatMessage(role="user", content="hi")])
    with pytest.raises(grpc.RpcError) as caught:
        stub.Complete(request)
    code, details = status_of(caught.value)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "OPENROUTER_API_KEY" in details
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.StreamComplete(request))
    assert status_of(caught.value)[0] == grpc.StatusCode.UNAVAILABLE


def test_list_models_filters_and_pages(stub: RouterStub) -> None:
    everything = stub.ListModels(pb.ListModelsRequest())
    assert everything.total == len(everything.models) == len(CATALOGUE_IDS)
    openai = stub.ListModels(pb.ListModelsRequest(author="openai", limit=2, offset=1))
    assert openai.total > 3
    assert len(openai.models) == 2
    assert all(m.author == "openai" for m in openai.models)
    found = stub.ListModels(pb.ListModelsRequest(query="CLAUDE"))
    assert found.total > 0
    assert all("claude" in (m.id + m.name).lower() for m in found.models)


def test_health_is_serving(grpc_address: str) -> None:
    with grpc.insecure_channel(grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "router.v1.Router"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_router(grpc_address: str) -> None:
    with grpc.insecure_channel(grpc_address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request])))
    names = {s.name for s in reply.list_services_response.service}
    assert {"router.v1.Router", "grpc.health.v1.Health"} <= names
