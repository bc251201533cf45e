"""`make bench`: run every benchmark and write bench/report.md, bench/report.json and the plots
of bench/plots/.

`python -m bench.report` runs them all; `python -m bench.report scorer route` only those
sections (of scorer, route, transports, complete, dashboard), for a quick look.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from bench import (
    bench_complete,
    bench_dashboard,
    bench_route,
    bench_scorer,
    bench_transports,
    charts,
)
from bench.machine import describe
from bench.rows import COLUMNS, Results, Section, cells

HERE = Path(__file__).resolve().parent
BENCHMARKS: dict[str, Callable[[Results], None]] = {
    "scorer": bench_scorer.run,
    "route": bench_route.run,
    "transports": bench_transports.run,
    "complete": bench_complete.run,
    "dashboard": bench_dashboard.run,
}
METHOD = (
    "Every case is warmed up first. In-process cases are timed call by call with "
    "time.perf_counter_ns on one thread with the garbage collector paused; cases over the "
    "network are timed per request by the caller (bench_complete) or by h2load, a C load "
    "generator from nghttp2, which drives gRPC as HTTP/2 POSTs of a framed protobuf and REST as "
    "HTTP/1.1 POSTs (bench_transports). p50, p99 and p99.9 are nearest-rank percentiles of the "
    "per-request times (n of them per row). Cases meant to be compared run side by side in "
    "alternating rounds in the same run, so that none has the shared machine to itself. The "
    "router (`router serve`), the fake OpenRouter, the bare grpc.aio server and Redis each run "
    "in a process of their own; a row's req/s comes with the serving process's CPU time per "
    "request, read from /proc/<pid>/stat. The machine is shared with other work: compare "
    "figures of one run, not across runs."
)
PLOTS = {
    "scorer-scale.png": "The scorer's scale curve",
    "route-cdf.png": "Route latency CDFs per transport",
    "completion-overhead.png": "Completion overhead per path",
}


def draw(results: Results, directory: Path) -> list[str]:
    """The plots the results have data for, as files in `directory`; returns their names."""
    directory.mkdir(parents=True, exist_ok=True)
    drawn = []
    if scale := results.plots.get(bench_scorer.SCALE_PLOT):
        charts.scale_curve(scale, directory / "scorer-scale.png")
        drawn.append("scorer-scale.png")
    if cdfs := {k[10:]: v for k, v in results.plots.items() if k.startswith("route-cdf ")}:
        charts.cdfs(cdfs, directory / "route-cdf.png")
        drawn.append("route-cdf.png")
    if overhead := results.plots.get(bench_complete.OVERHEAD_PLOT):
        charts.overhead_bars(overhead, directory / "completion-overhead.png")
        drawn.append("completion-overhead.png")
    return drawn


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]


def section_markdown(section: Section) -> list[str]:
    lines = [f"## {section.title}", "", section.method, ""]
    lines += table(COLUMNS, [cells(row) for row in section.rows])
    return [*lines, "", *(f"- {note}" for note in section.notes), ""]


def markdown(
    results: Results, machine: dict[str, str], duration_s: float, drawn: list[str], plot_dir: str
) -> str:
    minutes, seconds = divmod(round(duration_s), 60)
    targets = [(t.name, t.goal, t.measured or "not measured", t.verdict()) for t in results.targets]
    lines = [
        "# Benchmark report",
        "",
        f"Written by `make bench` (`python -m bench.report`) in {minutes} min {seconds} s.",
        "",
        "## Machine",
        "",
        *table(("", ""), list(machine.items())),
        "",
        "## Method",
        "",
        METHOD,
        "",
        "## Targets",
        "",
        *(table(("target", "goal", "measured", "verdict"), targets) if targets else ["None."]),
        "",
    ]
    if drawn:
        lines += ["## Plots", ""]
        lines += [f"![{PLOTS[name]}]({plot_dir}/{name})" for name in drawn]
        lines.append("")
    for section in results.sections:
        lines += section_markdown(section)
    return "\n".join(lines)


def write(
    results: Results, machine: dict[str, str], duration_s: float, directory: Path = HERE
) -> None:
    """report.md, report.json and plots/*.png in `directory`."""
    drawn = draw(results, directory / "plots")
    text = markdown(results, machine, duration_s, drawn, "plots")
    (directory / "report.md").write_text(text)
    document = {
        "machine": machine,
        "duration_s": round(duration_s, 1),
        "method": METHOD,
        "targets": [asdict(t) | {"verdict": t.verdict()} for t in results.targets],
        "sections": [asdict(s) for s in results.sections],
        "plots": [f"plots/{name}" for name in drawn],
    }
    (directory / "report.json").write_text(json.dumps(document, indent=1, ensure_ascii=False))


def main() -> None:
    names = sys.argv[1:] or list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(
            f"no such section: {', '.join(sorted(unknown))} (of {', '.join(BENCHMARKS)})"
        )
    results = Results()
    started = time.monotonic()
    for name in names:
        BENCHMARKS[name](results)
    duration_s = time.monotonic() - started
    write(results, describe(), duration_s)
    print(f"\nwrote {HERE / 'report.md'} and report.json in {duration_s:.0f} s")


if __name__ == "__main__":
    main()
