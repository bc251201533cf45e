"""A daily spend limit (USD, UTC day) shared by every router replica through Redis.

Before a paid call the router reserves the call's maximum cost; `reserve` refuses when
spent + reserved + amount would pass the limit, atomically in one Lua script, so concurrent
requests and replicas never overrun it. After the call `settle` swaps the reservation for
the actual cost (charged to the day it was reserved on), or `release` drops it. Replicas
should be given the same limit: each checks against its own.

Redis layout, per UTC day D, P being the key prefix and `spend` (by default `router:spend`; the
hash tag keeps a day's keys in one slot):

    P:{D}          hash  spent, reserved: integer nano-USD, so sums never drift;
                         fold:<journal id>: the journal spend already replayed (see below)
    P:{D}:holds    zset  member "<reservation id>:<nano-USD>", score = expiry (Unix ms)
    P:{D}:settled  zset  settled hold members, score = when to forget them (Unix ms)

All three expire `key_ttl_s` after their last write. A reservation lapses after `hold_ttl_s`
(a crashed caller's hold stops counting). Settling a hold Redis does not know (lapsed, or
lost with Redis' data) still records the spend, unless `settled` says it was settled within
the last `hold_ttl_s`: a settle retried after a lost reply is not counted twice.

Every Redis call (with any replay, below) gets `timeout_s`. On any Redis failure the ledger
carries on in memory (one warning per outage) and lets one call probe Redis every
`retry_after_s`. Meanwhile it checks the limit against the totals Redis last reported plus
what it recorded itself, so during an outage each replica may spend what was left of the
budget when Redis went away. What it records goes into a journal per day: the spend of calls
reserved and settled meanwhile (a running total), the holds it granted, and the settles of
holds Redis may have. Once Redis answers, the journals are replayed into Redis, each in one
script that is safe to repeat, before anything else. Each script also lifts the day's spent
to at least the last total this replica read from Redis, so a Redis that comes back empty
(no persistence) keeps the spend from before the outage as far as this replica saw it, but
not the holds of calls then in flight (their settles still count). Run Redis with
persistence to keep everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from service.redis_link import DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT_S, RedisBreaker

log = logging.getLogger(__name__)

UNITS_PER_USD: Final = 1_000_000_000  # amounts are kept in integer nano-USD
# Sums stay exact in Lua's doubles up to 2**53 nano-USD: about $9M a day.
MAX_AMOUNT_USD: Final = 1_000_000.0

# Every script takes KEYS = (day hash, holds, settled) and ARGV = (now ms, key TTL s,
# spent floor, how long to remember a settle in ms, ...); it returns {spent, reserved, ...}.
_PRELUDE = """
local now = tonumber(ARGV[1])
local spent = math.max(tonumber(redis.call('HGET', KEYS[1], 'spent') or '0'), tonumber(ARGV[3]))
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local function units(hold) return tonumber(string.match(hold, ':(%d+)$')) end
for _, hold in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 256)) do
  redis.call('ZREM', KEYS[2], hold)
  reserved = reserved - units(hold)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local function finish(hold, actual)
  if actual ~= '' and redis.call('ZSCORE', KEYS[3], hold) then return end
  if redis.call('ZREM', KEYS[2], hold) == 1 then reserved = reserved - units(hold) end
  if actual ~= '' then
    spent = spent + tonumber(actual)
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), hold)
  end
end
local function save(...)
  reserved = math.max(reserved, 0)
  redis.call('HSET', KEYS[1], 'spent', string.format('%d', spent),
             'reserved', string.format('%d', reserved), ...)
  for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[2]) end
  return {spent, reserved}
end
"""

# ARGV[5..8]: hold member, amount, limit (-1: none), expiry ms. Returns {.., 1 if granted}.
_RESERVE = """
local amount, limit = tonumber(ARGV[6]), tonumber(ARGV[7])
local granted = 0
if limit < 0 or spent + reserved + amount <= limit then
  redis.call('ZADD', KEYS[2], ARGV[8], ARGV[5])
  reserved = reserved + amount
  granted = 1
