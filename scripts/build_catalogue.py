"""Build the catalogue snapshot shipped inside the `service` package.

Reads OpenRouter's `GET /api/v1/models` response saved in the shared data folder and writes
`service/data/catalogue.json`, the catalogue the router serves with no network and no key.

Interim priors (until the measured-priors pipeline replaces them):
- quality: the Artificial Analysis intelligence index that OpenRouter's catalogue carries in
  `benchmarks.artificial_analysis.intelligence_index`, divided by 100; models without it get the
  median of the measured values and are marked estimated;
- latency: every model gets the same prior (1.0 s to first token, 60 output tokens/s), marked
  estimated.

Usage: python scripts/build_catalogue.py [--source ../shared/data/openrouter-models.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "openrouter-models.json"
OUTPUT = ROOT / "service" / "data" / "catalogue.json"

PRIOR_TTFT_S = 1.0
PRIOR_TOKENS_PER_S = 60.0
DYNAMIC_PRICE = -1.0


def parse_price(value: Any) -> float:
    """USD per token from a string, a number or null; unknown or negative means dynamic."""
    if value is None:
        return DYNAMIC_PRICE
    try:
        price = float(value)
    except (TypeError, ValueError):
        return DYNAMIC_PRICE
    return price if price >= 0 else DYNAMIC_PRICE


def intelligence_index(raw: dict[str, Any]) -> float | None:
    aa = (raw.get("benchmarks") or {}).get("artificial_analysis") or {}
    value = aa.get("intelligence_index")
    return float(value) if isinstance(value, int | float) else None


def convert(raw: dict[str, Any], quality_prior: float) -> dict[str, Any]:
    arch = raw.get("architecture") or {}
    pricing = raw.get("pricing") or {}
    top = raw.get("top_provider") or {}
    index = intelligence_index(raw)
    model_id = raw["id"]
    return {
        "id": model_id,
        "name": raw.get("name") or model_id,
        "author": model_id.split("/", 1)[0],
        "created": int(raw.get("created") or 0),
        "context_length": int(raw.get("context_length") or top.get("context_length") or 0),
        "max_output_tokens": int(top.get("max_completion_tokens") or 0),
        "prompt_price": parse_price(pricing.get("prompt")),
        "completion_price": parse_price(pricing.get("completion")),
        "input_modalities": sorted(arch.get("input_modalities") or ["text"]),
        "output_modalities": sorted(arch.get("output_modalities") or ["text"]),
        "supported_parameters": sorted(raw.get("supported_parameters") or []),
        "quality": quality_prior if index is None else round(min(max(index / 100, 0.0), 1.0), 6),
        "quality_estimated": index is None,
        "ttft_s": PRIOR_TTFT_S,
        "tokens_per_s": PRIOR_TOKENS_PER_S,
        "latency_estimated": True,
    }


def build(source: Path) -> dict[str, Any]:
    raw_bytes = source.read_bytes()
    rows = json.loads(raw_bytes)["data"]
    measured = [i for i in map(intelligence_index, rows) if i is not None]
    quality_prior = round(statistics.median(measured) / 100, 6)
    models = sorted((convert(r, quality_prior) for r in rows), key=lambda m: m["id"])
    newest = max(m["created"] for m in models)
    snapshot_date = dt.datetime.fromtimestamp(newest, dt.UTC).date().isoformat()
    digest = hashlib.sha256(json.dumps(models, sort_keys=True).encode()).hexdigest()[:12]
    return {
        "version": f"{snapshot_date}.{digest}",
        "source": "OpenRouter GET /api/v1/models (see PROVENANCE.md)",
        "source_sha256": hashlib.sha256(raw_bytes).hexdigest(),
        "snapshot_date": snapshot_date,
        "priors": {
            "quality": quality_prior,
            "ttft_s": PRIOR_TTFT_S,
            "tokens_per_s": PRIOR_TOKENS_PER_S,
        },
        "models": models,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    snapshot = build(args.source)
    args.output.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    count, version = len(snapshot["models"]), snapshot["version"]
    print(f"wrote {count} models, version {version}, to {args.output}")


if __name__ == "__main__":
    main()
