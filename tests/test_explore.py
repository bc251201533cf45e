"""`router explore` on the embedded catalogue: each mode puts at the top what the data says
it should, judged against the whole catalogue's figures rather than hand-picked names."""

from __future__ import annotations

import json
import statistics

import pytest
from typer.testing import CliRunner

from cli.main import app
from service import catalogue
from tests.cli_output import table_rows

runner = CliRunner()
TOP = 10
WIDE = {"COLUMNS": "250"}


def explore(mode: str) -> list[dict[str, object]]:
    result = runner.invoke(app, ["explore", "--mode", mode, "--top-k", str(TOP), "--json"])
    assert result.exit_code == 0, result.output
    candidates: list[dict[str, object]] = json.loads(result.stdout)["candidates"]
    assert len(candidates) == TOP
    return candidates


@pytest.fixture(scope="module")
def everyone() -> list[dict[str, object]]:
    """Every model the default request may use, with the figures the ranking used."""
    result = runner.invoke(app, ["route", "--weights", "1,1,1", "--top-k", "1000", "--json"])
    assert result.exit_code == 0, result.output
    models: list[dict[str, object]] = json.loads(result.stdout)["candidates"]
    return models


def figure(models: list[dict[str, object]], key: str) -> list[float]:
    values = []
    for m in models:
        value = m["terms"]["quality"] if key == "quality" else m[key]  # type: ignore[index]
        values.append(float(value))  # type: ignore[arg-type]
    return values


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


def test_quality_puts_the_best_models_first(everyone: list[dict[str, object]]) -> None:
    top = figure(explore("quality"), "quality")
    everything = figure(everyone, "quality")
    assert min(top) >= percentile(everything, 0.75)
    assert statistics.fmean(top) >= percentile(everything, 0.90)
    assert max(everything) in top


def test_cost_puts_free_and_cheap_models_first(everyone: list[dict[str, object]]) -> None:
    top = figure(explore("cost"), "expected_cost_usd")
    assert max(top) <= percentile(figure(everyone, "expected_cost_usd"), 0.10)


def test_speed_puts_fast_models_first(everyone: list[dict[str, object]]) -> None:
    top = figure(explore("speed"), "expected_latency_seconds")
    everything = figure(everyone, "expected_latency_seconds")
    assert statistics.median(top) <= percentile(everything, 0.25)
    slow = figure(explore("quality"), "expected_latency_seconds")
    assert statistics.fmean(top) < statistics.fmean(slow)


def test_batch_and_alias_rows_are_never_candidates(everyone: list[dict[str, object]]) -> None:
    ids = {str(m["model"]) for m in everyone}
    not_realtime = {m.id for m in catalogue.load().models if not m.realtime}
    assert not_realtime
    assert not ids & not_realtime


def test_the_table_shows_quality_and_prices() -> None:
    # a table of twelve columns: in a terminal narrower than it the headers fold
    result = runner.invoke(app, ["explore", "--mode", "quality", "--top-k", "3"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "quality" in result.stdout
    assert "$/M out" in result.stdout


def test_the_table_shows_where_each_figure_comes_from_and_the_bounds() -> None:
    args = ["explore", "--mode", "quality", "--top-k", "5"]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    ranking = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    records = {m.id: m for m in catalogue.load().models}
    for c in ranking["candidates"]:
        record = records[c["model"]]
        # in process there are no live figures: every source is the catalogue's
        assert (c["quality_source"], c["latency_source"]) == (
            record.quality_source,
            record.latency_source,
        )
        row = next(row for row in table_rows(result.stdout) if row["model"] == c["model"])
        assert row["quality from"] == record.quality_source
        assert row["latency from"] == record.latency_source
    n = ranking["normalisation"]
    assert (
        f"normalised over latency {n['latency_min_seconds']:.2f} to"
        f" {n['latency_max_seconds']:.2f} s and cost ${n['cost_floor_usd']:.6f} to"
        f" ${n['cost_max_usd']:.6f}"
    ) in result.stdout


def test_model_ids_stay_whole_in_a_narrow_terminal() -> None:
    args = ["explore", "--mode", "speed", "--top-k", "5"]
    result = runner.invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    for c in json.loads(runner.invoke(app, [*args, "--json"]).stdout)["candidates"]:
        assert c["model"] in result.stdout
