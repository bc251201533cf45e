"""The benchmark report's writer, on fabricated rows: no benchmark runs here."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import write
from bench.rows import Extra, Results, Row

MACHINE = {"CPU": "Test CPU", "CPUs": "2", "git commit": "abc123"}


def fabricated() -> Results:
    results = Results(echo=False)
    results.section("Scorer", "Timed call by call.")
    results.samples("native best", [1_000, 2_000, 3_000, 4_000])
    results.note("speed-up 600x")
    results.point("scorer-scale", "native (Rust)", 414, 3.5)
    results.point("scorer-scale", "native (Rust)", 100_000, 900.0)
    results.section("Transports | pipes", "h2load.")
    results.samples(
        "gRPC Route, 32 in flight", [500_000] * 99 + [2_500_000], Extra("µs", 5_100, 420)
    )
    results.add(Row("Transports | pipes", "added | piped", "ms", 0.5, 1.5, 2.0, 0.6, 100))
    results.target("gRPC Route p50", "<= 400 µs", "500 µs", False)
    results.target("CPU per completion", "<= 0.5 ms", None, None)
    return results


def markdown_tables(text: str) -> list[list[str]]:
    tables: list[list[str]] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    return tables


def cell_count(line: str) -> int:
    return len(line.replace("\\|", "").strip("|").split("|"))


def test_writes_markdown_json_and_plots(tmp_path: Path) -> None:
    write(fabricated(), MACHINE, 125.0, tmp_path)

    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# Benchmark report\n")
    assert "in 2 min 5 s." in text
    assert "![The scorer's scale curve](plots/scorer-scale.png)" in text
    assert "| gRPC Route p50 | <= 400 µs | 500 µs | MISS |" in text
    assert "| CPU per completion | <= 0.5 ms | not measured | not measured |" in text
    assert "- speed-up 600x" in text
    tables = markdown_tables(text)
    assert len(tables) == 4  # machine, targets, two sections
    for rows in tables:
        assert set(rows[1].strip("|").split("|")) == {"---"}
        assert {cell_count(row) for row in rows} == {cell_count(rows[0])}
    assert (
        "| gRPC Route, 32 in flight | µs | 500 | 2,500 | 2,500 | 520 | 100 | 5,100 | 420 |" in text
    )

    document = json.loads((tmp_path / "report.json").read_text())
    assert document["machine"] == MACHINE
    assert document["duration_s"] == 125.0
    assert [t["verdict"] for t in document["targets"]] == ["MISS", "not measured"]
    rows = document["sections"][1]["rows"]
    assert Row(**rows[0]) == Row(
        "Transports | pipes", "gRPC Route, 32 in flight", "µs", 500, 2500, 2500, 520, 100, 5100, 420
    )
    assert document["plots"] == ["plots/scorer-scale.png"]
    assert (tmp_path / "plots" / "scorer-scale.png").read_bytes().startswith(b"\x89PNG")
