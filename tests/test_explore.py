"""`router explore` on the embedded catalogue: each mode puts at the top what the data says
it should, judged against the whole catalogue's figures rather than hand-picked names."""

from __future__ import annotations

import json
import statistics

import pytest
from typer.testing import CliRunner

from cli.main import app
from service import catalogue

runner = CliRunner()
TOP = 10


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
    result = runner.invoke(app, ["explore", "--mode", "quality", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    assert "quality" in result.stdout
    assert "$/M out" in result.stdout
