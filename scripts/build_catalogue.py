"""Build the catalogue snapshot shipped inside the `service` package.

Reads two files of `scripts/sources/` (build time only; nothing reads them at run time), stored
xz-compressed (a path not ending in `.xz` is read as it is):
- OpenRouter's `GET /api/v1/models` response (`openrouter-models.json`): the models, their
  prices, limits, modalities and parameters, and for some an Artificial Analysis (AA)
  intelligence index under `benchmarks.artificial_analysis`;
- the Artificial Analysis LLM leaderboard snapshot (`artificial-analysis-llms-*.json`):
  intelligence indices and speed measurements, joined through `open_weights.openrouter_api_id`;

and writes `service/data/catalogue.json`, the catalogue the router serves with no network and no
key. Every rule below is documented in `service/data/PROVENANCE.md`.

Quality (in [0, 1]), first rule that applies:
1. the model's own `benchmarks.artificial_analysis.intelligence_index` (openrouter-benchmarks);
2. the AA leaderboard row with this OpenRouter id; when several rows share the id
   (reasoning-effort variants) the one with the highest index, then not deprecated, then the
   newest release, then the name (aa-leaderboard);
3. `:free`, `:batch` and `:extended` rows take their base model's figure, `~…-latest` alias rows
   their `alias_target`'s (`<source>:base-model`, `<source>:alias-target`), estimated only when
   the base model's figure is;
4. the median of the measured models of the same family: same author and name stem (family-prior);
5. the median of the measured models in the same completion-price tier (price-tier-prior);
6. the median of all measured models, for dynamic-price routers (global-prior).
The index is mapped to quality by a fixed min-max: (index - 5) / (65 - 5), clamped to [0, 1].
A prior (rules 4 to 6) is then pulled halfway toward the lower quartile of measured quality and
never raised (service.priors.QualityPriors).

Latency (time to first answer token in seconds, output tokens per second): the same rules except
rule 1 (OpenRouter's catalogue has no speed figures); AA's time to first *answer* token is used,
so reasoning time counts, falling back to its time to first token.

Usage: python scripts/build_catalogue.py [--source …/openrouter-models.json[.xz]]
       [--leaderboard …/artificial-analysis-llms-2026-07-10.json[.xz]] [--output …/catalogue.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import lzma
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from service.openrouter.models import INHERITING_SUFFIXES, is_realtime, parse_price, split_variant
from service.priors import (
    FALLBACK_LATENCY,
    INDEX_CEILING,
    INDEX_FLOOR,
    OPENROUTER_BENCHMARKS,
    PRICE_TIERS,
    QUALITY_SHRINK,
    Figure,
    Priors,
    QualityPriors,
    family_of,
    price_tier_of,
    quality_from_index,
)
from service.scorer import MAX_TTFT_S, MIN_TOKENS_PER_S

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "scripts" / "sources"
DEFAULT_SOURCE = SOURCES / "openrouter-models.json.xz"
DEFAULT_LEADERBOARD = SOURCES / "artificial-analysis-llms-2026-07-10.json.xz"
OUTPUT = ROOT / "service" / "data" / "catalogue.json"

AA_LEADERBOARD = "aa-leaderboard"

# ---------------------------------------------------------------------------------------------
# Parsing


def read_source(path: Path) -> bytes:
    """The bytes of a source file, decompressed when its name ends in `.xz`."""
    data = path.read_bytes()
    return lzma.decompress(data) if path.suffix == ".xz" else data


def _number(value: Any) -> float | None:
    """A finite number, or None for null, booleans, text and NaN/inf."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def openrouter_index(raw: dict[str, Any]) -> float | None:
    """The AA intelligence index OpenRouter's catalogue carries for this row, if any."""
    aa = (raw.get("benchmarks") or {}).get("artificial_analysis") or {}
    value = _number(aa.get("intelligence_index"))
    return value if value is not None and value >= 0 else None


