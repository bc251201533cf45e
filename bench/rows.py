"""What a benchmark run measures, as data: rows of percentiles, notes, targets and plot series,
gathered section by section, and the one place that formats a row."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from cli.stats import percentile

# Plot name -> series name -> points.
Series = dict[str, list[tuple[float, float]]]


@dataclass(frozen=True)
class Row:
    """One measured case: percentiles and mean in `unit`; `rate` in requests per second and
    `cpu_us_per_request` (the server's CPU time) where the case measures throughput."""

    section: str
    case: str
    unit: str
    p50: float
    p99: float
    p999: float
    mean: float
    n: int
    rate: float | None = None
    cpu_us_per_request: float | None = None
    notes: str = ""

    @classmethod
    def of(cls, section: str, case: str, nanos: list[int], extra: Extra | None = None) -> Row:
        """The row of per-call times in nanoseconds."""
        extra = extra or Extra()
        ordered = sorted(nanos)
        scale = 1.0 if extra.unit == "µs" else 1e-3
        p50, p99, p999 = (percentile(ordered, q) * scale for q in (0.5, 0.99, 0.999))
        mean = statistics.fmean(ordered) / 1_000 * scale
        return cls(
            section,
            case,
            extra.unit,
            p50,
            p99,
            p999,
            mean,
            len(ordered),
            extra.rate,
            extra.cpu_us_per_request,
            extra.notes,
        )


@dataclass(frozen=True)
class Extra:
    """What a row of per-call times carries besides them."""

    unit: str = "µs"
    rate: float | None = None
    cpu_us_per_request: float | None = None
    notes: str = ""


COLUMNS = ("case", "unit", "p50", "p99", "p99.9", "mean", "n", "req/s", "CPU µs/req", "notes")


def cells(row: Row) -> tuple[str, ...]:
    """The row's values as text, in the order of COLUMNS."""
    digits = 2 if row.unit == "ms" or row.p50 < 100 else 0
    figures = (f"{v:,.{digits}f}" for v in (row.p50, row.p99, row.p999, row.mean))
    rate = "" if row.rate is None else f"{row.rate:,.0f}"
    cpu = "" if row.cpu_us_per_request is None else f"{row.cpu_us_per_request:,.0f}"
    return (row.case, row.unit, *figures, f"{row.n:,}", rate, cpu, row.notes)


WIDTHS = (64, 4, 9, 9, 9, 9, 8, 8, 10, 0)


def line(values: tuple[str, ...]) -> str:
    """A row on the console: the case left-aligned, the rest right-aligned."""
    case, *rest = values
    padded = (v.rjust(width) for v, width in zip(rest, WIDTHS[1:], strict=True))
    return " ".join([case.ljust(WIDTHS[0]), *padded]).rstrip()


@dataclass(frozen=True)
class Target:
    """A goal for one figure: `measured` is None when the run did not measure it."""

    name: str
    goal: str
    measured: str | None
    passed: bool | None

    def verdict(self) -> str:
        if self.passed is None:
            return "not measured"
        return "PASS" if self.passed else "MISS"


@dataclass
class Section:
    title: str
    method: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Results:
    """The run so far; prints each section, row, note and target as it comes."""

    sections: list[Section] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    plots: dict[str, Series] = field(default_factory=dict)
    echo: bool = True

    def _print(self, text: str) -> None:
        if self.echo:
            print(text, flush=True)

    def section(self, title: str, method: str) -> None:
        self.sections.append(Section(title, method))
        self._print(f"\n## {title}\n{method}\n{line(COLUMNS)}")

    def add(self, row: Row) -> Row:
        self.sections[-1].rows.append(row)
        self._print(line(cells(row)))
        return row

    def samples(self, case: str, nanos: list[int], extra: Extra | None = None) -> Row:
        """Add the row of per-call times in nanoseconds."""
        return self.add(Row.of(self.sections[-1].title, case, nanos, extra))

    def note(self, text: str) -> None:
        self.sections[-1].notes.append(text)
        self._print(f"  {text}")

    def target(self, name: str, goal: str, measured: str | None, passed: bool | None) -> None:
        self.targets.append(target := Target(name, goal, measured, passed))
        self._print(f"target: {name}: {goal}; measured {measured or '-'}: {target.verdict()}")

    def point(self, plot: str, series: str, x: float, y: float) -> None:
        self.plots.setdefault(plot, {}).setdefault(series, []).append((x, y))
