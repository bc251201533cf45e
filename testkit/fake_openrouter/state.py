"""Everything the fake remembers; shared by the server's thread and the test's thread."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import math
import secrets
import string
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .behaviours import ChatBehaviour, ModelsBehaviour, Reply
from .catalogue import Catalogue, Model
from .free_limits import FreeAllowance
from .providers import (
    Endpoint,
    Percentiles,
    latency_percentiles,
    synthesise,
    throughput_percentiles,
)

DEFAULT_KEY = "sk-or-v1-" + hashlib.sha256(b"fake-openrouter default test key").hexdigest()
ANY_MODEL = "*"
ALPHANUMERIC = string.ascii_letters + string.digits


@dataclass
class FakeConfig:
    """Knobs that may also be changed while the fake runs (`fake.config.is_free_tier = True`)."""

    usage_chunk: Literal["empty_choices", "empty_delta"] = "empty_choices"
    """The streamed usage chunk: `choices: []` (2026 docs) or one choice with an empty delta."""
    processing_comments: bool = True
    """Open streams with `: OPENROUTER PROCESSING`, repeated while the first token is pending."""
    keepalive_interval_s: float = 0.5
    key_limit_usd: float | None = None
    """Per-key spending limit reported by `/key` and enforced by the 402 pre-authorisation."""
    is_free_tier: bool = False
    """`/key`'s "never bought credits"; it also sets the `:free` daily allowance (below)."""
    free_models_per_minute: int = 20
    """The account's `:free` allowance per minute."""
    free_models_per_day: int | None = None
    """The account's daily `:free` allowance. None: 50 when `is_free_tier`, else 1,000. The
    real threshold is 10 USD of credits bought, which the fake does not track: set 50 here for
    an account that bought some credits but less than that."""
    clock_offset_s: float = 0.0
    """Added to the real time wherever the fake reads the calendar (the `:free` allowance's
    minutes and days, and the resets its 429s report): move it forward instead of waiting."""

    @property
    def free_per_day(self) -> int:
        if self.free_models_per_day is not None:
            return self.free_models_per_day
        return 50 if self.is_free_tier else 1000


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    """Lower-cased names."""
    json: Any
    """The parsed body; None when there is none or it is not JSON."""
    body: bytes


class Keep(enum.Enum):
    KEEP = "keep"


KEEP = Keep.KEEP


class ShuttingDown(Exception):
    """The fake is stopping: whatever was waiting drops its connection."""


def new_generation_id(now: float | None = None) -> str:
    suffix = "".join(secrets.choice(ALPHANUMERIC) for _ in range(20))
    return f"gen-{int(now or time.time())}-{suffix}"


def user_id_for(key: str) -> str:
    return "user_" + hashlib.sha256(key.encode()).hexdigest()[:27]