def aa_index(row: dict[str, Any]) -> float | None:
    value = _number((row.get("evaluations") or {}).get("artificial_analysis_intelligence_index"))
    return value if value is not None and value >= 0 else None


def aa_flags_index_estimated(row: dict[str, Any]) -> bool:
    """Whether AA marks the row's index as its own estimate (from a partial set of evaluations)."""
    evaluations = row.get("evaluations") or {}
    return evaluations.get("artificial_analysis_intelligence_index_is_estimated") is True


def aa_speed(row: dict[str, Any]) -> tuple[float, float] | None:
    """(seconds to first answer token, output tokens per second) of an AA row, if measured.

    The time to first answer token includes a reasoning model's thinking time; rows without it
    fall back to the time to first token.
    """
    speed = row.get("speed") or {}
    ttft = _number(speed.get("time_to_first_answer_token_seconds"))
    if ttft is None:
        ttft = _number(speed.get("time_to_first_token_seconds"))
    tokens_per_s = _number(speed.get("output_tokens_per_second"))
    if ttft is None or tokens_per_s is None:
        return None
    if not (0.0 <= ttft <= MAX_TTFT_S and tokens_per_s >= MIN_TOKENS_PER_S):
        return None
    return ttft, tokens_per_s


def _row_rank(row: dict[str, Any]) -> tuple[float, bool, str, str]:
    index = aa_index(row)
    return (
        -1.0 if index is None else index,
        not row.get("deprecated"),
        str(row.get("release_date") or ""),
        str(row.get("name") or ""),
    )


def pick_row(
    rows: Iterable[dict[str, Any]], has: Callable[[dict[str, Any]], Any]
) -> dict[str, Any] | None:
    """Of the AA rows that have a figure, the one with the highest index (then not deprecated,
    newest release, name): the maximum-effort configuration, which is what OpenRouter's own
    `benchmarks` field reports."""
    candidates = [r for r in rows if has(r) is not None]
    return max(candidates, key=_row_rank) if candidates else None


