"""Replicas sharing one Redis agree on which circuits are open, what they learned of each
model's latency, and which catalogue they serve.

Every `interval_s` each replica makes one pipelined round trip, off the request path:

* **Circuits**: the sorted set `<prefix>circuits` holds each open circuit's model with the Unix
  time its cooldown ends (`ZADD GT`, so the latest opening wins). A replica writes its own open
  circuits and keeps open, as long, those another opened (`CircuitBreakers.opened_elsewhere`);
  after the cooldown every replica probes the model for itself.
* **Learned latency**: the hash `<prefix>learned` holds each replica's averages of the models it
  tried (field `<model>\\n<replica>`, value `[ttft_s, tokens_per_s, last seen]`); each replica
  routes with the mean of every replica's fresh averages (`LiveFigures.take_peers`). Entries
  older than the observation TTL are deleted by whoever reads them.
* **Catalogue**: a replica whose refresh replaced its catalogue writes OpenRouter's listing (as
  refreshed, before the operator's changes) to `<prefix>{catalogue}` and its version and fetch
  time to `<prefix>{catalogue}:version`, unless a listing fetched later is there already
  (`catalogue_publish.lua`); the others read the listing when the version changes, and serve it
  when it was fetched after their own (`CatalogueKeeper.adopt`).

Spend, the free-variant quota, sticky sessions, decision records and both caches go through
Redis on their own. The retry budget is kept per replica on purpose: it caps retries at a share
of the traffic, and each replica's share of its own traffic is that share of the fleet's.

Without Redis, or while it does not answer (a `RedisBreaker` probes it once per `interval_s`),
each replica works alone, correctly, and catches up at the next round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from importlib import resources
from typing import Final, cast

from redis.asyncio import Redis

from service import catalogue as catalogue_files
from service import metrics
from service.catalogue_keeper import CatalogueKeeper, Refreshed
from service.live_figures import LiveFigures, Observed
from service.redis_link import DEFAULT_KEY_PREFIX, RedisBreaker
from service.resilience import CircuitBreakers

log = logging.getLogger(__name__)

SEPARATOR: Final = "\n"  # model ids hold ':' and '/', never a newline
PUBLISH: Final = resources.files("service").joinpath("catalogue_publish.lua").read_text("utf-8")


class SharedState:
    """See the module docstring. For one event loop. `clock` is the monotonic clock of the
    circuits and live figures, `wall_clock` Unix seconds (the replicas' common clock)."""

    def __init__(
        self,
        redis: Redis | None,
        breakers: CircuitBreakers,
        figures: LiveFigures,
        keeper: CatalogueKeeper,
        *,
        interval_s: float,
        timeout_s: float,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._breakers = breakers
        self._figures = figures
        self._keeper = keeper
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._circuits = key_prefix + "circuits"
        self._learned = key_prefix + "learned"
        # One hash slot for both (Redis Cluster runs the script on one node).
        self._catalogue = key_prefix + "{catalogue}"
        self._catalogue_version = key_prefix + "{catalogue}:version"
        self._publish = redis.register_script(PUBLISH) if redis is not None else None
        self._clock = clock
        self._wall_clock = wall_clock
        self.replica = uuid.uuid4().hex[:12]
        self._published: Refreshed | None = None
        self._seen_version: str | None = None
        self._expired: list[bytes] = []
        self._breaker = RedisBreaker(
            log,
            "shared state",
            meanwhile="this replica keeps its circuits, latency figures and catalogue to itself",
            on_return="sharing them again",
            retry_after_s=interval_s,
        )
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        if self._redis is not None and self._interval_s > 0:
            self._task = asyncio.create_task(self._run(), name="shared-state")

    async def aclose(self) -> None:
        if self._task is not None:
            # Also stops a loop in whose Redis call the cancellation got lost (redis-py, and
            # asyncio.timeout on Python 3.11, can turn it into an error the loop survives).
            self._closing = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._closing:
            await self.sync()
            await asyncio.sleep(self._interval_s)

    async def sync(self) -> bool:
        """One exchange with Redis; False when Redis did not answer (or is not configured)."""
        if self._redis is None or not self._breaker.due():
            return False
        listing: bytes | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                circuits, learned, version = await self._exchange(self._redis)
                if version is not None and version != self._seen_version:
                    self._seen_version = version
                    listing = cast(bytes | None, await self._redis.get(self._catalogue))
        except Exception as exc:  # Redis away: carry on alone, share again on its return
            self._breaker.failed(exc)
            metrics.SHARED_STATE["failed"].inc()
            return False
        self._breaker.answered()
        metrics.SHARED_STATE["ok"].inc()
        self._adopt_circuits(circuits)
        self._adopt_learned(learned)
        if listing is not None and version is not None:
            self._adopt_catalogue(listing, version)
        self._figures.before_routing()
        return True

    async def _exchange(
        self, redis: Redis
    ) -> tuple[list[tuple[bytes, float]], dict[bytes, bytes], str | None]:
        """Write what this replica has to say, read what all have said: one round trip."""
        now, wall = self._clock(), self._wall_clock()
        async with redis.pipeline(transaction=False) as pipe:
            opened = {
                model: wall + until - now for model, until in self._breakers.open_until().items()
            }
            if opened:
                pipe.zadd(self._circuits, opened, gt=True)
            unshared = self._figures.unshared()
            if unshared:
                pipe.hset(
                    self._learned,
                    mapping={
                        model + SEPARATOR + self.replica: json.dumps(
                            [seen.ttft_s, seen.tokens_per_s, wall + seen.last_seen - now]
                        )
                        for model, seen in unshared.items()
                    },
                )
            if self._expired:
                pipe.hdel(self._learned, *self._expired)
                self._expired = []
            refreshed = self._keeper.refreshed
            publish = self._publish
            if publish is not None and refreshed is not None and refreshed is not self._published:
                self._published = refreshed
                self._seen_version = _version_text(refreshed)
                await publish(
                    keys=[self._catalogue, self._catalogue_version],
                    args=[
                        json.dumps(refreshed.listing.to_json()),
                        self._seen_version,
                        refreshed.fetched_at,
                    ],
                    client=pipe,
                )
            pipe.zremrangebyscore(self._circuits, "-inf", wall)
            pipe.zrange(self._circuits, 0, -1, withscores=True)
            pipe.hgetall(self._learned)
            pipe.get(self._catalogue_version)
            *_, circuits, learned, version = await pipe.execute()
        return circuits, learned, None if version is None else version.decode()

    def _adopt_catalogue(self, text: bytes, version: str) -> None:
        """Serve the catalogue another replica refreshed, if it is newer than this one's."""
        try:
            shared = Refreshed(
                catalogue_files.parse(text.decode()), float(version.rsplit(" ", 1)[1])
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            log.warning("ignoring an unreadable shared catalogue (%s): %s", version, exc)
            return
        self._published = shared
        self._keeper.adopt(shared)

    def _adopt_circuits(self, circuits: list[tuple[bytes, float]]) -> None:
        now, wall = self._clock(), self._wall_clock()
        for model, until in circuits:
            self._breakers.opened_elsewhere(model.decode(), now + until - wall)

    def _adopt_learned(self, learned: dict[bytes, bytes]) -> None:
        now, wall = self._clock(), self._wall_clock()
        ttl = self._figures.observation_ttl_s
        peers: dict[str, list[Observed]] = {}
        for field, value in learned.items():
            model, _, replica = field.decode().partition(SEPARATOR)
            try:
                ttft_s, tokens_per_s, seen_at = json.loads(value)
                age = wall - float(seen_at)
                seen = Observed(_figure(ttft_s), _figure(tokens_per_s), now - max(age, 0.0))
            except (ValueError, TypeError) as exc:
                log.warning("ignoring unreadable learned figures of %s: %s", model, exc)
                self._expired.append(field)
                continue
            if age > ttl:
                self._expired.append(field)
            elif replica != self.replica:
                peers.setdefault(model, []).append(seen)
        self._figures.take_peers(peers)


def _version_text(refreshed: Refreshed) -> str:
    return f"{refreshed.listing.version} {refreshed.fetched_at!r}"


def _figure(value: object) -> float | None:
    """A learned figure as written by a replica: a finite positive number, or None."""
    if value is None:
        return None
    number = float(cast(float, value))
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"not a figure: {value!r}")
    return number
