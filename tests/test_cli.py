"""The `router` command, in process and against the real gRPC server."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from service import catalogue
from tests.cli_output import table_rows

runner = CliRunner()
CATALOGUE_IDS = {m.id for m in catalogue.load().models}


def run_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def test_route_in_process() -> None:
    decision = run_json("route", "--mode", "speed", "--top-k", "3")
    assert decision["model"] in CATALOGUE_IDS
    assert len(decision["candidates"]) == 3  # type: ignore[arg-type]
    assert decision["weights"] == pytest.approx({"latency": 0.7, "cost": 0.2, "quality": 0.1})


def test_route_through_grpc(grpc_address: str) -> None:
    decision = run_json("route", "--weights", "0,1,1", "--target", grpc_address)
    assert decision["model"] in CATALOGUE_IDS
    assert decision["weights"] == pytest.approx({"latency": 0.0, "cost": 0.5, "quality": 0.5})


def test_route_table_names_the_best_model() -> None:
    result = runner.invoke(app, ["route", "--mode", "quality"])
    assert result.exit_code == 0, result.output
    best = run_json("route", "--mode", "quality")["model"]
    assert f"best: {best}" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["route", "--mode", "fastest"], "'fastest' is not one of"),
        (["route", "--weights", "1,2"], "--weights: expected latency,cost,quality"),
        (["route", "--weights", "-1,1,1"], "non-negative"),
        (["route", "--mode", "speed", "--weights", "1,1,1"], "at most one"),
        (["route", "--custom-mode", "nope"], "unknown custom mode"),
        (["route", "--free", "sometimes"], "'sometimes' is not one of"),
        (["route", "--input-modality", "smell"], "'smell' is not one of"),
        (["route", "--max-ttft", "-1"], "--max-ttft"),
        (["route", "--max-request-cost", "cheap"], "--max-request-cost"),
        (["route", "--min-context", "-5"], "--min-context"),
        (["route", "--allow-model", "*"], "allow_models"),
        (["route", "--allow-provider", "nobody"], "no model satisfies"),
        (["explain", "--output-modality", "smell"], "'smell' is not one of"),
        (["models", "--mode", "speed", "--weights", "1,1,1"], "at most one"),
    ],
)
def test_bad_input_exits_2_with_a_message(args: list[str], fragment: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert fragment in result.stderr


def test_grpc_errors_are_reported(grpc_address: str) -> None:
    result = runner.invoke(app, ["route", "--weights", "0,0,0", "--target", grpc_address])
    assert result.exit_code == 2
    assert "INVALID_ARGUMENT" in result.stderr


def test_models_lists_the_catalogue(grpc_address: str) -> None:
    listing = run_json("models", "--author", "openai", "--limit", "2", "--target", grpc_address)
    assert len(listing["models"]) == 2  # type: ignore[arg-type]
    result = runner.invoke(app, ["models", "--limit", "2"])
    assert result.exit_code == 0
    assert f"2 of {len(CATALOGUE_IDS)} models" in result.stdout


def test_route_table_marks_estimates_and_shows_the_bounds() -> None:
    result = runner.invoke(app, ["route", "--mode", "quality", "--top-k", "10"])
    assert result.exit_code == 0, result.output
    decision = run_json("route", "--mode", "quality", "--top-k", "10")
    candidates: list[dict[str, object]] = decision["candidates"]  # type: ignore[assignment]
    assert any(c["latency_estimated"] for c in candidates)
    assert "*" in result.stdout
    assert "* estimated" in result.stdout
    assert "normalised over latency" in result.stdout


@pytest.mark.parametrize("command", ["route", "explore", "explain", "models"])
def test_help_lists_the_constraints_and_flags_take_no_value(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--deny-provider" in result.stdout
    assert "<speed|cost|quality|balanced>" in result.stdout
    json_line = next(line for line in result.stdout.splitlines() if "--json" in line)
    assert "<bool>" not in json_line


def test_explain_and_explore_take_the_constraints() -> None:
    winner = run_json("route", "--mode", "speed")["model"]
    author = str(winner).split("/")[0]
    explained = run_json("explain", str(winner), "--mode", "speed", "--deny-provider", author)
    assert explained["excluded_by"] == "deny_providers"
    explored = run_json("explore", "--mode", "speed", "--deny-provider", author, "--top-k", "3")
    assert all(not str(c["model"]).startswith(f"{author}/") for c in explored["candidates"])
    assert explored["removed_by_constraint"]["deny_providers"] > 0  # type: ignore[index]


@pytest.mark.parametrize(
    "args",
    [["explore", "--mode", "quality", "--top-k", "500"], ["models", "--limit", "0"]],
)
def test_piped_tables_are_tab_separated_rows_one_model_per_line(args: list[str]) -> None:
    result = runner.invoke(app, args)  # the runner's stdout is not a terminal, as in a pipe
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# ")
    listed = [row["model"] for row in table_rows(result.stdout)]  # every row whole
    assert len(listed) > 100
    assert set(listed) <= CATALOGUE_IDS
    if args[0] == "models":
        assert max(CATALOGUE_IDS, key=len) in listed, "the longest id, whole"
    assert not any(mark in result.stdout for mark in "│━┃"), "no box drawing"


COMMANDS = [
    [],
    *([command] for command in ("route", "explore", "explain", "models", "complete")),
    *([command] for command in ("benchmark", "serve", "gateway", "catalogue")),
    *(["catalogue", command] for command in ("status", "refresh", "diff")),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_its_flags_show_as_flags(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    help_line = next(line for line in result.stdout.splitlines() if "--help" in line)
    assert "Show this message and exit." in help_line
    assert "<bool>" not in result.stdout