class FakeState:
    def __init__(
        self,
        models: Sequence[Model],
        api_keys: Iterable[str],
        balance_usd: float,
        config: FakeConfig,
    ) -> None:
        self._initial_models = list(models)
        self._initial_balance = balance_usd
        self._initial_config = config
        self.api_keys = frozenset(api_keys)
        self.closing = asyncio.Event()
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.config = dataclasses.replace(self._initial_config)
            self.catalogue = Catalogue(self._initial_models)
            self.credits_usd = self._initial_balance
            self._spend: dict[str, float] = {}
            self._scripts: defaultdict[str, deque[ChatBehaviour]] = defaultdict(deque)
            self._standing: dict[str, ChatBehaviour] = {}
            self._models_script: deque[ModelsBehaviour] = deque()
            self._stats: dict[tuple[str, str], dict[str, Any]] = {}
            self._requests: list[RecordedRequest] = []
            self._cut_short: list[RecordedRequest] = []
            self.free_allowance = FreeAllowance()

    def now(self) -> float:
        """Unix seconds on the fake's calendar (`config.clock_offset_s` ahead of real time)."""
        return time.time() + self.config.clock_offset_s

    # Keys and money.

    def is_valid_key(self, key: str) -> bool:
        return key in self.api_keys

    def charge(self, key: str, usd: float) -> None:
        with self._lock:
            self._spend[key] = self._spend.get(key, 0.0) + usd

    def spent(self, key: str | None = None) -> float:
        with self._lock:
            return self._spend.get(key, 0.0) if key else sum(self._spend.values())

    def set_balance(self, usd: float) -> None:
        self.credits_usd = self.spent() + usd

    def remaining(self, key: str) -> tuple[float, bool]:
        """What `key` may still spend, and whether its own limit (not the balance) is the bound."""
        balance = self.credits_usd - self.spent()
        limit = self.config.key_limit_usd
        if limit is not None and limit - self.spent(key) < balance:
            return limit - self.spent(key), True
        return balance, False

    # Scripts.

    def script(self, model_id: str, behaviours: Iterable[ChatBehaviour]) -> None:
        with self._lock:
            self._scripts[model_id].extend(behaviours)

    def set_behaviour(self, model_id: str, behaviour: ChatBehaviour | None) -> None:
        with self._lock:
            if behaviour is None:
                self._standing.pop(model_id, None)
            else:
                self._standing[model_id] = behaviour

    def next_behaviour(self, model_id: str) -> ChatBehaviour:
        with self._lock:
            for key in (model_id, ANY_MODEL):
                if self._scripts[key]:
                    return self._scripts[key].popleft()
            return self._standing.get(model_id) or self._standing.get(ANY_MODEL) or Reply()

    def script_models(self, behaviours: Iterable[ModelsBehaviour]) -> None:
        with self._lock:
            self._models_script.extend(behaviours)

    def next_models_behaviour(self) -> ModelsBehaviour | None:
        with self._lock:
            return self._models_script.popleft() if self._models_script else None

    # Endpoint figures.

    def set_models(self, models: Iterable[Mapping[str, Any]]) -> None:
        self.catalogue = Catalogue(models)

    def endpoints(self, row: Model) -> list[Endpoint]:
        with self._lock:
            return [
                dataclasses.replace(endpoint, **self._stats.get((str(row["id"]), endpoint.tag), {}))
                for endpoint in synthesise(row)
            ]

    def set_endpoint_stats(
        self,
        model_id: str,
        provider: str | None,
        latency_ms: float | Percentiles | Keep | None,
        throughput: float | Percentiles | Keep | None,
        uptime: float | Keep | None,
    ) -> None:
        row = self.catalogue.get(model_id)
        if row is None:
            raise KeyError(f"{model_id} is not in the fake's catalogue")
        chosen = [e for e in synthesise(row) if provider is None or e.matches(provider)]
        if not chosen:
            raise KeyError(f"{model_id} has no endpoint matching {provider!r}")
        changes: dict[str, Any] = {}
        if latency_ms is not KEEP:
            changes["latency_ms"] = _percentiles(latency_ms, latency_percentiles)
        if throughput is not KEEP:
            changes["throughput"] = _percentiles(throughput, throughput_percentiles)
        if uptime is not KEEP:
            changes["uptime"] = uptime
        with self._lock:
            for endpoint in chosen:
                self._stats.setdefault((model_id, endpoint.tag), {}).update(changes)

    # Records.

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def cut_short(self, request: RecordedRequest) -> None:
        with self._lock:
            self._cut_short.append(request)

    def requests_cut_short(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._cut_short)

    # Waiting.

    async def pause(self, seconds: float) -> None:
        """Sleep `seconds` (math.inf: forever); raise ShuttingDown as soon as the fake stops."""
        if seconds > 0 or self.closing.is_set():
            timeout = None if math.isinf(seconds) else seconds
            try:
                await asyncio.wait_for(self.closing.wait(), timeout)
            except TimeoutError:
                return
            raise ShuttingDown


def _percentiles(
    value: float | Percentiles | None, spread: Callable[[float], dict[str, float]]
) -> dict[str, float] | None:
    if value is None:
        return None
    return dict(value) if isinstance(value, Mapping) else spread(float(value))
