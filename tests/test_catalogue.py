"""The catalogue snapshot shipped in the package, and the script that builds it.

Some tests compare the snapshot with its sources, committed xz-compressed in `scripts/sources/`;
the others check the packaged file on its own.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import lzma
import math
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from service import catalogue

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "scripts" / "sources"
SOURCE = SOURCES / "openrouter-models.json.xz"
LEADERBOARD = SOURCES / "artificial-analysis-llms-2026-07-10.json.xz"
PACKAGED = ROOT / "service" / "data" / "catalogue.json"
SCRIPT = ROOT / "scripts" / "build_catalogue.py"

MEASURED = {"openrouter-benchmarks", "aa-leaderboard"}
PRIORS = {"family-prior", "price-tier-prior", "global-prior"}
RELATIONS = {"base-model", "alias-target"}
FIGURES = {"quality": ("quality", "intelligence_index"), "latency": ("ttft_s", "tokens_per_s")}


def decompressed_sha256(path: Path) -> str:
    return hashlib.sha256(lzma.decompress(path.read_bytes())).hexdigest()


@cache
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_catalogue", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@cache
def packaged() -> dict[str, Any]:
    return json.loads(PACKAGED.read_text())


def packaged_models() -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in packaged()["models"]}


@cache
def source_rows() -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in json.loads(lzma.decompress(SOURCE.read_bytes()))["data"]}


@cache
def aa_rows() -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in json.loads(lzma.decompress(LEADERBOARD.read_bytes()))["models"]:
        model_id = (row.get("open_weights") or {}).get("openrouter_api_id")
        if model_id:
            rows[model_id].append(row)
    return rows


# Independent readings of the sources, written from the documented rules.


def own_index(raw: dict[str, Any]) -> float | None:
    value = ((raw.get("benchmarks") or {}).get("artificial_analysis") or {}).get(
        "intelligence_index"
    )
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def row_index(row: dict[str, Any]) -> float | None:
    value = row["evaluations"].get("artificial_analysis_intelligence_index")
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def row_speed(row: dict[str, Any]) -> tuple[float, float] | None:
    speed = row.get("speed") or {}
    ttft = speed.get("time_to_first_answer_token_seconds")
    if ttft is None:
        ttft = speed.get("time_to_first_token_seconds")
    tokens_per_s = speed.get("output_tokens_per_second")
    if ttft is None or tokens_per_s is None:
        return None
    return ttft, tokens_per_s


def expected_quality(index: float) -> float:
    low, high = packaged()["quality_index_bounds"]
    return min(max((index - low) / (high - low), 0.0), 1.0)


def inherits_from(raw: dict[str, Any]) -> str | None:
    """The base row a variant inherits from, read from the id and `alias_target`."""
    model_id, ids = raw["id"], source_rows().keys()
    if model_id.startswith("~"):
        target = (raw.get("alias_target") or {}).get("slug")
        return target if target in ids else None
    base, _, suffix = model_id.partition(":")
    return base if suffix in {"free", "batch", "extended"} and base in ids else None


def has_quality(model_id: str) -> bool:
    raw = source_rows()[model_id]
    own = own_index(raw) is not None or any(row_index(r) is not None for r in aa_rows()[model_id])
    base = inherits_from(raw)
    return own or (base is not None and has_quality(base))


def has_latency(model_id: str) -> bool:
    own = any(row_speed(r) is not None for r in aa_rows()[model_id])
    base = inherits_from(source_rows()[model_id])
    return own or (base is not None and has_latency(base))


def split_source(source: str) -> tuple[str, str | None]:
    origin, _, relation = source.partition(":")
    return origin, relation or None


# The packaged snapshot and its sources.


def test_packaged_snapshot_is_what_the_script_builds(tmp_path: Path) -> None:
    out = tmp_path / "catalogue.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--output", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    built = json.loads(out.read_text())
    assert built == packaged()
    coverage = built["coverage"]
    n = coverage["models"]
    assert f"measured quality: {coverage['quality_measured']}/{n}" in done.stdout
    assert f"measured latency: {coverage['latency_measured']}/{n}" in done.stdout
    assert built["source_sha256"] == decompressed_sha256(SOURCE)
    assert built["leaderboard_sha256"] == decompressed_sha256(LEADERBOARD)


def test_every_source_model_is_present_with_its_fields() -> None:
    parse_price = script().parse_price
    models = packaged_models()
    assert models.keys() == source_rows().keys()
    assert {m.id for m in catalogue.load().models} == source_rows().keys()
    for model_id, raw in source_rows().items():
        m, arch, top = models[model_id], raw["architecture"], raw.get("top_provider") or {}
        assert m["author"] == model_id.split("/", 1)[0]
        assert m["context_length"] == (raw.get("context_length") or 0)
        assert m["max_output_tokens"] == (top.get("max_completion_tokens") or 0)
        assert m["prompt_price"] == parse_price(raw["pricing"]["prompt"])
        assert m["completion_price"] == parse_price(raw["pricing"]["completion"])
        assert m["input_modalities"] == sorted(arch["input_modalities"])
        assert m["output_modalities"] == sorted(arch["output_modalities"])
        assert m["supported_parameters"] == sorted(raw["supported_parameters"])


def test_measured_quality_equals_the_source_index() -> None:
    checked = Counter()
    for model_id, m in packaged_models().items():
        raw = source_rows()[model_id]
        if m["quality_source"] == "openrouter-benchmarks":
            expected = own_index(raw)
        elif m["quality_source"] == "aa-leaderboard":
            assert own_index(raw) is None, "the catalogue's own benchmarks come first"
            expected = max(i for r in aa_rows()[model_id] if (i := row_index(r)) is not None)
        else:
            continue
        checked[m["quality_source"]] += 1
        assert m["intelligence_index"] == expected
        assert m["quality"] == pytest.approx(expected_quality(expected), abs=1e-6)
    assert checked["openrouter-benchmarks"] > 100
    assert checked["aa-leaderboard"] > 50


def test_measured_latency_equals_the_leaderboard() -> None:
    checked = 0
    for model_id, m in packaged_models().items():
        if m["latency_source"] != "aa-leaderboard":
            continue
        measured = [(row_index(r), s) for r in aa_rows()[model_id] if (s := row_speed(r))]
        best = max(-1.0 if i is None else i for i, _ in measured)
        candidates = [s for i, s in measured if (-1.0 if i is None else i) == best]
        assert (m["ttft_s"], m["tokens_per_s"]) in candidates, model_id
        checked += 1
    assert checked > 100


def test_estimated_flags_agree_with_the_sources() -> None:
    for model_id, m in packaged_models().items():
        assert m["quality_estimated"] is not has_quality(model_id), model_id
        assert m["latency_estimated"] is not has_latency(model_id), model_id
        assert (m["intelligence_index"] is None) is m["quality_estimated"]


def test_variants_take_their_base_models_figures() -> None:
    models = packaged_models()
    inheriting = 0
    for model_id, m in models.items():
        raw = source_rows()[model_id]
        base = inherits_from(raw)
        for what, keys in FIGURES.items():
            origin, relation = split_source(m[f"{what}_source"])
            if relation is None:
                continue
            assert base is not None, model_id
            assert relation == ("alias-target" if model_id.startswith("~") else "base-model")
            b = models[base]
            assert split_source(b[f"{what}_source"]) == (origin, None)
            assert m[f"{what}_estimated"] is b[f"{what}_estimated"]
            assert [m[k] for k in keys] == [b[k] for k in keys]
            inheriting += 1
        if base is not None and (own_index(raw) is None and not aa_rows()[model_id]):
            assert split_source(m["quality_source"])[1] in RELATIONS
    assert inheriting > 50


def test_sources_and_flags_are_consistent() -> None:
    for m in packaged()["models"]:
        for what in ("quality", "latency"):
            origin, relation = split_source(m[f"{what}_source"])
            assert origin in MEASURED | PRIORS
            assert relation is None or relation in RELATIONS
            assert m[f"{what}_estimated"] is (origin in PRIORS)
        assert m["latency_source"] != "openrouter-benchmarks"


def test_priors_are_the_documented_medians() -> None:
    snap = packaged()
    models = snap["models"]
    # The pools: one entry per directly measured row that does not inherit from another row.
    for what, keys in (("quality", ("quality",)), ("latency", ("ttft_s", "tokens_per_s"))):
        direct = [m for m in models if m[f"{what}_source"] in MEASURED]
        direct = [m for m in direct if not is_inheriting(m["id"], models)]
        tables = snap["priors"][what]
        families: dict[str, list[list[float]]] = defaultdict(list)
        tiers: dict[str, list[list[float]]] = defaultdict(list)
        for m in direct:
            families[m["family"]].append([m[k] for k in keys])
            if m["price_tier"] is not None:
                tiers[m["price_tier"]].append([m[k] for k in keys])

        def medians(values: list[list[float]]) -> list[float]:
            return [statistics.median(column) for column in zip(*values, strict=True)]

        def close(table_value: Any, values: list[list[float]]) -> bool:
            got = table_value if isinstance(table_value, list) else [table_value]
            return got == pytest.approx(medians(values), abs=1e-6)

        assert tables["family"].keys() == families.keys()
        assert tables["price_tier"].keys() == tiers.keys()
        assert all(close(tables["family"][k], v) for k, v in families.items())
        assert all(close(tables["price_tier"][k], v) for k, v in tiers.items())
        assert close(tables["global"], [v for vs in families.values() for v in vs])
        if what == "quality":
            pooled = [v[0] for vs in families.values() for v in vs]
            conservative = tables["shrunk_toward"]
            assert conservative == pytest.approx(statistics.quantiles(pooled, n=4)[0], abs=1e-6)

        for m in models:
            origin, relation = split_source(m[f"{what}_source"])
            if origin not in PRIORS or relation is not None:
                continue
            if m["family"] in tables["family"]:
                assert origin == "family-prior"
                expected = tables["family"][m["family"]]
            elif m["price_tier"] in tables["price_tier"]:
                assert origin == "price-tier-prior"
                expected = tables["price_tier"][m["price_tier"]]
            else:
                assert origin == "global-prior"
                expected = tables["global"]
            if what == "quality":
                # Halfway toward the lower quartile of measured quality, never raised.
                pulled = conservative + tables["shrink"] * (expected - conservative)
                expected = round(min(expected, pulled), 6)
            got = [m[k] for k in keys]
            assert got == (expected if isinstance(expected, list) else [expected])


def is_inheriting(model_id: str, models: list[dict[str, Any]]) -> bool:
    ids = {m["id"] for m in models}
    if model_id.startswith("~"):
        return True
    base, _, suffix = model_id.partition(":")
    return suffix in {"free", "batch", "extended"} and base in ids


def test_price_tiers_follow_the_completion_price() -> None:
    tiers = packaged()["price_tiers_usd_per_million_output_tokens"]
    for m in packaged()["models"]:
        price = m["completion_price"]
        if price < 0:
            assert m["price_tier"] is None
            continue
        expected = next(label for label, bound in tiers if bound is None or price * 1e6 <= bound)
        assert m["price_tier"] == expected


def test_realtime_is_false_only_for_batch_and_alias_rows() -> None:
    for m in packaged()["models"]:
        assert m["realtime"] is not (m["id"].startswith("~") or m["id"].endswith(":batch"))
    by_id = {m.id: m for m in catalogue.load().models}
    assert any(not m.realtime for m in by_id.values())


def test_coverage_agrees_with_the_models() -> None:
    snap = packaged()
    models, coverage = snap["models"], snap["coverage"]
    text = [m for m in models if "text" in m["output_modalities"]]
    assert coverage["models"] == len(models)
    assert coverage["text_output_models"] == len(text)
    assert coverage["realtime_models"] == sum(m["realtime"] for m in models)
    assert coverage["quality_measured"] == sum(not m["quality_estimated"] for m in models)
    assert coverage["latency_measured"] == sum(not m["latency_estimated"] for m in models)
    assert coverage["both_measured"] == sum(
        not m["quality_estimated"] and not m["latency_estimated"] for m in models
    )
    assert coverage["text_output_quality_measured"] == sum(not m["quality_estimated"] for m in text)
    assert coverage["text_output_latency_measured"] == sum(not m["latency_estimated"] for m in text)
    realtime = [m for m in models if m["realtime"]]
    assert coverage["realtime_quality_measured"] == sum(
        not m["quality_estimated"] for m in realtime
    )
    assert coverage["realtime_latency_measured"] == sum(
        not m["latency_estimated"] for m in realtime
    )
    for what in ("quality", "latency"):
        counts = Counter(m[f"{what}_source"] for m in models)
        assert coverage[f"{what}_sources"] == dict(counts)
        assert sum(counts.values()) == len(models)
    assert coverage["quality_measured"] > 200
    assert coverage["latency_measured"] > 150


def test_coverage_counts_aa_flagged_indices() -> None:
    flagged = 0
    for model_id, m in packaged_models().items():
        if m["quality_source"] != "aa-leaderboard":
            continue
        rows = [r for r in aa_rows()[model_id] if row_index(r) == m["intelligence_index"]]
        flagged += any(
            r["evaluations"].get("artificial_analysis_intelligence_index_is_estimated") is True
            for r in rows
        )
    assert packaged()["coverage"]["aa_leaderboard_quality_flagged_estimated_by_aa"] == flagged


# The mapping, the parser and the bounds.


def test_quality_mapping_is_monotone_and_bounded() -> None:
    to_quality = script().quality_from_index
    indices = [i / 4 for i in range(-40, 400)]
    qualities = [to_quality(i) for i in indices]
    assert all(0.0 <= q <= 1.0 for q in qualities)
    assert all(a <= b for a, b in itertools.pairwise(qualities))
    low, high = packaged()["quality_index_bounds"]
    assert (to_quality(low), to_quality(high)) == (0.0, 1.0)
    assert to_quality(low - 1) == 0.0
    assert to_quality(high + 1) == 1.0
    # strictly increasing between the bounds
    inside = [to_quality(low + (high - low) * k / 100) for k in range(101)]
    assert all(a < b for a, b in itertools.pairwise(inside))


def test_quality_never_decreases_with_the_index_in_the_snapshot() -> None:
    measured = [m for m in packaged()["models"] if m["intelligence_index"] is not None]
    measured.sort(key=lambda m: m["intelligence_index"])
    qualities = [m["quality"] for m in measured]
    assert all(a <= b for a, b in itertools.pairwise(qualities))
    # The mapping spreads the catalogue's range over most of [0, 1].
    assert qualities[0] < 0.1
    assert qualities[-1] > 0.9


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.000003", 3e-6),
        (" 0.0000015 ", 1.5e-6),
        ("0", 0.0),
        (0, 0.0),
        (3.4e-7, 3.4e-7),
        (2, -1.0),  # above the scorer's 1 USD/token bound
        ("1", 1.0),
        (None, -1.0),
        ("-1", -1.0),
        (-1, -1.0),
        ("-0.5", -1.0),
        ("", -1.0),
        ("free", -1.0),
        ("1e-6 USD", -1.0),
        ("nan", -1.0),
        ("inf", -1.0),
        (float("nan"), -1.0),
        (True, -1.0),
        ([], -1.0),
        ({"usd": 1}, -1.0),
    ],
)
def test_price_parser_is_defensive(value: Any, expected: float) -> None:
    assert script().parse_price(value) == expected


@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        ("acme/claude-opus-4.8", "acme/claude-opus"),
        ("acme/qwen3.5-plus-02-15", "acme/qwen-plus"),
        ("acme/gpt-5.4-mini:free", "acme/gpt-mini"),
        ("acme/llama-3.3-70b-instruct", "acme/llama"),
        ("acme/nemotron-3-nano-30b-a3b", "acme/nemotron-nano"),
        ("~acme/gpt-latest", "acme/gpt"),
        ("acme/4", "acme/4"),
    ],
)
def test_family_stem_drops_versions_sizes_and_suffixes(model_id: str, family: str) -> None:
    assert script().family_of(model_id) == family


def test_every_figure_is_within_the_scorers_bounds() -> None:
    for m in packaged()["models"]:
        assert isinstance(m["quality"], float | int)
        assert 0.0 <= m["quality"] <= 1.0
        assert isinstance(m["ttft_s"], float | int)
        assert 0.0 <= m["ttft_s"] <= 86_400.0
        assert isinstance(m["tokens_per_s"], float | int)
        assert m["tokens_per_s"] >= 0.001
        for price in (m["prompt_price"], m["completion_price"]):
            assert math.isfinite(price)
            assert price <= 1.0
            assert price >= 0 or price == -1.0
        for flag in ("quality_estimated", "latency_estimated", "realtime"):
            assert isinstance(m[flag], bool)
        assert isinstance(m["quality_source"], str)
        assert isinstance(m["latency_source"], str)
    assert len(catalogue.load().scorer()) == len(packaged()["models"])


def test_version_is_the_date_and_a_hash_of_the_content() -> None:
    snap = dict(packaged())
    version = snap.pop("version")
    digest = hashlib.sha256(json.dumps(snap, sort_keys=True).encode()).hexdigest()[:12]
    assert version == f"{snap['snapshot_date']}.{digest}"
    snap["models"] = snap["models"][1:]
    changed = hashlib.sha256(json.dumps(snap, sort_keys=True).encode()).hexdigest()[:12]
    assert changed != digest


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
