"""The names of modes, modalities and free filters come from the proto, and the scorer, the
config and the router's constraint mapping speak the same ones."""

from __future__ import annotations

import pytest

from service import catalogue
from service.config import NAMED_MODES, Settings
from service.pb.router.v1 import router_pb2 as pb
from service.router import ModelRouter
from service.scorer import MODE_WEIGHTS, Constraints, InvalidRequest
from service.vocabulary import (
    FREE_FILTERS,
    MODALITIES,
    MODE_NAMES,
    MODES,
    enum_names,
    parse_weights,
)


def test_names_are_the_enum_values_without_prefix_or_unspecified() -> None:
    assert MODES == {"speed": 1, "cost": 2, "quality": 3, "balanced": 4}
    assert MODE_NAMES == {1: "speed", 2: "cost", 3: "quality", 4: "balanced"}
    assert FREE_FILTERS == {"any": 0, "only": 1, "exclude": 2}
    assert enum_names(pb.Modality.DESCRIPTOR) == MODALITIES
    assert "unspecified" not in MODALITIES


def test_the_scorers_modes_are_the_protos() -> None:
    assert set(MODE_WEIGHTS) == set(MODES)
    assert set(NAMED_MODES) == set(MODES)


@pytest.mark.parametrize("name", MODALITIES)
def test_the_scorer_knows_each_modality(name: str) -> None:
    Constraints(input_modalities=[name], output_modalities=[name])


@pytest.mark.parametrize("name", FREE_FILTERS)
def test_the_scorer_knows_each_free_filter(name: str) -> None:
    Constraints(free=name)


@pytest.mark.parametrize(
    ("constraints", "message"),
    [
        (pb.Constraints(free=7), "constraints.free: unknown free filter 7"),  # type: ignore[arg-type]
        (
            pb.Constraints(output_modalities=[pb.MODALITY_UNSPECIFIED]),
            "constraints.output_modalities: unknown modality 0",
        ),
    ],
)
def test_an_unknown_enum_value_is_refused_by_name(
    constraints: pb.Constraints, message: str
) -> None:
    router = ModelRouter(catalogue.load(), Settings())
    with pytest.raises(InvalidRequest, match=message):
        router.route(pb.RouteRequest(constraints=constraints))


def test_weights_are_written_latency_cost_quality() -> None:
    assert parse_weights("0.5,0.3,0.2") == pb.Weights(latency=0.5, cost=0.3, quality=0.2)
    with pytest.raises(ValueError, match="three numbers"):
        parse_weights("0.5,0.3")
