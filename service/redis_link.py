"""The router's way with Redis: one place that makes its clients, bounded calls, and a breaker
that stops paying even that bound while Redis is away.

`connect` takes these URLs (`check_url` says at start-up what is wrong with any other):

- `redis://[[user]:password@]host[:port][/db]`, and `rediss://` the same over TLS. The query
  may carry `db`, `client_name` and, for `rediss://`, `ssl_ca_certs` (a CA file),
  `ssl_ca_path`, `ssl_certfile` and `ssl_keyfile` (a client certificate), `ssl_cert_reqs`
  (`required`, the default, `optional` or `none`) and `ssl_check_hostname` (`true` by default).
  Timeouts and retries are the router's own, never the URL's.
- `unix://[[user]:password@]/path/to/redis.sock[?db=N]`.
- `redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]`: the master
  that the Sentinels at those addresses name for `service_name`, found again after a failover.
  The credentials are the master's; the Sentinels are asked without any.

Redis Cluster (`redis+cluster://`) is refused: redis-py's cluster client is another class
than the one every user of Redis here is written and tested against, and the spend ledger's
and free counter's Lua scripts and the pipelines have not been run against a cluster.

Each user (the spend ledger, the free-call counter, ...) keeps its own `RedisBreaker`: after a
failure it says Redis is down (one warning per outage), lets one call probe it every
`retry_after_s`, and says so once Redis answers again; meanwhile the user carries on in memory.
Every key the router writes starts with its key prefix (`redis_key_prefix`, by default
`DEFAULT_KEY_PREFIX`), each user adding its own name.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

# Measured in the event loop, so it also covers a reply's wait behind other requests' work:
# under 50 concurrent clients, 5 ms tripped the breakers of a healthy loopback Redis, and 50 ms
# did once the CPU was shared with other busy processes. A Redis that hangs costs it once a
# second per user of Redis (the breaker's probe).
DEFAULT_TIMEOUT_S: Final = 0.1
DEFAULT_KEY_PREFIX: Final = "router:"
SENTINEL_SCHEME: Final = "redis+sentinel"
SCHEMES: Final = ("redis", "rediss", "unix", SENTINEL_SCHEME)
CLUSTER_REFUSED: Final = (
    "Redis Cluster is not supported: the router's Redis users are written and tested against "
    "a single Redis (its Lua scripts and pipelines have not been run against a cluster's "
    "slots); use a standalone Redis or a Sentinel-managed one (redis+sentinel://)"
)
QUERY: Final = frozenset({"db", "client_name"})
TLS_QUERY: Final = frozenset(
    {
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
    }
)
CERT_REQS: Final = ("required", "optional", "none")
DB_PATH: Final = re.compile(r"/?|/\d+")


@dataclass(frozen=True)
class SentinelTarget:
    """What a `redis+sentinel://` URL names."""

    addresses: list[tuple[str, int]]
    service_name: str
    db: int
    username: str | None
    password: str | None


def check_url(url: str) -> None:
    """Raise ValueError saying what is wrong with `url` if `connect` does not take it. The
    message never holds the URL or any part of it but the names of query parameters."""
    _parse(url)


def connect(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Redis:
    """A client of the Redis `url` names (see the module docstring; `check_url` first), with no
    retries and socket timeouts of `timeout_s`. The caller closes it (`await client.aclose()`)."""
    bounds: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }
    target = _parse(url)
    if target is None:
        return Redis.from_url(url, **bounds)
    sentinels = Sentinel(target.addresses, sentinel_kwargs=bounds)  # type: ignore[no-untyped-call]
    master: Redis = sentinels.master_for(
        target.service_name,
        redis_class=_SentinelMaster,
        db=target.db,
        username=target.username,
        password=target.password,
        **bounds,
    )
    return master


def redacted(url: str) -> str:
    """`url` with its password (or a lone user name, which may be one) shown as `***`."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at:
        return url
    username, colon, _ = userinfo.partition(":")
    shown = f"{username}:***" if colon else "***"
    return parts._replace(netloc=f"{shown}@{hosts}").geturl()


