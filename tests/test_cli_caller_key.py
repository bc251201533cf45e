"""The CLI against a router with caller keys on: the key comes from `ROUTER_API_KEY`, goes as
a bearer token on every RPC, and never shows in what the CLI prints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from cli.main import app
from testkit.fake_openrouter import FakeOpenRouter
from testkit.servers import ServerThread, settings_for

KEY = "cli-caller-key-0123456789"
WRONG = "not-the-key-0123456789ab"
runner = CliRunner()


@pytest.fixture(scope="module")
def guarded(fake: FakeOpenRouter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A router that wants a caller key, on the fake's catalogue."""
    state = tmp_path_factory.mktemp("state")
    settings = settings_for(
        fake, Path(state), endpoint_stats_models=0, api_keys={"cli": SecretStr(KEY)}
    )
    with ServerThread(settings) as address:
        result = runner.invoke(
            app, ["catalogue", "refresh", "--target", address], env={"ROUTER_API_KEY": KEY}
        )
        assert result.exit_code == 0, result.output
        yield address


@pytest.mark.parametrize(
    "command",
    [
        ["route", "--mode", "speed"],
        ["models", "--limit", "2"],
        ["explore", "--top-k", "2"],
        ["catalogue", "status"],
        ["complete", "Say hello."],
    ],
    ids=" ".join,
)
def test_every_command_sends_the_key_from_the_environment(guarded: str, command: list[str]) -> None:
    refused = runner.invoke(app, [*command, "--target", guarded], env={"ROUTER_API_KEY": ""})
    assert refused.exit_code == 2
    assert "UNAUTHENTICATED: missing API key" in refused.output

    wrong = runner.invoke(app, [*command, "--target", guarded], env={"ROUTER_API_KEY": WRONG})
    assert wrong.exit_code == 2
    assert "UNAUTHENTICATED: invalid API key" in wrong.output
    assert WRONG not in wrong.output

    served = runner.invoke(app, [*command, "--target", guarded], env={"ROUTER_API_KEY": KEY})
    assert served.exit_code == 0, served.output
    assert KEY not in served.output


def test_benchmark_sends_the_key(guarded: str) -> None:
    args = ["benchmark", "--target", guarded, "--requests", "5", "--warmup", "1", "--json"]
    without = runner.invoke(app, args, env={"ROUTER_API_KEY": ""})
    assert without.exit_code == 1
    assert json.loads(without.stdout)["errors"] == {"UNAUTHENTICATED": 5}
    served = runner.invoke(app, args, env={"ROUTER_API_KEY": KEY})
    assert served.exit_code == 0, served.output
    assert json.loads(served.stdout)["ok"] == 5
