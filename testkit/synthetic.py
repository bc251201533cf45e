"""Synthetic catalogues of any size, drawn from the real one, for benchmarks and tests."""

from __future__ import annotations

import dataclasses
import random

from service.catalogue import ModelRecord


def synthetic(base: list[ModelRecord], size: int, seed: int = 7) -> list[ModelRecord]:
    """`size` models drawn from the real ones, with jittered prices, quality and latency."""
    rng = random.Random(seed)
    models = []
    for k in range(size):
        m = rng.choice(base)
        scale = rng.uniform(0.5, 2.0) if m.prompt_price >= 0 else 1.0
        models.append(
            dataclasses.replace(
                m,
                id=f"{m.id}~{k}",
                prompt_price=m.prompt_price * scale,
                completion_price=m.completion_price * scale,
                quality=min(1.0, max(0.0, m.quality + rng.uniform(-0.05, 0.05))),
                ttft_s=rng.uniform(0.2, 3.0),
                tokens_per_s=rng.uniform(20.0, 300.0),
            )
        )
    return models
