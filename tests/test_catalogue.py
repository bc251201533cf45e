"""The catalogue snapshot shipped in the package, and the script that builds it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service import catalogue

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "data" / "openrouter-models.json"
PACKAGED = ROOT / "service" / "data" / "catalogue.json"


@pytest.mark.skipif(not SOURCE.exists(), reason="the shared data folder is not beside the repo")
def test_packaged_snapshot_is_what_the_script_builds(tmp_path: Path) -> None:
    out = tmp_path / "catalogue.json"
    subprocess.run(
        [
            sys.executable,
            "scripts/build_catalogue.py",
            "--source",
            str(SOURCE),
            "--output",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert json.loads(out.read_text()) == json.loads(PACKAGED.read_text())
    source_ids = {m["id"] for m in json.loads(SOURCE.read_text())["data"]}
    assert {m.id for m in catalogue.load().models} == source_ids


def test_snapshot_is_well_formed() -> None:
    snap = catalogue.load()
    assert snap.version.startswith(snap.snapshot_date + ".")
    assert len(snap.models) >= 400
    by_id = {m.id: m for m in snap.models}
    auto = by_id["openrouter/auto"]
    assert auto.prompt_price == auto.completion_price == -1.0
    for m in snap.models:
        assert m.author == m.id.split("/", 1)[0]
        assert 0.0 <= m.quality <= 1.0
        assert m.ttft_s > 0
        assert m.tokens_per_s > 0
        assert m.prompt_price >= 0 or m.prompt_price == -1.0
    measured = [m for m in snap.models if not m.quality_estimated]
    assert len(measured) > 100


def test_load_from_a_path(tmp_path: Path) -> None:
    raw = json.loads(PACKAGED.read_text())
    raw["version"] = "custom"
    raw["models"] = raw["models"][:3]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(raw))
    snap = catalogue.load(path)
    assert (snap.version, len(snap.models)) == ("custom", 3)
    assert len(snap.scorer()) == 3