class RedisBreaker:
    """Whether to ask Redis now. It writes to the user's `log`, naming the user (`user`), what
    it does while Redis is away (`meanwhile`) and once Redis answers again (`on_return`)."""

    def __init__(
        self,
        log: logging.Logger,
        user: str,
        *,
        meanwhile: str,
        on_return: str,
        retry_after_s: float,
    ) -> None:
        self._log = log
        self._user = user
        self._meanwhile = meanwhile
        self._on_return = on_return
        self._retry_after_s = retry_after_s
        self.up = True
        self._probe_at = 0.0

    def due(self) -> bool:
        """True while Redis is up; while it is down, once per `retry_after_s` (a probe)."""
        if self.up:
            return True
        if time.monotonic() < self._probe_at:
            return False
        self._probe_at = time.monotonic() + self._retry_after_s
        return True

    def failed(self, exc: BaseException) -> None:
        if self.up:
            self._log.warning(
                "%s: Redis unavailable (%s: %s), %s",
                self._user,
                type(exc).__name__,
                exc,
                self._meanwhile,
            )
        self.up = False
        self._probe_at = time.monotonic() + self._retry_after_s

    def answered(self) -> None:
        if not self.up:
            self._log.info("%s: Redis answers again; %s", self._user, self._on_return)
            self.up = True


class _SentinelMaster(Redis):
    """The master's client; closing it also closes its connections to the Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        await pool.sentinel_manager.aclose()


def _parse(url: str) -> SentinelTarget | None:
    """What a `redis+sentinel://` URL names; None for a URL that `Redis.from_url` takes as it
    is. ValueError as `check_url` says."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("not a URL") from None
    if parts.scheme.endswith("+cluster"):
        raise ValueError(CLUSTER_REFUSED)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
    given = set(parse_qs(parts.query, keep_blank_values=True))
    taken = {"rediss": QUERY | TLS_QUERY, SENTINEL_SCHEME: frozenset()}.get(parts.scheme, QUERY)
    if given - taken:
        raise ValueError(
            f"{parts.scheme}:// URLs do not take the query parameters "
            f"{', '.join(sorted(given - taken))}; they take {', '.join(sorted(taken)) or 'none'} "
            "(timeouts and retries are the router's own settings)"
        )
    if parts.scheme == SENTINEL_SCHEME:
        return _sentinel_target(parts)
    _check_plain(url, parts)
    return None


def _check_plain(url: str, parts: SplitResult) -> None:
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("the port must be a number up to 65535") from None
    try:
        options = parse_url(url)
    except ValueError as exc:  # redis-py's messages name the parameter, never its value
        raise ValueError(str(exc)) from None
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("a unix:// URL needs the socket's path")
    if parts.scheme != "unix" and not DB_PATH.fullmatch(parts.path):
        raise ValueError("the path must be a database number (/0) or nothing")
    if options.get("ssl_cert_reqs", "required") not in CERT_REQS:
        raise ValueError(f"ssl_cert_reqs must be one of {', '.join(CERT_REQS)}")


def _sentinel_target(parts: SplitResult) -> SentinelTarget:
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = (unquote(part) for part in userinfo.partition(":"))
    addresses = []
    for address in hosts.split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{SENTINEL_SCHEME}:// takes Sentinels as host:port[,host:port...]")
        addresses.append((host.strip("[]"), int(port)))
    service_name, _, db = parts.path.strip("/").partition("/")
    if not service_name or not (db == "" or db.isdigit()):
        raise ValueError(f"{SENTINEL_SCHEME}:// URLs end in /service_name or /service_name/db")
    return SentinelTarget(
        addresses, unquote(service_name), int(db or 0), username or None, password or None
    )
