"""`router serve --workers N`: N server processes on one pair of ports.

The parent binds the REST port once and forks the workers before any gRPC object exists (gRPC's
core does not survive a fork it did not see); each worker then builds its own router, serves
REST on the inherited socket and binds the gRPC port itself with SO_REUSEPORT (gRPC's default
on Linux), so the kernel spreads connections over the workers. They share circuits, learned
latency, the catalogue, spend and caches through Redis (`service/shared_state.py`), which is
why several workers need `ROUTER_REDIS_URL`.

The parent only supervises: SIGINT or SIGTERM goes to every worker, which drains and stops;
a worker that dies unexpectedly is started again, unless workers keep dying
(`MAX_RESTARTS` within `RESTART_WINDOW_S`), when the parent stops them all and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Final

from service.config import Settings

log = logging.getLogger("router")

MAX_RESTARTS: Final = 5
RESTART_WINDOW_S: Final = 60.0
PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def refusal(settings: Settings, workers: int) -> str | None:
    """Why `settings` cannot be served by `workers` processes, if it cannot."""
    if workers < 2:
        return None
    if settings.grpc_port == 0 or settings.http_port == 0:
        return "--workers needs fixed ports: the workers share them"
    if not settings.redis_url:
        return (
            "--workers needs ROUTER_REDIS_URL: without Redis each worker would keep its own "
            "circuits, spend, free-variant counts and sessions"
        )
    return None


def http_socket(settings: Settings) -> socket.socket:
    """The REST port, bound and listening, for the workers to accept on."""
    family = socket.AF_INET6 if ":" in settings.http_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.http_host, settings.http_port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _stop_with_parent() -> None:
    """Have the kernel send this worker SIGTERM when its parent dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Forks `workers` processes, each running `serve(sock)`, and keeps them running."""

    def __init__(
        self, workers: int, sock: socket.socket, serve: Callable[[socket.socket], None]
    ) -> None:
        self._workers = workers
        self._sock = sock
        self._serve = serve
        self._pids: set[int] = set()
        self._stopping = False
        self._restarts: deque[float] = deque()

    def run(self) -> int:
        """Until a signal stops the workers (0) or they keep dying (1)."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._stop)
        for _ in range(self._workers):
            self._fork()
        log.info("serving with %d workers: %s", self._workers, sorted(self._pids))
        failed = False
        while self._pids:
            pid, status = os.waitpid(-1, 0)
            if pid not in self._pids:
                continue
            self._pids.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            if self._stopping:
                continue
            log.warning("worker %d exited with %d", pid, code)
            if self._too_many_restarts():
                log.error("workers keep exiting: stopping them all")
                failed = True
                self._stop(signal.SIGTERM, None)
                continue
            self._fork()
        self._sock.close()
        return 1 if failed else 0

    def _too_many_restarts(self) -> bool:
        now = time.monotonic()
        self._restarts.append(now)
        while self._restarts and self._restarts[0] < now - RESTART_WINDOW_S:
            self._restarts.popleft()
        return len(self._restarts) > MAX_RESTARTS

    def _fork(self) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            # Held until the worker's loop handles them (see cli.serve), so that a stop sent
            # while it starts drains it like any other instead of killing it.
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            _stop_with_parent()
            if os.getppid() != parent:  # it died before the kernel was told
                os._exit(0)
            code = 0
            try:
                self._serve(self._sock)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                os._exit(code)
        self._pids.add(pid)

    def _stop(self, signum: int, _frame: object) -> None:
        self._stopping = True
        for pid in self._pids:
            with contextlib.suppress(ProcessLookupError):  # it exited just now
                os.kill(pid, signum)


Serve = Callable[[Settings, socket.socket], Coroutine[Any, Any, None]]


def serve_workers(settings: Settings, workers: int, serve: Serve) -> int:
    """Serve `settings` with `workers` processes, each running `serve(settings, sock)`."""
    sock = http_socket(settings)
    return Supervisor(workers, sock, lambda s: asyncio.run(serve(settings, s))).run()
