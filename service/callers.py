"""Who is calling: callers' API keys (`Settings.api_keys`, name -> key), checked alike by the
gRPC adapter and the REST gateway. Without keys every caller is served, which is only safe on
loopback; `warn_if_exposed` says so loudly at startup.

Keys are compared in constant time against every configured key, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar

from pydantic import SecretStr

from service.errors import ErrorKind, RouterError

log = logging.getLogger(__name__)

# The name of the caller of the request being served (None when no keys are configured);
# the adapters set it before the core runs.
current_caller: ContextVar[str | None] = ContextVar("current_caller", default=None)

MISSING_KEY = "missing API key: send authorization: Bearer <key> (or x-api-key: <key>)"
INVALID_KEY = "invalid API key"
LOOPBACK_NAMES = frozenset({"localhost"})
# Keys travel in HTTP headers and gRPC metadata: printable ASCII, no spaces.
KEY_CHARS = re.compile(r"[\x21-\x7e]+")


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a caller sent: `authorization: Bearer <key>`, else `x-api-key: <key>`. What no
    key could be (see `KEY_CHARS`) is not one, and cannot be passed on in gRPC metadata."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and KEY_CHARS.fullmatch(token.strip()):
            return token.strip()
    if x_api_key and KEY_CHARS.fullmatch(x_api_key.strip()):
        return x_api_key.strip()
    return None


def _digest(key: str) -> bytes:
    # Digests have one length, so comparing them tells nothing about a key's length either.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class Callers:
    """The configured callers; `required` when there is at least one."""

    def __init__(self, keys: Mapping[str, SecretStr]) -> None:
        self._digests = tuple((name, _digest(key.get_secret_value())) for name, key in keys.items())

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def identify(self, key: str) -> str | None:
        """The name of the caller whose key this is, or None. Every configured key is compared,
        whichever matches, so the time taken does not tell which one did."""
        given = _digest(key)
        caller = None
        for name, digest in self._digests:
            if hmac.compare_digest(given, digest):
                caller = name
        return caller

    def authenticate(self, key: str | None) -> str | None:
        """The caller's name, None when no keys are configured; `RouterError` UNAUTHENTICATED
        when `key` (as `presented_key` found it) is missing or matches none."""
        if not self._digests:
            return None
        if key is None:
            raise RouterError(ErrorKind.UNAUTHENTICATED, MISSING_KEY)
        caller = self.identify(key)
        if caller is None:
            raise RouterError(ErrorKind.UNAUTHENTICATED, INVALID_KEY)
        return caller


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(hosts: Iterable[str], callers: Callers) -> bool:
    """Log a warning, and say so, when a server listens beyond loopback without caller keys."""
    exposed = sorted({host for host in hosts if not is_loopback(host)})
    if not exposed or callers.required:
        return False
    log.warning(
        "listening on %s without caller API keys: anyone who reaches it can use the router and "
        "spend its OpenRouter credit; set ROUTER_API_KEYS (or api_keys in router.toml)",
        ", ".join(exposed),
    )
    return True
