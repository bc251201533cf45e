"""Which live figures the scorer decides with, as a fingerprint for the decision cache's keys.

Each model's figures (time to first token, throughput, circuit, estimated flag, source) are held
as a baseline. A new push moves the baseline, and so the fingerprint, when a flag or the source
changes, when a figure appears or goes, or when a figure moves by more than `shift` (relative)
from the baseline; smaller moves leave it, so a cached decision may rank with figures up to
`shift` away from the current ones. The fingerprint is an XOR of a stable hash of each model's
baseline: the same figures give the same fingerprint in every replica, which lets replicas share
decisions through Redis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence

from service.scorer import LiveStats

_Baseline = tuple[float | None, float | None, bool, bool | None, str | None]
_PRIORS: _Baseline = (None, None, False, None, None)


def _digest(model_id: str, baseline: _Baseline) -> int:
    text = repr((model_id, baseline)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def _moved(old: float | None, new: float | None, shift: float) -> bool:
    if old is None or new is None:
        return old is not new
    return abs(new - old) > shift * abs(old)


class LiveEpoch:
    def __init__(self, shift: float) -> None:
        self._shift = shift
        self._baselines: dict[str, _Baseline] = {}
        self.fingerprint = 0

    def update(self, stats: Sequence[tuple[LiveStats, str | None]]) -> None:
        """Take the figures just pushed to the scorer (with where their latency comes from)."""
        for figures, source in stats:
            new = (
                figures.ttft_s,
                figures.tokens_per_s,
                figures.circuit_open,
                figures.latency_estimated,
                source,
            )
            old = self._baselines.get(figures.id, _PRIORS)
            if old[2:] == new[2:] and not (
                _moved(old[0], new[0], self._shift) or _moved(old[1], new[1], self._shift)
            ):
                continue
            self._set(figures.id, old, new)

    def keep(self, model_ids: Collection[str]) -> None:
        """Forget the models no longer listed (after a catalogue change)."""
        for model_id in [m for m in self._baselines if m not in model_ids]:
            self._set(model_id, self._baselines[model_id], _PRIORS)

    def _set(self, model_id: str, old: _Baseline, new: _Baseline) -> None:
        if old != _PRIORS:
            self.fingerprint ^= _digest(model_id, old)
        if new == _PRIORS:
            self._baselines.pop(model_id, None)
        else:
            self.fingerprint ^= _digest(model_id, new)
            self._baselines[model_id] = new
