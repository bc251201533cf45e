"""Reading the CLI's tables as a pipe gets them: a `# ` title, a header, tab-separated rows."""

from __future__ import annotations


def table_rows(stdout: str) -> list[dict[str, str]]:
    """The rows of the first table in `stdout`, by column header."""
    lines = [line for line in stdout.splitlines() if not line.startswith("# ")]
    header = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        if "\t" not in line:
            break
        cells = line.split("\t")
        assert len(cells) == len(header), line
        rows.append(dict(zip(header, cells, strict=True)))
    return rows