def aa_rows_by_openrouter_id(leaderboard: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in leaderboard.get("models") or []:
        model_id = (row.get("open_weights") or {}).get("openrouter_api_id")
        if isinstance(model_id, str) and model_id:
            rows[model_id].append(row)
    return rows


def base_of(raw: dict[str, Any], ids: set[str]) -> tuple[str, str] | None:
    """(base id, relation) when this row inherits another catalogue row's figures."""
    model_id = raw["id"]
    if model_id.startswith("~"):
        target = (raw.get("alias_target") or {}).get("slug")
        if isinstance(target, str) and target in ids and target != model_id:
            return target, "alias-target"
        return None
    base, suffix = split_variant(model_id)
    if suffix in INHERITING_SUFFIXES and base in ids:
        return base, "base-model"
    return None


# ---------------------------------------------------------------------------------------------
# Priors


# ---------------------------------------------------------------------------------------------
# Conversion


def convert(raw: dict[str, Any]) -> dict[str, Any]:
    """The static fields of one OpenRouter row (everything but the priors)."""
    arch = raw.get("architecture") or {}
    pricing = raw.get("pricing") or {}
    top = raw.get("top_provider") or {}
    model_id = raw["id"]
    completion_price = parse_price(pricing.get("completion"))
    return {
        "id": model_id,
        "name": raw.get("name") or model_id,
        "author": model_id.split("/", 1)[0],
        "created": int(raw.get("created") or 0),
        "context_length": int(raw.get("context_length") or top.get("context_length") or 0),
        "max_output_tokens": int(top.get("max_completion_tokens") or 0),
        "prompt_price": parse_price(pricing.get("prompt")),
        "completion_price": completion_price,
        "input_modalities": sorted(arch.get("input_modalities") or ["text"]),
        "output_modalities": sorted(arch.get("output_modalities") or ["text"]),
        "supported_parameters": sorted(raw.get("supported_parameters") or []),
        "realtime": is_realtime(model_id),
        "family": family_of(model_id),
        "price_tier": price_tier_of(completion_price),
    }


def _resolve(
    model_id: str,
    direct: dict[str, Figure],
    bases: dict[str, tuple[str, str]],
    prior: Callable[[str], Figure],
    seen: frozenset[str] = frozenset(),
) -> Figure:
    if model_id in direct:
        return direct[model_id]
    if model_id in bases and bases[model_id][0] not in seen:
        base, relation = bases[model_id]
        inherited = _resolve(base, direct, bases, prior, seen | {model_id})
        origin = inherited.source.split(":", 1)[0]
        return Figure(inherited.value, f"{origin}:{relation}", inherited.estimated)
    return prior(model_id)


def coverage_of(models: list[dict[str, Any]], aa_flagged: int) -> dict[str, Any]:
    text = [m for m in models if "text" in m["output_modalities"]]
    realtime = [m for m in models if m["realtime"]]

    def measured(ms: list[dict[str, Any]], what: str) -> int:
        return sum(not m[f"{what}_estimated"] for m in ms)

    return {
        "models": len(models),
        "text_output_models": len(text),
        "realtime_models": len(realtime),
        "quality_measured": measured(models, "quality"),
        "latency_measured": measured(models, "latency"),
        "both_measured": sum(
            not (m["quality_estimated"] or m["latency_estimated"]) for m in models
        ),
        "text_output_quality_measured": measured(text, "quality"),
        "text_output_latency_measured": measured(text, "latency"),
        "realtime_quality_measured": measured(realtime, "quality"),
        "realtime_latency_measured": measured(realtime, "latency"),
        "quality_sources": dict(sorted(Counter(m["quality_source"] for m in models).items())),
        "latency_sources": dict(sorted(Counter(m["latency_source"] for m in models).items())),
        "aa_leaderboard_quality_flagged_estimated_by_aa": aa_flagged,
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(source: Path, leaderboard: Path) -> dict[str, Any]:
    source_bytes, leaderboard_bytes = read_source(source), read_source(leaderboard)
    rows = json.loads(source_bytes)["data"]
    board = json.loads(leaderboard_bytes)
    aa_rows = aa_rows_by_openrouter_id(board)
    ids = {r["id"] for r in rows}
    static = {r["id"]: convert(r) for r in rows}
    bases = {r["id"]: b for r in rows if (b := base_of(r, ids)) is not None}

    # Direct measurements of each row: (quality, index) and (ttft, tokens/s).
    direct_quality: dict[str, Figure] = {}
    direct_latency: dict[str, Figure] = {}
    aa_flagged = 0  # direct AA indices that AA itself marks as estimated
    for raw in rows:
        model_id = raw["id"]
        index = openrouter_index(raw)
        source_name = OPENROUTER_BENCHMARKS
        if index is None and (row := pick_row(aa_rows.get(model_id, []), aa_index)) is not None:
            index, source_name = aa_index(row), AA_LEADERBOARD
            aa_flagged += aa_flags_index_estimated(row)
        if index is not None:
            quality = quality_from_index(index)
            direct_quality[model_id] = Figure((quality, index), source_name, False)
        if (row := pick_row(aa_rows.get(model_id, []), aa_speed)) is not None:
            direct_latency[model_id] = Figure(aa_speed(row), AA_LEADERBOARD, False)

    def pool(direct: dict[str, Figure], pick: Callable[[Any], tuple[float, ...]]):
        return [
            (static[i]["family"], static[i]["price_tier"], pick(f.value))
            for i, f in sorted(direct.items())
            if i not in bases
        ]

    quality_priors = QualityPriors(pool(direct_quality, lambda v: (v[0],)))
    latency_priors = Priors(pool(direct_latency, lambda v: v), None, FALLBACK_LATENCY)

    def quality_prior(model_id: str) -> Figure:
        found = quality_priors.figure(static[model_id]["family"], static[model_id]["price_tier"])
        return Figure((found.value[0], None), found.source, True)

    def latency_prior(model_id: str) -> Figure:
        return latency_priors.figure(static[model_id]["family"], static[model_id]["price_tier"])

    models = []
    for model_id in sorted(static):
        quality = _resolve(model_id, direct_quality, bases, quality_prior)
        latency = _resolve(model_id, direct_latency, bases, latency_prior)
        models.append(
            {
                **static[model_id],
                "quality": quality.value[0],
                "intelligence_index": quality.value[1],
                "quality_estimated": quality.estimated,
                "quality_source": quality.source,
                "ttft_s": latency.value[0],
                "tokens_per_s": latency.value[1],
                "latency_estimated": latency.estimated,
                "latency_source": latency.source,
            }
        )

    newest = max(m["created"] for m in models)
    snapshot_date = dt.datetime.fromtimestamp(newest, dt.UTC).date().isoformat()
    content = {
        "source": "OpenRouter GET /api/v1/models (see PROVENANCE.md)",
        "source_sha256": _sha256(source_bytes),
        "leaderboard_source": "Artificial Analysis LLM leaderboard (see PROVENANCE.md)",
        "leaderboard_sha256": _sha256(leaderboard_bytes),
        "leaderboard_fetched_at": (board.get("meta") or {}).get("fetched_at"),
        "snapshot_date": snapshot_date,
        "quality_index_bounds": [INDEX_FLOOR, INDEX_CEILING],
        "price_tiers_usd_per_million_output_tokens": [
            [label, None if math.isinf(bound) else bound] for bound, label in PRICE_TIERS
        ],
        "priors": {
            "quality": {
                "family": {k: v[0] for k, v in quality_priors.family.items()},
                "price_tier": {k: v[0] for k, v in quality_priors.tier.items()},
                "global": quality_priors.overall[0],
                "shrunk_toward": quality_priors.conservative,
                "shrink": QUALITY_SHRINK,
            },
            "latency": {
                "family": {k: list(v) for k, v in latency_priors.family.items()},
                "price_tier": {k: list(v) for k, v in latency_priors.tier.items()},
                "global": list(latency_priors.overall),
            },
        },
        "coverage": coverage_of(models, aa_flagged),
        "models": models,
    }
    digest = _sha256(json.dumps(content, sort_keys=True).encode())[:12]
    return {"version": f"{snapshot_date}.{digest}", **content}


def format_coverage(coverage: dict[str, Any]) -> str:
    n = coverage["models"]
    lines = [
        f"models: {n} ({coverage['text_output_models']} with text output, "
        f"{coverage['realtime_models']} realtime)",
        f"measured quality: {coverage['quality_measured']}/{n} "
        f"(text output: {coverage['text_output_quality_measured']})",
        f"measured latency: {coverage['latency_measured']}/{n} "
        f"(text output: {coverage['text_output_latency_measured']})",
        f"both measured: {coverage['both_measured']}/{n}",
        f"realtime rows: quality measured {coverage['realtime_quality_measured']}, "
        f"latency measured {coverage['realtime_latency_measured']} "
        f"of {coverage['realtime_models']}",
        f"AA indices flagged estimated by AA itself: "
        f"{coverage['aa_leaderboard_quality_flagged_estimated_by_aa']}",
    ]
    for what in ("quality", "latency"):
        counts = coverage[f"{what}_sources"]
        lines.append(f"{what} sources: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--leaderboard", type=Path, default=DEFAULT_LEADERBOARD)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    snapshot = build(args.source, args.leaderboard)
    args.output.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    count, version = len(snapshot["models"]), snapshot["version"]
    print(f"wrote {count} models, version {version}, to {args.output}")
    print(format_coverage(snapshot["coverage"]))


if __name__ == "__main__":
    main()