end
local totals = save()
return {totals[1], totals[2], granted}
"""

# ARGV[5..6]: hold member, actual cost ('' to release).
_FINISH = """
finish(ARGV[5], ARGV[6])
return save()
"""

_STATUS = "return save()"

# ARGV[5..7]: journal id, its spent so far, its number of holds; then (member, expiry ms) per
# hold and (member, actual or '') per finish. Replaying a journal again changes nothing.
_FOLD = """
local replayed = 'fold:' .. ARGV[5]
spent = spent + tonumber(ARGV[6]) - tonumber(redis.call('HGET', KEYS[1], replayed) or '0')
local first_finish = 8 + 2 * tonumber(ARGV[7])
for i = first_finish, #ARGV - 1, 2 do finish(ARGV[i], ARGV[i + 1]) end
for i = 8, first_finish - 1, 2 do
  if tonumber(ARGV[i + 1]) > now and redis.call('ZADD', KEYS[2], 'NX', ARGV[i + 1], ARGV[i]) == 1
  then
    reserved = reserved + units(ARGV[i])
  end
end
return save(replayed, ARGV[6])
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    """A hold on part of one UTC day's limit, from `SpendLedger.reserve`."""

    id: str
    day: dt.date
    units: int  # nano-USD

    @property
    def amount_usd(self) -> float:
        return self.units / UNITS_PER_USD

    @property
    def member(self) -> str:
        """How Redis names the hold."""
        return _member(self.id, self.units)


@dataclass(frozen=True, slots=True)
class SpendStatus:
    day: dt.date
    spent_usd: float
    reserved_usd: float
    limit_usd: float | None


@dataclass(slots=True)
class _Totals:
    spent: int = 0
    reserved: int = 0


@dataclass(slots=True)
class _Hold:
    units: int
    expires_ms: int
    sent: bool = False  # offered to Redis by a fold, so Redis may hold it too


@dataclass(frozen=True, slots=True)
class _Finish:
    member: str
    actual: int | None  # None: released


@dataclass(slots=True)
class _Journal:
    """One day's spend recorded while Redis was unreachable, to replay into Redis."""

    id: str = field(default_factory=lambda: secrets.token_hex(8))
    spent: int = 0  # actual cost of holds granted and finished here, cumulative
    folded_spent: int = 0  # the part of `spent` Redis has confirmed
    holds: dict[str, _Hold] = field(default_factory=dict)  # granted here, unfinished
    finished: dict[str, _Finish] = field(default_factory=dict)  # holds Redis may know

    def is_clean(self) -> bool:
        return not self.holds and not self.finished and self.spent == self.folded_spent


class _Unavailable(Exception):
    """Redis did not answer in time; the ledger has gone to memory. `sent`: the script
    went out, so Redis may have run it."""

    def __init__(self, sent: bool) -> None:
        super().__init__()
        self.sent = sent


def to_units(usd: float) -> int:
    if not (math.isfinite(usd) and 0 <= usd <= MAX_AMOUNT_USD):
        raise ValueError(f"amount must be between 0 and {MAX_AMOUNT_USD} USD, got {usd!r}")
    return round(usd * UNITS_PER_USD)


