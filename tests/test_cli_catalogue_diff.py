"""`router catalogue diff`: what a refresh would change, against a router serving the fake
OpenRouter's catalogue, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from testkit.fake_openrouter import DEFAULT_KEY, FakeOpenRouter, load_models, make_model
from testkit.servers import refused_port
from tests.cli_output import table_rows

runner = CliRunner()


def env_for(base_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "ROUTER_OPENROUTER_BASE_URL": base_url,
        "OPENROUTER_API_KEY": DEFAULT_KEY,
        "ROUTER_STATE_DIR": str(tmp_path / "cli-state"),
    }


def test_it_lists_what_a_refresh_would_add_remove_and_change(
    on_fake: str, fake: FakeOpenRouter, tmp_path: Path
) -> None:
    listed = [dict(row) for row in load_models()]
    dropped = str(listed.pop(3)["id"])
    listed[0]["pricing"] = {**listed[0]["pricing"], "completion": "0.000123"}
    listed.append(make_model("newcomer/model-1", completion="0.0000008"))
    fake.set_models(listed)
    env = env_for(fake.base_url, tmp_path)

    result = runner.invoke(app, ["catalogue", "diff", "--target", on_fake, "--json"], env=env)
    assert result.exit_code == 0, result.output
    changes = json.loads(result.stdout)
    whole = {"field": "", "before": "", "after": ""}
    assert {"kind": "added", "model": "newcomer/model-1", **whole} in changes
    assert {"kind": "removed", "model": dropped, **whole} in changes
    changed = [c for c in changes if c["kind"] == "changed"]
    assert [(c["model"], c["field"], c["after"]) for c in changed] == [
        (str(listed[0]["id"]), "completion_price_per_mtok", "123")
    ]
    assert len(changes) == 3

    result = runner.invoke(app, ["catalogue", "diff", "--target", on_fake], env=env)
    assert result.exit_code == 0, result.output
    assert "a refresh would add 1, remove 1 and change 1 models" in result.stdout
    assert {row["change"] for row in table_rows(result.stdout)} == {"added", "removed", "changed"}


def test_nothing_to_change_is_an_empty_list(
    on_fake: str, fake: FakeOpenRouter, tmp_path: Path
) -> None:
    env = env_for(fake.base_url, tmp_path)
    result = runner.invoke(app, ["catalogue", "diff", "--target", on_fake, "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_an_unreachable_openrouter_exits_2_with_a_message(tmp_path: Path) -> None:
    with refused_port() as port:
        env = env_for(f"http://127.0.0.1:{port}/api/v1", tmp_path)
        env["ROUTER_OPENROUTER_TIMEOUT_S"] = "2"
        result = runner.invoke(app, ["catalogue", "diff"], env=env)
    assert result.exit_code == 2
    assert "could not fetch OpenRouter's catalogue" in result.output
    assert "Traceback" not in result.output
    assert DEFAULT_KEY not in result.output
