"""Routing speed of the native scorer, called from Python, next to the pure-Python reference.

Cases: the embedded catalogue (best model; top 5 with every score term read), synthetic
catalogues of 1k, 10k and 100k models, the reference on the same inputs with the speed-up, and
routing while another thread replaces the live stats of every model. No decision cache.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from bench.rows import Results
from bench.timing import METHOD, measure, sample
from service import catalogue
from service.catalogue import ModelRecord
from service.scorer import MODE_WEIGHTS, LiveStats, Ranking, Scorer
from testkit import reference_scorer
from testkit.synthetic import synthetic

SPEED = MODE_WEIGHTS["speed"]
SCALE_PLOT = "scorer-scale"
PROMPT, OUTPUT = 1000, 500


def reference_model(record: ModelRecord) -> dict[str, Any]:
    """The model as the reference reads it (it ignores what the scorer has no use for)."""
    return {**record.to_json(), "kind": record.kind}


def best(scorer: Scorer) -> str:
    return scorer.rank(SPEED, prompt_tokens=PROMPT, output_tokens=OUTPUT, top_k=1).best


def top5(scorer: Scorer) -> list[tuple[str, float, float, float, float]]:
    ranking: Ranking = scorer.rank(SPEED, prompt_tokens=PROMPT, output_tokens=OUTPUT, top_k=5)
    return [
        (c.model_id, c.score, c.latency_term, c.cost_term, c.quality_term)
        for c in ranking.candidates
    ]


def reference(models: list[dict[str, Any]], top_k: int) -> object:
    return reference_scorer.rank(
        models, {}, SPEED, prompt_tokens=PROMPT, output_tokens=OUTPUT, top_k=top_k, constraints={}
    )


def compare(
    results: Results, name: str, records: list[ModelRecord], top_k: int, iterations: int
) -> None:
    scorer = Scorer("bench", [r.spec() for r in records])
    models = [reference_model(r) for r in records]
    native = top5 if top_k == 5 else best
    fast = measure(results, f"native   {name}", lambda: native(scorer), iterations)
    slow = measure(
        results,
        f"python   {name}",
        lambda: reference(models, top_k),
        max(5, iterations // 200),
        warmup=2,
    )
    results.note(f"{name}: native speed-up at p50 {slow.p50 / fast.p50:,.0f}x")
    if top_k == 1:
        results.point(SCALE_PLOT, "native (Rust)", len(records), fast.p50)
        results.point(SCALE_PLOT, "Python reference", len(records), slow.p50)


def during_updates(results: Results, records: list[ModelRecord], iterations: int) -> None:
    """Route on this thread while another replaces every model's stats, batch after batch."""
    scorer = Scorer("bench", [r.spec() for r in records])
    rng = random.Random(11)
    batches = [
        [
            LiveStats(r.id, ttft_s=rng.uniform(0.2, 3.0), tokens_per_s=rng.uniform(20, 300))
            for r in records
        ]
        for _ in range(2)
    ]
    stop = threading.Event()
    update_ns: list[int] = []

    def update() -> None:
        k = 0
        while not stop.is_set():
            start = time.perf_counter_ns()
            scorer.update_stats(batches[k % 2])
            update_ns.append(time.perf_counter_ns() - start)
            k += 1
            time.sleep(0.001)

    measure(results, "native   best, quiet (for comparison)", lambda: best(scorer), iterations)
    updater = threading.Thread(target=update)
    updater.start()
    try:
        routed = sample(lambda: best(scorer), iterations, warmup=100)
    finally:
        stop.set()
        updater.join()
    results.samples("native   best, while all stats are replaced every ~1 ms", routed)
    results.samples(
        f"update_stats of all {len(records)} models, incl. waiting for the GIL", update_ns
    )


def run(results: Results) -> None:
    base = list(catalogue.load().models)
    results.section(
        "Scorer: native against the Python reference, and its scale curve",
        f"Embedded catalogue of {len(base)} models and synthetic ones; a request of {PROMPT} "
        f"prompt + {OUTPUT} output tokens, speed mode; no decision cache. {METHOD}",
    )
    compare(results, f"best model, embedded ({len(base)})", base, 1, 100_000)
    compare(results, f"top-5 with breakdowns, embedded ({len(base)})", base, 5, 100_000)
    for size, iterations in ((1_000, 50_000), (10_000, 5_000), (100_000, 1_000)):
        compare(results, f"best model, synthetic {size:,}", synthetic(base, size), 1, iterations)
    during_updates(results, base, 50_000)


def main() -> None:
    run(Results())


if __name__ == "__main__":
    main()
