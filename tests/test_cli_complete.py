"""`router complete` against a router on the fake OpenRouter: streamed to stdout, the summary
on stderr, JSON, named models with failover, stdin, in process, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from testkit.fake_openrouter import DEFAULT_KEY, FakeOpenRouter, HttpError

runner = CliRunner()


def answered(address: str, *args: str) -> dict[str, object]:
    result = runner.invoke(app, ["complete", *args, "--target", address, "--json"])
    assert result.exit_code == 0, result.output
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def test_the_answer_streams_to_stdout_and_the_summary_goes_to_stderr(on_fake: str) -> None:
    whole = answered(on_fake, "Say hello.", "--mode", "speed")
    text = whole["choices"][0]["message"]["content"]  # type: ignore[index]
    result = runner.invoke(app, ["complete", "Say hello.", "--mode", "speed", "--target", on_fake])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{text}\n"
    assert f"{whole['model']} via " in result.stderr
    assert "1 attempt;" in result.stderr
    assert "decision " in result.stderr


def test_named_models_fail_over_in_order(on_fake: str, fake: FakeOpenRouter) -> None:
    first, second = (str(m["id"]) for m in fake.models[:2])
    fake.set_behaviour(first, HttpError.unavailable())
    whole = answered(on_fake, "Hi", "--model", first, "--model", second)
    assert whole["model"] == second
    assert [a["model"] for a in whole["attempts"]] == [first, second]  # type: ignore[attr-defined]
    result = runner.invoke(
        app, ["complete", "Hi", "--model", first, "--model", second, "--target", on_fake]
    )
    assert result.exit_code == 0, result.output
    assert "2 attempts" in result.stderr


def test_the_message_may_come_from_stdin(on_fake: str, fake: FakeOpenRouter) -> None:
    result = runner.invoke(
        app, ["complete", "-", "--system", "Be brief.", "--target", on_fake], input="Hello there"
    )
    assert result.exit_code == 0, result.output
    sent = [r.json for r in fake.requests if r.path.endswith("/chat/completions")][-1]
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ]


def test_in_process_it_calls_the_configured_openrouter(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.reset()
    env = {
        "ROUTER_OPENROUTER_BASE_URL": fake.base_url,
        "OPENROUTER_API_KEY": DEFAULT_KEY,
        "ROUTER_STATE_DIR": str(tmp_path / "state"),
        "ROUTER_REFRESH_INTERVAL_S": "0",
    }
    listed = str(fake.models[0]["id"])
    result = runner.invoke(app, ["complete", "Hi", "--model", listed], env=env)
    assert result.exit_code == 0, result.output
    assert f"{listed} via " in result.stderr
    assert DEFAULT_KEY not in result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["  "], "the message is empty"),
        (["Hi", "--model", "nobody/none"], "NOT_FOUND: not in the catalogue: 'nobody/none'"),
        (["Hi", "--max-tokens", "0"], "--max-tokens"),
    ],
)
def test_errors_exit_2_with_a_message(on_fake: str, args: list[str], fragment: str) -> None:
    result = runner.invoke(app, ["complete", *args, "--target", on_fake])
    assert result.exit_code == 2
    assert fragment in result.output
    assert "Traceback" not in result.output
