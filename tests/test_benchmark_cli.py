"""`router benchmark` against real gRPC servers on loopback, and one it starts itself."""

from __future__ import annotations

import json
import math
import socket
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.stats import bounds, histogram
from testkit.fake_openrouter import ANY_MODEL, DEFAULT_KEY, FakeOpenRouter, HttpError

runner = CliRunner()
SMALL = ["--requests", "20", "--concurrency", "4", "--warmup", "2"]


def benchmark(*args: str, exit_code: int = 0, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = runner.invoke(app, ["benchmark", *args, "--json"], env=env)
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit | None)  # never a traceback
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def assert_consistent(report: dict[str, Any]) -> None:
    """Every timed call is in the percentiles' and the histogram's figures."""
    latency = list(report["latency_ms"].values())
    assert latency == sorted(latency)
    assert list(report["latency_ms"]) == ["p50", "p90", "p99", "p99.9", "max"]
    assert sum(row["count"] for row in report["histogram_ms"]) == report["ok"]
    assert report["throughput_per_s"] > 0


def test_closed_loop_counts_every_request(grpc_address: str) -> None:
    report = benchmark("--target", grpc_address, *SMALL, "--mode", "speed")
    assert report["loop"] == "closed"
    assert report["requests"] == report["ok"] == 20
    assert report["errors"] == {}
    assert report["decision_cache"] is None
    assert_consistent(report)


def test_the_text_report_has_the_figures_and_a_histogram(grpc_address: str) -> None:
    result = runner.invoke(app, ["benchmark", "--target", grpc_address, *SMALL])
    assert result.exit_code == 0, result.output
    assert "p99.9" in result.stdout
    assert "errors     none" in result.stdout
    assert "hit rate not reported" in result.stdout
    assert "#" in result.stdout


def test_open_loop_counts_the_arrivals_it_drops(grpc_address: str) -> None:
    args = ["--rate", "200", "--requests", "40", "--concurrency", "1", "--warmup", "0"]
    report = benchmark("--target", grpc_address, *args)
    assert report["loop"] == "open"
    assert report["requests"] + report["dropped"] == 40
    assert report["ok"] == report["requests"]
    assert_consistent(report)


def test_open_loop_stops_after_its_duration(grpc_address: str) -> None:
    report = benchmark("--target", grpc_address, "--rate", "20", "--duration", "1")
    assert report["loop"] == "open"
    assert report["errors"] == {}
    if report["ok"]:
        assert_consistent(report)


def test_complete_on_a_fake_openrouter(on_fake: str) -> None:
    report = benchmark("--target", on_fake, "--rpc", "complete", *SMALL, "--mode", "speed")
    assert report["rpc"] == "complete"
    assert report["requests"] == report["ok"] == 20
    assert_consistent(report)


def test_compare_direct_calls_the_upstream_in_alternating_rounds(
    on_fake: str, fake: FakeOpenRouter
) -> None:
    env = {"ROUTER_OPENROUTER_BASE_URL": fake.base_url, "OPENROUTER_API_KEY": DEFAULT_KEY}
    chat_before = len(chat_calls(fake))
    args = ("--target", on_fake, "--rpc", "complete", "--compare-direct", *SMALL)
    report = benchmark(*args, env=env)
    rounds = 3 * math.ceil(20 / 3)
    assert report["ok"] == report["direct"]["ok"] == rounds
    assert report["direct"]["target"] == fake.base_url
    assert set(report["added_ms"]) == {"p50", "p90", "p99", "p99.9"}
    warmups, model_probe = 2 + 2, 1
    assert len(chat_calls(fake)) - chat_before == 2 * rounds + warmups + model_probe
    assert DEFAULT_KEY not in json.dumps(report)

    text = runner.invoke(app, ["benchmark", *args], env=env)
    assert text.exit_code == 0, text.output
    assert "added      ms, by the router over calling directly: p50 " in text.stdout


def chat_calls(fake: FakeOpenRouter) -> list[str]:
    return [r.path for r in fake.requests if r.path.endswith("/chat/completions")]


def test_a_router_failing_every_call_exits_1_with_the_errors(
    on_fake: str, fake: FakeOpenRouter
) -> None:
    fake.set_behaviour(ANY_MODEL, HttpError.unavailable())
    report = benchmark("--target", on_fake, "--rpc", "complete", *SMALL, exit_code=1)
    assert report["errors"] == {"UNAVAILABLE": 20}
    assert report["ok"] == 0
    assert report["latency_ms"] is None
    assert report["histogram_ms"] == []


def test_an_unreachable_target_exits_2() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = runner.invoke(app, ["benchmark", "--target", f"127.0.0.1:{port}"])
    assert result.exit_code == 2
    assert f"cannot reach 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--target", "127.0.0.1:1", "--requests", "0"], "--requests"),
        (["--target", "127.0.0.1:1", "--concurrency", "0"], "--concurrency"),
        (["--target", "127.0.0.1:1", "--rate", "0"], "--rate must be above 0"),
        (["--target", "127.0.0.1:1", "--duration", "-1"], "--duration must be above 0"),
        (["--target", "127.0.0.1:1", "--mode", "speed", "--weights", "1,1,1"], "at most one"),
        (["--target", "127.0.0.1:1", "--local"], "give one of --target HOST:PORT and --local"),
        ([], "give one of --target HOST:PORT and --local"),
        (["--target", "127.0.0.1:1", "--compare-direct"], "add --rpc complete"),
    ],
)
def test_bad_flags_exit_2_with_a_message(args: list[str], fragment: str) -> None:
    result = runner.invoke(app, ["benchmark", *args])
    assert result.exit_code == 2
    assert fragment in result.stderr


def test_flags_take_no_value() -> None:
    result = runner.invoke(app, ["benchmark", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for flag in ("--local", "--json"):
        line = next(line for line in result.stdout.splitlines() if flag in line)
        assert "<bool>" not in line


def test_histogram_buckets_run_1_2_5_and_hold_every_latency() -> None:
    assert bounds(1_500, 4_000_000) == [m * 10**e for e in range(3, 7) for m in (1, 2, 5)]
    ordered = [1_500, 1_999, 2_000, 4_000_000]
    assert histogram(ordered)[:2] == [(1_000, 2_000, 2), (2_000, 5_000, 1)]
    assert histogram(ordered)[-1] == (2_000_000, 5_000_000, 1)
    assert sum(count for _, _, count in histogram(ordered)) == len(ordered)


def test_local_starts_a_router_and_reads_its_decision_cache() -> None:
    report = benchmark("--local", *SMALL)
    assert report["requests"] == report["ok"] == 20
    assert report["decision_cache"]["decisions"] == 20
    assert 0 <= report["decision_cache"]["hit_rate"] <= 1
    assert_consistent(report)