class SpendLedger:
    """Reserves, settles and reports a daily spend limit; see the module docstring.

    `redis` None keeps everything in memory (one process, lost on restart). `timeout_s`
    bounds each call's wait for Redis; `retry_after_s` is how often Redis is probed while it
    is down; `hold_ttl_s` should exceed the longest call; `clock` gives Unix seconds.
    For one event loop; not thread-safe.
    """

    def __init__(
        self,
        limit_usd: float | None,
        redis: Redis | None = None,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry_after_s: float = 1.0,
        hold_ttl_s: float = 600.0,
        key_ttl_s: int = 3 * 86_400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit_usd = limit_usd  # validated by its setter
        self._redis = redis
        self._prefix = key_prefix + "spend"
        self._timeout_s = timeout_s
        self._hold_ttl_ms = round(hold_ttl_s * 1000)
        self._key_ttl_s = key_ttl_s
        self._clock = clock
        self._breaker = RedisBreaker(
            log,
            "spend ledger",
            meanwhile="keeping spend in memory",
            on_return="the spend kept in memory is folded in",
            retry_after_s=retry_after_s,
        )
        self._seen: dict[dt.date, _Totals] = {}  # totals Redis last reported, per day
        self._journals: dict[dt.date, _Journal] = {}
        self._fold_lock = asyncio.Lock()
        self._scripts: dict[str, AsyncScript] = {}
        if redis is not None:
            for name, body in (
                ("reserve", _RESERVE),
                ("finish", _FINISH),
                ("status", _STATUS),
                ("fold", _FOLD),
            ):
                self._scripts[name] = redis.register_script(_PRELUDE + body)

    @property
    def limit_usd(self) -> float | None:
        """The daily limit; None means unlimited. Operators may change it at any time."""
        return self._limit_usd

    @limit_usd.setter
    def limit_usd(self, value: float | None) -> None:
        self._limit_units = -1 if value is None else to_units(value)
        self._limit_usd = value

    @property
    def using_redis(self) -> bool:
        return self._redis is not None and self._breaker.up

    async def reserve(self, amount_usd: float) -> Reservation | None:
        """Hold `amount_usd` of today's limit, or None when that would pass the limit."""
        now = self._clock()
        res = Reservation(secrets.token_hex(8), _day(now), to_units(amount_usd))
        limit = self._limit_units
        expires_ms = _ms(now) + self._hold_ttl_ms
        if self._usable():
            try:
                reply = await self._call(
                    "reserve", res.day, now, res.member, res.units, limit, expires_ms
                )
                return res if reply[2] else None
            except _Unavailable as down:
                if down.sent:  # Redis may hold it: drop that hold, and hold another one here
                    self._journal(res.day).finished[res.id] = _Finish(res.member, None)
                    res = replace(res, id=secrets.token_hex(8))
        totals = self._local_totals(res.day, _ms(now))
        if limit >= 0 and totals.spent + totals.reserved + res.units > limit:
            return None
        self._journal(res.day).holds[res.id] = _Hold(res.units, expires_ms)
        return res

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace the reservation with the call's actual cost. Call it (or `release`) once."""
        await self._finish(reservation, to_units(actual_usd))

    async def release(self, reservation: Reservation) -> None:
        """Cancel the reservation: the call failed and nothing was billed."""
        await self._finish(reservation, None)

    async def status(self) -> SpendStatus:
        now = self._clock()
        day = _day(now)
        totals: _Totals | None = None
        if self._usable():
            with contextlib.suppress(_Unavailable):
                spent, reserved = await self._call("status", day, now)
                totals = _Totals(spent, reserved)
        if totals is None:
            totals = self._local_totals(day, _ms(now))
        return SpendStatus(
            day, totals.spent / UNITS_PER_USD, totals.reserved / UNITS_PER_USD, self.limit_usd
        )

    async def _finish(self, res: Reservation, actual: int | None) -> None:
        if self._usable():
            with contextlib.suppress(_Unavailable):
                await self._call(
                    "finish", res.day, self._clock(), res.member, "" if actual is None else actual
                )
                return
        journal = self._journal(res.day)
        hold = journal.holds.pop(res.id, None)
        if hold is not None and not hold.sent:
            journal.spent += actual or 0
            return
        if hold is None and (seen := self._seen.get(res.day)) is not None:
            seen.reserved = max(seen.reserved - res.units, 0)
        journal.finished[res.id] = _Finish(res.member, actual)

    def _usable(self) -> bool:
        """Whether to try Redis now; while it is down, one caller per interval probes it."""
        return self._redis is not None and self._breaker.due()

    async def _call(self, script: str, day: dt.date, now: float, *args: str | int) -> list[int]:
        """Replay any journals, then run `script` for `day`, all within `timeout_s`.
        While Redis is down, loading the scripts goes first: it probes Redis without changing
        any data, and a Redis that restarted needs them."""
        assert self._redis is not None
        sent = False
        try:
            async with asyncio.timeout(self._timeout_s):
                if not self._breaker.up:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for loaded in self._scripts.values():
                            pipe.script_load(loaded.script)
                        await pipe.execute()
                await self._fold(now)
                sent = True
                reply = await self._run(script, day, now, *args)
        except Exception as exc:  # whatever goes wrong with Redis, the router's calls go on
            self._breaker.failed(exc)
            raise _Unavailable(sent) from exc
        self._breaker.answered()
        return reply

    async def _run(self, script: str, day: dt.date, now: float, *args: str | int) -> list[int]:
        if day not in self._seen:
            self._forget_before(day)
        seen = self._seen.setdefault(day, _Totals())
        key = f"{self._prefix}:{{{day.isoformat()}}}"
        reply: list[Any] = await self._scripts[script](
            keys=(key, f"{key}:holds", f"{key}:settled"),
            args=(_ms(now), self._key_ttl_s, seen.spent, self._hold_ttl_ms, *args),
        )
        seen.spent, seen.reserved = int(reply[0]), int(reply[1])
        return [int(value) for value in reply]

    async def _fold(self, now: float) -> None:
        """Replay the journals into Redis; they leave only what Redis has confirmed."""
        if not self._journals:
            return
        async with self._fold_lock:
            for day, journal in list(self._journals.items()):
                holds = list(journal.holds.items())
                finished = list(journal.finished.items())
                spent = journal.spent
                for _, hold in holds:
                    hold.sent = True
                args: list[str | int] = [journal.id, spent, len(holds)]
                for hold_id, hold in holds:
                    args += [_member(hold_id, hold.units), hold.expires_ms]
                for _, done in finished:
                    args += [done.member, "" if done.actual is None else done.actual]
                await self._run("fold", day, now, *args)
                journal.folded_spent = spent
                for hold_id, hold in holds:
                    if journal.holds.get(hold_id) is hold:
                        del journal.holds[hold_id]
                for hold_id, done in finished:
                    if journal.finished.get(hold_id) is done:
                        del journal.finished[hold_id]
                if journal.is_clean() and self._journals.get(day) is journal:
                    del self._journals[day]

    def _journal(self, day: dt.date) -> _Journal:
        if day not in self._journals:
            self._forget_before(day)
            self._journals[day] = _Journal()
        return self._journals[day]

    def _forget_before(self, day: dt.date) -> None:
        """Drop what the ledger keeps for days whose Redis keys have expired by now."""
        oldest = day - dt.timedelta(seconds=self._key_ttl_s)
        for kept in (self._seen, self._journals):
            for old in [d for d in kept if d < oldest]:
                del kept[old]

    def _local_totals(self, day: dt.date, now_ms: int) -> _Totals:
        """The day's totals as far as this ledger knows without asking Redis."""
        seen = self._seen.get(day, _Totals())
        totals = _Totals(seen.spent, seen.reserved)
        if (journal := self._journals.get(day)) is not None:
            totals.spent += journal.spent - journal.folded_spent
            totals.spent += sum(done.actual or 0 for done in journal.finished.values())
            totals.reserved += sum(
                hold.units for hold in journal.holds.values() if hold.expires_ms > now_ms
            )
        return totals


def _member(hold_id: str, units: int) -> str:
    return f"{hold_id}:{units}"


def _day(now: float) -> dt.date:
    return dt.datetime.fromtimestamp(now, dt.UTC).date()


def _ms(now: float) -> int:
    return math.floor(now * 1000)
