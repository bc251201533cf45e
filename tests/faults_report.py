"""The fault suite's account: every test of `tests/test_faults_*.py` adds a row (the fault, the
way in, what the callers saw, how many requests were sent, answered, refused with an error, and
lost), and the session ends by writing them to `tests/.faults-report.md` (not committed) and,
under `pytest -s`, printing them. Modules add rows to `REPORT`
and import the `write_fault_report` fixture.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPORT_PATH = Path(__file__).parent / ".faults-report.md"


@dataclass(frozen=True)
class Row:
    fault: str
    transport: str
    seen: str
    sent: int
    answered: int
    errors: int

    @property
    def lost(self) -> int:
        return self.sent - self.answered - self.errors


class FaultReport:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self._lock = threading.Lock()

    def add(
        self, fault: str, transport: str, seen: str, *, sent: int, answered: int, errors: int
    ) -> Row:
        row = Row(fault, transport, seen, sent, answered, errors)
        with self._lock:
            self.rows.append(row)
        return row

    def markdown(self) -> str:
        lines = [
            "| fault | transport | what the caller saw | sent | answered | errors | lost |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            seen = r.seen.replace("|", "/")
            lines.append(
                f"| {r.fault} | {r.transport} | {seen} | {r.sent} | {r.answered} | "
                f"{r.errors} | {r.lost} |"
            )
        faults = len({(r.fault, r.transport) for r in self.rows})
        sent = sum(r.sent for r in self.rows)
        lost = sum(r.lost for r in self.rows)
        lines.append("")
        lines.append(
            f"{faults} faults injected and survived; {sent} requests sent, "
            f"{sum(r.answered for r in self.rows)} answered, "
            f"{sum(r.errors for r in self.rows)} errors, {lost} lost."
        )
        return "\n".join(lines) + "\n"


REPORT = FaultReport()


@pytest.fixture(scope="module", autouse=True)
def write_fault_report() -> Iterator[None]:
    """Each module's end rewrites the file with every row of `REPORT` so far, so the last one
    holds them all."""
    yield
    if REPORT.rows:
        text = REPORT.markdown()
        REPORT_PATH.write_text("# Fault suite\n\n" + text)
        print("\n" + text)
