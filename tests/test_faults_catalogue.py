"""The catalogue endpoint failing or answering garbage, through the `RefreshCatalogue` RPC as an
operator sees it: the refresh keeps the last good catalogue and says why, routing and
completions go on, and a later good listing replaces it. The same failures one by one on the
runtime, with the HTTP client's retry and staleness, are `tests/test_refresh.py`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import (
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
from tests.faults_report import REPORT, write_fault_report  # noqa: F401  (the fixture)

HELLO = [pb.ChatMessage(role="user", content="Hello while the catalogue fails.")]
CALL_TIMEOUT_S = 20


@pytest.fixture
def router(fake: FakeOpenRouter, tmp_path: Path) -> Iterator[tuple[str, RouterStub]]:
    fake.reset()
    settings = settings_for(
        fake, tmp_path / "state", endpoint_stats_models=0, openrouter_timeout_s=0.5
    )
    with ServerThread(settings) as address, grpc.insecure_channel(address) as channel:
        stub = RouterStub(channel)
        assert stub.RefreshCatalogue(pb.RefreshCatalogueRequest()).replaced
        yield address, stub


LISTED = load_models()
CATALOGUE_FAULTS: list[tuple[str, tuple[Any, ...], str]] = [
    ("HTTP 500", (HttpError.internal(),), "HTTP 500"),
    ("HTTP 503", (HttpError.unavailable(),), "HTTP 503"),
    ("not JSON", (InvalidJson(),), "not JSON"),
    ("empty list", (ModelsReply(models=[]),), "no text model"),
    ("stalled", (Stall(),), "timed out"),
    # The HTTP client tries a GET again once on a closed kept-alive connection.
    ("reset (RST)", (Reset(), Reset()), "Error"),
    ("dropped", (Drop(), Drop()), "Error"),
]


@pytest.mark.parametrize(
    ("name", "behaviours", "reason"), CATALOGUE_FAULTS, ids=[c[0] for c in CATALOGUE_FAULTS]
)
def test_a_failing_catalogue_endpoint_keeps_the_last_good_catalogue_over_rpc(
    router: tuple[str, RouterStub],
    fake: FakeOpenRouter,
    name: str,
    behaviours: tuple[Any, ...],
    reason: str,
) -> None:
    _, stub = router
    good = stub.GetStatus(pb.GetStatusRequest()).catalogue
    fake.script_models(*behaviours)
    refused = stub.RefreshCatalogue(pb.RefreshCatalogueRequest(), timeout=CALL_TIMEOUT_S)
    assert not refused.replaced
    assert refused.catalogue.version == good.version
    assert reason in refused.catalogue.last_refresh_error
    assert refused.catalogue.consecutive_refresh_failures == 1
    # Routing and completions go on, on the last good catalogue.
    assert stub.Route(pb.RouteRequest()).catalogue_version == good.version
    answer = stub.Complete(pb.CompleteRequest(messages=HELLO), timeout=CALL_TIMEOUT_S)
    assert answer.catalogue_version == good.version
    # A later good listing, different from the last, replaces it and clears the error.
    fake.set_models([*LISTED, make_model("newcomer/model-1", completion="0.0000008")])
    replaced = stub.RefreshCatalogue(pb.RefreshCatalogueRequest(), timeout=CALL_TIMEOUT_S)
    assert replaced.replaced
    assert replaced.catalogue.version != good.version
    assert replaced.catalogue.last_refresh_error == ""
    assert replaced.catalogue.consecutive_refresh_failures == 0
    assert stub.Route(pb.RouteRequest()).catalogue_version == replaced.catalogue.version
    REPORT.add(
        f"catalogue endpoint: {name}",
        "gRPC RefreshCatalogue",
        f"kept the last good catalogue, said {reason!r}; routing went on; next good refresh "
        "replaced it",
        sent=4,
        answered=4,
        errors=0,
    )
