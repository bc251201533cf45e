"""What default routes exclude, as every adapter reports it after a refresh from the fake
OpenRouter: GetStatus and RefreshCatalogue, the gateway's `/health` and refresh, the CLI, the
log."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from typer.testing import CliRunner

from cli.main import app as cli
from service.pb.router.v1 import router_pb2 as pb
from service.pb.router.v1.router_pb2_grpc import RouterStub
from testkit.fake_openrouter import FakeOpenRouter, load_models
from testkit.servers import ServerThread, settings_for
from tests.test_endpoint_sweep import routable_rows


def test_refreshes_report_what_default_routes_exclude(
    fake: FakeOpenRouter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.catalogue_keeper")
    server = ServerThread(
        settings_for(fake, tmp_path / "state", endpoint_stats_per_second=1_000, free_models=True)
    )
    with server as address, grpc.insecure_channel(address) as channel:
        stub = RouterStub(channel)
        refreshed = stub.RefreshCatalogue(pb.RefreshCatalogueRequest())
        assert refreshed.replaced
        models, routable, excluded = server.runtime.router.eligibility()
        assert (models, routable) == (len(load_models()), len(routable_rows()))
        assert excluded
        assert sum(excluded.values()) == models - routable
        expected = {"models": models, "routable": routable, "excluded_by_rule": excluded}

        assert MessageToDict(refreshed.catalogue.eligibility) == {
            "models": models,
            "routable": routable,
            "excludedByRule": excluded,
        }
        status = stub.GetStatus(pb.GetStatusRequest()).catalogue.eligibility
        assert (status.models, status.routable, dict(status.excluded_by_rule)) == (
            models,
            routable,
            excluded,
        )

        with httpx.Client(base_url=server.http_url, timeout=30) as client:
            assert client.get("/health").json()["catalogue"]["eligibility"] == expected
            again = client.post("/admin/catalogue/refresh").json()
            assert again["catalogue"]["eligibility"] == expected

        runner = CliRunner()
        for command in ("status", "refresh"):
            result = runner.invoke(cli, ["catalogue", command, "--target", address])
            assert result.exit_code == 0, result.output
            printed = " ".join(result.stdout.split())
            assert f"{routable} of {models} models routable" in printed
            for rule, count in excluded.items():
                assert f"{rule} {count}" in printed
            assert "latency priors: time to first token" in printed
            assert "on OpenRouter's endpoint scale" in printed

    assert f"{routable} of {models} models routable" in caplog.text, "logged on replacing"
